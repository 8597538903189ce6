// struct rtmsg + RTA_* attributes: routes, IPv4 and IPv6, with metrics. Pure, no I/O.

import { attrIp, attrU32, bytesToIp, CodecError, familyOf, formatAttr, parseAttrs, u32, u8, versionOf } from './attr.ts';
import * as K from './constants.ts';

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

export interface RouteMetrics {
  mtu?: number;
  advmss?: number;
  /** RTAX_LOCK bit mask. */
  lock?: number;
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
}

const METRIC_TYPES: Array<[keyof RouteMetrics, number]> = [
  ['lock', K.RTAX_LOCK],
  ['mtu', K.RTAX_MTU],
  ['advmss', K.RTAX_ADVMSS],
];

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
      case K.RTA_METRICS: {
        const metrics: RouteMetrics = {};
        for (const x of parseAttrs(v)) {
          const f = METRIC_TYPES.find((t) => t[1] === x.type);
          if (f) metrics[f[0]] = u32(x.value);
        }
        m.metrics = metrics;
        break;
      }
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
    const xs = METRIC_TYPES.filter(([k]) => m.metrics?.[k] !== undefined).map(([k, t]) => attrU32(t, m.metrics?.[k] as number));
    if (xs.length) out.push(formatAttr(K.RTA_METRICS, xs, true));
  }
  if (m.pref !== undefined) {
    out.push(formatAttr(K.RTA_PREF, Buffer.from([m.pref])));
  }
  return Buffer.concat(out);
}
