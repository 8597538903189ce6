// Netlink attributes (struct nlattr: u16 len, u16 type, payload, padded to 4 bytes) and
// the scalar/address encodings used inside them. Pure functions, no I/O.

import { formatIP, ipFromBytes, ipToBytes, tryParseIP } from '../../addr/cidr.ts';
import { AF_INET, AF_INET6, AF_UNSPEC, NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE } from './constants.ts';

export class CodecError extends Error {
  override readonly name = 'CodecError';
}

const align4 = (n: number): number => (n + 3) & ~3;

export interface Attr {
  /** Attribute type with the nested/byte-order bits masked off. */
  type: number;
  nested: boolean;
  value: Buffer;
}

/** Parses one attribute at the start of `buf`; `consumed` includes the alignment padding. */
export function parseAttr(buf: Buffer): { value: Attr; consumed: number } {
  if (buf.length < NLA_HDRLEN) throw new CodecError(`attribute header truncated (${buf.length} bytes)`);
  const len = buf.readUInt16LE(0);
  const rawType = buf.readUInt16LE(2);
  if (len < NLA_HDRLEN || len > buf.length) throw new CodecError(`attribute length ${len} out of range (${buf.length} left)`);
  return {
    value: { type: rawType & NLA_TYPE_MASK, nested: (rawType & NLA_F_NESTED) !== 0, value: buf.subarray(NLA_HDRLEN, len) },
    consumed: Math.min(align4(len), buf.length),
  };
}

/** Parses a run of attributes filling `buf`. */
export function parseAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + NLA_HDRLEN <= buf.length) {
    const { value, consumed } = parseAttr(buf.subarray(off));
    out.push(value);
    off += consumed;
  }
  return out;
}

/** Formats one attribute; `value` is a payload or a list of already formatted children. */
export function formatAttr(type: number, value: Buffer | Buffer[], nested = Array.isArray(value)): Buffer {
  const payload = Array.isArray(value) ? Buffer.concat(value) : value;
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new CodecError(`attribute ${type} too long (${len} bytes)`);
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type | (nested ? NLA_F_NESTED : 0), 2);
  payload.copy(out, NLA_HDRLEN);
  return out;
}

// ---- scalars -------------------------------------------------------------------------

function need(b: Buffer, n: number, what: string): void {
  if (b.length < n) throw new CodecError(`${what}: need ${n} bytes, have ${b.length}`);
}
export function u8(b: Buffer): number {
  need(b, 1, 'u8');
  return b.readUInt8(0);
}
export function u16(b: Buffer): number {
  need(b, 2, 'u16');
  return b.readUInt16LE(0);
}
export function u32(b: Buffer): number {
  need(b, 4, 'u32');
  return b.readUInt32LE(0);
}
export function s32(b: Buffer): number {
  need(b, 4, 's32');
  return b.readInt32LE(0);
}
export function be16(b: Buffer): number {
  need(b, 2, 'be16');
  return b.readUInt16BE(0);
}
/** A NUL-terminated (or unterminated) string. */
export const str = (b: Buffer): string => {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
};

function scalar(type: number, size: number, write: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(size);
  write(b);
  return formatAttr(type, b);
}
export const attrU8 = (type: number, v: number): Buffer => scalar(type, 1, (b) => b.writeUInt8(v));
export const attrU16 = (type: number, v: number): Buffer => scalar(type, 2, (b) => b.writeUInt16LE(v));
export const attrU32 = (type: number, v: number): Buffer => scalar(type, 4, (b) => b.writeUInt32LE(v >>> 0));
export const attrS32 = (type: number, v: number): Buffer => scalar(type, 4, (b) => b.writeInt32LE(v));
export const attrBe16 = (type: number, v: number): Buffer => scalar(type, 2, (b) => b.writeUInt16BE(v));
export function attrStr(type: number, v: string): Buffer {
  return formatAttr(type, Buffer.from(`${v}\0`, 'utf8'));
}
export const attrBool = (type: number, v: boolean): Buffer => attrU8(type, v ? 1 : 0);

// ---- addresses -----------------------------------------------------------------------

/** "aa:bb:cc:dd:ee:ff" (any length of hex octets) to bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(':');
  if (parts.length < 1 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new CodecError(`invalid hardware address "${mac}"`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}
export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** An address attribute from text (parsed by lib/addr); CodecError unless it is an IPv`version` address. */
export function attrIp(type: number, ip: string, version: 4 | 6): Buffer {
  const addr = tryParseIP(ip);
  if (!addr) throw new CodecError(`invalid IP address "${ip}"`);
  if (addr.family !== version) throw new CodecError(`address "${ip}" is not IPv${version}`);
  return formatAttr(type, ipToBytes(addr));
}

/** An address attribute's 4 or 16 bytes as text; IPv6 in the RFC 5952 form `ip` prints. */
export function bytesToIp(b: Buffer): string {
  if (b.length !== 4 && b.length !== 16) throw new CodecError(`address of ${b.length} bytes`);
  return formatIP(ipFromBytes(b));
}

// ---- families and scopes -------------------------------------------------------------

/** Address family byte of IP messages; 0 (either) only in dump requests. */
export function familyOf(version: 4 | 6 | undefined): number {
  return version === 4 ? AF_INET : version === 6 ? AF_INET6 : AF_UNSPEC;
}
export function versionOf(family: number): 4 | 6 {
  if (family === AF_INET) return 4;
  if (family === AF_INET6) return 6;
  throw new CodecError(`address family ${family} is not IPv4 or IPv6`);
}

/** Address and route scopes by meaning (rtm_scope / ifa_scope). */
export const Scope = {
  universe: RT_SCOPE_UNIVERSE,
  site: 200,
  link: RT_SCOPE_LINK,
  host: RT_SCOPE_HOST,
  nowhere: 255,
} as const;
