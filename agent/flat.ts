// Flat mode (docs/flat.md): the node's uplink joins a bridge that takes over the node's
// own network configuration, so pods on that bridge sit on the physical segment.
//
// takeover() moves, through rtnetlink, everything the uplink carries to the bridge:
//   - the bridge is created with the uplink's MTU and MAC (the segment's ARP caches stay
//     right), or an existing bridge is adopted (it gets the MTU, keeps its MAC), and it
//     gets the uplink's per-link sysctls: IPv4 ones over rtnetlink (CAP_NET_ADMIN is
//     enough: the DaemonSet's agent has a read-only /proc/sys), IPv6 ones through
//     /proc/sys, which only a privileged agent can write; one that cannot be written is
//     recorded as not copied and reported, the takeover goes on;
//   - the uplink is enslaved to it;
//   - every address (IPv6 link-local and temporary ones excepted: the kernel makes those
//     per link) is added to the bridge with its flags, lifetimes, label and metric;
//   - every route through the uplink, in every table (metrics, source, protocol, scope,
//     type, preference, multipath next hops, realms, expiry...), is added through the
//     bridge, routes without a gateway first; routes the kernel derives from addresses
//     (protocol kernel) follow the addresses by themselves;
//   - permanent neighbour entries are copied;
//   - only then the uplink's routes, neighbours and addresses are deleted.
// Nothing is ever missing: a route exists through the uplink until its copy through the
// bridge exists (and the uplink, a bridge port by then, still sends what is routed to
// it), so the default route is never absent, not even during the swap. The routes move
// right after the uplink joins the bridge (before waiting for IPv6 DAD): a bridge port
// cannot learn neighbours (their replies go up the bridge), so the uplink must not need
// to for long.
//
// It is one transaction: the original state is written to the takeover record (default
// /run/strand/flat.json: a reboot resets both the kernel and /run) before the first
// change, every step pushes its undo, and a failure anywhere unwinds them. restore()
// puts the recorded state back (the uplink's addresses, the uplink out of the bridge, its
// routes, then the bridge's copies go, then the bridge if strand made it);
// it also finishes the job after a crash half-way, from the record alone.
// ensureTakeover() is what the agent runs at start: it recognises a completed takeover,
// repairs a half-done one (restore, then takeover again) and otherwise takes over.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../lib/cni/log.ts';
import { isIpv4Conf, setIpv4Conf } from '../lib/netlink/devconf.ts';
import { settleIPv6 } from '../lib/plugin/ipam-config.ts';
import { UndoStack } from '../lib/plugin/undo.ts';
import * as rtnl from '../lib/netlink/rtnl.ts';
import type { AddrMessage, Netns, RouteMessage } from '../lib/netlink/rtnl.ts';
import type { FlatConfig } from './config.ts';

const RECORD_VERSION = 1;

export class TakeoverError extends Error {
  override readonly name = 'TakeoverError';
}

/** A permanent neighbour entry of the uplink. */
export interface RecordedNeigh {
  ip: string;
  mac?: string;
  flags: number;
}

/** What the takeover found and changed: enough to put the node back as it was. */
export interface TakeoverRecord {
  version: typeof RECORD_VERSION;
  /** 'started' until every step is done: a record left 'started' means a crash half-way. */
  phase: 'started' | 'done';
  started: string;
  completed?: string;
  uplink: { name: string; index: number; mac?: string; mtu: number };
  bridge: { name: string; created: boolean; before?: { mtu: number; mac?: string; up: boolean; vlanFiltering?: boolean } };
  /** VLANs put on the uplink port (tagged), for pods with strand-bridge's `vlan`. */
  vlans?: number[];
  /** Sysctls of the bridge before the takeover set them (an adopted bridge gets them back). */
  sysctls: Record<string, string>;
  /** Sysctls of the bridge that could not be set to the uplink's value (read-only /proc/sys): key -> the uplink's value. */
  notCopied?: Record<string, string>;
  /** The uplink's addresses and routes as dumped, every attribute kept. */
  addrs: AddrMessage[];
  routes: RouteMessage[];
  neighs: RecordedNeigh[];
}

export interface TakeoverHooks {
  /**
   * Called after every step (and after each address, route and neighbour) with its
   * name; throwing makes the takeover fail there and roll back (tests inject failures
   * this way).
   */
  after?: (step: string) => void | Promise<void>;
}

export interface FlatDeps {
  log: Logger;
  hooks?: TakeoverHooks;
}

export type TakeoverOutcome =
  | { state: 'taken-over'; record: TakeoverRecord; ms: number }
  | { state: 'recognised'; record: TakeoverRecord }
  | { state: 'adopted' };

// ---------------------------------------------------------------------------------

const FOREVER = 0xffffffff;
const RTPROT_KERNEL = rtnl.Protocol.kernel;
/** IFA_F_TEMPORARY (IPv6 privacy address) shares its bit with IFA_F_SECONDARY. */
const IFA_F_TEMPORARY = rtnl.AddrFlag.secondary;
/** Address flags a request may set (the others are the kernel's own bookkeeping). */
const ADDR_FLAGS_SETTABLE =
  rtnl.AddrFlag.nodad | rtnl.AddrFlag.optimistic | rtnl.AddrFlag.homeAddress | rtnl.AddrFlag.manageTempAddr | rtnl.AddrFlag.noPrefixRoute | 0x400;
/** rtm_flags / next-hop flags a request may set: onlink and pervasive (dead, linkdown, offload... are reported only). */
const ROUTE_FLAGS_SETTABLE = rtnl.RouteFlag.onlink | 0x2;
/** Route attributes the kernel only reports (RTA_MFC_STATS, RTA_UID). */
const ROUTE_ATTRS_REPORTED = new Set([17, 25]);

/** Per-link sysctls the bridge takes from the uplink (`%` is the link name). Missing ones (IPv6 off) are skipped. */
const LINK_SYSCTLS = [
  'net/ipv4/conf/%/forwarding',
  'net/ipv4/conf/%/rp_filter',
  'net/ipv4/conf/%/arp_ignore',
  'net/ipv4/conf/%/arp_announce',
  'net/ipv4/conf/%/arp_filter',
  'net/ipv4/conf/%/arp_notify',
  'net/ipv4/conf/%/accept_local',
  'net/ipv4/conf/%/route_localnet',
  'net/ipv4/conf/%/proxy_arp',
  'net/ipv4/conf/%/send_redirects',
  'net/ipv4/conf/%/accept_redirects',
  'net/ipv6/conf/%/disable_ipv6',
  'net/ipv6/conf/%/forwarding',
  'net/ipv6/conf/%/accept_ra',
  'net/ipv6/conf/%/accept_ra_defrtr',
  'net/ipv6/conf/%/accept_ra_pinfo',
  'net/ipv6/conf/%/autoconf',
  'net/ipv6/conf/%/accept_redirects',
  'net/ipv6/conf/%/use_tempaddr',
  'net/ipv6/conf/%/hop_limit',
  'net/ipv6/conf/%/accept_dad',
  'net/ipv6/conf/%/mtu',
] as const;

function sysctlName(template: string, link: string): string {
  return template.replace('%', link);
}

async function tryGet(ns: Netns, name: string): Promise<string | undefined> {
  try {
    return await rtnl.sysctlGet(ns, name);
  } catch {
    return undefined;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Sets a per-link sysctl (a slash path, 'net/ipv4/conf/br0/rp_filter') of link `index`:
 * an IPv4 one over rtnetlink (needs CAP_NET_ADMIN only), any other through /proc/sys.
 */
async function setLinkSysctl(ns: Netns, key: string, index: number, value: string): Promise<void> {
  const v4 = /^net\/ipv4\/conf\/[^/]+\/(\w+)$/.exec(key)?.[1];
  if (v4 !== undefined && isIpv4Conf(v4) && /^\d+$/.test(value)) await setIpv4Conf(ns, index, v4, Number(value));
  else await rtnl.sysctlSet(ns, key, value);
}

/** A sysctl write refused because /proc/sys is read-only here (an unprivileged container) or not ours to write. */
function notWritable(e: unknown): boolean {
  return ['EROFS', 'EACCES', 'EPERM'].some((c) => rtnl.isNetlinkError(e, c));
}

/** What to tell about sysctl `key` of the bridge that cannot be set to `want`. */
function notWritableProblem(key: string, want: string, uplink: string): string {
  return `${key} is not ${want} (${uplink}'s): /proc/sys is read-only for this agent, and IPv6 settings have no rtnetlink request (run the agent privileged, or set it on the node: docs/flat.md)`;
}

async function ignoring(codes: readonly string[], fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (e) {
    if (codes.some((c) => rtnl.isNetlinkError(e, c))) return false;
    throw e;
  }
}

// ------------------------------------------------------------------- the record ----

/** Writes the record durably (temp file, fsync, rename). */
export function writeRecord(file: string, r: TakeoverRecord): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(r, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** The record, or undefined when there is none. A damaged record is an error (it is all restore has). */
export function readRecord(file: string): TakeoverRecord | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TakeoverError(`cannot read the takeover record ${file}: ${errorText(e)}`);
  }
  let r: TakeoverRecord;
  try {
    // Buffers (attributes kept verbatim) come back from their JSON form
    r = JSON.parse(text, (_k, v: unknown) => {
      const b = v as { type?: unknown; data?: unknown };
      return b && typeof b === 'object' && b.type === 'Buffer' && Array.isArray(b.data) ? Buffer.from(b.data as number[]) : v;
    }) as TakeoverRecord;
  } catch (e) {
    throw new TakeoverError(`the takeover record ${file} is not JSON: ${errorText(e)}`);
  }
  if (r?.version !== RECORD_VERSION || !r.uplink?.name || !r.bridge?.name || !Array.isArray(r.addrs) || !Array.isArray(r.routes)) {
    throw new TakeoverError(`${file} is not a takeover record of this strand version`);
  }
  r.neighs ??= [];
  r.sysctls ??= {};
  return r;
}

// ---------------------------------------------------------- addresses and routes ----

/** Addresses that move: all but IPv6 link-local (every link has its own) and IPv6 temporary ones. */
export function movableAddr(a: AddrMessage): boolean {
  if (a.version === 6) return (a.scope ?? 0) < rtnl.Scope.link && ((a.flags ?? 0) & IFA_F_TEMPORARY) === 0;
  return true;
}

function viaLink(r: RouteMessage, index: number): boolean {
  return r.oif === index || !!r.multipath?.some((nh) => nh.oif === index);
}

/** Routes that move: through the uplink and not derived by the kernel from an address. */
export function movableRoute(r: RouteMessage, uplink: number): boolean {
  return viaLink(r, uplink) && r.protocol !== RTPROT_KERNEL;
}

/** "eth0" -> "br0", "eth0:1" -> "br0:1" (IPv4 labels start with the link name). */
export function relabel(label: string, from: string, to: string): string {
  if (label !== from && !label.startsWith(`${from}:`)) return label;
  const out = to + label.slice(from.length);
  return Buffer.byteLength(out) <= 15 ? out : to;
}

/** The request that puts recorded address `a` on link `index` (named `to`; `from` is the recorded link's name). */
export function addrOn(a: AddrMessage, index: number, from: string, to: string, elapsedS: number): AddrMessage {
  const m: AddrMessage = { version: a.version ?? 4, prefixLen: a.prefixLen ?? 0, scope: a.scope ?? 0, index, flags: (a.flags ?? 0) & ADDR_FLAGS_SETTABLE };
  if (a.local !== undefined) m.local = a.local;
  if (a.address !== undefined) m.address = a.address;
  if (a.broadcast !== undefined) m.broadcast = a.broadcast;
  if (a.label !== undefined) m.label = relabel(a.label, from, to);
  if (a.rtPriority !== undefined) m.rtPriority = a.rtPriority;
  if (a.proto !== undefined) m.proto = a.proto;
  const c = a.cacheinfo;
  if (c && c.valid !== FOREVER) {
    const left = (v: number): number => (v === FOREVER ? FOREVER : Math.max(0, v - elapsedS));
    m.cacheinfo = { preferred: left(c.preferred), valid: Math.max(1, left(c.valid)), created: 0, updated: 0 };
  }
  return m;
}

/** The request that deletes address `a` from link `index`. */
function addrSelector(a: AddrMessage, index: number): AddrMessage {
  const m: AddrMessage = { version: a.version ?? 4, prefixLen: a.prefixLen ?? 0, index, flags: (a.flags ?? 0) & rtnl.AddrFlag.manageTempAddr };
  if (a.local !== undefined) m.local = a.local;
  if (a.address !== undefined) m.address = a.address;
  return m;
}

/**
 * Recorded route `r` as requests through link `to` instead of `from` (a whole route, or
 * for an IPv6 multipath route one request per next hop through `from`: the kernel keeps
 * IPv6 next hops as sibling routes, added and deleted one by one).
 */
export function routesVia(r: RouteMessage, from: number, to: number, elapsedS: number): RouteMessage[] {
  const { cacheinfo, extra, multipath, ...rest } = r;
  const base: RouteMessage = { ...rest, flags: (r.flags ?? 0) & ROUTE_FLAGS_SETTABLE };
  const keep = extra?.filter((a) => !ROUTE_ATTRS_REPORTED.has(a.type));
  if (keep?.length) base.extra = keep;
  if (r.version === 6 && cacheinfo && cacheinfo.expires > 0) base.expires = Math.max(1, Math.ceil(cacheinfo.expires / 100) - elapsedS);
  if (!multipath) return [{ ...base, ...(r.oif === from ? { oif: to } : {}) }];
  if (r.version === 6) {
    return multipath
      .filter((nh) => nh.oif === from)
      .map((nh) => {
        const one: RouteMessage = { ...base, oif: to, flags: ((r.flags ?? 0) | nh.flags) & ROUTE_FLAGS_SETTABLE };
        if (nh.gateway !== undefined) one.gateway = nh.gateway;
        if (nh.flow !== undefined) one.flow = nh.flow;
        if (nh.extra?.length) one.extra = [...(one.extra ?? []), ...nh.extra];
        return one;
      });
  }
  return [{ ...base, multipath: multipath.map((nh) => ({ ...nh, flags: nh.flags & ROUTE_FLAGS_SETTABLE, oif: nh.oif === from ? to : nh.oif })) }];
}

/** Routes without a gateway first: gateways must be reachable when their routes are added. */
function gatewayLast(a: RouteMessage, b: RouteMessage): number {
  const g = (r: RouteMessage): number => (r.gateway !== undefined || r.multipath ? 1 : 0);
  return g(a) - g(b);
}

/**
 * IPv4 addresses in dump order (primary before its secondaries); IPv6 in reverse (the
 * kernel puts a new address in front of those of the same scope), so both end up listed
 * as they were.
 */
function addOrder(addrs: readonly AddrMessage[]): AddrMessage[] {
  return [...addrs.filter((a) => a.version !== 6), ...addrs.filter((a) => a.version === 6).reverse()];
}

function describeAddr(a: AddrMessage): string {
  return `${a.local ?? a.address}/${a.prefixLen}`;
}

function describeRoute(r: RouteMessage): string {
  const dst = r.dstLen ? `${r.dst}/${r.dstLen}` : 'default';
  const via = r.gateway ? ` via ${r.gateway}` : r.multipath ? ` via ${r.multipath.map((n) => n.gateway ?? '-').join(',')}` : '';
  return `${r.version === 6 ? '-6 ' : ''}${dst}${via} table ${r.table}${r.priority !== undefined ? ` metric ${r.priority}` : ''}`;
}

// -------------------------------------------------------------------- takeover ----

/** What is on the uplink now, and whether a takeover can start. */
async function snapshot(ns: Netns, cfg: FlatConfig): Promise<{ uplink: rtnl.Link; bridge: rtnl.Link | undefined; rec: TakeoverRecord }> {
  const uplink = await rtnl.findLink(ns, cfg.uplink);
  if (!uplink) throw new TakeoverError(`uplink ${cfg.uplink} does not exist`);
  if (uplink.kind === 'bridge') throw new TakeoverError(`uplink ${cfg.uplink} is a bridge; name the physical interface`);
  const bridge = await rtnl.findLink(ns, cfg.bridge);
  if (bridge && bridge.kind !== 'bridge') throw new TakeoverError(`${cfg.bridge} exists and is not a bridge`);
  if (uplink.master !== undefined) {
    const m = await rtnl.findLink(ns, uplink.master);
    throw new TakeoverError(`uplink ${cfg.uplink} is already a port of ${m?.name ?? `link ${uplink.master}`}`);
  }
  const addrs = (await rtnl.dumpAddrMessages(ns, { index: uplink.index })).filter(movableAddr);
  const routes = (await rtnl.dumpRouteMessages(ns)).filter((r) => movableRoute(r, uplink.index));
  const nh = routes.find((r) => r.nhId !== undefined);
  if (nh)
    throw new TakeoverError(`route ${describeRoute(nh)} uses nexthop object ${nh.nhId}; strand does not move nexthop objects (move it to ${cfg.bridge} first)`);
  const neighs: RecordedNeigh[] = [];
  for (const family of [4, 6] as const) {
    for (const n of await rtnl.listNeighs(ns, { link: uplink.index, family })) {
      if (n.ip === undefined || (n.state & rtnl.NeighState.permanent) === 0) continue;
      const e: RecordedNeigh = { ip: n.ip, flags: n.flags & rtnl.NeighFlag.router };
      if (n.mac !== undefined) e.mac = n.mac;
      neighs.push(e);
    }
  }
  const rec: TakeoverRecord = {
    version: RECORD_VERSION,
    phase: 'started',
    started: new Date().toISOString(),
    uplink: { name: uplink.name, index: uplink.index, mtu: uplink.mtu, ...(uplink.mac ? { mac: uplink.mac } : {}) },
    bridge: { name: cfg.bridge, created: !bridge },
    sysctls: {},
    addrs,
    routes,
    neighs,
  };
  if (bridge) {
    const vf = (bridge.info as rtnl.BridgeInfo | undefined)?.vlanFiltering;
    rec.bridge.before = { mtu: bridge.mtu, up: bridge.up, ...(bridge.mac ? { mac: bridge.mac } : {}), ...(vf !== undefined ? { vlanFiltering: vf } : {}) };
  }
  if (cfg.vlans.length) rec.vlans = [...cfg.vlans];
  return { uplink, bridge, rec };
}

/** Waits for IPv6 duplicate address detection on a link with carrier (none without: it would wait forever). */
async function settle(ns: Netns, index: number, name: string): Promise<void> {
  const l = await rtnl.getLink(ns, index);
  if (!l.lowerUp) return;
  await settleIPv6(ns, { index, name });
}

/** What the steps of one takeover share. */
interface Takeover {
  ns: Netns;
  cfg: FlatConfig;
  rec: TakeoverRecord;
  uplink: rtnl.Link;
  undo: UndoStack;
  log: Logger;
  /** The test hook after each step (fault injection: hooks.after). */
  after(step: string): Promise<void>;
  /** Seconds since the takeover started: the remaining lifetimes of moved addresses and routes. */
  elapsed(): number;
}

/** 1. the bridge, with the uplink's MTU and MAC (made, or an existing one adopted); its index. */
async function takeoverBridge(t: Takeover, existing: rtnl.Link | undefined): Promise<number> {
  const { ns, cfg, rec, uplink, undo } = t;
  if (!existing) {
    const info: rtnl.BridgeInfo = cfg.vlans.length ? { kind: 'bridge', vlanFiltering: true } : { kind: 'bridge' };
    const spec: rtnl.NewLinkSpec = { name: cfg.bridge, info, mtu: uplink.mtu, up: true };
    if (uplink.mac) spec.mac = uplink.mac;
    await rtnl.newLink(ns, spec);
    const br = (await rtnl.getLink(ns, cfg.bridge)).index;
    undo.push(`delete bridge ${cfg.bridge}`, async () => void (await ignoring(['ENODEV'], () => rtnl.delLink(ns, br))));
    return br;
  }
  // An adopted bridge keeps its MAC (pods may know it); frames for the uplink's MAC
  // still reach the node: the bridge delivers its ports' MACs locally.
  const br = existing.index;
  const before = existing;
  const vf = rec.bridge.before?.vlanFiltering;
  await rtnl.setLink(ns, br, { mtu: uplink.mtu, up: true, ...(cfg.vlans.length && !vf ? { info: { kind: 'bridge', vlanFiltering: true } } : {}) });
  undo.push(`restore bridge ${cfg.bridge}`, () =>
    restoreBridge(ns, br, {
      mtu: before.mtu,
      up: before.up,
      ...(before.mac ? { mac: before.mac } : {}),
      ...(vf !== undefined ? { vlanFiltering: vf } : {}),
    }),
  );
  return br;
}

/** 2. the uplink's per-link sysctls, on the bridge (what cannot be written is recorded and logged). */
async function copyLinkSysctls(t: Takeover, br: number): Promise<void> {
  const { ns, cfg, rec, uplink, undo } = t;
  for (const s of LINK_SYSCTLS) {
    const want = await tryGet(ns, sysctlName(s, uplink.name));
    const key = sysctlName(s, cfg.bridge);
    const have = await tryGet(ns, key);
    if (want === undefined || have === undefined || want === have) continue;
    try {
      await setLinkSysctl(ns, key, br, want);
    } catch (e) {
      if (!notWritable(e)) throw e;
      rec.notCopied = { ...rec.notCopied, [key]: want };
      t.log.warn(`flat: ${notWritableProblem(key, want, uplink.name)}`);
      continue;
    }
    rec.sysctls[key] = have;
    undo.push(`restore ${key}=${have}`, () => setLinkSysctl(ns, key, br, have));
  }
  writeRecord(cfg.record, rec);
}

/**
 * 3. the uplink joins the bridge (it still holds its addresses and routes: traffic goes
 * on, received through the bridge, sent straight out of the port); the pods' VLANs reach
 * the segment tagged (the node's own traffic stays untagged, VLAN 1).
 */
async function enslaveUplink(t: Takeover, br: number): Promise<void> {
  const { ns, cfg, uplink } = t;
  await rtnl.setLink(ns, uplink.index, { master: br });
  t.undo.push(`take ${uplink.name} out of ${cfg.bridge}`, () => rtnl.setLink(ns, uplink.index, { master: null }));
  for (const vid of cfg.vlans) await rtnl.newBridgeVlan(ns, uplink.index, { vid });
}

/** 4. the addresses, also on the bridge. */
async function addressesOnBridge(t: Takeover, br: number): Promise<void> {
  const { ns, cfg, rec, uplink } = t;
  for (const [i, a] of addOrder(rec.addrs).entries()) {
    const m = addrOn(a, br, uplink.name, cfg.bridge, t.elapsed());
    if (await ignoring(['EEXIST'], () => rtnl.newAddrMessage(ns, m))) {
      t.undo.push(
        `remove ${describeAddr(a)} from ${cfg.bridge}`,
        async () => void (await ignoring(['EADDRNOTAVAIL'], () => rtnl.delAddrMessage(ns, addrSelector(a, br)))),
      );
    }
    await t.after(`address#${i}`);
  }
}

/** 5. the routes (device routes first) and neighbours, also through the bridge. */
async function routesOnBridge(t: Takeover, br: number, moves: readonly RouteMessage[]): Promise<void> {
  const { ns, cfg, rec, uplink } = t;
  for (const [i, r] of moves.entries()) {
    for (const m of routesVia(r, uplink.index, br, t.elapsed())) {
      if (await ignoring(['EEXIST'], () => rtnl.newRouteMessage(ns, m, 'add'))) {
        t.undo.push(`remove ${describeRoute(m)} through ${cfg.bridge}`, async () => void (await ignoring(['ESRCH'], () => rtnl.delRouteMessage(ns, m))));
      }
    }
    await t.after(`route#${i}`);
  }
  for (const n of rec.neighs) {
    await rtnl.newNeigh(ns, { link: br, ip: n.ip, ...(n.mac ? { mac: n.mac } : {}), state: rtnl.NeighState.permanent, flags: n.flags }, { replace: true });
    t.undo.push(`remove neighbour ${n.ip} from ${cfg.bridge}`, async () => void (await ignoring(['ENOENT'], () => rtnl.delNeigh(ns, { link: br, ip: n.ip }))));
  }
  // Only now wait for IPv6 DAD on the bridge: meanwhile the uplink's copies serve, and
  // the routes already go through the bridge (a port that answers for itself would not
  // learn a neighbour: replies to its ARP and ND go up the bridge).
  if (rec.addrs.some((a) => a.version === 6)) await settle(ns, br, cfg.bridge);
}

/** 6. off the uplink: routes (gateway routes first), neighbours, addresses. */
async function clearUplink(t: Takeover, moves: readonly RouteMessage[]): Promise<void> {
  const { ns, rec, uplink } = t;
  const up = uplink.index;
  for (const [i, r] of [...moves].reverse().entries()) {
    for (const m of routesVia(r, up, up, t.elapsed())) {
      if (await ignoring(['ESRCH'], () => rtnl.delRouteMessage(ns, m))) {
        t.undo.push(
          `restore ${describeRoute(m)} through ${uplink.name}`,
          async () => void (await ignoring(['EEXIST'], () => rtnl.newRouteMessage(ns, m, 'add'))),
        );
      }
    }
    await t.after(`uplink-route#${i}`);
  }
  for (const n of rec.neighs) {
    if (await ignoring(['ENOENT'], () => rtnl.delNeigh(ns, { link: up, ip: n.ip }))) {
      t.undo.push(`restore neighbour ${n.ip} on ${uplink.name}`, () =>
        rtnl.newNeigh(ns, { link: up, ip: n.ip, ...(n.mac ? { mac: n.mac } : {}), state: rtnl.NeighState.permanent, flags: n.flags }, { replace: true }),
      );
    }
  }
  // IPv4 secondaries before their primary; undo re-adds them in the opposite order
  const dels = [...rec.addrs.filter((a) => a.version !== 6).reverse(), ...rec.addrs.filter((a) => a.version === 6)];
  for (const [i, a] of dels.entries()) {
    if (await ignoring(['EADDRNOTAVAIL'], () => rtnl.delAddrMessage(ns, addrSelector(a, up)))) {
      t.undo.push(
        `restore ${describeAddr(a)} on ${uplink.name}`,
        async () => void (await ignoring(['EEXIST'], () => rtnl.newAddrMessage(ns, addrOn(a, up, uplink.name, uplink.name, t.elapsed())))),
      );
    }
    await t.after(`uplink-address#${i}`);
  }
}

/**
 * Moves the uplink's configuration to the bridge as one transaction (see the top of
 * this file). Throws TakeoverError (or the NetlinkError of the failed step) after
 * putting everything back.
 */
export async function takeover(ns: Netns, cfg: FlatConfig, deps: FlatDeps): Promise<TakeoverRecord> {
  const { log } = deps;
  const { uplink, bridge: existing, rec } = await snapshot(ns, cfg);
  const undo = new UndoStack((m) => log.warn(`takeover rollback: ${m}`));
  const t0 = Date.parse(rec.started);
  const t: Takeover = {
    ns,
    cfg,
    rec,
    uplink,
    undo,
    log,
    after: async (step) => {
      await deps.hooks?.after?.(step);
    },
    elapsed: () => Math.floor((Date.now() - t0) / 1000),
  };
  try {
    await undo.run(async () => {
      writeRecord(cfg.record, rec);
      undo.push('remove the takeover record', () => rmSync(cfg.record, { force: true }));
      await t.after('record');
      const br = await takeoverBridge(t, existing);
      await t.after('bridge');
      await copyLinkSysctls(t, br);
      await t.after('sysctls');
      await enslaveUplink(t, br);
      await t.after('enslave');
      await addressesOnBridge(t, br);
      await t.after('addresses');
      const moves = [...rec.routes].sort(gatewayLast);
      await routesOnBridge(t, br, moves);
      await t.after('routes');
      await clearUplink(t, moves);
      await t.after('uplink');
      rec.phase = 'done';
      rec.completed = new Date().toISOString();
      writeRecord(cfg.record, rec);
      await t.after('done');
    });
  } catch (e) {
    // The undo re-added IPv6 addresses on the uplink: let them leave DAD before the caller looks.
    if (rec.addrs.some((a) => a.version === 6)) await settle(ns, uplink.index, uplink.name).catch(() => undefined);
    throw e;
  }
  log.info(
    `flat: ${uplink.name} is a port of ${cfg.bridge} now; moved ${rec.addrs.length} address(es), ${rec.routes.length} route(s), ${rec.neighs.length} neighbour(s); record ${cfg.record}`,
  );
  return rec;
}

// --------------------------------------------------------------------- restore ----

export interface RestoreReport {
  /** Things that could not be put back exactly (also logged). */
  warnings: string[];
}

/**
 * 1. the uplink gets its addresses back, leaves the bridge (a bridge port would not learn
 * its neighbours: replies to its ARP and ND go up the bridge), then gets its routes and
 * neighbours back: only the routes' swap leaves the node without a working route.
 */
async function restoreUplink(
  ns: Netns,
  rec: TakeoverRecord,
  up: number,
  br: number | undefined,
  routes: readonly RouteMessage[],
  elapsed: number,
  warn: (m: string) => void,
): Promise<void> {
  for (const a of addOrder(rec.addrs)) await ignoring(['EEXIST'], () => rtnl.newAddrMessage(ns, addrOn(a, up, rec.uplink.name, rec.uplink.name, elapsed)));
  if (rec.addrs.some((a) => a.version === 6)) await settle(ns, up, rec.uplink.name).catch((e: unknown) => warn(errorText(e)));
  if (br !== undefined && (await rtnl.getLink(ns, up)).master === br) await rtnl.setLink(ns, up, { master: null });
  for (const r of routes) {
    for (const m of routesVia(r, up, up, elapsed)) {
      try {
        await ignoring(['EEXIST'], () => rtnl.newRouteMessage(ns, m, 'add'));
      } catch (e) {
        warn(`route ${describeRoute(m)}: ${errorText(e)}`);
      }
    }
  }
  for (const n of rec.neighs)
    await rtnl.newNeigh(ns, { link: up, ip: n.ip, ...(n.mac ? { mac: n.mac } : {}), state: rtnl.NeighState.permanent, flags: n.flags }, { replace: true });
}

/** 2. the bridge's copies of the routes, neighbours and addresses go. */
async function removeBridgeCopies(ns: Netns, rec: TakeoverRecord, up: number, br: number, routes: readonly RouteMessage[], elapsed: number): Promise<void> {
  for (const r of [...routes].reverse()) for (const m of routesVia(r, up, br, elapsed)) await ignoring(['ESRCH'], () => rtnl.delRouteMessage(ns, m));
  for (const n of rec.neighs) await ignoring(['ENOENT'], () => rtnl.delNeigh(ns, { link: br, ip: n.ip }));
  for (const a of [...rec.addrs.filter((x) => x.version !== 6).reverse(), ...rec.addrs.filter((x) => x.version === 6)]) {
    await ignoring(['EADDRNOTAVAIL'], () => rtnl.delAddrMessage(ns, addrSelector(a, br)));
  }
}

/** 3. the bridge goes (strand made it; not while it has ports) or gets its settings back. */
async function restoreOrRemoveBridge(ns: Netns, rec: TakeoverRecord, br: number, warn: (m: string) => void): Promise<void> {
  if (rec.bridge.created) {
    const ports = (await rtnl.listLinks(ns)).filter((l) => l.master === br);
    if (ports.length) warn(`${rec.bridge.name} still has ports (${ports.map((p) => p.name).join(', ')}): left in place`);
    else await ignoring(['ENODEV'], () => rtnl.delLink(ns, br));
    return;
  }
  for (const [key, value] of Object.entries(rec.sysctls)) {
    try {
      await setLinkSysctl(ns, key, br, value);
    } catch (e) {
      warn(`${key}=${value}: ${errorText(e)}`);
    }
  }
  if (rec.bridge.before) await restoreBridge(ns, br, rec.bridge.before);
}

/**
 * Puts the node back as the record says it was: works from any point of a takeover
 * (done, or interrupted half-way by a crash). Idempotent; removes the record at the end.
 */
export async function restore(ns: Netns, record: string, deps: { log: Logger }): Promise<RestoreReport> {
  const { log } = deps;
  const rec = readRecord(record);
  if (!rec) throw new TakeoverError(`no takeover record at ${record}: nothing to restore (was this node taken over by strand?)`);
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    log.warn(`restore: ${m}`);
  };
  const uplink = await rtnl.findLink(ns, rec.uplink.name);
  if (!uplink) throw new TakeoverError(`uplink ${rec.uplink.name} of the record does not exist`);
  if (rec.uplink.mac && uplink.mac && uplink.mac !== rec.uplink.mac)
    throw new TakeoverError(`${rec.uplink.name} has MAC ${uplink.mac}, the record says ${rec.uplink.mac}: not the same interface`);
  const up = uplink.index;
  const brLink = await rtnl.findLink(ns, rec.bridge.name);
  const br = brLink?.kind === 'bridge' ? brLink.index : undefined;
  const elapsed = Math.floor((Date.now() - Date.parse(rec.started)) / 1000);
  const routes = [...rec.routes].sort(gatewayLast);
  await restoreUplink(ns, rec, up, br, routes, elapsed, warn);
  if (br !== undefined) {
    await removeBridgeCopies(ns, rec, up, br, routes, elapsed);
    await restoreOrRemoveBridge(ns, rec, br, warn);
  }
  rmSync(record, { force: true });
  log.info(`flat: restored ${rec.uplink.name} (${rec.addrs.length} address(es), ${rec.routes.length} route(s)) from ${record}`);
  return { warnings };
}

/** An adopted bridge's own settings back (its MAC only if it changed: a bridge without a set MAC follows its ports). */
async function restoreBridge(ns: Netns, br: number, b: NonNullable<TakeoverRecord['bridge']['before']>): Promise<void> {
  const now = await rtnl.getLink(ns, br);
  const back: rtnl.SetLinkSpec = { mtu: b.mtu, up: b.up };
  if (b.mac && now.mac !== b.mac) back.mac = b.mac;
  const vf = (now.info as rtnl.BridgeInfo | undefined)?.vlanFiltering;
  if (b.vlanFiltering !== undefined && vf !== undefined && vf !== b.vlanFiltering) back.info = { kind: 'bridge', vlanFiltering: b.vlanFiltering };
  await rtnl.setLink(ns, br, back);
}

// --------------------------------------------------------------- agent start-up ----

/**
 * At agent start: a completed takeover is recognised (and what strand may have undone on
 * the bridge put back, reassertBridge), a half-done one is restored and done again, an
 * uplink already in the bridge without a record (set up by hand) is adopted as it is,
 * anything else is taken over.
 */
export async function ensureTakeover(ns: Netns, cfg: FlatConfig, deps: FlatDeps): Promise<TakeoverOutcome> {
  const rec = readRecord(cfg.record);
  const uplink = await rtnl.findLink(ns, cfg.uplink);
  const br = await rtnl.findLink(ns, cfg.bridge);
  const inBridge = uplink !== undefined && br !== undefined && uplink.master === br.index;
  if (rec && (rec.uplink.name !== cfg.uplink || rec.bridge.name !== cfg.bridge)) {
    throw new TakeoverError(
      `${cfg.record} records a takeover of ${rec.uplink.name} by ${rec.bridge.name}, not ${cfg.uplink} by ${cfg.bridge}: restore it first`,
    );
  }
  if (rec?.phase === 'done' && inBridge) {
    const r = await reassertBridge(ns, cfg, rec.notCopied);
    for (const p of [...r.fixed, ...r.problems]) deps.log.warn(`flat: ${p}`);
    deps.log.info(`flat: ${cfg.uplink} taken over by ${cfg.bridge} since ${rec.completed ?? rec.started}`);
    return { state: 'recognised', record: rec };
  }
  if (rec) {
    deps.log.warn(
      `flat: takeover record ${cfg.record} is ${rec.phase === 'done' ? `done but ${cfg.uplink} is not in ${cfg.bridge}` : 'from a takeover interrupted half-way'}: restoring, then taking over again`,
    );
    await restore(ns, cfg.record, deps);
  } else if (inBridge) {
    deps.log.warn(`flat: ${cfg.uplink} is already a port of ${cfg.bridge} and there is no takeover record: adopted as it is (--restore cannot undo it)`);
    return { state: 'adopted' };
  }
  const t0 = performance.now();
  const record = await takeover(ns, cfg, deps);
  return { state: 'taken-over', record, ms: performance.now() - t0 };
}

/** The node's own addresses on the segment: the global addresses of the bridge (what the takeover moved there). */
export async function nodeAddresses(ns: Netns, cfg: FlatConfig): Promise<string[]> {
  const br = await rtnl.findLink(ns, cfg.bridge);
  if (!br) throw new TakeoverError(`bridge ${cfg.bridge} does not exist`);
  return (await rtnl.listAddrs(ns, { link: br.index }))
    .filter((a) => a.scope === rtnl.Scope.universe && !(a.version === 6 && a.ip.toLowerCase().startsWith('fe80:')))
    .map((a) => a.ip);
}

/** The uplink's MTU: the pods' (the bridge keeps it too, reassertBridge). */
export async function uplinkMtu(ns: Netns, cfg: FlatConfig): Promise<number> {
  const l = await rtnl.findLink(ns, cfg.uplink);
  if (!l) throw new TakeoverError(`uplink ${cfg.uplink} does not exist`);
  return l.mtu;
}

export interface Reassertion {
  /** What had to be put back. */
  fixed: string[];
  /** What is not as it should be and could not be put back. */
  problems: string[];
}

/**
 * What strand itself may undo on the bridge is put back: strand-bridge ADD turns
 * `accept_ra` off on its bridge, as the reference plugin does (on the node's own bridge
 * that would stop router advertisements), so the bridge gets the uplink's value again;
 * its MTU stays the uplink's and the pod VLANs stay on the uplink port. Sysctls the
 * takeover could not copy (`notCopied`, a read-only /proc/sys) are tried again. Other
 * settings are the administrator's. A sysctl this agent may not write is a problem
 * (`accept_ra` only while the bridge has a global IPv6 address: without IPv6 on the
 * segment it changes nothing).
 */
export async function reassertBridge(ns: Netns, cfg: FlatConfig, notCopied: Readonly<Record<string, string>> = {}): Promise<Reassertion> {
  const out: Reassertion = { fixed: [], problems: [] };
  const br = await rtnl.findLink(ns, cfg.bridge);
  const uplink = await rtnl.findLink(ns, cfg.uplink);
  if (!br || !uplink) return { fixed: [], problems: [`${!br ? cfg.bridge : cfg.uplink} is gone`] };
  if (br.mtu !== uplink.mtu) {
    await rtnl.setLink(ns, br.index, { mtu: uplink.mtu });
    out.fixed.push(`${cfg.bridge} mtu ${br.mtu} -> ${uplink.mtu} (the uplink's)`);
  }
  if (cfg.vlans.length) {
    const have = new Set(
      ((await rtnl.listBridgeVlans(ns)).get(uplink.index) ?? []).flatMap((v) => Array.from({ length: (v.vidEnd ?? v.vid) - v.vid + 1 }, (_, i) => v.vid + i)),
    );
    for (const vid of cfg.vlans.filter((v) => !have.has(v))) {
      await rtnl.newBridgeVlan(ns, uplink.index, { vid });
      out.fixed.push(`VLAN ${vid} back on ${cfg.uplink}`);
    }
  }
  const ra = `net/ipv6/conf/${cfg.bridge}/accept_ra`;
  const prefix = (l: string): string => `/conf/${l}/`;
  for (const key of new Set([ra, ...Object.keys(notCopied)])) {
    const want = await tryGet(ns, key.replace(prefix(cfg.bridge), prefix(uplink.name)));
    const have = await tryGet(ns, key);
    if (want === undefined || have === undefined || want === have) continue;
    try {
      await setLinkSysctl(ns, key, br.index, want);
      out.fixed.push(`${key} ${have} -> ${want} (the uplink's)`);
    } catch (e) {
      if (!notWritable(e)) out.problems.push(`${key}: ${errorText(e)}`);
      else if (key !== ra || Object.hasOwn(notCopied, key) || (await nodeAddresses(ns, cfg)).some((a) => a.includes(':')))
        out.problems.push(notWritableProblem(key, want, uplink.name));
    }
  }
  return out;
}
