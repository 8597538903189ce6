// One netlink socket (rtnetlink unless told otherwise) bound inside one network
// namespace. The only file that calls the native addon for netlink. Asynchronous: the kernel does a request's work inside the
// send (under its RTNL lock, 15-30 ms for a veth deletion), so each round trip runs on an
// addon thread and the event loop stays free. Requests on one socket run one at a time,
// in order (a bounded queue); different sockets run in parallel. No JavaScript runs
// inside another namespace.
//
// A process that serves exactly one CNI call (the standalone plugin executable) has
// nothing to do while it waits, and the thread handoff costs it 50-300 us per round trip
// on a loaded machine (a bridge ADD makes ~30): cmd/main.ts calls useBlockingRoundTrips()
// there, and the same operations then run on the calling thread. Never in a process that
// serves concurrent requests (the daemon, the agent).

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

const DEFAULT_TIMEOUT_MS = 5000;

/** Data messages (link/addr/route/neigh) of a reply. */
export type DataMessage = Extract<RtnlMessage, { action: unknown }>;

export interface DumpResult {
  messages: DataMessage[];
  /** The kernel flagged the dump as inconsistent (it changed while being read). */
  interrupted: boolean;
}

let blocking = false;

/** Round trips on the calling thread from now on, for this whole process (see above). */
export function useBlockingRoundTrips(on = true): void {
  blocking = on;
}

/** True after useBlockingRoundTrips(): a one-call process. */
export function blockingRoundTrips(): boolean {
  return blocking;
}

/** Requests that may wait behind the one in flight on a socket; more is EAGAIN. */
export const MAX_QUEUED = 256;

export class NetlinkSocket {
  readonly nsPath: string | null;
  timeoutMs = DEFAULT_TIMEOUT_MS;
  private fd: number;
  private seq: number;
  /** Settles when the last queued request has. */
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private closeRequested = false;

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
    return this.closeRequested;
  }

  /**
   * Closes the socket. A request in flight keeps the descriptor until it settles (so the
   * number cannot be reused under it); requests still queued fail with EBADF.
   */
  close(): void {
    if (this.closeRequested) return;
    this.closeRequested = true;
    if (this.queued === 0) this.release();
  }

  private release(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    native().close(fd);
  }

  /**
   * Sends a request with NLM_F_ACK and waits for its acknowledgement. Returns the data
   * messages that came before the ack (the answer of a `get`, or an echo).
   * Rejects with NetlinkError carrying the kernel's errno and extended-ack message.
   */
  async request(req: RtnlRequest, flags: Omit<RequestFlags, 'ack' | 'dump'>, op: string): Promise<DataMessage[]> {
    const out: DataMessage[] = [];
    await this.transact(
      (seq) => formatRequest(req, { ...flags, ack: true }, seq),
      op,
      rtnlMessages(op, (m) => {
        if (m.kind === 'ack') return true;
        if (m.kind === 'done') return true;
        if (m.kind !== 'other') out.push(m);
        return false;
      }),
    );
    return out;
  }

  /** Sends a dump request and collects every message up to NLMSG_DONE. */
  async dump(req: RtnlRequest, op: string): Promise<DumpResult> {
    const messages: DataMessage[] = [];
    let interrupted = false;
    await this.transact(
      (seq) => formatRequest(req, { dump: true }, seq),
      op,
      rtnlMessages(op, (m) => {
        if (isDumpInterrupted(m.header)) interrupted = true;
        if (m.kind === 'done' || m.kind === 'ack') return true;
        if (m.kind !== 'other') messages.push(m);
        return false;
      }),
    );
    return { messages, interrupted };
  }

  /**
   * One request of any netlink family, already encoded by `format(seq)` (with NLM_F_ACK
   * or NLM_F_DUMP set): resolves with the messages of the answer up to the
   * acknowledgement or NLMSG_DONE, undecoded. Rejects with NetlinkError with the kernel's errno.
   */
  async exchange(format: (seq: number) => Buffer, op: string): Promise<{ messages: RawMessage[]; interrupted: boolean }> {
    const messages: RawMessage[] = [];
    let interrupted = false;
    await this.transact(format, op, (raw) => {
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

  /**
   * Queues one round trip behind the socket's earlier ones: `format(seq)` is sent, and
   * `onRaw` sees each message of the reply carrying that sequence number until it returns true.
   */
  private transact(format: (seq: number) => Buffer, op: string, onRaw: (raw: RawMessage) => boolean): Promise<void> {
    if (this.closeRequested) return Promise.reject(closedError(op));
    if (this.queued >= MAX_QUEUED)
      return Promise.reject(new NetlinkError(op, errnoOf('EAGAIN'), `more than ${MAX_QUEUED} requests queued on one netlink socket`));
    const idle = this.queued++ === 0;
    const run = async (): Promise<void> => {
      try {
        if (this.closeRequested) throw closedError(op);
        const seq = this.nextSeq();
        const dgrams = await this.roundTrip(encode(format, seq, op), op);
        readReply(dgrams, seq, op, onRaw);
      } finally {
        if (--this.queued === 0 && this.closeRequested) this.release();
      }
    };
    // An idle socket sends at once (the request is in flight when this returns); a busy
    // one queues behind its last request.
    const p = idle ? run() : this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  private async roundTrip(buf: Buffer, op: string): Promise<Buffer[]> {
    if (blocking) {
      try {
        return native().nlRequestSync(this.fd, buf, this.timeoutMs);
      } catch (e) {
        throw fromNative(op, e, 'request');
      }
    }
    let dgrams: Buffer[];
    try {
      dgrams = await native().nlRequest(this.fd, buf, this.timeoutMs);
    } catch (e) {
      await nextTurn();
      throw fromNative(op, e, 'request');
    }
    await nextTurn();
    return dgrams;
  }
}

// Finished round trips resume their callers one per event-loop turn. The addon hands
// completions over in batches, and running their continuations back to back (each may
// send its next request, whose reply lands in the same batch) starved timers and I/O for
// a whole burst: a 1 ms interval fired twice during 1,500 round trips of 50 concurrent
// callers (157 ms). One continuation per turn bounds the loop's delay by the longest
// single continuation. A lone caller (a plugin process) loses nothing: its turn is the
// current one. The queue holds at most one entry per request in flight.
const resumable: Array<() => void> = [];
let turnScheduled = false;

function resumeOne(): void {
  const next = resumable.shift();
  if (resumable.length > 0) setImmediate(resumeOne);
  else turnScheduled = false;
  next?.();
}

/** Resolves in a later check phase, one waiter per event-loop turn (see above). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    resumable.push(resolve);
    if (!turnScheduled) {
      turnScheduled = true;
      setImmediate(resumeOne);
    }
  });
}

function closedError(op: string): NetlinkError {
  return new NetlinkError(op, errnoOf('EBADF'), 'netlink socket is closed');
}

function encode(format: (seq: number) => Buffer, seq: number, op: string): Buffer {
  try {
    return format(seq);
  } catch (e) {
    // A value the codec cannot encode (VLAN id out of range, bad MAC...) is a bad argument.
    if (e instanceof CodecError) throw invalidArgument(op, e.message, e);
    throw e;
  }
}

/** An rtnetlink reader for transact(): decodes each message; kernel errors throw. */
function rtnlMessages(op: string, onMessage: (m: Exclude<RtnlMessage, { kind: 'error' }>) => boolean): (raw: RawMessage) => boolean {
  return (raw) => {
    const m = parseMessage(raw);
    if (m.kind === 'error') throw new NetlinkError(op, m.errno, m.extAck?.msg);
    if (m.kind === 'done' && m.errno !== 0) throw new NetlinkError(op, m.errno, 'dump failed');
    return onMessage(m);
  };
}

/** Walks the reply's messages of sequence `seq` until `onRaw` returns true. */
function readReply(dgrams: Buffer[], seq: number, op: string, onRaw: (raw: RawMessage) => boolean): void {
  for (const dgram of dgrams) {
    for (const raw of splitMessages(dgram)) {
      if (raw.header.seq !== seq) continue; // a late answer to an earlier, abandoned request
      if (onRaw(raw)) return;
    }
  }
  // The addon stops reading at the end of the reply; getting here means it never came.
  throw new NetlinkError(op, errnoOf('EPROTO'), 'reply ended without an acknowledgement');
}
