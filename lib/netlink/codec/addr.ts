// struct ifaddrmsg + IFA_* attributes: interface addresses, IPv4 and IPv6. Attributes
// this codec does not name are kept verbatim in `extra`. Pure, no I/O.

import { type Attr, attrIp, attrStr, attrU32, bytesToIp, CodecError, familyOf, formatAttr, parseAttrs, str, u32, versionOf } from './attr.ts';
import * as K from './constants.ts';

/** Keeps an attribute this codec does not name. */
function keep(o: { extra?: Attr[] }, a: Attr): void {
  if (o.extra) o.extra.push(a);
  else o.extra = [a];
}

/** Address flag bits by meaning (ifa_flags / IFA_FLAGS). */
export const AddrFlag = {
  secondary: K.IFA_F_SECONDARY,
  nodad: K.IFA_F_NODAD,
  optimistic: K.IFA_F_OPTIMISTIC,
  dadFailed: K.IFA_F_DADFAILED,
  homeAddress: K.IFA_F_HOMEADDRESS,
  deprecated: K.IFA_F_DEPRECATED,
  tentative: K.IFA_F_TENTATIVE,
  permanent: K.IFA_F_PERMANENT,
  manageTempAddr: K.IFA_F_MANAGETEMPADDR,
  noPrefixRoute: K.IFA_F_NOPREFIXROUTE,
} as const;

export interface AddrCacheInfo {
  /** Seconds; 0xffffffff means forever. */
  preferred: number;
  valid: number;
  /** Hundredths of a second since boot. */
  created: number;
  updated: number;
}

export interface AddrMessage {
  /** IP version; undefined (both) only in dump requests. */
  version?: 4 | 6;
  prefixLen?: number;
  /** AddrFlag bits. */
  flags?: number;
  scope?: number;
  index?: number;
  /** IFA_ADDRESS: the address (the peer's on point-to-point links). */
  address?: string;
  /** IFA_LOCAL: the local address (IPv4). */
  local?: string;
  label?: string;
  broadcast?: string;
  cacheinfo?: AddrCacheInfo;
  /** IFA_RT_PRIORITY: the metric of the address's prefix route. */
  rtPriority?: number;
  /** IFA_PROTO: who added the address. */
  proto?: number;
  /** Attributes this codec does not name, verbatim. */
  extra?: Attr[];
}

export function parseAddrMessage(buf: Buffer): { value: AddrMessage; consumed: number } {
  if (buf.length < K.IFADDRMSG_LEN) throw new CodecError(`ifaddrmsg truncated (${buf.length} bytes)`);
  const m: AddrMessage = {
    version: versionOf(buf.readUInt8(0)),
    prefixLen: buf.readUInt8(1),
    flags: buf.readUInt8(2),
    scope: buf.readUInt8(3),
    index: buf.readUInt32LE(4),
  };
  for (const a of parseAttrs(buf.subarray(K.IFADDRMSG_LEN))) {
    const v = a.value;
    switch (a.type) {
      case K.IFA_ADDRESS:
        m.address = bytesToIp(v);
        break;
      case K.IFA_LOCAL:
        m.local = bytesToIp(v);
        break;
      case K.IFA_LABEL:
        m.label = str(v);
        break;
      case K.IFA_BROADCAST:
        m.broadcast = bytesToIp(v);
        break;
      case K.IFA_FLAGS:
        m.flags = u32(v);
        break;
      case K.IFA_CACHEINFO:
        if (v.length >= 16) m.cacheinfo = { preferred: v.readUInt32LE(0), valid: v.readUInt32LE(4), created: v.readUInt32LE(8), updated: v.readUInt32LE(12) };
        else keep(m, a);
        break;
      case K.IFA_RT_PRIORITY:
        m.rtPriority = u32(v);
        break;
      case K.IFA_PROTO:
        m.proto = v.readUInt8(0);
        break;
      default:
        keep(m, a);
    }
  }
  return { value: m, consumed: buf.length };
}

export function formatAddrMessage(m: AddrMessage): Buffer {
  const head = Buffer.alloc(K.IFADDRMSG_LEN);
  head.writeUInt8(familyOf(m.version), 0);
  head.writeUInt8(m.prefixLen ?? 0, 1);
  head.writeUInt8((m.flags ?? 0) & 0xff, 2);
  head.writeUInt8(m.scope ?? 0, 3);
  head.writeUInt32LE(m.index ?? 0, 4);
  const out: Buffer[] = [head];
  const ips = [m.local, m.address, m.broadcast].filter((x): x is string => x !== undefined);
  if (ips.length && m.version === undefined) throw new CodecError('address message needs a version');
  const ver = m.version ?? 4;
  if (m.local !== undefined) out.push(attrIp(K.IFA_LOCAL, m.local, ver));
  if (m.address !== undefined) out.push(attrIp(K.IFA_ADDRESS, m.address, ver));
  if (m.broadcast !== undefined) out.push(attrIp(K.IFA_BROADCAST, m.broadcast, ver));
  if (m.label !== undefined) out.push(attrStr(K.IFA_LABEL, m.label));
  if (m.flags !== undefined && m.flags !== 0) out.push(attrU32(K.IFA_FLAGS, m.flags));
  if (m.cacheinfo !== undefined) {
    const c = Buffer.alloc(16);
    c.writeUInt32LE(m.cacheinfo.preferred >>> 0, 0);
    c.writeUInt32LE(m.cacheinfo.valid >>> 0, 4);
    c.writeUInt32LE(m.cacheinfo.created >>> 0, 8);
    c.writeUInt32LE(m.cacheinfo.updated >>> 0, 12);
    out.push(formatAttr(K.IFA_CACHEINFO, c));
  }
  if (m.rtPriority !== undefined) out.push(attrU32(K.IFA_RT_PRIORITY, m.rtPriority));
  if (m.proto !== undefined) out.push(formatAttr(K.IFA_PROTO, Buffer.from([m.proto & 0xff])));
  if (m.extra) for (const a of m.extra) out.push(formatAttr(a.type, a.value, a.nested));
  return Buffer.concat(out);
}
