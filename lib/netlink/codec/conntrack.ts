// ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK): the connection-tracking table's
// dump and delete messages, as `conntrack -L` / `conntrack -D` send them. Pure: bytes to
// entries and requests to bytes, no I/O. Messages are a struct nfgenmsg (family, version,
// resource id) followed by CTA_* attributes; tuples are nested (CTA_TUPLE_IP with the
// addresses, CTA_TUPLE_PROTO with the protocol and ports, ports big-endian).
import { attrBe16, attrIp, attrU8, bytesToIp, CodecError, formatAttr, parseAttrs, u8, versionOf, familyOf } from './attr.ts';
import { formatMessage, type RawMessage, type RequestFlags, requestFlagBits } from './message.ts';

export const NETLINK_NETFILTER = 12;

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const NFNETLINK_V0 = 0;
const NFGENMSG_LEN = 4;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_MARK = 8;
const CTA_ID = 12;
const CTA_ZONE = 18;

const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;

const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;

const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;

/** IP protocol numbers of the transport protocols with ports. */
export const IpProto = { tcp: 6, udp: 17, sctp: 132 } as const;

export interface CtTuple {
  src: string;
  dst: string;
  /** IP protocol number (6 TCP, 17 UDP, 132 SCTP...). */
  proto: number;
  sport?: number;
  dport?: number;
}

export interface CtEntry {
  version: 4 | 6;
  orig: CtTuple;
  reply?: CtTuple;
  /** The kernel's id of the entry (CTA_ID): a delete with it removes only that very entry. */
  id?: number;
  zone?: number;
  mark?: number;
}

const msgType = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

function nfgenmsg(version: 4 | 6): Buffer {
  const b = Buffer.alloc(NFGENMSG_LEN);
  b.writeUInt8(familyOf(version), 0);
  b.writeUInt8(NFNETLINK_V0, 1);
  b.writeUInt16BE(0, 2);
  return b;
}

function be32(b: Buffer): number {
  if (b.length < 4) throw new CodecError(`be32: need 4 bytes, have ${b.length}`);
  return b.readUInt32BE(0);
}

function be16(b: Buffer): number {
  if (b.length < 2) throw new CodecError(`be16: need 2 bytes, have ${b.length}`);
  return b.readUInt16BE(0);
}

function parseTuple(buf: Buffer, version: 4 | 6): CtTuple {
  const t: Partial<CtTuple> = {};
  for (const a of parseAttrs(buf)) {
    if (a.type === CTA_TUPLE_IP) {
      for (const ip of parseAttrs(a.value)) {
        if (ip.type === CTA_IP_V4_SRC || ip.type === CTA_IP_V6_SRC) t.src = bytesToIp(ip.value);
        else if (ip.type === CTA_IP_V4_DST || ip.type === CTA_IP_V6_DST) t.dst = bytesToIp(ip.value);
      }
    } else if (a.type === CTA_TUPLE_PROTO) {
      for (const p of parseAttrs(a.value)) {
        if (p.type === CTA_PROTO_NUM) t.proto = u8(p.value);
        else if (p.type === CTA_PROTO_SRC_PORT) t.sport = be16(p.value);
        else if (p.type === CTA_PROTO_DST_PORT) t.dport = be16(p.value);
      }
    }
  }
  if (t.src === undefined || t.dst === undefined || t.proto === undefined) throw new CodecError('conntrack tuple without addresses or protocol');
  if ((t.src.includes(':') ? 6 : 4) !== version) throw new CodecError(`conntrack tuple address ${t.src} is not IPv${version}`);
  return t as CtTuple;
}

function formatTuple(type: number, t: CtTuple, version: 4 | 6): Buffer {
  const [srcType, dstType] = version === 4 ? [CTA_IP_V4_SRC, CTA_IP_V4_DST] : [CTA_IP_V6_SRC, CTA_IP_V6_DST];
  const proto = [attrU8(CTA_PROTO_NUM, t.proto)];
  if (t.sport !== undefined) proto.push(attrBe16(CTA_PROTO_SRC_PORT, t.sport));
  if (t.dport !== undefined) proto.push(attrBe16(CTA_PROTO_DST_PORT, t.dport));
  return formatAttr(type, [formatAttr(CTA_TUPLE_IP, [attrIp(srcType, t.src, version), attrIp(dstType, t.dst, version)]), formatAttr(CTA_TUPLE_PROTO, proto)]);
}

/** The request dumping the whole table of one family. */
export function formatCtDump(version: 4 | 6, seq: number, pid = 0): Buffer {
  return formatMessage({ type: msgType(IPCTNL_MSG_CT_GET), flags: requestFlagBits({ dump: true }), seq, pid }, nfgenmsg(version));
}

/** The request deleting one entry (by its original tuple, zone, and id when known). */
export function formatCtDelete(e: CtEntry, seq: number, flags: RequestFlags = { ack: true }, pid = 0): Buffer {
  const attrs = [formatTuple(CTA_TUPLE_ORIG, e.orig, e.version)];
  if (e.id !== undefined) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(e.id >>> 0);
    attrs.push(formatAttr(CTA_ID, b));
  }
  if (e.zone !== undefined) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(e.zone);
    attrs.push(formatAttr(CTA_ZONE, b));
  }
  return formatMessage({ type: msgType(IPCTNL_MSG_CT_DELETE), flags: requestFlagBits(flags), seq, pid }, Buffer.concat([nfgenmsg(e.version), ...attrs]));
}

/** A conntrack entry message (IPCTNL_MSG_CT_NEW, as a dump sends them); undefined for any other message. */
export function parseCtEntry(raw: RawMessage): CtEntry | undefined {
  if (raw.header.type !== msgType(IPCTNL_MSG_CT_NEW)) return undefined;
  const p = raw.payload;
  if (p.length < NFGENMSG_LEN) throw new CodecError(`nfgenmsg truncated (${p.length} bytes)`);
  const version = versionOf(p.readUInt8(0));
  let orig: CtTuple | undefined;
  const e: Partial<CtEntry> = { version };
  for (const a of parseAttrs(p.subarray(NFGENMSG_LEN))) {
    if (a.type === CTA_TUPLE_ORIG) orig = parseTuple(a.value, version);
    else if (a.type === CTA_TUPLE_REPLY) e.reply = parseTuple(a.value, version);
    else if (a.type === CTA_ID) e.id = be32(a.value);
    else if (a.type === CTA_ZONE) e.zone = be16(a.value);
    else if (a.type === CTA_MARK) e.mark = be32(a.value);
  }
  if (!orig) throw new CodecError('conntrack entry without an original tuple');
  e.orig = orig;
  return e as CtEntry;
}
