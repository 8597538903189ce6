// The agent's etcd side: one consistent listing of node records, liveness keys, block
// affinities and blocks; a watch from the listing's revision; the node record (kept
// without a lease: peers route to the node's blocks while the agent is away) and the
// liveness key (on a lease the agent keeps alive).
// The connection is the IPAM's (ipam/store/etcd.ts: endpoints, TLS, auth, timeouts).
import type { Etcd3, IKeyValue, IOptions, IRequestOp, Lease, Watcher } from 'etcd3';
import type { EtcdConfig } from '../ipam/store/etcd-config.ts';
import { EtcdStore, openEtcdStore } from '../ipam/store/etcd.ts';
import { timed, type RequestTiming } from '../lib/observe/timed.ts';

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

export interface Listing {
  revision: number;
  kvs: Array<[string, string]>;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  value?: string;
}

export interface WatchHandle {
  cancel(): Promise<void>;
}

export interface Registration {
  lease: Lease;
  /** Settles when etcd says the lease is gone (or keep-alives failed for too long). */
  lost: Promise<unknown>;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Rejects after `ms` unless `p` settles first. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

export class Registry {
  readonly prefix: string;
  /** Told about every etcd request (operation, seconds, success): the agent's metrics. */
  onRequest: RequestTiming | undefined;
  readonly timeoutMs: number;
  private readonly store: EtcdStore;
  private readonly mod: typeof import('etcd3');

  private constructor(store: EtcdStore, mod: typeof import('etcd3'), cfg: EtcdConfig) {
    this.store = store;
    this.mod = mod;
    this.prefix = cfg.prefix;
    this.timeoutMs = cfg.requestTimeoutMs;
  }

  /**
   * Creates the client (no round trip yet: etcd may well be down at this point), with
   * the IPAM's connection settings (endpoints, TLS, auth, timeouts) but without etcd3's
   * per-host circuit breaker: after 3 failures it refuses every call for 5 s, which,
   * right after an etcd restart, outlasts a short node lease and would make peers drop
   * their routes to this node. The agent has its own backoff.
   */
  static async open(cfg: EtcdConfig): Promise<Registry> {
    const ipamStore = await openEtcdStore(cfg);
    const mod = await import('etcd3');
    const options = (ipamStore.client as unknown as { options: IOptions }).options;
    ipamStore.client.close();
    // the one method etcd3 calls on a host policy
    const passThrough = {
      execute: (fn: (ctx: { signal: AbortSignal }) => unknown) => Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
    };
    const host = (): HostPolicy => passThrough as unknown as HostPolicy;
    const client = new mod.Etcd3({ ...options, faultHandling: { ...options.faultHandling, host } });
    return new Registry(new EtcdStore(client, cfg.prefix), mod, cfg);
  }

  get client(): Etcd3 {
    return this.store.client;
  }

  /** The IPAM store over this client (completing pending releases, releasing gone nodes). */
  get ipamStore(): EtcdStore {
    return this.store;
  }

  nodeKey(node: string): string {
    return `${this.prefix}/nodes/${node}`;
  }

  aliveKey(node: string): string {
    return `${this.prefix}/alive/${node}`;
  }

  /** Node records, liveness keys, affinities and blocks in one read-only transaction (one revision). */
  async list(): Promise<Listing> {
    const dirs = [`${this.prefix}/nodes/`, `${this.prefix}/alive/`, this.store.keys.affinity(), this.store.keys.block()];
    const success: IRequestOp[] = dirs.map((d) => {
      const r = this.mod.Range.prefix(d);
      return { request_range: { key: r.start, range_end: r.end } };
    });
    const res = await timed(this.onRequest, 'list', () => this.client.kv.txn({ compare: [], success, failure: [] }));
    const kvs: Array<[string, string]> = [];
    for (const r of res.responses) {
      for (const kv of r.response_range.kvs) kvs.push([kv.key.toString(), kv.value.toString()]);
    }
    return { revision: Number(res.header.revision), kvs };
  }

  /**
   * Watches `<prefix>/` from `afterRevision + 1`. `onEvents` gets the events of each
   * response; `onBroken` is called once, when the stream disconnects or etcd cancels the
   * watch (compaction): the caller lists again and starts a new watch.
   */
  async watch(afterRevision: number, onEvents: (evs: WatchEvent[]) => void, onBroken: (why: string) => void): Promise<WatchHandle> {
    const w: Watcher = this.client
      .watch()
      .prefix(`${this.prefix}/`)
      .startRevision(String(afterRevision + 1))
      .watcher();
    let broken = false;
    const cancel = async (): Promise<void> => {
      w.removeAllListeners();
      w.on('error', () => undefined);
      await withTimeout(w.cancel(), 2000, 'watch cancel').catch(() => undefined);
    };
    const fail = (why: string): void => {
      if (broken) return;
      broken = true;
      void cancel();
      onBroken(why);
    };
    w.on('data', (res) => {
      if (broken) return;
      const evs: WatchEvent[] = res.events.map((e) => {
        const kv: IKeyValue = e.kv;
        const ev: WatchEvent = { type: e.type === 'Delete' ? 'delete' : 'put', key: kv.key.toString() };
        if (ev.type === 'put') ev.value = kv.value.toString();
        return ev;
      });
      if (evs.length) onEvents(evs);
    });
    w.on('disconnected', (e) => fail(`watch disconnected: ${errorText(e)}`));
    w.on('error', (e) => fail(`watch failed: ${errorText(e)}`));
    w.on('end', () => fail('watch ended'));
    await timed(this.onRequest, 'watch', () =>
      withTimeout(new Promise<void>((resolve) => w.once('connected', () => resolve())), this.timeoutMs, 'watch create'),
    ).catch((e: unknown) => {
      fail(errorText(e));
    });
    return {
      cancel: () => {
        if (broken) return Promise.resolve();
        broken = true;
        return cancel();
      },
    };
  }

  /**
   * Writes the node record (no lease; only when it changed, so peers see no needless
   * event), then grants a lease with automatic keep-alive and puts the liveness key on it.
   */
  async register(node: string, record: unknown, alive: unknown, ttlSeconds: number): Promise<Registration> {
    const value = JSON.stringify(record);
    const current = await timed(this.onRequest, 'get', () => withTimeout(this.client.get(this.nodeKey(node)).string(), this.timeoutMs, 'node record read'));
    if (current !== value) {
      await timed(this.onRequest, 'put', () => withTimeout(this.client.put(this.nodeKey(node)).value(value).exec(), this.timeoutMs, 'node record write'));
    }
    const lease = this.client.lease(ttlSeconds);
    const lost = new Promise<unknown>((resolve) => lease.on('lost', resolve));
    let fired = 0;
    lease.on('keepaliveFired', () => {
      fired = performance.now();
    });
    lease.on('keepaliveSucceeded', () => this.onRequest?.('lease_keepalive', (performance.now() - fired) / 1000, true));
    lease.on('keepaliveFailed', () => this.onRequest?.('lease_keepalive', (performance.now() - fired) / 1000, false));
    try {
      await timed(this.onRequest, 'lease_put', () =>
        withTimeout(lease.put(this.aliveKey(node)).value(JSON.stringify(alive)).exec(), this.timeoutMs * 2, 'node registration'),
      );
    } catch (e) {
      lease.release();
      throw e;
    }
    return { lease, lost };
  }

  /**
   * Reserves `cidr` in IPAM network `network` (as `strand ipam reserve`: never handed
   * out), for flat mode's node addresses. Returns the attachments already holding
   * addresses inside it.
   */
  async reserve(network: string, cidr: string, note: string): Promise<Array<{ ip: string; containerId: string; ifname: string; node: string }>> {
    const { reserve } = await import('../ipam/reservations.ts');
    return (await timed(this.onRequest, 'reserve', () => withTimeout(reserve(this.store, network, { cidr, note }), this.timeoutMs * 2, 'reservation'))).holders;
  }

  /** Closes the client. Leases are not revoked: liveness keys live until their TTL ends. */
  async close(): Promise<void> {
    await this.store.close().catch(() => undefined);
  }
}
