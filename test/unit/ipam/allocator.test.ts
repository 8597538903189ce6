import { describe, expect, it } from 'vitest';
import { Allocator, IpamConflictError, IpamExhaustedError } from '../../../ipam/allocator.ts';
import { parseIpamConfig } from '../../../ipam/config.ts';
import { MemoryStore } from '../../../ipam/store/memory.ts';
import type { Store, WriteOp } from '../../../ipam/store/types.ts';
import { formatIP } from '../../../lib/addr/cidr.ts';
import type { NetConf } from '../../../lib/cni/types.ts';

function conf(ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf {
  return { cniVersion: '1.1.0', name: 'net1', type: 'bridge', ipam: { type: 'strand-ipam', ...ipam }, ...extra };
}

function alloc(ipam: Record<string, unknown>, opts: { store?: Store; node?: string; extra?: Partial<NetConf>; cniArgs?: string } = {}): Allocator {
  const config = parseIpamConfig(conf(ipam, opts.extra ?? {}), { cniArgs: opts.cniArgs ?? '' });
  return new Allocator({ store: opts.store ?? new MemoryStore(), config, node: opts.node ?? 'node-a' });
}

const ips = async (a: Allocator, id: string, ifname = 'eth0'): Promise<string[]> => (await a.allocate(id, ifname)).map((x) => formatIP(x.ip));

describe('allocator over the memory store', () => {
  it('hands out .2 first (gateway .1 and the network are skipped) and round-robins after release', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] });
    expect(await ips(a, 'c1')).toEqual(['10.1.0.2']);
    expect(await ips(a, 'c2')).toEqual(['10.1.0.3']);
    await a.release('c1', 'eth0');
    // round robin: continues after the last reserved address, like host-local
    expect(await ips(a, 'c3')).toEqual(['10.1.0.4']);
  });

  it('respects rangeStart/rangeEnd and exhausts with an error naming the range', async () => {
    const a = alloc({ blockSize: 24, ranges: [[{ subnet: '10.1.0.0/24', rangeStart: '10.1.0.10', rangeEnd: '10.1.0.12' }]] });
    expect(await ips(a, 'c1')).toEqual(['10.1.0.10']);
    expect(await ips(a, 'c2')).toEqual(['10.1.0.11']);
    expect(await ips(a, 'c3')).toEqual(['10.1.0.12']);
    const err = await a.allocate('c4', 'eth0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IpamExhaustedError);
    expect((err as Error).message).toContain('10.1.0.10-10.1.0.12');
    expect((err as Error).message).toContain('ipam.ranges[0]');
  });

  it('never hands out network, broadcast or the gateway (a /29 gives exactly 5 addresses)', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.2.0.0/29', gateway: '10.2.0.3', rangeStart: '10.2.0.0', rangeEnd: '10.2.0.7' }]] });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(...(await ips(a, `c${i}`)));
    expect(got.sort()).toEqual(['10.2.0.1', '10.2.0.2', '10.2.0.4', '10.2.0.5', '10.2.0.6']);
    await expect(a.allocate('c9', 'eth0')).rejects.toBeInstanceOf(IpamExhaustedError);
  });

  it('IPv6: skips the subnet-router address and the gateway, keeps the last address', async () => {
    const a = alloc({ ranges: [[{ subnet: 'fd00::/126' }]] });
    expect(await ips(a, 'c1')).toEqual(['fd00::2']);
    expect(await ips(a, 'c2')).toEqual(['fd00::3']);
    await expect(a.allocate('c3', 'eth0')).rejects.toBeInstanceOf(IpamExhaustedError);
  });

  it('repeated ADD returns the same addresses; DEL releases by (containerID, ifname); DEL twice is fine', async () => {
    const store = new MemoryStore();
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }], [{ subnet: 'fd00::/64' }]] }, { store });
    const first = await ips(a, 'c1');
    expect(first).toEqual(['10.1.0.2', 'fd00::2']);
    expect(await ips(a, 'c1')).toEqual(first);
    expect(await ips(a, 'c1', 'net1')).toEqual(['10.1.0.3', 'fd00::3']);
    expect(await a.release('c1', 'eth0')).toEqual(['10.1.0.2', 'fd00::2']);
    expect(await a.release('c1', 'eth0')).toEqual([]);
    const left = await store.listAttachments('net1');
    expect(left.map((x) => x.value.ifname)).toEqual(['net1']);
  });

  it('requested IPs: honoured, conflicts refused, outside every range is config error 7', async () => {
    const store = new MemoryStore();
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { store, extra: { args: { cni: { ips: ['10.1.0.77'] } } } });
    expect(await ips(a, 'c1')).toEqual(['10.1.0.77']);
    const b = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { store, extra: { runtimeConfig: { ips: ['10.1.0.77/24'] } } });
    await expect(b.allocate('c2', 'eth0')).rejects.toBeInstanceOf(IpamConflictError);
    expect(() => alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { extra: { args: { cni: { ips: ['10.9.0.1'] } } } })).toThrow(
      /args\.cni\.ips\[0\].*not in any configured range/,
    );
    // CNI_ARGS IP= is used when args.cni.ips is absent ...
    const c = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { store, cniArgs: 'IgnoreUnknown=1;IP=10.1.0.99' });
    expect(await ips(c, 'c3')).toEqual(['10.1.0.99']);
    // ... and ignored when it is given
    const d = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { store, cniArgs: 'IP=10.1.0.98', extra: { args: { cni: { ips: ['10.1.0.97'] } } } });
    expect(await ips(d, 'c4')).toEqual(['10.1.0.97']);
    expect(() => alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { cniArgs: 'IP=10.1.0.1' })).toThrow(/gateway/);
  });

  it('dual-stack rollback: when the second range set fails, the first address is released', async () => {
    const store = new MemoryStore();
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }], [{ subnet: 'fd00::/126' }]] }, { store });
    await ips(a, 'c1');
    await ips(a, 'c2');
    await expect(a.allocate('c3', 'eth0')).rejects.toBeInstanceOf(IpamExhaustedError);
    expect(await store.getAttachment('net1', 'c3', 'eth0')).toBeUndefined();
    const blocks = await store.listBlocks('net1');
    const held = blocks.flatMap((b) => Object.keys(b.value.allocations)).sort();
    expect(held).toEqual(['10.1.0.2', '10.1.0.3', 'fd00::2', 'fd00::3']);
  });

  it('blocks: a node claims a /26, claims another when full, releases an empty one but keeps its last', async () => {
    const store = new MemoryStore();
    // /26 blocks, as the etcd store has by default (the local store's default is one block per range)
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]], blockSize: 26 }, { store });
    for (let i = 0; i < 62; i++) await a.allocate(`c${i}`, 'eth0'); // .2-.63 fill the first block
    expect((await store.listAffinities('net1')).map((x) => x.cidr)).toEqual(['10.1.0.0/26']);
    expect(await ips(a, 'x')).toEqual(['10.1.0.64']);
    expect((await store.listAffinities('net1')).map((x) => x.cidr).sort()).toEqual(['10.1.0.0/26', '10.1.0.64/26']);
    await a.release('x', 'eth0'); // second block empty, node has another: released
    expect((await store.listAffinities('net1')).map((x) => x.cidr)).toEqual(['10.1.0.0/26']);
    for (let i = 0; i < 62; i++) await a.release(`c${i}`, 'eth0'); // last block kept
    expect((await store.listAffinities('net1')).map((x) => x.cidr)).toEqual(['10.1.0.0/26']);
    expect(Object.keys((await store.listBlocks('net1'))[0]?.value.allocations ?? {})).toEqual([]);
  });

  it('blocks: nodes get separate blocks; when none is free a node borrows, unless strictAffinity', async () => {
    const store = new MemoryStore();
    const r = { ranges: [[{ subnet: '10.1.0.0/25' }]], blockSize: 26 };
    const a = alloc(r, { store, node: 'a' });
    const b = alloc(r, { store, node: 'b' });
    expect(await ips(a, 'a1')).toEqual(['10.1.0.2']);
    expect(await ips(b, 'b1')).toEqual(['10.1.0.64']);
    const aff = (await store.listAffinities('net1')).map((x) => `${x.cidr}=${x.node}`).sort();
    expect(aff).toEqual(['10.1.0.0/26=a', '10.1.0.64/26=b']);
    for (let i = 2; i <= 63; i++) await b.allocate(`b${i}`, 'eth0'); // fills .64-.126
    const borrowed = await ips(b, 'b-borrow');
    expect(borrowed[0]).toMatch(/^10\.1\.0\.(\d+)$/);
    expect(Number(borrowed[0]?.split('.')[3])).toBeLessThan(64);
    const blockA = (await store.getBlocks('net1', ['10.1.0.0/26']))[0];
    expect(blockA?.value.allocations[borrowed[0] as string]).toEqual({ containerId: 'b-borrow', ifname: 'eth0', node: 'b' });
    const strict = alloc({ ...r, strictAffinity: true }, { store, node: 'b' });
    await expect(strict.allocate('b-strict', 'eth0')).rejects.toBeInstanceOf(IpamExhaustedError);
    // GC on b releases b's allocations not listed as valid, including the borrowed one
    const { released } = await b.gc([{ containerID: 'b1', ifname: 'eth0' }], { startedAt: Date.now(), graceMs: 0 });
    expect(released).toContain(borrowed[0]);
    expect(released).toHaveLength(63);
    expect((await store.listAttachments('net1')).map((x) => x.value.containerId).sort()).toEqual(['a1', 'b1']);
  });

  it('concurrent allocations on one node and across nodes never duplicate', async () => {
    const store = new MemoryStore();
    const r = { ranges: [[{ subnet: '10.4.0.0/22' }]] };
    const nodes = ['n1', 'n2', 'n3', 'n4'].map((n) => alloc(r, { store, node: n }));
    const all = await Promise.all(Array.from({ length: 400 }, (_, i) => (nodes[i % 4] as Allocator).allocate(`c${i}`, 'eth0')));
    const got = all.map((x) => formatIP((x[0] as { ip: { family: 4; value: bigint } }).ip));
    expect(new Set(got).size).toBe(400);
    await Promise.all(Array.from({ length: 400 }, (_, i) => (nodes[i % 4] as Allocator).release(`c${i}`, 'eth0')));
    expect(await store.listAttachments('net1')).toEqual([]);
    expect((await store.listBlocks('net1')).flatMap((b) => Object.keys(b.value.allocations))).toEqual([]);
  });

  it('a commit whose reply was lost is not allocated twice', async () => {
    const inner = new MemoryStore();
    let drop = true;
    const lossy: Store = Object.assign(Object.create(inner) as MemoryStore, {
      async commit(ops: readonly WriteOp[]) {
        const rev = await inner.commit(ops);
        if (drop && rev !== undefined) {
          drop = false;
          return undefined; // applied, but the caller sees a conflict
        }
        return rev;
      },
    });
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] }, { store: lossy });
    expect(await ips(a, 'c1')).toEqual(['10.1.0.2']);
    expect(await ips(a, 'c2')).toEqual(['10.1.0.3']);
  });

  it('CHECK: passes for a live allocation, fails when missing or not in prevResult', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.1.0.0/24' }]] });
    await a.allocate('c1', 'eth0');
    await expect(a.check('c1', 'eth0', ['10.1.0.2'])).resolves.toBeTruthy();
    await expect(a.check('c1', 'eth0', ['10.1.0.9'])).rejects.toThrow(/missing from prevResult/);
    await expect(a.check('c2', 'eth0')).rejects.toThrow(/no allocation/);
  });
});
