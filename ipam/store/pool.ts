// Warm etcd stores for a long-lived process (strand daemon): one open store per distinct
// etcd configuration (endpoints, transport, TLS material, credentials, timeouts), shared
// by the requests that use it, instead of a new client and new connections per call.
// Bounded: at most `max` configurations, each closed after `idleMs` unused (a rotated
// certificate is new TLS material, hence a new key; the old client ages out). A plugin
// process never enables it: it opens a store per call and closes it (ipam/main.ts).
import { createHash } from 'node:crypto';
import type { EtcdConfig } from './etcd-config.ts';
import type { Store } from './types.ts';

interface Entry {
  store: Promise<Store>;
  users: number;
  lastUsed: number;
}

export class StorePool {
  private readonly entries = new Map<string, Entry>();
  private readonly max: number;
  private readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: { max: number; idleMs: number }) {
    this.max = opts.max;
    this.idleMs = opts.idleMs;
  }

  static key(cfg: EtcdConfig): string {
    return createHash('sha256')
      .update(JSON.stringify(cfg, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v)))
      .digest('hex');
  }

  get size(): number {
    return this.entries.size;
  }

  /** The store for `cfg` (opened with `open` when there is none); `release()` when done with it. */
  async lease(cfg: EtcdConfig, open: () => Promise<Store>): Promise<{ store: Store; release(): void }> {
    const key = StorePool.key(cfg);
    let e = this.entries.get(key);
    if (!e) {
      this.evictIdle(true);
      e = { store: open(), users: 0, lastUsed: Date.now() };
      this.entries.set(key, e);
      // A store that cannot be opened is not kept.
      e.store.catch(() => this.entries.get(key) === e && this.entries.delete(key));
    }
    const entry = e;
    entry.users++;
    entry.lastUsed = Date.now();
    try {
      const store = await entry.store;
      this.schedule();
      let released = false;
      return {
        store,
        release: () => {
          if (released) return;
          released = true;
          entry.users--;
          entry.lastUsed = Date.now();
        },
      };
    } catch (err) {
      entry.users--;
      throw err;
    }
  }

  /** Closes stores unused for idleMs; with `forRoom`, also the least recently used unused one when full. */
  private evictIdle(forRoom = false): void {
    const now = Date.now();
    for (const [k, e] of this.entries) {
      if (e.users === 0 && now - e.lastUsed >= this.idleMs) this.drop(k, e);
    }
    if (forRoom && this.entries.size >= this.max) {
      const idle = [...this.entries].filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      for (const [k, e] of idle.slice(0, this.entries.size - this.max + 1)) this.drop(k, e);
    }
  }

  private drop(key: string, e: Entry): void {
    this.entries.delete(key);
    void e.store.then((s) => s.close()).catch(() => undefined);
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(
      () => {
        this.evictIdle();
        if (this.entries.size === 0) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
      },
      Math.max(1000, this.idleMs / 2),
    );
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.store.then((s) => s.close()).catch(() => undefined)));
  }
}

let pool: StorePool | undefined;

/** Makes etcd stores outlive a call in this process (strand daemon). */
export function keepEtcdStores(opts: { max: number; idleMs: number }): StorePool {
  pool ??= new StorePool(opts);
  return pool;
}

/** The pool, when this process keeps stores (undefined in a plugin process). */
export function etcdStorePool(): StorePool | undefined {
  return pool;
}
