// One rtnetlink socket bound inside one network namespace. The only file that calls the
// native addon for netlink. Synchronous: a request costs ~0.1 ms and the caller is a
// short-lived plugin process; no JavaScript runs inside another namespace.

import { native } from '../native/index.ts';
import {
  CodecError,
  formatRequest,
  isDone,
  isDumpInterrupted,
  isError,
  NETLINK_ROUTE,
  parseDonePayload,
  parseErrorPayload,
  parseMessage,
  type RawMessage,
  type RequestFlags,
  type RtnlMessage,
  type RtnlRequest,
  splitMessages,
} from './codec/index.ts';
import { errnoOf, fromNative, invalidArgument, NetlinkError } from './errors.ts';

export const DEFAULT_TIMEOUT_MS = 5000;

/** Data messages (link/addr/route/neigh) of a reply. */
export type DataMessage = Extract<RtnlMessage, { action: unknown }>;

export interface DumpResult {
  messages: DataMessage[];
  /** The kernel flagged the dump as inconsistent (it changed while being read). */
  interrupted: boolean;
}

export class NetlinkSocket {
  readonly nsPath: string | null;
  timeoutMs = DEFAULT_TIMEOUT_MS;
  private fd: number;
  private seq: number;

  private constructor(nsPath: string | null, fd: number) {
    this.nsPath = nsPath;
    this.fd = fd;
    this.seq = (Date.now() & 0x7fffffff) >>> 0;
  }

  /** Opens a netlink socket (default NETLINK_ROUTE) inside the netns at `nsPath` (null: the current one). */
  static open(nsPath: string | null, protocol = NETLINK_ROUTE): NetlinkSocket {
    try {
      return new NetlinkSocket(nsPath, native().nlOpen(nsPath, protocol));
    } catch (e) {
      throw fromNative('netlink.open', e, nsPath ?? undefined);
    }
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    native().close(fd);
  }

  /**
   * Sends a request with NLM_F_ACK and waits for its acknowledgement. Returns the data
   * messages that came before the ack (the answer of a `get`, or an echo).
   * Throws NetlinkError with the kernel's errno and extended-ack message.
   */
  request(req: RtnlRequest, flags: Omit<RequestFlags, 'ack' | 'dump'>, op: string): DataMessage[] {
    const seq = this.send(req, { ...flags, ack: true }, op);
    const out: DataMessage[] = [];
    this.receive(seq, op, (m) => {
      if (m.kind === 'ack') return true;
      if (m.kind === 'done') return true;
      if (m.kind !== 'other') out.push(m);
      return false;
    });
    return out;
  }

  /** Sends a dump request and collects every message up to NLMSG_DONE. */
  dump(req: RtnlRequest, op: string): DumpResult {
    const seq = this.send(req, { dump: true }, op);
    const messages: DataMessage[] = [];
    let interrupted = false;
    this.receive(seq, op, (m) => {
      if (isDumpInterrupted(m.header)) interrupted = true;
      if (m.kind === 'done' || m.kind === 'ack') return true;
      if (m.kind !== 'other') messages.push(m);
      return false;
    });
    return { messages, interrupted };
  }

  /**
   * One request of any netlink family, already encoded by `format(seq)` (with NLM_F_ACK
   * or NLM_F_DUMP set): returns the messages of the answer up to the acknowledgement or
   * NLMSG_DONE, undecoded. Throws NetlinkError with the kernel's errno.
   */
  exchange(format: (seq: number) => Buffer, op: string): { messages: RawMessage[]; interrupted: boolean } {
    if (this.fd < 0) throw new NetlinkError(op, errnoOf('EBADF'), 'netlink socket is closed');
    this.seq = (this.seq + 1) >>> 0 || 1;
    const seq = this.seq;
    try {
      native().nlSend(this.fd, format(seq));
    } catch (e) {
      if (e instanceof CodecError) throw invalidArgument(op, e.message, e);
      throw fromNative(op, e, 'send');
    }
    const messages: RawMessage[] = [];
    let interrupted = false;
    this.readUntil(seq, op, (raw) => {
      if (isDumpInterrupted(raw.header)) interrupted = true;
      if (isError(raw.header)) {
        const err = parseErrorPayload(raw.header, raw.payload);
        if (err.errno !== 0) throw new NetlinkError(op, err.errno, err.extAck?.msg);
        return true;
      }
      if (isDone(raw.header)) {
        const errno = parseDonePayload(raw.payload);
        if (errno !== 0) throw new NetlinkError(op, errno, 'dump failed');
        return true;
      }
      messages.push(raw);
      return false;
    });
    return { messages, interrupted };
  }

  private send(req: RtnlRequest, flags: RequestFlags, op: string): number {
    if (this.fd < 0) throw new NetlinkError(op, errnoOf('EBADF'), 'netlink socket is closed');
    this.seq = (this.seq + 1) >>> 0 || 1;
    let buf: Buffer;
    try {
      buf = formatRequest(req, flags, this.seq);
    } catch (e) {
      // A value the codec cannot encode (VLAN id out of range, bad MAC...) is a bad argument.
      if (e instanceof CodecError) throw invalidArgument(op, e.message, e);
      throw e;
    }
    try {
      native().nlSend(this.fd, buf);
    } catch (e) {
      throw fromNative(op, e, 'send');
    }
    return this.seq;
  }

  /** Reads datagrams until `onMessage` returns true for a message of sequence `seq`. */
  private receive(seq: number, op: string, onMessage: (m: Exclude<RtnlMessage, { kind: 'error' }>) => boolean): void {
    this.readUntil(seq, op, (raw) => {
      const m = parseMessage(raw);
      if (m.kind === 'error') throw new NetlinkError(op, m.errno, m.extAck?.msg);
      if (m.kind === 'done' && m.errno !== 0) throw new NetlinkError(op, m.errno, 'dump failed');
      return onMessage(m);
    });
  }

  /** Reads datagrams until `onRaw` returns true for a message of sequence `seq`; the deadline is the socket's timeout. */
  private readUntil(seq: number, op: string, onRaw: (raw: RawMessage) => boolean): void {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      let dgram: Buffer;
      try {
        dgram = native().nlRecv(this.fd, Math.max(0, deadline - Date.now()));
      } catch (e) {
        throw fromNative(op, e, 'receive');
      }
      for (const raw of splitMessages(dgram)) {
        if (raw.header.seq !== seq) continue; // a late answer to an earlier, abandoned request
        if (onRaw(raw)) return;
      }
    }
  }
}
