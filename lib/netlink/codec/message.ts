// struct nlmsghdr framing, NLMSG_ERROR (ack or errno, with extended-ack attributes),
// NLMSG_DONE and multipart replies. Pure functions, no I/O.

import { CodecError, parseAttrs, str, u32 } from './attr.ts';
import {
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_APPEND,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_ECHO,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  NLMSGERR_LEN,
} from './constants.ts';

export interface NlHeader {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** Request flags by meaning; the codec turns them into NLM_F_* bits. */
export interface RequestFlags {
  ack?: boolean;
  dump?: boolean;
  create?: boolean;
  excl?: boolean;
  replace?: boolean;
  append?: boolean;
  echo?: boolean;
}

export function requestFlagBits(f: RequestFlags): number {
  let bits = NLM_F_REQUEST;
  if (f.ack) bits |= NLM_F_ACK;
  if (f.dump) bits |= NLM_F_DUMP;
  if (f.create) bits |= NLM_F_CREATE;
  if (f.excl) bits |= NLM_F_EXCL;
  if (f.replace) bits |= NLM_F_REPLACE;
  if (f.append) bits |= NLM_F_APPEND;
  if (f.echo) bits |= NLM_F_ECHO;
  return bits;
}

export function parseHeader(buf: Buffer): { value: NlHeader; consumed: number } {
  if (buf.length < NLMSG_HDRLEN) throw new CodecError(`netlink header truncated (${buf.length} bytes)`);
  const value = {
    len: buf.readUInt32LE(0),
    type: buf.readUInt16LE(4),
    flags: buf.readUInt16LE(6),
    seq: buf.readUInt32LE(8),
    pid: buf.readUInt32LE(12),
  };
  if (value.len < NLMSG_HDRLEN || value.len > buf.length) {
    throw new CodecError(`netlink message length ${value.len} out of range (${buf.length} bytes)`);
  }
  return { value, consumed: NLMSG_HDRLEN };
}

/** Frames `payload` with a header; `len` is computed. */
export function formatMessage(h: Omit<NlHeader, 'len'>, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(h.type, 4);
  out.writeUInt16LE(h.flags, 6);
  out.writeUInt32LE(h.seq >>> 0, 8);
  out.writeUInt32LE(h.pid >>> 0, 12);
  payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/** One framed message: header and payload (without padding). */
export interface RawMessage {
  header: NlHeader;
  payload: Buffer;
}

/** Splits a datagram into messages. */
export function splitMessages(buf: Buffer): RawMessage[] {
  const out: RawMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const { value: header } = parseHeader(buf.subarray(off));
    out.push({ header, payload: buf.subarray(off + NLMSG_HDRLEN, off + header.len) });
    off += (header.len + 3) & ~3;
  }
  return out;
}

export interface ExtAck {
  /** The kernel's human-readable reason, e.g. "Invalid MTU". */
  msg?: string;
  /** Byte offset of the offending attribute in the request. */
  offset?: number;
}

export interface ErrorPayload {
  /** Positive errno; 0 means this is an acknowledgement. */
  errno: number;
  /** Header of the request this answers. */
  request: NlHeader;
  extAck?: ExtAck;
}

/** Parses the payload of an NLMSG_ERROR message (struct nlmsgerr + optional TLVs). */
export function parseErrorPayload(header: NlHeader, payload: Buffer): ErrorPayload {
  if (payload.length < NLMSGERR_LEN) throw new CodecError(`error message truncated (${payload.length} bytes)`);
  const errno = 0 - payload.readInt32LE(0);
  const request = parseHeaderLoose(payload.subarray(4, 4 + NLMSG_HDRLEN));
  const out: ErrorPayload = { errno, request };
  if (header.flags & NLM_F_ACK_TLVS) {
    // Without NLM_F_CAPPED the original request follows the header; TLVs come after it.
    const echoed = header.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : (request.len + 3) & ~3;
    const start = 4 + Math.max(echoed, NLMSG_HDRLEN);
    if (start <= payload.length) {
      const ack: ExtAck = {};
      for (const a of parseAttrs(payload.subarray(start))) {
        if (a.type === NLMSGERR_ATTR_MSG) ack.msg = str(a.value);
        else if (a.type === NLMSGERR_ATTR_OFFS) ack.offset = u32(a.value);
      }
      if (ack.msg !== undefined || ack.offset !== undefined) out.extAck = ack;
    }
  }
  return out;
}

function parseHeaderLoose(b: Buffer): NlHeader {
  return { len: b.readUInt32LE(0), type: b.readUInt16LE(4), flags: b.readUInt16LE(6), seq: b.readUInt32LE(8), pid: b.readUInt32LE(12) };
}

export function formatErrorPayload(e: ErrorPayload): Buffer {
  const b = Buffer.alloc(NLMSGERR_LEN);
  b.writeInt32LE(-e.errno, 0);
  b.writeUInt32LE(e.request.len, 4);
  b.writeUInt16LE(e.request.type, 8);
  b.writeUInt16LE(e.request.flags, 10);
  b.writeUInt32LE(e.request.seq, 12);
  b.writeUInt32LE(e.request.pid, 16);
  return b;
}

/** NLMSG_DONE carries an int: 0, or a negative errno when the dump failed. */
export function parseDonePayload(payload: Buffer): number {
  return payload.length >= 4 ? 0 - payload.readInt32LE(0) : 0;
}

export const isError = (h: NlHeader): boolean => h.type === NLMSG_ERROR;
export const isDone = (h: NlHeader): boolean => h.type === NLMSG_DONE;
/** The dump changed while it was being read: its result is inconsistent, retry it. */
export const isDumpInterrupted = (h: NlHeader): boolean => (h.flags & NLM_F_DUMP_INTR) !== 0;
