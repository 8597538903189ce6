// Applying an IPAM result to the pod's interface, and checking it is still there (CHECK):
// what the reference plugins' ipam.ConfigureIface / ip.ValidateExpected* do, over our
// netlink layer. Shared by strand-macvlan and strand-ipvlan.
//
// ADD order, as the reference: IPv6 enabled on lo and the interface (disable_ipv6=0,
// keep_addr_on_down=1) before the first IPv6 address, addresses, link up, wait for IPv6
// duplicate address detection when there is an IPv6 gateway (routes via it would
// otherwise fail), then routes; a route without a gateway uses the first gateway of its
// family from `ips`. Nothing here needs its own undo: everything lives on the link, and
// the caller's undo step deletes the link.
import { CniError, Code } from '../../lib/cni/errors.ts';
import type { Logger } from '../../lib/cni/log.ts';
import type { IPConfig, Result, Route } from '../../lib/cni/types.ts';
import { ipEqual, tryParseCidr } from '../../lib/ip/cidr.ts';
import { isNetlinkError, type NetlinkError } from '../../lib/netlink/errors.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';

/** How long ADD waits for IPv6 DAD to finish (the reference: 5 s). */
export const DAD_SETTLE_MS = 5000;

export interface PodLink {
  index: number;
  name: string;
}

function familyOf(cidrOrIp: string): 4 | 6 {
  return cidrOrIp.includes(':') ? 6 : 4;
}

/** Runs a netlink step; a NetlinkError becomes CniError 101 saying what failed. */
export function nl<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isNetlinkError(e)) throw netlinkFailure(what, e);
    throw e;
  }
}

export function netlinkFailure(what: string, e: NetlinkError): CniError {
  return new CniError(Code.NetlinkFailure, what, e.message, { cause: e });
}

function enableIPv6(ns: Netns, ifName: string, log: Logger | undefined): void {
  for (const dev of ['lo', ifName]) {
    const key = `net/ipv6/conf/${dev}/disable_ipv6`;
    let value: string;
    try {
      value = rtnl.sysctlGet(ns, key);
    } catch (e) {
      log?.warn(`cannot read ${key}`, e);
      continue;
    }
    if (value === '0') continue;
    nl(`failed to enable IPv6 on ${dev} (${key}=${value})`, () => rtnl.sysctlSet(ns, key, '0'));
  }
  nl(`failed to set keep_addr_on_down on ${ifName}`, () => rtnl.sysctlSet(ns, `net/ipv6/conf/${ifName}/keep_addr_on_down`, '1'));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until no IPv6 address of the link is tentative; DAD failure is an error. */
async function settleIPv6(ns: Netns, link: PodLink, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const addrs = nl(`failed to list addresses of ${link.name}`, () => rtnl.listAddrs(ns, { link: link.index, version: 6 }));
    const failed = addrs.find((a) => a.flags & rtnl.AddrFlag.dadFailed);
    if (failed) throw new CniError(Code.NetlinkFailure, `duplicate address detection failed for ${failed.address} on ${link.name}`);
    if (!addrs.some((a) => a.flags & rtnl.AddrFlag.tentative)) return;
    if (Date.now() >= deadline) {
      throw new CniError(Code.NetlinkFailure, `IPv6 addresses of ${link.name} still tentative after ${timeoutMs} ms`);
    }
    await sleep(20);
  }
}

/** The IPs of `result` that belong to interface `ifIndex` (or name no interface). */
function ipsOf(result: Result, ifIndex: number): IPConfig[] {
  return (result.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === ifIndex);
}

/**
 * Puts `result`'s addresses (those whose `interface` is `ifIndex`) and routes on `link`
 * in `ns` and brings it up.
 */
export async function configureIface(ns: Netns, link: PodLink, result: Result, ifIndex: number, log?: Logger): Promise<void> {
  const gateways: { 4?: string; 6?: string } = {};
  let ipv6Ready = false;
  for (const ip of ipsOf(result, ifIndex)) {
    const fam = familyOf(ip.address);
    if (fam === 6 && !ipv6Ready) {
      enableIPv6(ns, link.name, log);
      ipv6Ready = true;
    }
    nl(`failed to add IP address ${ip.address} to ${link.name}`, () => rtnl.newAddr(ns, { link: link.index, address: ip.address }));
    if (ip.gateway && gateways[fam] === undefined) gateways[fam] = ip.gateway;
  }
  nl(`failed to set ${link.name} up`, () => rtnl.setLink(ns, link.index, { up: true }));
  if (gateways[6] !== undefined) await settleIPv6(ns, link, DAD_SETTLE_MS);
  for (const r of result.routes ?? []) {
    const gw = r.gw ?? gateways[familyOf(r.dst)];
    const spec: rtnl.RouteSpec = { dst: r.dst, link: link.index };
    if (gw !== undefined) spec.gw = gw;
    if (r.priority !== undefined) spec.priority = r.priority;
    if (r.table !== undefined) spec.table = r.table;
    if (r.scope !== undefined) spec.scope = r.scope;
    if (r.mtu !== undefined) spec.mtu = r.mtu;
    if (r.advmss !== undefined) spec.advmss = r.advmss;
    nl(`failed to add route ${r.dst}${gw ? ` via ${gw}` : ''} dev ${link.name}`, () => rtnl.newRoute(ns, spec));
  }
}

function sameIP(a: string, b: string): boolean {
  try {
    return ipEqual(a, b);
  } catch {
    return false;
  }
}

/** Same address and prefix length (host bits kept: "10.1.0.5/24" is not "10.1.0.6/24"). */
function sameCidr(a: string, b: string): boolean {
  const x = tryParseCidr(a);
  const y = tryParseCidr(b);
  return !!x && !!y && x.family === y.family && x.prefix === y.prefix && x.ip === y.ip;
}

function checkFailed(msg: string): CniError {
  return new CniError(Code.CheckFailed, msg);
}

/**
 * CHECK: every address of `result` for interface `ifIndex` is on `link`, and every route
 * of `result` is in the namespace's routing tables (destination, and gateway when given).
 */
export function checkIface(ns: Netns, link: PodLink, result: Result, ifIndex: number): void {
  const have = nl(`failed to list addresses of ${link.name}`, () => rtnl.listAddrs(ns, { link: link.index }));
  for (const ip of ipsOf(result, ifIndex)) {
    if (!have.some((a) => sameCidr(a.address, ip.address))) {
      throw checkFailed(`address ${ip.address} is not on ${link.name}`);
    }
  }
  const routes = nl('failed to list routes', () => rtnl.listRoutes(ns, { table: 'all' }));
  for (const r of result.routes ?? []) {
    if (!routes.some((k) => routeMatches(k, r))) {
      throw checkFailed(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing`);
    }
  }
}

function routeMatches(k: rtnl.Route, r: Route): boolean {
  if (!sameCidr(k.dst, r.dst)) return false;
  if (r.gw !== undefined && (k.gw === undefined || !sameIP(k.gw, r.gw))) return false;
  return true;
}
