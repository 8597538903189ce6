// The two etcd v3 operations the IPAM store needs (range, transaction), behind one small
// interface with two transports:
//
// - grpcKv: the `etcd3` client (gRPC over HTTP/2). Loading it (etcd3, grpc-js,
//   protobufjs and the parsed etcd protos) costs ~200 ms of CPU per process, far more
//   than the plugin's own work, and it cannot live in the single executable's start-up
//   snapshot. Long-lived users (the node agent: leases and watches; the benchmark's
//   in-process allocator) use it.
// - httpKv: etcd's own JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`, on the client
//   URL, enabled by default since etcd 3.4) over node:http / node:https: ~5 ms to load.
//   A plugin process makes 2-4 requests and exits, so this is what it uses.
//
// Both give the same answers: keys and values as Buffers, revisions as numbers.
//
// Retries (httpKv): a request that fails on one endpoint (reset, timed out, no leader
// during an election) is tried on the next until the request deadline; one attempt may
// take a third of the request timeout (at least 0.5 s). That is safe for every
// transaction the store sends: each compares the revisions it read, so a transaction
// applied once and sent again fails its comparison instead of applying twice (the
// allocator then re-reads and finds its own earlier write). Fail fast: when every
// endpoint refused the connection in one round (nothing listens: etcd down, its socket
// gone, no route to it), the request fails at once instead of waiting for the deadline;
// the runtime retries the call (CNI code 11). The request deadline is the request
// timeout, or the caller's call deadline (KvOptions.deadline) when that comes first.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3, ICompare, IRequestOp } from 'etcd3';
import type { Agent, ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import type { EtcdConfig } from './etcd-config.ts';

export interface KvPair {
  key: Buffer;
  value: Buffer;
  modRevision: number;
}

/** `key`'s create (target Create) or mod (target Mod) revision equals `rev`. */
export interface KvCompare {
  key: Buffer;
  target: 'Create' | 'Mod';
  rev: number;
}

export type KvOp = { put: Buffer; value: Buffer } | { del: Buffer } | { range: Buffer; end?: Buffer };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** The pairs of each range op of `success`, in order (when it succeeded). */
  ranges: KvPair[][];
}

export interface EtcdKv {
  readonly transport: 'grpc' | 'http';
  /** The key, or every key in [key, end) when `end` is given; values left empty with `keysOnly`. */
  range(key: Buffer, end?: Buffer, keysOnly?: boolean): Promise<KvPair[]>;
  /** Applies `success` atomically when every comparison holds. */
  txn(compare: readonly KvCompare[], success: readonly KvOp[]): Promise<TxnResult>;
  close(): void;
}

/** Per-store options of a transport. */
export interface KvOptions {
  /**
   * Absolute time (Date.now() ms) after which no request of this store may still be
   * waiting: the plugin call's deadline, shared by every request of the call (so a hung
   * etcd costs the call one request timeout, not one per step). None: each request gets
   * the request timeout.
   */
  deadline?: number;
}

/** The deadline of one request started now: the request timeout, or the call's deadline when sooner. */
export function requestDeadline(requestTimeoutMs: number, opts: KvOptions | undefined): number {
  const own = Date.now() + requestTimeoutMs;
  return opts?.deadline === undefined ? own : Math.min(own, opts.deadline);
}

/**
 * Connection errors that mean nothing listens at the endpoint now (refused, its unix
 * socket missing, no route, a name that does not resolve): retrying within the same call
 * cannot help.
 */
const NOT_LISTENING = new Set(['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND']);

function isNotListening(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && NOT_LISTENING.has(code);
}

export function endpointUrl(ep: string, tls: boolean): string {
  return ep.includes('://') ? ep : `${tls ? 'https' : 'http'}://${ep}`;
}

// ---------------------------------------------------------------------------------
// gRPC (etcd3)

export function grpcKv(client: Etcd3): EtcdKv {
  const toOp = (o: KvOp): IRequestOp =>
    'put' in o
      ? { request_put: { key: o.put, value: o.value } }
      : 'del' in o
        ? { request_delete_range: { key: o.del } }
        : { request_range: o.end ? { key: o.range, range_end: o.end } : { key: o.range } };
  const pairs = (kvs: Array<{ key: Buffer; value: Buffer; mod_revision: string }>): KvPair[] =>
    kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: Number(kv.mod_revision) }));
  return {
    transport: 'grpc',
    async range(key, end, keysOnly) {
      const res = await client.kv.range({ key, ...(end ? { range_end: end } : {}), ...(keysOnly ? { keys_only: true } : {}) });
      return pairs(res.kvs);
    },
    async txn(compare, success) {
      const cmp: ICompare[] = compare.map((c) =>
        c.target === 'Create'
          ? { key: c.key, target: 'Create', result: 'Equal', create_revision: c.rev }
          : { key: c.key, target: 'Mod', result: 'Equal', mod_revision: c.rev },
      );
      const res = await client.kv.txn({ compare: cmp, success: success.map(toOp), failure: [] });
      return {
        succeeded: res.succeeded,
        revision: Number(res.header.revision),
        ranges: success.flatMap((o, j) => ('range' in o ? [pairs(res.responses[j]?.response_range?.kvs ?? [])] : [])),
      };
    },
    close() {
      client.close();
    },
  };
}

// ---------------------------------------------------------------------------------
// HTTP/JSON gateway

/** An answer from etcd that is not a success (HTTP status >= 300, or an error body). */
class EtcdHttpError extends Error {
  override readonly name = 'EtcdHttpError';
  readonly status: number;
  /** The gRPC status code etcd reports (14 unavailable, 4 deadline exceeded...), when any. */
  readonly grpcCode: number | undefined;
  constructor(status: number, grpcCode: number | undefined, message: string) {
    super(message);
    this.status = status;
    this.grpcCode = grpcCode;
  }
}

interface JsonKv {
  key?: string;
  value?: string;
  mod_revision?: string;
}
interface JsonRange {
  kvs?: JsonKv[];
}
interface JsonTxn {
  header?: { revision?: string };
  succeeded?: boolean;
  responses?: Array<{ response_range?: JsonRange }>;
}

const b64 = (b: Buffer): string => b.toString('base64');
// proto3 JSON leaves out empty and zero fields: a missing value is empty, a missing list none.
const jsonPairs = (kvs: JsonKv[] | undefined): KvPair[] =>
  (kvs ?? []).map((kv) => ({
    key: Buffer.from(kv.key ?? '', 'base64'),
    value: Buffer.from(kv.value ?? '', 'base64'),
    modRevision: Number(kv.mod_revision ?? 0),
  }));

/** Worth trying on another endpoint (or again): the member is unreachable or has no leader right now. */
function retryable(e: unknown): boolean {
  if (e instanceof EtcdHttpError) {
    // 14 unavailable (no leader, stopping), 4 deadline exceeded / request timed out,
    // 10 aborted (leader changed); 5xx from the gateway itself.
    return e.grpcCode === 14 || e.grpcCode === 4 || e.grpcCode === 10 || (e.grpcCode === undefined && e.status >= 500);
  }
  return true; // connection refused/reset, dial or request timeout, broken body
}

/** Where one endpoint is: host and port, or a unix socket (gRPC's unix:/path targets). */
interface Target {
  secure: boolean;
  label: string;
  host?: string;
  port?: number;
  socketPath?: string;
}

export function httpTarget(ep: string, tls: boolean): Target {
  const unix = /^(unixs?):(.*)$/i.exec(ep);
  if (unix) {
    // unix:/abs, unix:///abs, unix:relative (relative to the working directory)
    const rest = (unix[2] as string).startsWith('//') ? (unix[2] as string).slice(2) : (unix[2] as string);
    return { secure: (unix[1] as string).toLowerCase() === 'unixs' || tls, label: ep, socketPath: rest };
  }
  const u = new URL(endpointUrl(ep, tls));
  const secure = u.protocol === 'https:';
  return { secure, label: u.host, host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port ? Number(u.port) : secure ? 443 : 80 };
}

export function httpKv(cfg: EtcdConfig, kvOpts: KvOptions = {}): EtcdKv {
  return new HttpKv(cfg, kvOpts);
}

/** node:http or node:https with its keep-alive agent. */
interface HttpTransport {
  mod: typeof import('node:https');
  agent: Agent;
}

/** One POST of a JSON body; the parsed JSON answer, or EtcdHttpError for an etcd error. */
function postJson(
  t: HttpTransport,
  tg: Target,
  path: string,
  body: unknown,
  deadline: number,
  token: string | undefined,
  dialTimeoutMs: number,
): Promise<unknown> {
  const { mod, agent } = t;
  const payload = Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': payload.length };
  if (token) headers['authorization'] = token;
  const opts: RequestOptions =
    tg.socketPath !== undefined
      ? { method: 'POST', socketPath: tg.socketPath, host: 'localhost', path, agent, headers }
      : { method: 'POST', host: tg.host as string, port: tg.port as number, path, agent, headers };
  const where = tg.label;
  return new Promise((resolve, reject) => {
    let req: ClientRequest | undefined;
    const fail = (e: Error): void => {
      clearTimeout(timer);
      req?.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`etcd request to ${where} timed out`)), Math.max(1, deadline - Date.now()));
    req = mod.request(opts, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        try {
          resolve(etcdAnswer(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), where));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', fail);
    req.on('socket', (s) => {
      if (!s.connecting) return;
      const dial = setTimeout(() => fail(new Error(`cannot connect to etcd ${where} within ${dialTimeoutMs} ms`)), dialTimeoutMs);
      s.once('connect', () => clearTimeout(dial));
      s.once('close', () => clearTimeout(dial));
    });
    req.end(payload);
  });
}

/** The gateway's answer as JSON; its error (HTTP status >= 300, or an `error` field) as EtcdHttpError. */
function etcdAnswer(status: number, text: string, where: string): Record<string, unknown> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new EtcdHttpError(status, undefined, `etcd ${where} answered HTTP ${status} with a body that is not JSON`);
  }
  if (status >= 300 || typeof json['error'] === 'string') {
    const code = typeof json['code'] === 'number' ? json['code'] : undefined;
    const msg = typeof json['message'] === 'string' ? json['message'] : typeof json['error'] === 'string' ? json['error'] : `HTTP ${status}`;
    throw new EtcdHttpError(status, code, `etcd ${where}: ${msg}`);
  }
  return json;
}

/** A transaction in the gateway's JSON form. */
function txnBody(compare: readonly KvCompare[], success: readonly KvOp[]): unknown {
  return {
    compare: compare.map((c) =>
      c.target === 'Create'
        ? { key: b64(c.key), target: 'CREATE', result: 'EQUAL', create_revision: String(c.rev) }
        : { key: b64(c.key), target: 'MOD', result: 'EQUAL', mod_revision: String(c.rev) },
    ),
    success: success.map((o) =>
      'put' in o
        ? { request_put: { key: b64(o.put), value: b64(o.value) } }
        : 'del' in o
          ? { request_delete_range: { key: b64(o.del) } }
          : { request_range: o.end ? { key: b64(o.range), range_end: b64(o.end) } : { key: b64(o.range) } },
    ),
  };
}

/** etcd's v3 JSON gateway over node:http(s): failover between members, auth tokens per member. */
class HttpKv implements EtcdKv {
  readonly transport = 'http' as const;
  private readonly targets: Target[];
  /** node:http / node:https are loaded on first use, one keep-alive agent each. */
  private readonly agents = new Map<boolean, HttpTransport>();
  /** Spread processes over the members; move on from one that failed. */
  private current: number;
  private readonly tokens = new Map<number, string>();
  private closed = false;

  private readonly cfg: EtcdConfig;
  private readonly kvOpts: KvOptions;

  constructor(cfg: EtcdConfig, kvOpts: KvOptions) {
    this.cfg = cfg;
    this.kvOpts = kvOpts;
    this.targets = cfg.endpoints.map((e) => httpTarget(e, cfg.tls !== undefined));
    this.current = Math.floor(Math.random() * this.targets.length);
  }

  private transportFor(secure: boolean): HttpTransport {
    let t = this.agents.get(secure);
    if (!t) {
      const mod = process.getBuiltinModule(secure ? 'node:https' : 'node:http') as typeof import('node:https');
      const tls = this.cfg.tls;
      const agentOpts: Record<string, unknown> = { keepAlive: true };
      if (secure && tls?.ca) agentOpts['ca'] = tls.ca;
      if (secure && tls?.cert) agentOpts['cert'] = tls.cert;
      if (secure && tls?.key) agentOpts['key'] = tls.key;
      t = { mod, agent: new mod.Agent(agentOpts) };
      this.agents.set(secure, t);
    }
    return t;
  }

  private once(i: number, path: string, body: unknown, deadline: number, token: string | undefined): Promise<unknown> {
    const tg = this.targets[i] as Target;
    return postJson(this.transportFor(tg.secure), tg, path, body, deadline, token, this.cfg.dialTimeoutMs);
  }

  private async authToken(i: number, deadline: number): Promise<string | undefined> {
    const { username, password } = this.cfg;
    if (username === undefined || password === undefined) return undefined;
    let t = this.tokens.get(i);
    if (t === undefined) {
      // Simple tokens are per member: authenticate with the member we talk to.
      const res = (await this.once(i, '/v3/auth/authenticate', { name: username, password }, deadline, undefined)) as { token?: string };
      if (typeof res.token !== 'string') throw new EtcdHttpError(200, undefined, `etcd ${this.targets[i]?.label} sent no auth token`);
      t = res.token;
      this.tokens.set(i, t);
    }
    return t;
  }

  private async call(path: string, body: unknown): Promise<unknown> {
    if (this.closed) throw new Error('etcd store is closed');
    const n = this.targets.length;
    const deadline = requestDeadline(this.cfg.requestTimeoutMs, this.kvOpts);
    if (deadline <= Date.now()) throw new Error(`no time left for an etcd request (the call's deadline has passed)`);
    let last: unknown;
    // endpoints that refused the connection in this round; all of them: fail now
    let refused = 0;
    for (let attempt = 0; ; attempt++) {
      const i = this.current;
      try {
        // One attempt gets a third of the request's time: a member that lost its leader
        // holds a proposal until its own timeout (seconds), while another member (or the
        // same one, once a new leader is elected, ~0.1-1 s) answers at once.
        const attemptEnd = Math.min(deadline, Date.now() + Math.max(500, Math.floor(this.cfg.requestTimeoutMs / 3)));
        return await this.once(i, path, body, attemptEnd, await this.authToken(i, attemptEnd));
      } catch (e) {
        last = e;
        if (e instanceof EtcdHttpError && e.grpcCode === 16 && this.tokens.has(i)) {
          this.tokens.delete(i); // unauthenticated: the token expired, get a new one
        } else if (!retryable(e)) {
          throw e;
        } else {
          this.current = (i + 1) % n;
          if (isNotListening(e)) refused++;
        }
      }
      if (refused >= n) throw last;
      if ((attempt + 1) % n === 0) refused = 0;
      const left = deadline - Date.now();
      if (left <= 0) throw last;
      // Every member tried once: pause before the next round (an election takes ~0.1-1 s).
      if ((attempt + 1) % n === 0) await sleep(Math.min(50 * (attempt + 1), 300, left));
    }
  }

  async range(key: Buffer, end?: Buffer, keysOnly?: boolean): Promise<KvPair[]> {
    const res = (await this.call('/v3/kv/range', {
      key: b64(key),
      ...(end ? { range_end: b64(end) } : {}),
      ...(keysOnly ? { keys_only: true } : {}),
    })) as JsonRange;
    return jsonPairs(res.kvs);
  }

  async txn(compare: readonly KvCompare[], success: readonly KvOp[]): Promise<TxnResult> {
    const res = (await this.call('/v3/kv/txn', txnBody(compare, success))) as JsonTxn;
    const succeeded = res.succeeded === true;
    // one response per op of `success`, in order
    const ranges = succeeded ? success.flatMap((o, j) => ('range' in o ? [jsonPairs(res.responses?.[j]?.response_range?.kvs)] : [])) : [];
    return { succeeded, revision: Number(res.header?.revision ?? 0), ranges };
  }

  close(): void {
    this.closed = true;
    for (const t of this.agents.values()) t.agent.destroy();
  }
}
