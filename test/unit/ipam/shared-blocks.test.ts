// ipam.blockAffinity false (flat mode, docs/flat.md): blocks of no node, every node
// allocates anywhere in the range, over the memory store.
import { describe, expect, it } from 'vitest';
import { Allocator, IpamExhaustedError, SHARED_BLOCK_OWNER } from '../../../ipam/allocator.ts';
import { parseIpamConfig } from '../../../ipam/config.ts';
import { reserve } from '../../../ipam/reservations.ts';
import { MemoryStore } from '../../../ipam/store/memory.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { formatIP, type parseIP } from '../../../lib/addr/cidr.ts';
import { CniError } from '../../../lib/cni/errors.ts';

const RANGE = { subnet: '192.168.77.0/24', gateway: '192.168.77.1' };

function alloc(store: Store, node: string, ipam: Record<string, unknown> = {}): Allocator {
  const config = parseIpamConfig(
    { cniVersion: '1.1.0', name: 'flat', type: 'strand-bridge', ipam: { type: 'strand-ipam', ranges: [[RANGE]], blockAffinity: false, ...ipam } },
    { cniArgs: '' },
  );
  return new Allocator({ store, config, node });
}

const one = async (a: Allocator, id: string): Promise<string> => formatIP(((await a.allocate(id, 'eth0'))[0] as { ip: ReturnType<typeof parseIP> }).ip);

describe('shared blocks (ipam.blockAffinity false)', () => {
  it('blocks belong to no node; each allocation names its node; every node may use any block', async () => {
    const store = new MemoryStore();
    const [a, b] = [alloc(store, 'n1'), alloc(store, 'n2')];
    const x = await one(a, 'c1');
    const y = await one(b, 'c2');
    expect(x).not.toBe(y);
    const blocks = await store.listBlocks('flat');
    expect(blocks.every((bl) => bl.value.node === SHARED_BLOCK_OWNER)).toBe(true);
    const refs = blocks.flatMap((bl) => Object.entries(bl.value.allocations));
    expect(Object.fromEntries(refs)).toEqual({
      [x]: { containerId: 'c1', ifname: 'eth0', node: 'n1' },
      [y]: { containerId: 'c2', ifname: 'eth0', node: 'n2' },
    });
    expect((await store.listAffinities('flat')).map((f) => f.node)).toEqual(blocks.map(() => SHARED_BLOCK_OWNER));
  });

  it('three nodes in parallel fill a /24 exactly: no duplicates, no reserved address, then exhaustion', async () => {
    const store = new MemoryStore();
    await reserve(store, 'flat', { cidr: '192.168.77.11', note: 'node n1' });
    await reserve(store, 'flat', { cidr: '192.168.77.12', note: 'node n2' });
    await reserve(store, 'flat', { cidr: '192.168.77.13', note: 'node n3' });
    const nodes = ['n1', 'n2', 'n3'].map((n) => alloc(store, n, { exclude: ['192.168.77.250/31'] }));
    const got: string[] = [];
    const errors: unknown[] = [];
    await Promise.all(
      nodes.map(async (a, i) => {
        for (let k = 0; k < 100; k++) {
          try {
            got.push(await one(a, `n${i}-c${k}`));
          } catch (e) {
            errors.push(e);
          }
        }
      }),
    );
    // 254 usable - gateway - 3 nodes - 2 excluded
    expect(got.length).toBe(248);
    expect(new Set(got).size).toBe(got.length);
    for (const r of ['192.168.77.1', '192.168.77.11', '192.168.77.12', '192.168.77.13', '192.168.77.250', '192.168.77.251', '192.168.77.0', '192.168.77.255'])
      expect(got).not.toContain(r);
    expect(errors).toHaveLength(52);
    expect(errors.every((e) => e instanceof IpamExhaustedError)).toBe(true);
    // blocks are not the nodes': some hold addresses of several nodes
    const nodesPerBlock = (await store.listBlocks('flat')).map((bl) => new Set(Object.values(bl.value.allocations).map((ref) => ref.node)).size);
    expect(Math.max(...nodesPerBlock)).toBeGreaterThan(1);
  });

  it('release and GC per node work as before; an empty shared block stays while it is the last one', async () => {
    const store = new MemoryStore();
    const [a, b] = [alloc(store, 'n1'), alloc(store, 'n2')];
    await one(a, 'c1');
    await one(b, 'c2');
    const r = await a.gc([], { startedAt: Date.now() + 60_000, graceMs: 0 });
    expect(r.released).toHaveLength(1);
    expect((await store.listAttachments('flat')).map((x) => x.value.containerId)).toEqual(['c2']);
    await b.release('c2', 'eth0');
    expect(await store.listAttachments('flat')).toEqual([]);
    expect((await store.listBlocks('flat')).length).toBeGreaterThan(0);
  });

  it('refuses blockAffinity false with strictAffinity', () => {
    expect(() => alloc(new MemoryStore(), 'n1', { strictAffinity: true })).toThrow(CniError);
  });
});
