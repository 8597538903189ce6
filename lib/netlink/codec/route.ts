// struct rtmsg + RTA_* attributes: routes, IPv4 and IPv6, with metrics and multipath
// next hops. Attributes this codec does not name are kept verbatim in `extra`, so a
// dumped route formats back to the same attributes. Pure, no I/O.

import { type Attr, attrIp, attrStr, attrU32, bytesToIp, CodecError, familyOf, formatAttr, parseAttrs, str, u32, u8, versionOf } from './attr.ts';
import * as K from './constants.ts';

/** Keeps an attribute this codec does not name. */
function keep(o: { extra?: Attr[] }, a: Attr): void {
  if (o.extra) o.extra.push(a);
  else o.extra = [a];
}

/** Route table ids by meaning. */
export const Table = { unspec: K.RT_TABLE_UNSPEC, main: K.RT_TABLE_MAIN, local: 255, default: 253 } as const;
/** Route protocols by meaning (who installed the route). */
export const Protocol = { unspec: 0, redirect: 1, kernel: 2, boot: K.RTPROT_BOOT, static: 4 } as const;
/** Route types by meaning. */
export const RouteType = {
  unspec: 0,
  unicast: K.RTN_UNICAST,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
} as const;
/** rtm_flags / next-hop flag: the gateway is on-link even without a matching prefix. */
export const RouteFlag = { onlink: K.RTNH_F_ONLINK } as const;

/** RTA_METRICS members (RTAX_*); all u32 but the congestion control algorithm's name. */
export interface RouteMetrics {
  /** RTAX_LOCK bit mask. */
  lock?: number;
  mtu?: number;
  window?: number;
  rtt?: number;
  rttvar?: number;
  ssthresh?: number;
  cwnd?: number;
  advmss?: number;
  reordering?: number;
  hoplimit?: number;
  initcwnd?: number;
  features?: number;
  rtoMin?: number;
  initrwnd?: number;
  quickack?: number;
  ccAlgo?: string;
  fastopenNoCookie?: number;
}

/** One next hop of a multipath route (struct rtnexthop and its attributes). */
export interface RouteNexthop {
  oif: number;
  /** RTNH_F_* bits. */
  flags: number;
  /** Weight minus one. */
  hops: number;
  gateway?: string;
  flow?: number;
  /** Next-hop attributes this codec does not name (RTA_VIA, RTA_ENCAP...), verbatim. */
  extra?: Attr[];
}

/** struct rta_cacheinfo, as the kernel reports it (RTA_CACHEINFO; output only). */
export interface RouteCacheInfo {
  clntref: number;
  lastuse: number;
  /** Clock ticks (USER_HZ) until the route expires; 0: never. */
  expires: number;
  error: number;
  used: number;
  id: number;
  ts: number;
  tsage: number;
}

export interface RouteMessage {
  /** IP version; undefined (both) only in dump requests. */
  version?: 4 | 6;
  dstLen?: number;
  srcLen?: number;
  tos?: number;
  /** Table id (rtm_table, or RTA_TABLE when above 255). */
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
  dst?: string;
  src?: string;
  iif?: number;
  oif?: number;
  gateway?: string;
  priority?: number;
  prefsrc?: string;
  metrics?: RouteMetrics;
  pref?: number;
  multipath?: RouteNexthop[];
  /** RTA_FLOW (realms). */
  flow?: number;
  /** RTA_NH_ID: the route uses a nexthop object. */
  nhId?: number;
  /** RTA_EXPIRES (seconds; accepted on IPv6 adds). */
  expires?: number;
  cacheinfo?: RouteCacheInfo;
  /** Attributes this codec does not name (RTA_ENCAP, RTA_VIA, RTA_MARK...), verbatim. */
  extra?: Attr[];
}

const METRIC_TYPES: Array<[Exclude<keyof RouteMetrics, 'ccAlgo'>, number]> = [
  ['lock', K.RTAX_LOCK],
  ['mtu', K.RTAX_MTU],
  ['window', K.RTAX_WINDOW],
  ['rtt', K.RTAX_RTT],
  ['rttvar', K.RTAX_RTTVAR],
  ['ssthresh', K.RTAX_SSTHRESH],
  ['cwnd', K.RTAX_CWND],
  ['advmss', K.RTAX_ADVMSS],
  ['reordering', K.RTAX_REORDERING],
  ['hoplimit', K.RTAX_HOPLIMIT],
  ['initcwnd', K.RTAX_INITCWND],
  ['features', K.RTAX_FEATURES],
  ['rtoMin', K.RTAX_RTO_MIN],
  ['initrwnd', K.RTAX_INITRWND],
  ['quickack', K.RTAX_QUICKACK],
  ['fastopenNoCookie', K.RTAX_FASTOPEN_NO_COOKIE],
];

const CACHEINFO_FIELDS = ['clntref', 'lastuse', 'expires', 'error', 'used', 'id', 'ts', 'tsage'] as const;

function parseMetrics(v: Buffer): RouteMetrics {
  const metrics: RouteMetrics = {};
  for (const x of parseAttrs(v)) {
    if (x.type === K.RTAX_CC_ALGO) {
      metrics.ccAlgo = str(x.value);
      continue;
    }
    const f = METRIC_TYPES.find((t) => t[1] === x.type);
    if (f) metrics[f[0]] = u32(x.value);
  }
  return metrics;
}

function formatMetrics(m: RouteMetrics): Buffer[] {
  const xs = METRIC_TYPES.filter(([k]) => m[k] !== undefined).map(([k, t]) => attrU32(t, m[k] as number));
  if (m.ccAlgo !== undefined) xs.push(attrStr(K.RTAX_CC_ALGO, m.ccAlgo));
  return xs;
}

function parseMultipath(v: Buffer): RouteNexthop[] {
  const out: RouteNexthop[] = [];
  let off = 0;
  while (off + K.RTNH_LEN <= v.length) {
    const len = v.readUInt16LE(off);
    if (len < K.RTNH_LEN || off + len > v.length) throw new CodecError(`rtnexthop length ${len} out of range`);
    const nh: RouteNexthop = { flags: v.readUInt8(off + 2), hops: v.readUInt8(off + 3), oif: v.readInt32LE(off + 4) };
    for (const a of parseAttrs(v.subarray(off + K.RTNH_LEN, off + len))) {
      if (a.type === K.RTA_GATEWAY) nh.gateway = bytesToIp(a.value);
      else if (a.type === K.RTA_FLOW) nh.flow = u32(a.value);
      else keep(nh, a);
    }
    out.push(nh);
    off += (len + 3) & ~3;
  }
  return out;
}

function formatExtra(attrs: readonly Attr[]): Buffer[] {
  return attrs.map((a) => formatAttr(a.type, a.value, a.nested));
}

function formatMultipath(nhs: readonly RouteNexthop[], ver: 4 | 6): Buffer {
  const parts: Buffer[] = [];
  for (const nh of nhs) {
    const attrs: Buffer[] = [];
    if (nh.gateway !== undefined) attrs.push(attrIp(K.RTA_GATEWAY, nh.gateway, ver));
    if (nh.flow !== undefined) attrs.push(attrU32(K.RTA_FLOW, nh.flow));
    if (nh.extra) attrs.push(...formatExtra(nh.extra));
    const body = Buffer.concat(attrs);
    const head = Buffer.alloc(K.RTNH_LEN);
    head.writeUInt16LE(K.RTNH_LEN + body.length, 0);
    head.writeUInt8(nh.flags & 0xff, 2);
    head.writeUInt8(nh.hops & 0xff, 3);
    head.writeInt32LE(nh.oif, 4);
    parts.push(head, body);
  }
  return formatAttr(K.RTA_MULTIPATH, Buffer.concat(parts), false);
}

/**
 * Parses struct rtmsg and its attributes (the payload of an RTM_*ROUTE message). Long on
 * purpose: one case per RTA_* attribute, a table of the kernel's layout, not steps.
 */
export function parseRouteMessage(buf: Buffer): { value: RouteMessage; consumed: number } {
  if (buf.length < K.RTMSG_LEN) throw new CodecError(`rtmsg truncated (${buf.length} bytes)`);
  const m: RouteMessage = {
    version: versionOf(buf.readUInt8(0)),
    dstLen: buf.readUInt8(1),
    srcLen: buf.readUInt8(2),
    tos: buf.readUInt8(3),
    table: buf.readUInt8(4),
    protocol: buf.readUInt8(5),
    scope: buf.readUInt8(6),
    type: buf.readUInt8(7),
    flags: buf.readUInt32LE(8),
  };
  for (const a of parseAttrs(buf.subarray(K.RTMSG_LEN))) {
    const v = a.value;
    switch (a.type) {
      case K.RTA_DST:
        m.dst = bytesToIp(v);
        break;
      case K.RTA_SRC:
        m.src = bytesToIp(v);
        break;
      case K.RTA_IIF:
        m.iif = u32(v);
        break;
      case K.RTA_OIF:
        m.oif = u32(v);
        break;
      case K.RTA_GATEWAY:
        m.gateway = bytesToIp(v);
        break;
      case K.RTA_PRIORITY:
        m.priority = u32(v);
        break;
      case K.RTA_PREFSRC:
        m.prefsrc = bytesToIp(v);
        break;
      case K.RTA_TABLE:
        m.table = u32(v);
        break;
      case K.RTA_PREF:
        m.pref = u8(v);
        break;
      case K.RTA_METRICS:
        m.metrics = parseMetrics(v);
        break;
      case K.RTA_MULTIPATH:
        m.multipath = parseMultipath(v);
        break;
      case K.RTA_FLOW:
        m.flow = u32(v);
        break;
      case K.RTA_NH_ID:
        m.nhId = u32(v);
        break;
      case K.RTA_EXPIRES:
        m.expires = u32(v);
        break;
      case K.RTA_CACHEINFO:
        if (v.length >= K.RTA_CACHEINFO_LEN) {
          const c = {} as RouteCacheInfo;
          CACHEINFO_FIELDS.forEach((f, i) => {
            c[f] = f === 'expires' ? v.readInt32LE(i * 4) : v.readUInt32LE(i * 4);
          });
          m.cacheinfo = c;
        } else keep(m, a);
        break;
      default:
        keep(m, a);
    }
  }
  return { value: m, consumed: buf.length };
}

export function formatRouteMessage(m: RouteMessage): Buffer {
  const table = m.table ?? K.RT_TABLE_UNSPEC;
  const head = Buffer.alloc(K.RTMSG_LEN);
  head.writeUInt8(familyOf(m.version), 0);
  head.writeUInt8(m.dstLen ?? 0, 1);
  head.writeUInt8(m.srcLen ?? 0, 2);
  head.writeUInt8(m.tos ?? 0, 3);
  head.writeUInt8(table > 255 ? K.RT_TABLE_UNSPEC : table, 4);
  head.writeUInt8(m.protocol ?? 0, 5);
  head.writeUInt8(m.scope ?? 0, 6);
  head.writeUInt8(m.type ?? 0, 7);
  head.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  const out: Buffer[] = [head];
  const ips = [m.dst, m.src, m.gateway, m.prefsrc].filter((x): x is string => x !== undefined);
  if (ips.length && m.version === undefined) throw new CodecError('route message needs a version');
  const ver = m.version ?? 4;
  if (m.dst !== undefined) out.push(attrIp(K.RTA_DST, m.dst, ver));
  if (m.src !== undefined) out.push(attrIp(K.RTA_SRC, m.src, ver));
  if (m.iif !== undefined) out.push(attrU32(K.RTA_IIF, m.iif));
  if (m.oif !== undefined) out.push(attrU32(K.RTA_OIF, m.oif));
  if (m.gateway !== undefined) out.push(attrIp(K.RTA_GATEWAY, m.gateway, ver));
  if (m.priority !== undefined) out.push(attrU32(K.RTA_PRIORITY, m.priority));
  if (m.prefsrc !== undefined) out.push(attrIp(K.RTA_PREFSRC, m.prefsrc, ver));
  if (m.table !== undefined) out.push(attrU32(K.RTA_TABLE, m.table));
  if (m.metrics !== undefined) {
    const xs = formatMetrics(m.metrics);
    if (xs.length) out.push(formatAttr(K.RTA_METRICS, xs, true));
  }
  if (m.pref !== undefined) {
    out.push(formatAttr(K.RTA_PREF, Buffer.from([m.pref])));
  }
  if (m.multipath !== undefined) out.push(formatMultipath(m.multipath, ver));
  if (m.flow !== undefined) out.push(attrU32(K.RTA_FLOW, m.flow));
  if (m.nhId !== undefined) out.push(attrU32(K.RTA_NH_ID, m.nhId));
  if (m.expires !== undefined) out.push(attrU32(K.RTA_EXPIRES, m.expires));
  if (m.cacheinfo !== undefined) {
    const c = Buffer.alloc(K.RTA_CACHEINFO_LEN);
    CACHEINFO_FIELDS.forEach((f, i) => {
      const x = (m.cacheinfo as RouteCacheInfo)[f];
      if (f === 'expires') c.writeInt32LE(x, i * 4);
      else c.writeUInt32LE(x >>> 0, i * 4);
    });
    out.push(formatAttr(K.RTA_CACHEINFO, c));
  }
  if (m.extra) out.push(...formatExtra(m.extra));
  return Buffer.concat(out);
}
