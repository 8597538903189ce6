// The daemon's unix socket over the native addon (native/strand_native.c, "daemon socket
// I/O"): Node's own net module reads unix sockets with read(), which drops the
// descriptors a shim passes (SCM_RIGHTS), and cannot tell who the peer is. Every
// descriptor here is non-blocking and watched by libuv on Node's event loop; no call
// waits. Every wait has a deadline (the caller's).
import { native, POLL, type Watcher } from '../lib/native/index.ts';

export class SocketClosedError extends Error {
  override readonly name = 'SocketClosedError';
}

class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
}

/** One accepted connection: its peer's credentials, exact reads (collecting descriptors), writes. */
export class Connection {
  readonly fd: number;
  readonly pid: number;
  readonly uid: number;
  private readonly watcher: Watcher;
  private closed = false;
  /** Descriptors received and not yet taken (closed by close()). */
  private fds: number[] = [];
  private fdsTruncated = false;
  private wake: (() => void) | undefined;
  private events = 0;
  /** Bytes read so far. */
  bytesRead = 0;

  constructor(peer: { fd: number; pid: number; uid: number }) {
    this.fd = peer.fd;
    this.pid = peer.pid;
    this.uid = peer.uid;
    this.watcher = native().watch(this.fd, () => {
      const w = this.wake;
      this.wake = undefined;
      this.setEvents(0);
      w?.();
    });
  }

  private setEvents(events: number): void {
    if (this.closed || events === this.events) return;
    this.events = events;
    if (events) native().watchStart(this.watcher, events);
    else native().watchStop(this.watcher);
  }

  /** Resolves when the socket is ready for `events` or rejects at the deadline (ms since epoch). */
  private waitFor(events: number, deadline: number, what: string): Promise<void> {
    if (this.closed) return Promise.reject(new SocketClosedError('connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.wake = undefined;
          this.setEvents(0);
          reject(new DeadlineError(`${what}: deadline passed`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.setEvents(events);
    });
  }

  /**
   * Reads exactly `n` bytes before `deadline`. Throws SocketClosedError when the peer
   * closes first, DeadlineError at the deadline. Descriptors that arrive are kept for take().
   */
  async readExactly(n: number, deadline: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let got = 0;
    while (got < n) {
      if (this.closed) throw new SocketClosedError('connection closed');
      const r = native().unixRecv(this.fd, Math.min(65536, n - got));
      if (r === null) {
        await this.waitFor(POLL.IN, deadline, 'reading the request');
        continue;
      }
      this.fds.push(...r.fds);
      if (r.truncated) this.fdsTruncated = true;
      if (r.data.length === 0) throw new SocketClosedError(`peer closed after ${got} of ${n} bytes`);
      chunks.push(r.data);
      got += r.data.length;
      this.bytesRead += r.data.length;
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  /** Reads and discards `n` bytes (a request this daemon will not run). */
  async skip(n: number, deadline: number): Promise<void> {
    for (let left = n; left > 0; ) {
      const chunk = await this.readExactly(Math.min(left, 65536), deadline);
      left -= chunk.length;
    }
  }

  /** Whether the peer has shut its side (a shim that gave up waiting): EOF is readable now. */
  peerGone(): boolean {
    try {
      const r = native().unixRecv(this.fd, 1);
      if (r === null) return false;
      this.fds.push(...r.fds);
      return true; // EOF, or bytes after the request: either way not a shim waiting for STARTED
    } catch {
      return true;
    }
  }

  /** The descriptors received so far, handed over to the caller (who closes them). */
  takeFds(): { fds: number[]; truncated: boolean } {
    const out = { fds: this.fds, truncated: this.fdsTruncated };
    this.fds = [];
    return out;
  }

  /**
   * Sends all of `buf` now if the socket buffer takes it (a small frame into an empty
   * buffer always does). Returns false when it did not go out whole.
   */
  trySendAll(buf: Buffer): boolean {
    try {
      return native().unixSend(this.fd, buf) === buf.length;
    } catch {
      return false;
    }
  }

  /** Sends all of `buf` before `deadline`; throws SocketClosedError (EPIPE...) or DeadlineError. */
  async sendAll(buf: Buffer, deadline: number): Promise<void> {
    let rest = buf;
    while (rest.length > 0) {
      let n: number;
      try {
        n = native().unixSend(this.fd, rest);
      } catch (e) {
        throw new SocketClosedError(`sending the reply: ${(e as Error).message}`, { cause: e });
      }
      rest = rest.subarray(n);
      if (rest.length > 0 && n === 0) await this.waitFor(POLL.OUT, deadline, 'sending the reply');
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.takeFds().fds) closeQuietly(fd);
    native().watchClose(this.watcher);
    closeQuietly(this.fd);
    const w = this.wake;
    this.wake = undefined;
    w?.(); // a pending wait resumes and finds the connection closed
  }
}

export function closeQuietly(fd: number): void {
  try {
    native().close(fd);
  } catch {
    // already closed
  }
}

/** The listening socket: accepts every waiting connection whenever libuv reports one. */
export class Listener {
  readonly fd: number;
  private readonly watcher: Watcher;
  private closed = false;

  constructor(path: string, backlog: number, onConnection: (c: Connection) => void, onError: (e: unknown) => void) {
    this.fd = native().unixListen(path, backlog);
    this.watcher = native().watch(this.fd, () => {
      for (;;) {
        if (this.closed) return;
        let peer: ReturnType<ReturnType<typeof native>['unixAccept']>;
        try {
          peer = native().unixAccept(this.fd);
        } catch (e) {
          onError(e); // EMFILE and the like: the connection stays queued, retried on the next event
          return;
        }
        if (!peer) return;
        onConnection(new Connection(peer));
      }
    });
    native().watchStart(this.watcher, POLL.IN);
  }

  /** Stops accepting. Connections still queued in the backlog are reset by the kernel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().watchClose(this.watcher);
    closeQuietly(this.fd);
  }
}
