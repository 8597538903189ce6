// Applying an IPAM result inside a pod namespace, and checking it is still there (CHECK):
// the behaviour of the reference plugins' ipam.ConfigureIface and
// ip.ValidateExpectedInterfaceIPs/ValidateExpectedRoute, over our netlink layer. Shared by
// the interface-creating plugins (bridge, macvlan, ipvlan).
//
// ADD order, as the reference: before the first IPv6 address IPv6 is enabled on lo and
// the interface (disable_ipv6=0) and keep_addr_on_down=1 is set; then the addresses; the
// link up; when there is an IPv6 gateway, a wait for duplicate address detection (routes
// via a tentative address would fail); then the routes, a route without a gateway using
// the first gateway of its family. Nothing here needs an undo of its own: everything lives
// on the link, and the caller's undo deletes the link.
import { setTimeout as sleep } from 'node:timers/promises';
import { CniError, Code } from '../cni/errors.ts';
import type { Logger } from '../cni/log.ts';
import type { IPConfig, Result, Route } from '../cni/types.ts';
import { formatCidr, ipEqual, network, tryParseCidr } from '../addr/cidr.ts';
import type { Netns } from '../netlink/netns.ts';
import * as rtnl from '../netlink/rtnl.ts';
import { nl } from './link.ts';

/** How long ADD waits for IPv6 duplicate address detection (the reference: 5 s). */
const DAD_SETTLE_MS = 5000;

export interface PodLink {
  index: number;
  name: string;
}

function familyOf(addr: string): 4 | 6 {
  return addr.includes(':') ? 6 : 4;
}

/** The result's IPs that belong to interface `ifIndex` of `result.interfaces`. */
function ipsFor(result: Result, ifIndex: number): IPConfig[] {
  return (result.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === ifIndex);
}

async function enableIPv6(ns: Netns, ifName: string, log?: Logger): Promise<void> {
  for (const dev of ['lo', ifName]) {
    const key = `net/ipv6/conf/${dev}/disable_ipv6`;
    let cur: string;
    try {
      cur = await rtnl.sysctlGet(ns, key);
    } catch (e) {
      log?.warn(`failed to read ${key}`, e);
      continue;
    }
    if (cur !== '0') await nl(`failed to enable IPv6 on ${dev} (${key}=${cur})`, () => rtnl.sysctlSet(ns, key, '0'));
  }
  await nl(`failed to enable keep_addr_on_down on ${ifName}`, () => rtnl.sysctlSet(ns, `net/ipv6/conf/${ifName}/keep_addr_on_down`, '1'));
}

/** Waits until no IPv6 address on the link is tentative; a failed DAD is an error. */
export async function settleIPv6(ns: Netns, link: PodLink, timeoutMs = DAD_SETTLE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    const addrs = await nl(`failed to list addresses of ${link.name}`, () => rtnl.listAddrs(ns, { link: link.index, version: 6 }));
    const failed = addrs.find((a) => a.flags & rtnl.AddrFlag.dadFailed);
    if (failed) throw new CniError(Code.NetlinkFailure, `duplicate address detection failed for ${failed.address} on ${link.name}`);
    if (!addrs.some((a) => a.flags & rtnl.AddrFlag.tentative)) return;
    if (Date.now() >= deadline) throw new CniError(Code.NetlinkFailure, `IPv6 addresses of ${link.name} still tentative after ${timeoutMs} ms`);
    await sleep(delay);
  }
}

/**
 * Puts `result`'s addresses for interface `ifIndex` and all its routes on `link` inside
 * `ns`, and brings the link up (unless `up` is false).
 */
export async function configureIface(ns: Netns, link: PodLink, result: Result, ifIndex: number, log?: Logger): Promise<void> {
  const gw: { 4?: string; 6?: string } = {};
  let v6 = false;
  for (const ip of ipsFor(result, ifIndex)) {
    const fam = familyOf(ip.address);
    if (fam === 6 && !v6) {
      await enableIPv6(ns, link.name, log);
      v6 = true;
    }
    await nl(`failed to add IP addr ${ip.address} to ${JSON.stringify(link.name)}`, () => rtnl.newAddr(ns, { link: link.index, address: ip.address }));
    log?.debug(`address ${ip.address} on ${link.name}`);
    if (ip.gateway !== undefined && gw[fam] === undefined) gw[fam] = ip.gateway;
  }
  await nl(`failed to set ${JSON.stringify(link.name)} up`, () => rtnl.setLink(ns, link.index, { up: true }));
  log?.debug(`${link.name} up`);
  if (gw[6] !== undefined) {
    await settleIPv6(ns, link);
    log?.debug(`IPv6 duplicate address detection done on ${link.name}`);
  }
  for (const r of result.routes ?? []) {
    const via = r.gw ?? gw[familyOf(r.dst)];
    const spec: rtnl.RouteSpec = { dst: r.dst, link: link.index };
    if (via !== undefined) spec.gw = via;
    if (r.priority !== undefined) spec.priority = r.priority;
    if (r.table !== undefined) spec.table = r.table;
    if (r.scope !== undefined) spec.scope = r.scope;
    if (r.mtu !== undefined) spec.mtu = r.mtu;
    if (r.advmss !== undefined) spec.advmss = r.advmss;
    try {
      await rtnl.newRoute(ns, spec);
      log?.debug(`route ${r.dst}${via ? ` via ${via}` : ''} dev ${link.name}`);
    } catch (e) {
      // The reference adds routes with "append" semantics: an identical route is fine.
      if (rtnl.isNetlinkError(e, 'EEXIST')) {
        log?.debug(`route ${r.dst}${via ? ` via ${via}` : ''} dev ${link.name} exists`);
        continue;
      }
      if (rtnl.isNetlinkError(e)) {
        throw new CniError(Code.NetlinkFailure, `failed to add route ${r.dst}${via ? ` via ${via}` : ''} dev ${link.name}`, e.message, { cause: e });
      }
      throw e;
    }
  }
}

function sameCidr(a: string, b: string): boolean {
  const x = tryParseCidr(a);
  const y = tryParseCidr(b);
  return !!x && !!y && x.family === y.family && x.prefix === y.prefix && x.ip === y.ip;
}

function sameIp(a: string, b: string): boolean {
  try {
    return ipEqual(a, b);
  } catch {
    return false;
  }
}

function routeFound(have: rtnl.Route[], r: Route): boolean {
  return have.some((k) => sameCidr(k.dst, r.dst) && (r.gw === undefined || (k.gw !== undefined && sameIp(k.gw, r.gw))));
}

function checkFailed(msg: string): CniError {
  return new CniError(Code.CheckFailed, msg);
}

/**
 * CHECK: every address of `result` for interface `ifIndex` is on `link` with its prefix
 * route, and every route of `result` is in the namespace (destination, and gateway when
 * the result names one).
 */
export async function checkIface(ns: Netns, link: PodLink, result: Result, ifIndex: number): Promise<void> {
  const addrs = await nl(`failed to list addresses of ${link.name}`, () => rtnl.listAddrs(ns, { link: link.index }));
  const routes = await nl('failed to list routes', () => rtnl.listRoutes(ns, { table: 'all' }));
  for (const ip of ipsFor(result, ifIndex)) {
    if (!addrs.some((a) => sameCidr(a.address, ip.address))) throw checkFailed(`Failed to match addr ${ip.address} on interface ${link.name}`);
    // The kernel's prefix route for the address (none for a /32 or /128).
    const c = tryParseCidr(ip.address);
    if (c && c.prefix < (c.family === 4 ? 32 : 128)) {
      const net = formatCidr(network(c));
      if (!routes.some((k) => sameCidr(k.dst, net))) throw checkFailed(`Failed to find the route to ${net} for interface ${link.name}`);
    }
  }
  for (const r of result.routes ?? []) {
    if (!routeFound(routes, r)) throw checkFailed(`Expected Route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} not found in routing table`);
  }
}
