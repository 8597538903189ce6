// Typed rtnetlink operations over a namespace handle, named after the kernel messages.
// Asynchronous: each call is one or two round trips that run off the JavaScript thread
// (the kernel may hold them for milliseconds under its RTNL lock); every failure is a
// rejected NetlinkError {errno, code, op}. Usage:
//
//   import { Netns } from './netns.ts';
//   import * as rtnl from './rtnl.ts';
//
//   const host = Netns.current();
//   const pod = Netns.open(args.netns);           // ENOENT: missing, EINVAL: not a netns
//   try {
//     // veth whose peer is created directly inside the pod netns (one message)
//     await rtnl.newLink(host, { name: 'veth5f3a', info: { kind: 'veth', peer: { name: 'eth0', netns: pod } } });
//     await rtnl.setLink(host, 'veth5f3a', { master: 'cni0', up: true, bridgePort: { hairpin: true } });
//     const eth0 = await rtnl.getLink(pod, 'eth0');
//     await rtnl.setLink(pod, eth0.index, { up: true });
//     await rtnl.newAddr(pod, { link: eth0.index, address: '10.22.0.5/16' });
//     await rtnl.newRoute(pod, { dst: '0.0.0.0/0', gw: '10.22.0.1' });
//     await rtnl.sysctlSet(pod, 'net.ipv4.conf.eth0.arp_notify', '1');
//   } catch (e) {
//     if (rtnl.isNetlinkError(e, 'EEXIST')) { ... }
//     throw e;
//   } finally {
//     pod.close();                                 // after every operation has settled
//   }
//
// Links are referred to by index or by name (`LinkRef`); names are resolved in the
// namespace the operation runs in. In DEL paths: `if (isNetlinkError(e, 'ENODEV')) ...`.

import { closeSync, constants as fsConstants, readSync } from 'node:fs';
import { formatIP, ipFamily, lastIP, tryParseCidr } from '../addr/cidr.ts';
import { ifNameProblem, isValidIfName } from '../addr/ifname.ts';
import { canonicalMac, isMac } from '../addr/mac.ts';
import {
  AddrFlag,
  type AddrMessage,
  type BridgeInfo,
  type BridgePortInfo,
  type BridgeVlan,
  type DummyInfo,
  ExtMask,
  type IpvlanInfo,
  LinkFamily,
  LinkFlag,
  type LinkInfo,
  type LinkMessage,
  type MacvlanInfo,
  type NeighFamily,
  NeighFlag,
  type NeighMessage,
  NeighState,
  type OperState,
  Protocol,
  RouteFlag,
  type RouteMessage,
  RouteType,
  type RtnlRequest,
  Scope,
  Table,
  type VxlanInfo,
} from './codec/index.ts';
import { errnoOf, fromNative, invalidArgument, isNetlinkError, NetlinkError } from './errors.ts';
import type { Netns } from './netns.ts';
import type { DataMessage } from './socket.ts';

export { isNetlinkError } from './errors.ts';
export { Netns } from './netns.ts';
export { AddrFlag, NeighFlag, NeighState, Protocol, RouteFlag, Scope, Table } from './codec/index.ts';
export type { BridgeInfo, BridgePortInfo, BridgeVlan, IpvlanInfo, LinkInfo, MacvlanInfo, OperState, VxlanInfo } from './codec/index.ts';
export type { NeighFamily } from './codec/index.ts';

/** A link by index or by name (resolved in the namespace of the operation). */
export type LinkRef = number | string;

/** Dumps that the kernel flags as inconsistent are retried this many times. */
const DUMP_ATTEMPTS = 5;

// =========================================================================== links ====

export interface Link {
  index: number;
  name: string;
  /** Link kind: 'veth', 'bridge', 'macvlan', 'vxlan', ...; undefined for physical/loopback. */
  kind?: string;
  /** Device type (1 ethernet, 772 loopback). */
  type: number;
  mtu: number;
  mac?: string;
  /** Index of the master (bridge). */
  master?: number;
  /** Parent device (macvlan/ipvlan/vxlan lower device) or a veth's peer index. */
  parent?: number;
  /** Namespace id (as seen from this namespace) of `parent` when it lives elsewhere. */
  parentNetnsId?: number;
  up: boolean;
  running: boolean;
  lowerUp: boolean;
  promisc: boolean;
  /** Raw interface flag bits. */
  flags: number;
  operstate: OperState;
  txqlen?: number;
  minMtu?: number;
  maxMtu?: number;
  alias?: string;
  /** Kind-specific settings as the kernel reports them. */
  info?: LinkInfo;
  /** Bridge port settings when the link is enslaved to a bridge. */
  bridgePort?: BridgePortInfo;
}

interface LinkCommon {
  mtu?: number;
  mac?: string;
  txqlen?: number;
  alias?: string;
  /** Bring the link up at creation. */
  up?: boolean;
}

export interface VethPeerSpec extends LinkCommon {
  name: string;
  /** Create the peer directly in this namespace (IFLA_NET_NS_FD in the peer info). */
  netns?: Netns;
}

export type NewLinkInfo =
  | { kind: 'veth'; peer: VethPeerSpec }
  | BridgeInfo
  | MacvlanInfo
  | IpvlanInfo
  | (Omit<VxlanInfo, 'dev'> & { dev?: LinkRef })
  | DummyInfo;

export interface NewLinkSpec extends LinkCommon {
  name: string;
  info: NewLinkInfo;
  /** Lower device of macvlan/ipvlan (IFLA_LINK), looked up in the requesting namespace. */
  parent?: LinkRef;
  /** Enslave to this bridge at creation. */
  master?: LinkRef;
  /** Create the link directly in this namespace instead of the requesting one. */
  netns?: Netns;
}

export type ChangeLinkInfo = BridgeInfo | MacvlanInfo | IpvlanInfo | Omit<VxlanInfo, 'dev'>;

export interface SetLinkSpec {
  up?: boolean;
  promisc?: boolean;
  mtu?: number;
  /** Rename. */
  name?: string;
  mac?: string;
  txqlen?: number;
  alias?: string;
  /** Enslave to a bridge; null detaches (nomaster). */
  master?: LinkRef | null;
  /** Move the link into this namespace (its index may change there). */
  netns?: Netns;
  /** Change kind-specific settings, e.g. { kind: 'bridge', vlanFiltering: true }. */
  info?: ChangeLinkInfo;
  /** Bridge port settings (hairpin, isolated, learning...), sent after the rest. */
  bridgePort?: BridgePortInfo;
}

function checkName(op: string, name: string): void {
  const why = ifNameProblem(name);
  if (why) throw invalidArgument(op, `invalid interface name ${JSON.stringify(name)}: it ${why}`);
}

function checkMtu(op: string, mtu: number | undefined): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 0 || mtu > 0xffffffff)) throw invalidArgument(op, `invalid mtu ${mtu}`);
}

/** The MAC in the codec's form (lower case, ":"), or undefined; an invalid one is EINVAL. */
function checkMac(op: string, mac: string | undefined): string | undefined {
  if (mac === undefined) return undefined;
  if (!isMac(mac)) throw invalidArgument(op, `invalid MAC address ${JSON.stringify(mac)}`);
  return canonicalMac(mac);
}

function toLink(m: LinkMessage): Link {
  const flags = m.flags ?? 0;
  const link: Link = {
    index: m.index ?? 0,
    name: m.name ?? '',
    type: m.type ?? 0,
    mtu: m.mtu ?? 0,
    up: (flags & LinkFlag.up) !== 0,
    running: (flags & LinkFlag.running) !== 0,
    lowerUp: (flags & LinkFlag.lowerUp) !== 0,
    promisc: (flags & LinkFlag.promisc) !== 0,
    flags,
    operstate: m.operstate ?? 'unknown',
  };
  if (m.info) link.kind = m.info.kind === 'other' ? m.info.name : m.info.kind;
  if (m.mac !== undefined) link.mac = m.mac;
  if (m.master !== undefined && m.master !== 0) link.master = m.master;
  if (m.parent !== undefined && m.parent !== 0 && m.parent !== m.index) link.parent = m.parent;
  if (m.linkNetnsId !== undefined) link.parentNetnsId = m.linkNetnsId;
  if (m.txqlen !== undefined) link.txqlen = m.txqlen;
  if (m.minMtu !== undefined) link.minMtu = m.minMtu;
  if (m.maxMtu !== undefined) link.maxMtu = m.maxMtu;
  if (m.alias !== undefined) link.alias = m.alias;
  if (m.info) link.info = m.info;
  if (m.slave?.kind === 'bridge') link.bridgePort = m.slave.port;
  return link;
}

function linkSelector(ref: LinkRef): LinkMessage {
  return typeof ref === 'number' ? { index: ref } : { name: ref };
}

function linksOf(msgs: DataMessage[]): LinkMessage[] {
  return msgs.flatMap((m) => (m.kind === 'link' ? [m.link] : []));
}

async function requestOne(
  ns: Netns,
  req: RtnlRequest,
  flags: { create?: boolean; excl?: boolean; replace?: boolean; append?: boolean },
  op: string,
): Promise<DataMessage[]> {
  return await ns.rtnl().request(req, flags, op);
}

async function dumpAll(ns: Netns, req: RtnlRequest, op: string): Promise<DataMessage[]> {
  for (let attempt = 1; ; attempt++) {
    const r = await ns.rtnl().dump(req, op);
    if (!r.interrupted) return r.messages;
    if (attempt >= DUMP_ATTEMPTS) throw new NetlinkError(op, errnoOf('EINTR'), `dump still inconsistent after ${DUMP_ATTEMPTS} attempts`);
  }
}

/** The link's index: numbers pass through, names are looked up (ENODEV names `op`). */
export async function linkIndex(ns: Netns, ref: LinkRef, op = 'getLink'): Promise<number> {
  if (typeof ref === 'number') return ref;
  try {
    return (await getLink(ns, ref)).index;
  } catch (e) {
    if (isNetlinkError(e)) throw new NetlinkError(op, e.errno, `link ${JSON.stringify(ref)}${e.detail ? `: ${e.detail}` : ''}`, { cause: e });
    throw e;
  }
}

/** RTM_GETLINK for one link. Throws NetlinkError ENODEV when it does not exist. */
export async function getLink(ns: Netns, ref: LinkRef): Promise<Link> {
  if (typeof ref === 'string' && !isValidIfName(ref)) throw new NetlinkError('getLink', errnoOf('ENODEV'), `invalid interface name ${JSON.stringify(ref)}`);
  const link: LinkMessage = { ...linkSelector(ref), extMask: ExtMask.skipStats };
  const found = linksOf(await requestOne(ns, { kind: 'link', action: 'get', link }, {}, 'getLink'));
  const first = found[0];
  if (!first) throw new NetlinkError('getLink', errnoOf('ENODEV'), `no reply for ${JSON.stringify(ref)}`);
  return toLink(first);
}

/** getLink, or undefined when the link does not exist. */
export async function findLink(ns: Netns, ref: LinkRef): Promise<Link | undefined> {
  try {
    return await getLink(ns, ref);
  } catch (e) {
    if (isNetlinkError(e, 'ENODEV')) return undefined;
    throw e;
  }
}

/** RTM_GETLINK dump: every link of the namespace. */
export async function listLinks(ns: Netns): Promise<Link[]> {
  const msgs = await dumpAll(ns, { kind: 'link', action: 'get', link: { extMask: ExtMask.skipStats } }, 'listLinks');
  return linksOf(msgs).map(toLink);
}

function upFlags(up: boolean | undefined): Pick<LinkMessage, 'flags' | 'change'> {
  return up ? { flags: LinkFlag.up, change: LinkFlag.up } : {};
}

function commonAttrs(op: string, c: LinkCommon): LinkMessage {
  checkMtu(op, c.mtu);
  const mac = checkMac(op, c.mac);
  const m: LinkMessage = { ...upFlags(c.up) };
  if (c.mtu !== undefined) m.mtu = c.mtu;
  if (mac !== undefined) m.mac = mac;
  if (c.txqlen !== undefined) m.txqlen = c.txqlen;
  if (c.alias !== undefined) m.alias = c.alias;
  return m;
}

/**
 * RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL: creates a link (EEXIST if the name is taken).
 * A veth's peer is created directly in `info.peer.netns`; `netns` creates the link itself
 * in another namespace. Nothing is left behind when the kernel refuses the request.
 */
export async function newLink(ns: Netns, spec: NewLinkSpec): Promise<void> {
  const op = 'newLink';
  checkName(op, spec.name);
  const m: LinkMessage = { ...commonAttrs(op, spec), name: spec.name };
  if (spec.parent !== undefined) m.parent = await linkIndex(ns, spec.parent, op);
  if (spec.master !== undefined) m.master = await linkIndex(ns, spec.master, op);
  if (spec.netns) m.netnsFd = spec.netns.fd();
  const info = spec.info;
  if (info.kind === 'veth') {
    checkName(op, info.peer.name);
    // The kernel configures the peer before the pair is joined, so it cannot be brought
    // up in the same message (ENOTCONN): that takes a second request, below.
    const { up: _peerUp, ...peerCommon } = info.peer;
    const peer: LinkMessage = { ...commonAttrs(op, peerCommon), name: info.peer.name };
    if (info.peer.netns) peer.netnsFd = info.peer.netns.fd();
    m.info = { kind: 'veth', peer };
  } else if (info.kind === 'vxlan') {
    const { dev, ...rest } = info;
    m.info = dev === undefined ? rest : { ...rest, dev: await linkIndex(ns, dev, op) };
    for (const ip of [info.local, info.group, info.remote]) {
      if (ip !== undefined && !ipFamily(ip)) throw invalidArgument(op, `invalid vxlan address ${JSON.stringify(ip)}`);
    }
  } else {
    m.info = info;
  }
  await requestOne(ns, { kind: 'link', action: 'new', link: m }, { create: true, excl: true }, op);
  if (info.kind === 'veth' && info.peer.up) {
    const peerNs = info.peer.netns ?? ns;
    try {
      await setLink(peerNs, info.peer.name, { up: true });
    } catch (e) {
      // Leave nothing half-made: the pair goes away with either end.
      try {
        await delLink(peerNs, info.peer.name);
      } catch {
        // already gone
      }
      throw e;
    }
  }
}

/**
 * Changes a link: up/down, promisc, mtu, name, mac, master/nomaster, namespace,
 * kind settings (RTM_NEWLINK without NLM_F_CREATE), then bridge port settings (an
 * AF_BRIDGE RTM_SETLINK, once the link has its master).
 */
export async function setLink(ns: Netns, ref: LinkRef, spec: SetLinkSpec): Promise<void> {
  const op = 'setLink';
  if (spec.name !== undefined) checkName(op, spec.name);
  checkMtu(op, spec.mtu);
  const mac = checkMac(op, spec.mac);
  // Renaming needs the index; otherwise the kernel can find the link by its name.
  const needIndex = typeof ref === 'string' && (spec.name !== undefined || spec.bridgePort !== undefined);
  const sel = needIndex ? { index: await linkIndex(ns, ref, op) } : linkSelector(ref);
  const m: LinkMessage = { ...sel };
  let flags = 0;
  let change = 0;
  if (spec.up !== undefined) {
    change |= LinkFlag.up;
    if (spec.up) flags |= LinkFlag.up;
  }
  if (spec.promisc !== undefined) {
    change |= LinkFlag.promisc;
    if (spec.promisc) flags |= LinkFlag.promisc;
  }
  if (change) Object.assign(m, { flags, change });
  if (spec.name !== undefined) m.name = spec.name;
  if (spec.mtu !== undefined) m.mtu = spec.mtu;
  if (mac !== undefined) m.mac = mac;
  if (spec.txqlen !== undefined) m.txqlen = spec.txqlen;
  if (spec.alias !== undefined) m.alias = spec.alias;
  if (spec.master !== undefined) m.master = spec.master === null ? 0 : await linkIndex(ns, spec.master, op);
  if (spec.netns) m.netnsFd = spec.netns.fd();
  if (spec.info) m.info = spec.info;
  const { bridgePort, ...rest } = spec;
  if (Object.values(rest).some((v) => v !== undefined)) {
    await requestOne(ns, { kind: 'link', action: 'new', link: m }, {}, op);
  }
  if (bridgePort) {
    const index = m.index ?? (await linkIndex(ns, ref, op));
    const target = spec.netns ?? ns; // after a move, the port lives there
    const link: LinkMessage = { family: LinkFamily.bridge, index, protinfo: bridgePort };
    await requestOne(target, { kind: 'link', action: 'set', link }, {}, op);
  }
}

/** RTM_DELLINK (a veth's peer goes with it). ENODEV when it does not exist. */
export async function delLink(ns: Netns, ref: LinkRef): Promise<void> {
  await requestOne(ns, { kind: 'link', action: 'del', link: linkSelector(ref) }, {}, 'delLink');
}

// ================================================================ bridge VLANs =======

export interface BridgeVlanSpec {
  vid: number;
  /** Last VID of a range. */
  vidEnd?: number;
  pvid?: boolean;
  untagged?: boolean;
  /** The entry is for the bridge device itself (`bridge vlan add ... self`). */
  self?: boolean;
}

async function vlanMessage(ns: Netns, ref: LinkRef, v: BridgeVlanSpec, op: string): Promise<LinkMessage> {
  const vlan: BridgeVlan = { vid: v.vid };
  if (v.vidEnd !== undefined) vlan.vidEnd = v.vidEnd;
  if (v.pvid) vlan.pvid = true;
  if (v.untagged) vlan.untagged = true;
  if (v.self) vlan.brentry = true;
  const bridge = v.self ? { self: true, vlans: [vlan] } : { vlans: [vlan] };
  return { family: LinkFamily.bridge, index: await linkIndex(ns, ref, op), bridge };
}

/** Adds a VLAN to a bridge port (or to the bridge itself with `self`). Needs vlan filtering. */
export async function newBridgeVlan(ns: Netns, ref: LinkRef, v: BridgeVlanSpec): Promise<void> {
  const op = 'newBridgeVlan';
  await requestOne(ns, { kind: 'link', action: 'set', link: await vlanMessage(ns, ref, v, op) }, {}, op);
}

export async function delBridgeVlan(ns: Netns, ref: LinkRef, v: BridgeVlanSpec): Promise<void> {
  const op = 'delBridgeVlan';
  await requestOne(ns, { kind: 'link', action: 'del', link: await vlanMessage(ns, ref, v, op) }, {}, op);
}

/** VLANs of every bridge and bridge port, by link index. */
export async function listBridgeVlans(ns: Netns): Promise<Map<number, BridgeVlan[]>> {
  const req: RtnlRequest = { kind: 'link', action: 'get', link: { family: LinkFamily.bridge, extMask: ExtMask.bridgeVlanCompressed } };
  const out = new Map<number, BridgeVlan[]>();
  for (const l of linksOf(await dumpAll(ns, req, 'listBridgeVlans'))) {
    if (l.index !== undefined && l.bridge?.vlans) out.set(l.index, l.bridge.vlans);
  }
  return out;
}

/** Bridge port settings as the bridge reports them (AF_BRIDGE dump), by link index. */
export async function listBridgePorts(ns: Netns): Promise<Map<number, BridgePortInfo & { master: number }>> {
  const req: RtnlRequest = { kind: 'link', action: 'get', link: { family: LinkFamily.bridge } };
  const out = new Map<number, BridgePortInfo & { master: number }>();
  for (const l of linksOf(await dumpAll(ns, req, 'listBridgePorts'))) {
    if (l.index !== undefined && l.protinfo && l.master) out.set(l.index, { ...l.protinfo, master: l.master });
  }
  return out;
}

// ======================================================================= addresses ====

interface ParsedCidr {
  version: 4 | 6;
  ip: string;
  prefixLen: number;
}

function parseAddress(op: string, what: string, s: string, allowBare = false): ParsedCidr {
  const slash = s.indexOf('/');
  const ipText = slash < 0 ? s : s.slice(0, slash);
  const version = ipFamily(ipText);
  const c = slash < 0 ? undefined : tryParseCidr(s);
  if (!version || (slash >= 0 && !c) || (slash < 0 && !allowBare)) {
    throw invalidArgument(op, `invalid ${what} ${JSON.stringify(s)}${allowBare ? '' : ' (want CIDR like 10.1.0.5/24)'}`);
  }
  const prefixLen = c ? c.prefix : version === 4 ? 32 : 128;
  return { version, ip: c ? formatIP({ family: c.family, value: c.ip }) : ipText, prefixLen };
}

function parseIp(op: string, what: string, s: string): { version: 4 | 6; ip: string } {
  const version = ipFamily(s);
  if (!version) throw invalidArgument(op, `invalid ${what} ${JSON.stringify(s)}`);
  return { version, ip: s };
}

export interface AddrSpec {
  link: LinkRef;
  /** The address with its prefix, e.g. "10.1.0.5/24" or "fd00::5/64". */
  address: string;
  /** Point-to-point peer. */
  peer?: string;
  /** IPv4 broadcast; by default computed for prefixes shorter than /31 (as the Go plugins do); false: none. */
  broadcast?: string | false;
  label?: string;
  scope?: number;
  /** IPv6: skip duplicate address detection (usable at once). */
  nodad?: boolean;
  /** Do not add the prefix route. */
  noPrefixRoute?: boolean;
}

export interface Addr {
  index: number;
  version: 4 | 6;
  /** Address with prefix, e.g. "10.1.0.5/24". */
  address: string;
  ip: string;
  prefixLen: number;
  scope: number;
  /** AddrFlag bits. */
  flags: number;
  peer?: string;
  broadcast?: string;
  label?: string;
  /** Lifetimes in seconds (0xffffffff: forever). */
  validLft?: number;
  preferredLft?: number;
}

function toAddr(m: AddrMessage): Addr {
  const ip = m.local ?? m.address ?? '';
  const a: Addr = {
    index: m.index ?? 0,
    version: m.version ?? 4,
    address: `${ip}/${m.prefixLen ?? 0}`,
    ip,
    prefixLen: m.prefixLen ?? 0,
    scope: m.scope ?? 0,
    flags: m.flags ?? 0,
  };
  if (m.local !== undefined && m.address !== undefined && m.address !== m.local) a.peer = m.address;
  if (m.broadcast !== undefined) a.broadcast = m.broadcast;
  if (m.label !== undefined) a.label = m.label;
  if (m.cacheinfo) {
    a.validLft = m.cacheinfo.valid;
    a.preferredLft = m.cacheinfo.preferred;
  }
  return a;
}

async function addrMessage(ns: Netns, spec: AddrSpec, op: string, forAdd: boolean): Promise<AddrMessage> {
  const c = parseAddress(op, 'address', spec.address);
  const m: AddrMessage = { version: c.version, prefixLen: c.prefixLen, index: await linkIndex(ns, spec.link, op) };
  if (c.version === 4) {
    m.local = c.ip;
    m.address = spec.peer !== undefined ? parseIp(op, 'peer', spec.peer).ip : c.ip;
  } else {
    m.address = c.ip;
    if (spec.peer !== undefined) {
      m.local = c.ip;
      m.address = parseIp(op, 'peer', spec.peer).ip;
    }
  }
  if (forAdd) {
    if (c.version === 4 && spec.broadcast !== false) {
      if (spec.broadcast !== undefined) m.broadcast = parseIp(op, 'broadcast', spec.broadcast).ip;
      else if (c.prefixLen < 31) {
        const cidr = tryParseCidr(`${c.ip}/${c.prefixLen}`);
        if (cidr) m.broadcast = formatIP(lastIP(cidr));
      }
    }
    let flags = 0;
    if (spec.nodad) flags |= AddrFlag.nodad;
    if (spec.noPrefixRoute) flags |= AddrFlag.noPrefixRoute;
    if (flags) m.flags = flags;
    if (spec.label !== undefined) m.label = spec.label;
    if (spec.scope !== undefined) m.scope = spec.scope;
  }
  return m;
}

/** RTM_NEWADDR (EEXIST when present, unless `replace`). */
export async function newAddr(ns: Netns, spec: AddrSpec, opts: { replace?: boolean } = {}): Promise<void> {
  const op = 'newAddr';
  const addr = await addrMessage(ns, spec, op, true);
  await requestOne(ns, { kind: 'addr', action: 'new', addr }, opts.replace ? { create: true, replace: true } : { create: true, excl: true }, op);
}

/** RTM_DELADDR. EADDRNOTAVAIL when the address is not there. */
export async function delAddr(ns: Netns, spec: Pick<AddrSpec, 'link' | 'address' | 'peer'>): Promise<void> {
  const op = 'delAddr';
  await requestOne(ns, { kind: 'addr', action: 'del', addr: await addrMessage(ns, spec, op, false) }, {}, op);
}

/** RTM_GETADDR dump, optionally for one link and one IP version. */
export async function listAddrs(ns: Netns, filter: { link?: LinkRef; version?: 4 | 6 } = {}): Promise<Addr[]> {
  const op = 'listAddrs';
  const index = filter.link === undefined ? undefined : await linkIndex(ns, filter.link, op);
  const req: RtnlRequest = { kind: 'addr', action: 'get', addr: filter.version ? { version: filter.version } : {} };
  const out: Addr[] = [];
  for (const m of await dumpAll(ns, req, op)) {
    if (m.kind !== 'addr') continue;
    if (index !== undefined && m.addr.index !== index) continue;
    if (filter.version && m.addr.version !== filter.version) continue;
    out.push(toAddr(m.addr));
  }
  return out;
}

// ========================================================================== routes ====

export type RouteTypeName = keyof typeof RouteType;

export interface RouteSpec {
  /** Destination CIDR ("10.2.0.0/16", "0.0.0.0/0", "::/0") or "default" (version from `gw` or `version`). */
  dst: string;
  version?: 4 | 6;
  gw?: string;
  /** Output link (RTA_OIF). */
  link?: LinkRef;
  priority?: number;
  /** Default: main. */
  table?: number;
  /** Default: link for IPv4 routes without a gateway, universe otherwise. */
  scope?: number;
  /** Default: boot (as `ip route add`). */
  protocol?: number;
  /** Default: unicast. */
  type?: RouteTypeName;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  mtu?: number;
  advmss?: number;
  /** The gateway is on-link even without a matching prefix. */
  onlink?: boolean;
}

export interface Route {
  version: 4 | 6;
  /** Destination CIDR; "0.0.0.0/0" or "::/0" for a default route. */
  dst: string;
  gw?: string;
  oif?: number;
  priority?: number;
  table: number;
  scope: number;
  protocol: number;
  type: RouteTypeName;
  src?: string;
  mtu?: number;
  advmss?: number;
  flags: number;
}

function toRoute(m: RouteMessage): Route {
  const version = m.version ?? 4;
  const dst = m.dst ?? (version === 4 ? '0.0.0.0' : '::');
  const typeName = (Object.keys(RouteType) as RouteTypeName[]).find((k) => RouteType[k] === m.type) ?? 'unspec';
  const r: Route = {
    version,
    dst: `${dst}/${m.dstLen ?? 0}`,
    table: m.table ?? 0,
    scope: m.scope ?? 0,
    protocol: m.protocol ?? 0,
    type: typeName,
    flags: m.flags ?? 0,
  };
  if (m.gateway !== undefined) r.gw = m.gateway;
  if (m.oif !== undefined) r.oif = m.oif;
  if (m.priority !== undefined) r.priority = m.priority;
  if (m.prefsrc !== undefined) r.src = m.prefsrc;
  if (m.metrics?.mtu !== undefined) r.mtu = m.metrics.mtu;
  if (m.metrics?.advmss !== undefined) r.advmss = m.metrics.advmss;
  return r;
}

async function routeMessage(ns: Netns, spec: RouteSpec, op: string, forAdd: boolean): Promise<RouteMessage> {
  const gw = spec.gw === undefined ? undefined : parseIp(op, 'gateway', spec.gw);
  let version: 4 | 6;
  let dst: ParsedCidr | undefined;
  if (spec.dst === 'default') {
    const v = spec.version ?? gw?.version;
    if (!v) throw invalidArgument(op, 'route "default" needs a gateway or a version');
    version = v;
  } else {
    dst = parseAddress(op, 'route destination', spec.dst);
    version = dst.version;
  }
  if (spec.version !== undefined && spec.version !== version) throw invalidArgument(op, `route ${spec.dst} is not IPv${spec.version}`);
  if (gw && gw.version !== version) throw invalidArgument(op, `gateway ${spec.gw} does not match destination ${spec.dst}`);
  const m: RouteMessage = {
    version,
    dstLen: dst?.prefixLen ?? 0,
    table: spec.table ?? Table.main,
  };
  if (dst && dst.prefixLen > 0) m.dst = dst.ip;
  if (gw) m.gateway = gw.ip;
  if (spec.link !== undefined) m.oif = await linkIndex(ns, spec.link, op);
  if (spec.priority !== undefined) m.priority = spec.priority;
  if (spec.src !== undefined) m.prefsrc = parseIp(op, 'source', spec.src).ip;
  if (spec.onlink) m.flags = RouteFlag.onlink;
  if (spec.type !== undefined) {
    if (!(spec.type in RouteType)) throw invalidArgument(op, `unknown route type ${JSON.stringify(spec.type)}`);
    m.type = RouteType[spec.type];
  }
  if (forAdd) {
    m.protocol = spec.protocol ?? Protocol.boot;
    m.type ??= RouteType.unicast;
    m.scope = spec.scope ?? (version === 4 && !gw && m.type === RouteType.unicast ? Scope.link : Scope.universe);
    if (spec.mtu !== undefined || spec.advmss !== undefined) {
      m.metrics = {};
      if (spec.mtu !== undefined) m.metrics.mtu = spec.mtu;
      if (spec.advmss !== undefined) m.metrics.advmss = spec.advmss;
    }
  } else {
    // Deleting: unset fields match anything.
    m.scope = spec.scope ?? Scope.nowhere;
    if (spec.protocol !== undefined) m.protocol = spec.protocol;
  }
  return m;
}

/** RTM_NEWROUTE (EEXIST when present, unless `replace`). */
export async function newRoute(ns: Netns, spec: RouteSpec, opts: { replace?: boolean } = {}): Promise<void> {
  const op = 'newRoute';
  const route = await routeMessage(ns, spec, op, true);
  await requestOne(ns, { kind: 'route', action: 'new', route }, opts.replace ? { create: true, replace: true } : { create: true, excl: true }, op);
}

/** RTM_DELROUTE. ESRCH when no route matches. */
export async function delRoute(ns: Netns, spec: RouteSpec): Promise<void> {
  const op = 'delRoute';
  await requestOne(ns, { kind: 'route', action: 'del', route: await routeMessage(ns, spec, op, false) }, {}, op);
}

/** RTM_GETROUTE dump of one table (default main; 'all' for every table). */
export async function listRoutes(ns: Netns, filter: { version?: 4 | 6; table?: number | 'all'; link?: LinkRef } = {}): Promise<Route[]> {
  const op = 'listRoutes';
  const index = filter.link === undefined ? undefined : await linkIndex(ns, filter.link, op);
  const table = filter.table ?? Table.main;
  const req: RtnlRequest = { kind: 'route', action: 'get', route: filter.version ? { version: filter.version } : {} };
  const out: Route[] = [];
  for (const m of await dumpAll(ns, req, op)) {
    if (m.kind !== 'route') continue;
    const r = toRoute(m.route);
    if (table !== 'all' && r.table !== table) continue;
    if (filter.version && r.version !== filter.version) continue;
    if (index !== undefined && r.oif !== index) continue;
    out.push(r);
  }
  return out;
}

// ================================================================ whole messages ====
// For code that moves kernel state from one link to another without losing anything
// (the flat mode's uplink takeover): dumps that keep every attribute the kernel sent, and
// requests that send such a message back as it is (the caller sets the link and clears
// what the kernel only reports).

export type { AddrMessage, RouteMessage } from './codec/index.ts';

/** RTM_GETADDR dump as whole messages, optionally of one link and one IP version. */
export async function dumpAddrMessages(ns: Netns, filter: { index?: number; version?: 4 | 6 } = {}): Promise<AddrMessage[]> {
  const req: RtnlRequest = { kind: 'addr', action: 'get', addr: filter.version ? { version: filter.version } : {} };
  return (await dumpAll(ns, req, 'dumpAddrMessages')).flatMap((m) =>
    m.kind === 'addr' && (filter.index === undefined || m.addr.index === filter.index) && (!filter.version || m.addr.version === filter.version)
      ? [m.addr]
      : [],
  );
}

/** RTM_NEWADDR of a whole message (EEXIST when present, unless `replace`). */
export async function newAddrMessage(ns: Netns, addr: AddrMessage, opts: { replace?: boolean } = {}): Promise<void> {
  await requestOne(ns, { kind: 'addr', action: 'new', addr }, opts.replace ? { create: true, replace: true } : { create: true, excl: true }, 'newAddr');
}

/** RTM_DELADDR of a whole message. EADDRNOTAVAIL when the address is not there. */
export async function delAddrMessage(ns: Netns, addr: AddrMessage): Promise<void> {
  await requestOne(ns, { kind: 'addr', action: 'del', addr }, {}, 'delAddr');
}

/** RTM_GETROUTE dump of every table as whole messages, optionally of one IP version. */
export async function dumpRouteMessages(ns: Netns, filter: { version?: 4 | 6 } = {}): Promise<RouteMessage[]> {
  const req: RtnlRequest = { kind: 'route', action: 'get', route: filter.version ? { version: filter.version } : {} };
  return (await dumpAll(ns, req, 'dumpRouteMessages')).flatMap((m) =>
    m.kind === 'route' && (!filter.version || m.route.version === filter.version) ? [m.route] : [],
  );
}

/**
 * RTM_NEWROUTE of a whole message. `mode` 'excl' (default) fails with EEXIST on any route
 * with the same key; 'replace' replaces it; 'add' (NLM_F_CREATE alone) adds next to a
 * route with the same key and another next hop (IPv4: in front of it; IPv6: as another
 * next hop of a gateway route) and fails with EEXIST only on an identical route.
 */
export async function newRouteMessage(ns: Netns, route: RouteMessage, mode: 'excl' | 'replace' | 'add' = 'excl'): Promise<void> {
  const flags = mode === 'replace' ? { create: true, replace: true } : mode === 'add' ? { create: true } : { create: true, excl: true };
  await requestOne(ns, { kind: 'route', action: 'new', route }, flags, 'newRoute');
}

/** RTM_DELROUTE of a whole message (the kernel deletes the route it matches). ESRCH when none. */
export async function delRouteMessage(ns: Netns, route: RouteMessage): Promise<void> {
  await requestOne(ns, { kind: 'route', action: 'del', route }, {}, 'delRoute');
}

/**
 * RTM_GETROUTE for one address (`ip route get <ip>`): the route the kernel would use to
 * reach it (its `oif` is the output link). ENETUNREACH when there is none.
 */
export async function getRoute(ns: Netns, ip: string): Promise<Route> {
  const op = 'getRoute';
  const dst = parseIp(op, 'destination', ip);
  const req: RtnlRequest = { kind: 'route', action: 'get', route: { version: dst.version, dstLen: dst.version === 4 ? 32 : 128, dst: dst.ip } };
  for (const m of await requestOne(ns, req, {}, op)) if (m.kind === 'route') return toRoute(m.route);
  throw new NetlinkError(op, errnoOf('ENETUNREACH'), `no route to ${ip}`);
}

// ====================================================================== neighbours ====

export interface NeighSpec {
  link: LinkRef;
  /** Neighbour IP; for an FDB entry of a vxlan device, the remote VTEP. */
  ip?: string;
  mac?: string;
  /** A bridge forwarding-database entry (`bridge fdb`) instead of an ARP/NDP entry. */
  fdb?: boolean;
  /** NeighState bits; default permanent. */
  state?: number;
  /** NeighFlag bits; FDB entries default to self. */
  flags?: number;
  vlan?: number;
  vni?: number;
  port?: number;
  master?: LinkRef;
}

export interface Neigh {
  index: number;
  family: NeighFamily;
  ip?: string;
  mac?: string;
  state: number;
  flags: number;
  vlan?: number;
  vni?: number;
  port?: number;
  master?: number;
}

function toNeigh(m: NeighMessage): Neigh {
  const n: Neigh = { index: m.index ?? 0, family: m.family ?? 4, state: m.state ?? 0, flags: m.flags ?? 0 };
  if (m.dst !== undefined) n.ip = m.dst;
  if (m.lladdr !== undefined) n.mac = m.lladdr;
  if (m.vlan !== undefined) n.vlan = m.vlan;
  if (m.vni !== undefined) n.vni = m.vni;
  if (m.port !== undefined) n.port = m.port;
  if (m.master !== undefined) n.master = m.master;
  return n;
}

async function neighMessage(ns: Netns, spec: NeighSpec, op: string, forAdd: boolean): Promise<NeighMessage> {
  const ip = spec.ip === undefined ? undefined : parseIp(op, 'neighbour address', spec.ip);
  if (!spec.fdb && !ip) throw invalidArgument(op, 'a neighbour entry needs an IP address');
  if (spec.fdb && spec.mac === undefined) throw invalidArgument(op, 'an FDB entry needs a MAC address');
  const mac = checkMac(op, spec.mac);
  const m: NeighMessage = {
    family: spec.fdb ? 'bridge' : (ip?.version ?? 4),
    index: await linkIndex(ns, spec.link, op),
    state: spec.state ?? (forAdd ? NeighState.permanent : 0),
    flags: spec.flags ?? (spec.fdb ? NeighFlag.self : 0),
  };
  if (ip) m.dst = ip.ip;
  if (mac !== undefined) m.lladdr = mac;
  if (spec.vlan !== undefined) m.vlan = spec.vlan;
  if (spec.vni !== undefined) m.vni = spec.vni;
  if (spec.port !== undefined) m.port = spec.port;
  if (spec.master !== undefined) m.master = await linkIndex(ns, spec.master, op);
  return m;
}

/** RTM_NEWNEIGH. `append` adds another FDB destination for the same MAC (vxlan flooding). */
export async function newNeigh(ns: Netns, spec: NeighSpec, opts: { replace?: boolean; append?: boolean } = {}): Promise<void> {
  const op = 'newNeigh';
  const neigh = await neighMessage(ns, spec, op, true);
  const flags = opts.replace ? { create: true, replace: true } : opts.append ? { create: true, append: true } : { create: true, excl: true };
  await requestOne(ns, { kind: 'neigh', action: 'new', neigh }, flags, op);
}

/** RTM_DELNEIGH. ENOENT when no entry matches. */
export async function delNeigh(ns: Netns, spec: NeighSpec): Promise<void> {
  const op = 'delNeigh';
  await requestOne(ns, { kind: 'neigh', action: 'del', neigh: await neighMessage(ns, spec, op, false) }, {}, op);
}

/** RTM_GETNEIGH dump: ARP/NDP entries (family 4/6) or bridge FDB entries ('bridge'). */
export async function listNeighs(ns: Netns, filter: { link?: LinkRef; family?: NeighFamily } = {}): Promise<Neigh[]> {
  const op = 'listNeighs';
  const index = filter.link === undefined ? undefined : await linkIndex(ns, filter.link, op);
  const req: RtnlRequest = { kind: 'neigh', action: 'get', neigh: filter.family ? { family: filter.family } : {} };
  const out: Neigh[] = [];
  for (const m of await dumpAll(ns, req, op)) {
    if (m.kind !== 'neigh') continue;
    if (index !== undefined && m.neigh.index !== index) continue;
    if (filter.family !== undefined && m.neigh.family !== filter.family) continue;
    out.push(toNeigh(m.neigh));
  }
  return out;
}

// ========================================================================= sysctls ====

function sysctlPath(op: string, name: string): string {
  const rel = name.includes('/') ? name.replace(/^\/?(proc\/sys\/)?/, '') : name.replace(/\./g, '/');
  if (!rel || rel.split('/').some((p) => p === '' || p === '.' || p === '..')) throw invalidArgument(op, `invalid sysctl name ${JSON.stringify(name)}`);
  return `/proc/sys/${rel}`;
}

/**
 * Reads a sysctl inside the namespace (a read takes no kernel lock: done in place), e.g. sysctlGet(pod, 'net.ipv4.ip_forward') -> "0".
 * Dotted names map dots to slashes; give a slash path for names with dots in them
 * ('net/ipv4/conf/eth0.100/arp_notify').
 */
export async function sysctlGet(ns: Netns, name: string): Promise<string> {
  const op = 'sysctlGet';
  const path = sysctlPath(op, name);
  const fd = ns.openFile(path, fsConstants.O_RDONLY, 0, op);
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(4096);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString('utf8').trim();
  } catch (e) {
    throw fromNative(op, e, path);
  } finally {
    closeSync(fd);
  }
}

/** Writes a sysctl inside the namespace (off the JavaScript thread: some wait for RTNL in the kernel). */
export async function sysctlSet(ns: Netns, name: string, value: string | number): Promise<void> {
  const op = 'sysctlSet';
  const path = sysctlPath(op, name);
  await ns.writeFile(path, String(value), op);
}
