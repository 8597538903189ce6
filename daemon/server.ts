// The resident CNI server behind the shims (docs/daemon.md). One connection is one
// request:
//
//   accept -> peer uid 0? -> read the frame (read deadline) -> version served? -> decode
//   (every limit) -> admission (not draining, under the concurrency cap and the memory
//   guard, shim still waiting) -> STARTED -> run the plugin (request deadline) -> RESULT
//
// Until STARTED is sent the request has not run and the shim may run the standalone
// binary instead (BUSY, UNSUPPORTED, REJECTED, or the connection closed); after it, the
// request runs to its end exactly once. A request's crash (an exception or rejection
// that escapes the plugin, attributed through AsyncLocalStorage) or deadline fails only
// that request, with CNI error 999; its descriptors stay open until its work has
// actually settled, since /proc/self/fd paths must never point at a reused descriptor.
import { AsyncLocalStorage } from 'node:async_hooks';
import { lstatSync, mkdirSync, chmodSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { CniError, Code } from '../lib/cni/errors.ts';
import type { Logger } from '../lib/cni/log.ts';
import type { RequestObserver } from '../lib/cni/skel.ts';
import {
  decodeHeader,
  decodeRequest,
  encodeNotice,
  encodeResult,
  HEADER_SIZE,
  Kind,
  MAX_FDS,
  MAX_REQUEST_BODY,
  ProtocolError,
  type Request,
  SUPPORTED_VERSIONS,
  type FrameKind,
} from './protocol.ts';
import { type Answer, requestIO, type RunPlugin } from './request.ts';
import { closeQuietly, type Connection, Listener, SocketClosedError } from './socket.ts';

export interface DaemonOptions {
  /** The socket path; its directory is made (or tightened to) 0700, root-owned. */
  socket: string;
  /** Requests running at once; beyond it the shim is told BUSY and runs the standalone binary. */
  maxRequests: number;
  /** Connections open at once (reading or running); beyond it BUSY at once. */
  maxConnections: number;
  /** A shim must deliver its whole request within this (stalled clients are dropped). */
  readTimeoutMs: number;
  /** A running request's deadline: then CNI error 999 (its work, which cannot be cancelled, is left to finish). */
  requestTimeoutMs: number;
  /** The reply must be taken within this. */
  writeTimeoutMs: number;
  /** Memory guard: above this resident size new requests get BUSY. */
  maxRssBytes: number;
  /** The listen backlog. */
  backlog: number;
  run: RunPlugin;
  isPlugin(name: string): boolean;
  log: Logger;
  /** The shim as strand-nsexec, to run tools and delegates in a caller's namespaces (daemon/nsexec.ts). */
  nsexec?: { file: string; argv0: string } | undefined;
  /** Told of every request the plugin code runs (the metrics of lib/observe). */
  observer?: RequestObserver | undefined;
}

export type Outcome =
  /** ran; exitCode says how it went */
  | 'done'
  /** ran past the request deadline: 999 sent, work left to finish */
  | 'timeout'
  /** an error escaped the plugin: 999 sent */
  | 'crashed'
  /** ran, but the reply could not be delivered (shim gone) */
  | 'lost'
  /** not run: BUSY, UNSUPPORTED, REJECTED */
  | 'busy'
  | 'unsupported'
  | 'rejected'
  /** not run: the shim gave up before STARTED, or the connection failed while reading */
  | 'cancelled'
  /** not run: the peer is not uid 0 */
  | 'unauthorized';

export const OUTCOMES: readonly Outcome[] = ['done', 'timeout', 'crashed', 'lost', 'busy', 'unsupported', 'rejected', 'cancelled', 'unauthorized'];

/** One event per connection, for metrics and logs (the hook of issue #16). */
export interface RequestEvent {
  plugin: string;
  verb: string;
  outcome: Outcome;
  /** The plugin's exit status, when it ran. */
  exitCode?: number;
  /** Accept to reply sent. */
  durationMs: number;
  /** Why it was not run, when it was not. */
  reason?: string;
}

export type Observer = (e: RequestEvent) => void;

interface RequestContext {
  fail(e: unknown): void;
}

/** Which request the running code belongs to (an escaped error is attributed through it). */
const requestContext = new AsyncLocalStorage<RequestContext>();

function errorAnswer(msg: string, details: string): Answer {
  const err = new CniError(Code.Internal, msg, details);
  return { exitCode: 1, stdout: Buffer.from(`${JSON.stringify(err.toJSON('1.1.0'), null, 4)}\n`), stderr: Buffer.from(`strand daemon: ${msg}: ${details}\n`) };
}

export class Daemon {
  private readonly opts: DaemonOptions;
  private listener: Listener | undefined;
  private socketIno: number | undefined;
  private readonly connections = new Set<Connection>();
  private readonly observers: Observer[] = [];
  private running = 0;
  private draining = false;
  private idle: (() => void) | undefined;
  private escapedLogged = 0;
  private readonly onEscaped = (e: unknown): void => {
    const ctx = requestContext.getStore();
    if (ctx) ctx.fail(e);
    // Logged, a bounded number of times: a failure that repeats must not fill the disk.
    else if (this.escapedLogged++ < 100) this.opts.log.error('an error escaped outside any request (ignored)', e);
  };
  /** Requests served since start, by outcome. */
  readonly counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;

  constructor(opts: DaemonOptions) {
    this.opts = opts;
  }

  /** Calls `fn` for every connection's outcome. */
  observe(fn: Observer): void {
    this.observers.push(fn);
  }

  /** Requests running now (including timed-out ones whose work has not settled). */
  get inFlight(): number {
    return this.running;
  }

  get openConnections(): number {
    return this.connections.size;
  }

  /** Creates the socket (replacing a stale one): from here on shims are served. */
  start(): void {
    ensureSocketDir(dirname(this.opts.socket));
    process.on('uncaughtException', this.onEscaped);
    process.on('unhandledRejection', this.onEscaped);
    this.listener = new Listener(
      this.opts.socket,
      this.opts.backlog,
      (c) => this.accept(c),
      (e) => this.opts.log.error('accept failed', e),
    );
    this.socketIno = lstatSync(this.opts.socket).ino;
  }

  /**
   * Stops: the socket file goes first (new calls fall back to the standalone binary at
   * once), the listener closes (calls still in its backlog are reset and fall back too),
   * requests not yet started are answered BUSY, running ones get until `graceMs` to
   * finish. Resolves with the number of requests still running when it gave up.
   */
  async stop(graceMs: number): Promise<number> {
    this.draining = true;
    this.removeSocketFile();
    this.listener?.close();
    this.listener = undefined;
    if (this.running > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.idle = undefined;
    for (const c of this.connections) c.close();
    process.off('uncaughtException', this.onEscaped);
    process.off('unhandledRejection', this.onEscaped);
    return this.running;
  }

  /** Why the daemon cannot serve (undefined: it can): not started, stopping, or its socket file gone or replaced. */
  socketProblem(): string | undefined {
    if (!this.listener) return 'not listening';
    if (this.draining) return 'stopping';
    try {
      if (lstatSync(this.opts.socket).ino !== this.socketIno) return `${this.opts.socket} was replaced by another process`;
    } catch {
      return `${this.opts.socket} was removed: shims cannot reach this daemon`;
    }
    return undefined;
  }

  /** Unlinks the socket if it is still ours (a newer daemon may have replaced it already). */
  private removeSocketFile(): void {
    try {
      if (lstatSync(this.opts.socket).ino === this.socketIno) unlinkSync(this.opts.socket);
    } catch {
      // gone already
    }
  }

  private emit(e: RequestEvent): void {
    this.counts[e.outcome]++;
    for (const fn of this.observers) {
      try {
        fn(e);
      } catch (err) {
        this.opts.log.warn('a request observer failed', err);
      }
    }
  }

  private accept(c: Connection): void {
    this.connections.add(c);
    this.serve(c).finally(() => {
      c.close();
      this.connections.delete(c);
    });
  }

  /** Why a new request is not taken now, or undefined. */
  private busyReason(): string | undefined {
    if (this.draining) return 'the daemon is stopping';
    if (this.running >= this.opts.maxRequests) return `${this.running} requests running (--max-requests ${this.opts.maxRequests})`;
    const rss = process.memoryUsage.rss();
    if (rss > this.opts.maxRssBytes) return `resident memory ${Math.round(rss / 1048576)} MiB over the guard (--max-rss)`;
    return undefined;
  }

  /**
   * Reads one request frame and its descriptors within --read-timeout: the request, or
   * the refusal to send (bad frame, unsupported version), or a cancellation (stalled,
   * closed; `undefined` reason: a connection closed before its first byte, a readiness
   * probe of strand daemon status).
   */
  private async readRequest(
    c: Connection,
  ): Promise<{ req: Request; fds: number[] } | { refuse: [FrameKind, Outcome, string] } | { cancelled: string | undefined }> {
    try {
      const deadline = Date.now() + this.opts.readTimeoutMs;
      const header = decodeHeader(await c.readExactly(HEADER_SIZE, deadline));
      if (header.kind !== Kind.Request) return { refuse: [Kind.Rejected, 'rejected', `frame kind ${header.kind} is not a request`] };
      if (header.length > MAX_REQUEST_BODY) return { refuse: [Kind.Rejected, 'rejected', `request of ${header.length} bytes is over the limit`] };
      if (!SUPPORTED_VERSIONS.includes(header.version)) {
        await c.skip(header.length, deadline);
        return { refuse: [Kind.Unsupported, 'unsupported', `protocol version ${header.version}; this daemon serves ${SUPPORTED_VERSIONS.join(', ')}`] };
      }
      const body = await c.readExactly(header.length, deadline);
      const { fds, truncated } = c.takeFds();
      try {
        const req = decodeRequest(body);
        if (truncated || fds.length !== req.fdCount || fds.length > MAX_FDS) throw new ProtocolError(`${fds.length} descriptors, expected ${req.fdCount}`);
        return { req, fds };
      } catch (e) {
        for (const fd of fds) closeQuietly(fd);
        throw e;
      }
    } catch (e) {
      if (e instanceof ProtocolError) return { refuse: [Kind.Rejected, 'rejected', e.message] };
      if (e instanceof SocketClosedError && c.bytesRead === 0) return { cancelled: undefined };
      return { cancelled: e instanceof Error ? e.message : String(e) };
    }
  }

  private async serve(c: Connection): Promise<void> {
    const t0 = performance.now();
    let plugin = '';
    let verb = '';
    const done = (outcome: Outcome, extra: { exitCode?: number; reason?: string } = {}): void => {
      this.emit({ plugin, verb, outcome, durationMs: performance.now() - t0, ...extra });
    };
    const refuse = (kind: FrameKind, outcome: Outcome, reason: string): void => {
      c.trySendAll(encodeNotice(kind, reason));
      done(outcome, { reason });
    };

    if (c.uid !== 0) {
      done('unauthorized', { reason: `peer uid ${c.uid} (pid ${c.pid}) is not root` });
      return;
    }
    if (this.connections.size > this.opts.maxConnections || this.draining) {
      refuse(Kind.Busy, 'busy', this.draining ? 'the daemon is stopping' : `${this.connections.size} connections open`);
      return;
    }

    const read = await this.readRequest(c);
    if ('refuse' in read) return refuse(...read.refuse);
    if ('cancelled' in read) {
      if (read.cancelled !== undefined) done('cancelled', { reason: read.cancelled });
      return;
    }
    const { req, fds } = read;

    plugin = req.plugin;
    verb = req.env.find((e) => e.startsWith('CNI_COMMAND='))?.slice(12) ?? '';
    let handedOver = false;
    try {
      if (!this.opts.isPlugin(req.plugin)) return refuse(Kind.Rejected, 'rejected', `unknown plugin ${JSON.stringify(req.plugin)}`);
      const busy = this.busyReason();
      if (busy) return refuse(Kind.Busy, 'busy', busy);
      // The shim gives up waiting by shutting the connection: then STARTED cannot reach
      // it, and the request must not run (the shim runs it standalone).
      if (c.peerGone() || !c.trySendAll(encodeNotice(Kind.Started))) {
        done('cancelled', { reason: 'the shim stopped waiting before the request started' });
        return;
      }
      handedOver = true;
      const { answer, outcome } = await this.execute(req, fds);
      try {
        await c.sendAll(encodeResult(answer.exitCode, answer.stdout, answer.stderr), Date.now() + this.opts.writeTimeoutMs);
        done(outcome, { exitCode: answer.exitCode });
      } catch (e) {
        done('lost', { exitCode: answer.exitCode, reason: e instanceof Error ? e.message : String(e) });
      }
    } finally {
      // A started request owns its descriptors until its work settles (execute).
      if (!handedOver) for (const fd of fds) closeQuietly(fd);
    }
  }

  /**
   * Runs the request: resolves with its answer, or with a 999 answer at the request
   * deadline or when an error escapes it. Its descriptors are closed once its work has
   * settled, whenever that is.
   */
  private execute(req: Request, fds: number[]): Promise<{ answer: Answer; outcome: Outcome }> {
    this.running++;
    const { io, answer } = requestIO(req, fds, this.opts.nsexec, this.opts.observer);
    return new Promise((resolve) => {
      let finished = false;
      const finish = (a: Answer, outcome: Outcome): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve({ answer: a, outcome });
      };
      const timer = setTimeout(() => {
        finish(errorAnswer('strand daemon: request deadline passed', `${req.plugin} did not finish within ${this.opts.requestTimeoutMs} ms`), 'timeout');
        this.opts.log.error(`${req.plugin}: request deadline passed; its work continues in the background`);
      }, this.opts.requestTimeoutMs);
      const ctx: RequestContext = {
        fail: (e) => {
          this.opts.log.error(`${req.plugin}: an error escaped the request`, e);
          finish(errorAnswer('internal error', e instanceof Error ? e.message : String(e)), 'crashed');
        },
      };
      requestContext
        .run(ctx, () => Promise.resolve().then(() => this.opts.run(req.plugin, io)))
        .then(
          (code) => finish(answer(code), 'done'),
          (e: unknown) => ctx.fail(e),
        )
        .finally(() => {
          for (const fd of fds) closeQuietly(fd);
          this.running--;
          if (this.running === 0) this.idle?.();
        });
    });
  }
}

/** Makes the socket's directory root-only (0700, owned by root), creating it when missing. */
function ensureSocketDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== 0) throw new Error(`${dir} is owned by uid ${st.uid}, not root: refusing to put the socket there`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}
