// struct ifinfomsg + IFLA_* attributes: links, link kinds (veth, bridge, macvlan, ipvlan,
// vxlan, dummy), bridge port attributes and bridge VLAN entries. Pure, no I/O.

import {
  type Attr,
  attrBe16,
  attrBool,
  attrIp,
  attrS32,
  attrStr,
  attrU16,
  attrU32,
  attrU8,
  be16,
  bytesToIp,
  bytesToMac,
  CodecError,
  formatAttr,
  macToBytes,
  parseAttrs,
  s32,
  str,
  u16,
  u32,
  u8,
} from './attr.ts';
import * as K from './constants.ts';

export type OperState = (typeof K.IF_OPER_STATES)[number];
export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru' | 'source';
export type IpvlanMode = 'l2' | 'l3' | 'l3s';
/** ipvlan port flag: bridge (default), private or vepa. */
export type IpvlanFlag = 'bridge' | 'private' | 'vepa';

/** Interface flag bits by meaning (ifi_flags / ifi_change). */
export const LinkFlag = {
  up: K.IFF_UP,
  broadcast: K.IFF_BROADCAST,
  loopback: K.IFF_LOOPBACK,
  pointToPoint: K.IFF_POINTOPOINT,
  running: K.IFF_RUNNING,
  noarp: K.IFF_NOARP,
  promisc: K.IFF_PROMISC,
  multicast: K.IFF_MULTICAST,
  lowerUp: K.IFF_LOWER_UP,
} as const;

/** IFLA_EXT_MASK bits of link dump requests by meaning. */
export const ExtMask = { vf: 1, bridgeVlan: K.RTEXT_FILTER_BRVLAN, bridgeVlanCompressed: 4, skipStats: 8 } as const;

/** Link family by meaning: ordinary link messages, or the bridge (port/VLAN) view. */
export const LinkFamily = { any: K.AF_UNSPEC, bridge: K.AF_BRIDGE } as const;

export interface BridgePortInfo {
  state?: number;
  priority?: number;
  cost?: number;
  hairpin?: boolean;
  learning?: boolean;
  unicastFlood?: boolean;
  neighSuppress?: boolean;
  isolated?: boolean;
}

export interface BridgeVlan {
  vid: number;
  /** Last VID of a range starting at `vid` (dumps report compressed ranges). */
  vidEnd?: number;
  pvid?: boolean;
  untagged?: boolean;
  /** The entry is on the bridge device itself (global bridge entry). */
  brentry?: boolean;
  master?: boolean;
}

/** IFLA_AF_SPEC of an AF_BRIDGE message. */
export interface BridgeSpec {
  /** Apply to the bridge device itself (`self`) or to the port via its master (`master`). */
  self?: boolean;
  master?: boolean;
  mode?: number;
  vlans?: BridgeVlan[];
}

export interface VethInfo {
  kind: 'veth';
  /** The peer end; in requests it may carry `netnsFd` to be created in another netns. */
  peer?: LinkMessage;
}
export interface BridgeInfo {
  kind: 'bridge';
  forwardDelay?: number;
  ageingTime?: number;
  stpState?: number;
  vlanFiltering?: boolean;
  defaultPvid?: number;
  mcastSnooping?: boolean;
}
export interface MacvlanInfo {
  kind: 'macvlan';
  mode?: MacvlanMode;
}
export interface IpvlanInfo {
  kind: 'ipvlan';
  mode?: IpvlanMode;
  flag?: IpvlanFlag;
}
export interface VxlanInfo {
  kind: 'vxlan';
  id?: number;
  /** Destination UDP port. */
  port?: number;
  local?: string;
  /** Multicast group. */
  group?: string;
  /** Unicast remote (same attribute as `group`; a unicast address decodes here). */
  remote?: string;
  /** Underlay device index. */
  dev?: number;
  ttl?: number;
  learning?: boolean;
}
export interface DummyInfo {
  kind: 'dummy';
}
export interface OtherInfo {
  kind: 'other';
  /** The kernel's kind string, e.g. "tun". */
  name: string;
}
export type LinkInfo = VethInfo | BridgeInfo | MacvlanInfo | IpvlanInfo | VxlanInfo | DummyInfo | OtherInfo;
/** Port-side data of a link enslaved to a master (IFLA_INFO_SLAVE_*). */
export type SlaveInfo = { kind: 'bridge'; port: BridgePortInfo } | { kind: 'other'; name: string };

export interface LinkMessage {
  /** LinkFamily: 0 for ordinary messages, bridge for port/VLAN messages. */
  family?: number;
  /** ARPHRD_* device type (1 ethernet, 772 loopback). */
  type?: number;
  index?: number;
  /** Interface flag bits (LinkFlag). */
  flags?: number;
  /** Which flag bits a request changes. */
  change?: number;
  name?: string;
  mtu?: number;
  mac?: string;
  broadcast?: string;
  permMac?: string;
  /** Master (bridge) index; 0 in a request detaches. */
  master?: number;
  /** IFLA_LINK: the parent device (macvlan, ipvlan, vxlan...) or a veth's peer index. */
  parent?: number;
  /** Namespace id (as seen from this netns) where `parent` lives. */
  linkNetnsId?: number;
  /** Namespace file descriptor: create or move the link there. */
  netnsFd?: number;
  netnsPid?: number;
  operstate?: OperState;
  txqlen?: number;
  promiscuity?: number;
  minMtu?: number;
  maxMtu?: number;
  carrier?: boolean;
  group?: number;
  alias?: string;
  /** RTEXT_FILTER_* mask of a dump request. */
  extMask?: number;
  info?: LinkInfo;
  slave?: SlaveInfo;
  /** IFLA_PROTINFO of AF_BRIDGE messages: this port's bridge settings. */
  protinfo?: BridgePortInfo;
  /** IFLA_AF_SPEC of AF_BRIDGE messages. */
  bridge?: BridgeSpec;
}

// ---- bridge port ---------------------------------------------------------------------

const PORT_FIELDS: Array<[keyof BridgePortInfo, number, 'u8' | 'u16' | 'u32' | 'bool']> = [
  ['state', K.IFLA_BRPORT_STATE, 'u8'],
  ['priority', K.IFLA_BRPORT_PRIORITY, 'u16'],
  ['cost', K.IFLA_BRPORT_COST, 'u32'],
  ['hairpin', K.IFLA_BRPORT_MODE, 'bool'],
  ['learning', K.IFLA_BRPORT_LEARNING, 'bool'],
  ['unicastFlood', K.IFLA_BRPORT_UNICAST_FLOOD, 'bool'],
  ['neighSuppress', K.IFLA_BRPORT_NEIGH_SUPPRESS, 'bool'],
  ['isolated', K.IFLA_BRPORT_ISOLATED, 'bool'],
];

function parseBridgePort(attrs: Attr[]): BridgePortInfo {
  const out: Record<string, number | boolean> = {};
  for (const a of attrs) {
    const f = PORT_FIELDS.find((x) => x[1] === a.type);
    if (!f) continue;
    const [key, , t] = f;
    out[key] = t === 'bool' ? u8(a.value) !== 0 : t === 'u8' ? u8(a.value) : t === 'u16' ? u16(a.value) : u32(a.value);
  }
  return out as BridgePortInfo;
}

function formatBridgePort(p: BridgePortInfo): Buffer[] {
  const out: Buffer[] = [];
  for (const [key, type, t] of PORT_FIELDS) {
    const v = p[key];
    if (v === undefined) continue;
    if (t === 'bool') out.push(attrBool(type, v as boolean));
    else if (t === 'u8') out.push(attrU8(type, v as number));
    else if (t === 'u16') out.push(attrU16(type, v as number));
    else out.push(attrU32(type, v as number));
  }
  return out;
}

// ---- bridge VLANs (AF_SPEC of AF_BRIDGE) ---------------------------------------------

function parseBridgeSpec(attrs: Attr[]): BridgeSpec {
  const out: BridgeSpec = {};
  const vlans: BridgeVlan[] = [];
  let rangeStart: number | undefined;
  for (const a of attrs) {
    if (a.type === K.IFLA_BRIDGE_FLAGS) {
      const f = u16(a.value);
      if (f & K.BRIDGE_FLAGS_SELF) out.self = true;
      if (f & K.BRIDGE_FLAGS_MASTER) out.master = true;
    } else if (a.type === K.IFLA_BRIDGE_MODE) {
      out.mode = u16(a.value);
    } else if (a.type === K.IFLA_BRIDGE_VLAN_INFO) {
      const flags = u16(a.value);
      const vid = u16(a.value.subarray(2));
      if (flags & K.BRIDGE_VLAN_INFO_RANGE_BEGIN) {
        rangeStart = vid;
        continue;
      }
      const v: BridgeVlan = { vid: rangeStart ?? vid };
      if (rangeStart !== undefined) v.vidEnd = vid;
      rangeStart = undefined;
      if (flags & K.BRIDGE_VLAN_INFO_PVID) v.pvid = true;
      if (flags & K.BRIDGE_VLAN_INFO_UNTAGGED) v.untagged = true;
      if (flags & K.BRIDGE_VLAN_INFO_BRENTRY) v.brentry = true;
      if (flags & K.BRIDGE_VLAN_INFO_MASTER) v.master = true;
      vlans.push(v);
    }
  }
  if (vlans.length) out.vlans = vlans;
  return out;
}

function vlanInfo(flags: number, vid: number): Buffer {
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094) throw new CodecError(`invalid VLAN id ${vid}`);
  const b = Buffer.alloc(4);
  b.writeUInt16LE(flags, 0);
  b.writeUInt16LE(vid, 2);
  return formatAttr(K.IFLA_BRIDGE_VLAN_INFO, b);
}

function formatBridgeSpec(s: BridgeSpec): Buffer[] {
  const out: Buffer[] = [];
  const f = (s.self ? K.BRIDGE_FLAGS_SELF : 0) | (s.master ? K.BRIDGE_FLAGS_MASTER : 0);
  if (f) out.push(attrU16(K.IFLA_BRIDGE_FLAGS, f));
  if (s.mode !== undefined) out.push(attrU16(K.IFLA_BRIDGE_MODE, s.mode));
  for (const v of s.vlans ?? []) {
    const flags =
      (v.pvid ? K.BRIDGE_VLAN_INFO_PVID : 0) |
      (v.untagged ? K.BRIDGE_VLAN_INFO_UNTAGGED : 0) |
      (v.brentry ? K.BRIDGE_VLAN_INFO_BRENTRY : 0) |
      (v.master ? K.BRIDGE_VLAN_INFO_MASTER : 0);
    if (v.vidEnd !== undefined && v.vidEnd !== v.vid) {
      out.push(vlanInfo(flags | K.BRIDGE_VLAN_INFO_RANGE_BEGIN, v.vid));
      out.push(vlanInfo(flags | K.BRIDGE_VLAN_INFO_RANGE_END, v.vidEnd));
    } else {
      out.push(vlanInfo(flags, v.vid));
    }
  }
  return out;
}

// ---- link kinds ----------------------------------------------------------------------

const MACVLAN_MODES: Record<MacvlanMode, number> = {
  private: K.MACVLAN_MODE_PRIVATE,
  vepa: K.MACVLAN_MODE_VEPA,
  bridge: K.MACVLAN_MODE_BRIDGE,
  passthru: K.MACVLAN_MODE_PASSTHRU,
  source: K.MACVLAN_MODE_SOURCE,
};
const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: K.IPVLAN_MODE_L2, l3: K.IPVLAN_MODE_L3, l3s: K.IPVLAN_MODE_L3S };
const IPVLAN_FLAGS: Record<IpvlanFlag, number> = { bridge: 0, private: K.IPVLAN_F_PRIVATE, vepa: K.IPVLAN_F_VEPA };

function keyOf<T extends string>(table: Record<T, number>, v: number, what: string): T {
  for (const [k, n] of Object.entries(table) as Array<[T, number]>) if (n === v) return k;
  throw new CodecError(`unknown ${what} ${v}`);
}
function codeOf<T extends string>(table: Record<T, number>, k: T, what: string): number {
  const v = table[k];
  if (v === undefined) throw new CodecError(`unknown ${what} "${k}"`);
  return v;
}

const isMulticast = (ip: string): boolean => {
  const b = ip.includes(':') ? ip.toLowerCase().startsWith('ff') : Number(ip.split('.')[0]) >= 224 && Number(ip.split('.')[0]) <= 239;
  return b;
};

function parseInfoData(kind: string, data: Attr[] | undefined): LinkInfo {
  switch (kind) {
    case 'veth': {
      const out: VethInfo = { kind: 'veth' };
      const peer = data?.find((a) => a.type === K.VETH_INFO_PEER);
      if (peer) out.peer = parseLinkMessage(peer.value).value;
      return out;
    }
    case 'bridge': {
      const out: BridgeInfo = { kind: 'bridge' };
      for (const a of data ?? []) {
        if (a.type === K.IFLA_BR_FORWARD_DELAY) out.forwardDelay = u32(a.value);
        else if (a.type === K.IFLA_BR_AGEING_TIME) out.ageingTime = u32(a.value);
        else if (a.type === K.IFLA_BR_STP_STATE) out.stpState = u32(a.value);
        else if (a.type === K.IFLA_BR_VLAN_FILTERING) out.vlanFiltering = u8(a.value) !== 0;
        else if (a.type === K.IFLA_BR_VLAN_DEFAULT_PVID) out.defaultPvid = u16(a.value);
        else if (a.type === K.IFLA_BR_MCAST_SNOOPING) out.mcastSnooping = u8(a.value) !== 0;
      }
      return out;
    }
    case 'macvlan': {
      const out: MacvlanInfo = { kind: 'macvlan' };
      const m = data?.find((a) => a.type === K.IFLA_MACVLAN_MODE);
      if (m) out.mode = keyOf(MACVLAN_MODES, u32(m.value), 'macvlan mode');
      return out;
    }
    case 'ipvlan': {
      const out: IpvlanInfo = { kind: 'ipvlan' };
      for (const a of data ?? []) {
        if (a.type === K.IFLA_IPVLAN_MODE) out.mode = keyOf(IPVLAN_MODES, u16(a.value), 'ipvlan mode');
        else if (a.type === K.IFLA_IPVLAN_FLAGS) out.flag = keyOf(IPVLAN_FLAGS, u16(a.value), 'ipvlan flags');
      }
      return out;
    }
    case 'vxlan': {
      const out: VxlanInfo = { kind: 'vxlan' };
      for (const a of data ?? []) {
        if (a.type === K.IFLA_VXLAN_ID) out.id = u32(a.value);
        else if (a.type === K.IFLA_VXLAN_PORT) out.port = be16(a.value);
        else if (a.type === K.IFLA_VXLAN_LOCAL || a.type === K.IFLA_VXLAN_LOCAL6) out.local = bytesToIp(a.value);
        else if (a.type === K.IFLA_VXLAN_GROUP || a.type === K.IFLA_VXLAN_GROUP6) {
          const ip = bytesToIp(a.value);
          if (isMulticast(ip)) out.group = ip;
          else out.remote = ip;
        } else if (a.type === K.IFLA_VXLAN_LINK) out.dev = u32(a.value);
        else if (a.type === K.IFLA_VXLAN_TTL) out.ttl = u8(a.value);
        else if (a.type === K.IFLA_VXLAN_LEARNING) out.learning = u8(a.value) !== 0;
      }
      return out;
    }
    case 'dummy':
      return { kind: 'dummy' };
    default:
      return { kind: 'other', name: kind };
  }
}

function formatInfoData(info: LinkInfo): Buffer[] | undefined {
  switch (info.kind) {
    case 'veth':
      return info.peer ? [formatAttr(K.VETH_INFO_PEER, formatLinkMessage(info.peer), true)] : undefined;
    case 'bridge': {
      const out: Buffer[] = [];
      if (info.forwardDelay !== undefined) out.push(attrU32(K.IFLA_BR_FORWARD_DELAY, info.forwardDelay));
      if (info.ageingTime !== undefined) out.push(attrU32(K.IFLA_BR_AGEING_TIME, info.ageingTime));
      if (info.stpState !== undefined) out.push(attrU32(K.IFLA_BR_STP_STATE, info.stpState));
      if (info.vlanFiltering !== undefined) out.push(attrBool(K.IFLA_BR_VLAN_FILTERING, info.vlanFiltering));
      if (info.mcastSnooping !== undefined) out.push(attrBool(K.IFLA_BR_MCAST_SNOOPING, info.mcastSnooping));
      if (info.defaultPvid !== undefined) out.push(attrU16(K.IFLA_BR_VLAN_DEFAULT_PVID, info.defaultPvid));
      return out.length ? out : undefined;
    }
    case 'macvlan':
      return info.mode === undefined ? undefined : [attrU32(K.IFLA_MACVLAN_MODE, codeOf(MACVLAN_MODES, info.mode, 'macvlan mode'))];
    case 'ipvlan': {
      const out: Buffer[] = [];
      if (info.mode !== undefined) out.push(attrU16(K.IFLA_IPVLAN_MODE, codeOf(IPVLAN_MODES, info.mode, 'ipvlan mode')));
      if (info.flag !== undefined) out.push(attrU16(K.IFLA_IPVLAN_FLAGS, codeOf(IPVLAN_FLAGS, info.flag, 'ipvlan flag')));
      return out.length ? out : undefined;
    }
    case 'vxlan': {
      const out: Buffer[] = [];
      if (info.id !== undefined) out.push(attrU32(K.IFLA_VXLAN_ID, info.id));
      if (info.group !== undefined && info.remote !== undefined) throw new CodecError('vxlan: give group or remote, not both');
      const peer = info.group ?? info.remote;
      if (peer !== undefined) {
        const v6 = peer.includes(':');
        out.push(attrIp(v6 ? K.IFLA_VXLAN_GROUP6 : K.IFLA_VXLAN_GROUP, peer, v6 ? 6 : 4));
      }
      if (info.dev !== undefined) out.push(attrU32(K.IFLA_VXLAN_LINK, info.dev));
      if (info.local !== undefined) {
        const v6 = info.local.includes(':');
        out.push(attrIp(v6 ? K.IFLA_VXLAN_LOCAL6 : K.IFLA_VXLAN_LOCAL, info.local, v6 ? 6 : 4));
      }
      if (info.ttl !== undefined) out.push(attrU8(K.IFLA_VXLAN_TTL, info.ttl));
      if (info.learning !== undefined) out.push(attrBool(K.IFLA_VXLAN_LEARNING, info.learning));
      if (info.port !== undefined) out.push(attrBe16(K.IFLA_VXLAN_PORT, info.port));
      return out.length ? out : undefined;
    }
    case 'dummy':
    case 'other':
      return undefined;
  }
}

function parseLinkInfo(attrs: Attr[], msg: LinkMessage): void {
  let kind: string | undefined;
  let data: Attr[] | undefined;
  let slaveKind: string | undefined;
  let slaveData: Attr[] | undefined;
  for (const a of attrs) {
    if (a.type === K.IFLA_INFO_KIND) kind = str(a.value);
    else if (a.type === K.IFLA_INFO_DATA) data = parseAttrs(a.value);
    else if (a.type === K.IFLA_INFO_SLAVE_KIND) slaveKind = str(a.value);
    else if (a.type === K.IFLA_INFO_SLAVE_DATA) slaveData = parseAttrs(a.value);
  }
  // iproute2 sends `ip link set X type bridge_slave ...` as IFLA_INFO_KIND "bridge_slave"
  // with IFLA_INFO_SLAVE_DATA and no IFLA_INFO_SLAVE_KIND.
  if (slaveKind === undefined && slaveData !== undefined && kind?.endsWith('_slave')) {
    slaveKind = kind.slice(0, -'_slave'.length);
    kind = undefined;
  }
  if (kind !== undefined) msg.info = parseInfoData(kind, data);
  if (slaveKind !== undefined) {
    msg.slave = slaveKind === 'bridge' ? { kind: 'bridge', port: parseBridgePort(slaveData ?? []) } : { kind: 'other', name: slaveKind };
  }
}

function formatLinkInfo(info: LinkInfo | undefined, slave: SlaveInfo | undefined): Buffer {
  const out: Buffer[] = [];
  if (info) {
    out.push(attrStr(K.IFLA_INFO_KIND, info.kind === 'other' ? info.name : info.kind));
    const data = formatInfoData(info);
    if (data) out.push(formatAttr(K.IFLA_INFO_DATA, data, true));
  }
  if (slave) {
    out.push(attrStr(K.IFLA_INFO_SLAVE_KIND, slave.kind === 'other' ? slave.name : slave.kind));
    if (slave.kind === 'bridge') {
      const data = formatBridgePort(slave.port);
      if (data.length) out.push(formatAttr(K.IFLA_INFO_SLAVE_DATA, data, true));
    }
  }
  return formatAttr(K.IFLA_LINKINFO, out, true);
}

// ---- ifinfomsg -----------------------------------------------------------------------

/**
 * Parses struct ifinfomsg and its attributes (the payload of an RTM_*LINK message). Long
 * on purpose: one case per IFLA_* attribute, a table of the kernel's layout read top to
 * bottom (as vishvananda/netlink's LinkDeserialize), not steps to name.
 */
export function parseLinkMessage(buf: Buffer): { value: LinkMessage; consumed: number } {
  if (buf.length < K.IFINFOMSG_LEN) throw new CodecError(`ifinfomsg truncated (${buf.length} bytes)`);
  const msg: LinkMessage = {
    family: buf.readUInt8(0),
    type: buf.readUInt16LE(2),
    index: buf.readInt32LE(4),
    flags: buf.readUInt32LE(8),
    change: buf.readUInt32LE(12),
  };
  for (const a of parseAttrs(buf.subarray(K.IFINFOMSG_LEN))) {
    const v = a.value;
    switch (a.type) {
      case K.IFLA_IFNAME:
        msg.name = str(v);
        break;
      case K.IFLA_MTU:
        msg.mtu = u32(v);
        break;
      case K.IFLA_ADDRESS:
        msg.mac = bytesToMac(v);
        break;
      case K.IFLA_BROADCAST:
        msg.broadcast = bytesToMac(v);
        break;
      case K.IFLA_PERM_ADDRESS:
        msg.permMac = bytesToMac(v);
        break;
      case K.IFLA_MASTER:
        msg.master = u32(v);
        break;
      case K.IFLA_LINK:
        msg.parent = u32(v);
        break;
      case K.IFLA_LINK_NETNSID:
        msg.linkNetnsId = s32(v);
        break;
      case K.IFLA_NET_NS_FD:
        msg.netnsFd = u32(v);
        break;
      case K.IFLA_NET_NS_PID:
        msg.netnsPid = u32(v);
        break;
      case K.IFLA_OPERSTATE:
        msg.operstate = K.IF_OPER_STATES[u8(v)] ?? 'unknown';
        break;
      case K.IFLA_TXQLEN:
        msg.txqlen = u32(v);
        break;
      case K.IFLA_PROMISCUITY:
        msg.promiscuity = u32(v);
        break;
      case K.IFLA_MIN_MTU:
        msg.minMtu = u32(v);
        break;
      case K.IFLA_MAX_MTU:
        msg.maxMtu = u32(v);
        break;
      case K.IFLA_CARRIER:
        msg.carrier = u8(v) !== 0;
        break;
      case K.IFLA_GROUP:
        msg.group = u32(v);
        break;
      case K.IFLA_IFALIAS:
        msg.alias = str(v);
        break;
      case K.IFLA_EXT_MASK:
        msg.extMask = u32(v);
        break;
      case K.IFLA_LINKINFO:
        parseLinkInfo(parseAttrs(v), msg);
        break;
      case K.IFLA_PROTINFO:
        // AF_BRIDGE messages nest IFLA_BRPORT_*; AF_INET6 link messages use it differently.
        if (msg.family === K.AF_BRIDGE) msg.protinfo = parseBridgePort(parseAttrs(v));
        break;
      case K.IFLA_AF_SPEC:
        if (msg.family === K.AF_BRIDGE) msg.bridge = parseBridgeSpec(parseAttrs(v));
        break;
    }
  }
  return { value: msg, consumed: buf.length };
}

/** Formats struct ifinfomsg and the attributes present in `m`. */
export function formatLinkMessage(m: LinkMessage): Buffer {
  const head = Buffer.alloc(K.IFINFOMSG_LEN);
  head.writeUInt8(m.family ?? K.AF_UNSPEC, 0);
  head.writeUInt16LE(m.type ?? 0, 2);
  head.writeInt32LE(m.index ?? 0, 4);
  head.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  head.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  const out: Buffer[] = [head];
  if (m.name !== undefined) {
    if (Buffer.byteLength(m.name) === 0) throw new CodecError('empty interface name');
    out.push(attrStr(K.IFLA_IFNAME, m.name));
  }
  if (m.mtu !== undefined) out.push(attrU32(K.IFLA_MTU, m.mtu));
  if (m.mac !== undefined) out.push(formatAttr(K.IFLA_ADDRESS, macToBytes(m.mac)));
  if (m.broadcast !== undefined) out.push(formatAttr(K.IFLA_BROADCAST, macToBytes(m.broadcast)));
  if (m.permMac !== undefined) out.push(formatAttr(K.IFLA_PERM_ADDRESS, macToBytes(m.permMac)));
  if (m.master !== undefined) out.push(attrU32(K.IFLA_MASTER, m.master));
  if (m.parent !== undefined) out.push(attrU32(K.IFLA_LINK, m.parent));
  if (m.linkNetnsId !== undefined) out.push(attrS32(K.IFLA_LINK_NETNSID, m.linkNetnsId));
  if (m.netnsFd !== undefined) out.push(attrU32(K.IFLA_NET_NS_FD, m.netnsFd));
  if (m.netnsPid !== undefined) out.push(attrU32(K.IFLA_NET_NS_PID, m.netnsPid));
  if (m.operstate !== undefined) out.push(attrU8(K.IFLA_OPERSTATE, K.IF_OPER_STATES.indexOf(m.operstate)));
  if (m.txqlen !== undefined) out.push(attrU32(K.IFLA_TXQLEN, m.txqlen));
  if (m.promiscuity !== undefined) out.push(attrU32(K.IFLA_PROMISCUITY, m.promiscuity));
  if (m.minMtu !== undefined) out.push(attrU32(K.IFLA_MIN_MTU, m.minMtu));
  if (m.maxMtu !== undefined) out.push(attrU32(K.IFLA_MAX_MTU, m.maxMtu));
  if (m.carrier !== undefined) out.push(attrBool(K.IFLA_CARRIER, m.carrier));
  if (m.group !== undefined) out.push(attrU32(K.IFLA_GROUP, m.group));
  if (m.alias !== undefined) out.push(attrStr(K.IFLA_IFALIAS, m.alias));
  if (m.extMask !== undefined) out.push(attrU32(K.IFLA_EXT_MASK, m.extMask));
  if (m.info !== undefined || m.slave !== undefined) out.push(formatLinkInfo(m.info, m.slave));
  if (m.protinfo !== undefined) out.push(formatAttr(K.IFLA_PROTINFO, formatBridgePort(m.protinfo), true));
  if (m.bridge !== undefined) out.push(formatAttr(K.IFLA_AF_SPEC, formatBridgeSpec(m.bridge), true));
  return Buffer.concat(out);
}
