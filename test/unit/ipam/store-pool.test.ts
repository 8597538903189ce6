// The daemon's warm etcd stores (ipam/store/pool.ts): one per configuration, shared,
// bounded, closed when idle or evicted; a failed open is not kept.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { MemoryStore } from '../../../ipam/store/memory.ts';
import { StorePool } from '../../../ipam/store/pool.ts';
import type { Store } from '../../../ipam/store/types.ts';

function cfg(endpoint: string, ca?: string): EtcdConfig {
  const c = { endpoints: [endpoint], prefix: '/strand/ipam', transport: 'http', dialTimeoutMs: 1000, requestTimeoutMs: 1000 } as unknown as EtcdConfig;
  if (ca) (c as { tls?: unknown }).tls = { ca: Buffer.from(ca) };
  return c;
}

class Tracked extends MemoryStore {
  closed = 0;
  override async close(): Promise<void> {
    this.closed++;
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe('StorePool', () => {
  it('one store per configuration, shared by concurrent leases; TLS material is part of the key', async () => {
    const pool = new StorePool({ max: 4, idleMs: 60_000 });
    let opened = 0;
    const open = async (): Promise<Store> => {
      opened++;
      return new Tracked();
    };
    const [a, b] = await Promise.all([pool.lease(cfg('e1'), open), pool.lease(cfg('e1'), open)]);
    expect(a.store).toBe(b.store);
    const c = await pool.lease(cfg('e1', 'ca-1'), open);
    const d = await pool.lease(cfg('e1', 'ca-2'), open);
    expect(new Set([a.store, c.store, d.store]).size).toBe(3);
    expect(opened).toBe(3);
    for (const l of [a, b, c, d]) l.release();
    await pool.close();
    expect([a.store, c.store, d.store].map((s) => (s as Tracked).closed)).toEqual([1, 1, 1]);
  });

  it('bounded: a new configuration evicts the least recently used idle store; leased ones stay', async () => {
    const pool = new StorePool({ max: 2, idleMs: 60_000 });
    const open = async (): Promise<Store> => new Tracked();
    const a = await pool.lease(cfg('a'), open);
    const b = await pool.lease(cfg('b'), open);
    a.release();
    const c = await pool.lease(cfg('c'), open);
    expect(pool.size).toBe(2);
    expect((a.store as Tracked).closed).toBe(1);
    expect((b.store as Tracked).closed).toBe(0);
    b.release();
    c.release();
    await pool.close();
  });

  it('closes stores idle for idleMs', async () => {
    vi.useFakeTimers();
    const pool = new StorePool({ max: 4, idleMs: 2000 });
    const l = await pool.lease(cfg('a'), async () => new Tracked());
    l.release();
    await vi.advanceTimersByTimeAsync(5000);
    expect(pool.size).toBe(0);
    expect((l.store as Tracked).closed).toBe(1);
    await pool.close();
  });

  it('a store that cannot be opened is not kept: the next lease tries again', async () => {
    const pool = new StorePool({ max: 4, idleMs: 60_000 });
    await expect(pool.lease(cfg('a'), () => Promise.reject(new Error('etcd down')))).rejects.toThrow('etcd down');
    expect(pool.size).toBe(0);
    const l = await pool.lease(cfg('a'), async () => new Tracked());
    expect(l.store).toBeInstanceOf(Tracked);
    l.release();
    await pool.close();
  });
});
