// The allocator's integrity rules over the in-memory store: attachments are the truth
// (damaged blocks never lead to a duplicate; repair rebuilds them), exclusions and
// reservations are never handed out, GC keeps what it must, and the document checks.
import { describe, expect, it } from 'vitest';
import { Allocator, IpamConflictError, IpamReservedError } from '../../../ipam/allocator.ts';
import { parseIpamConfig } from '../../../ipam/config.ts';
import { reservationCidr, reserve, unreserve } from '../../../ipam/reservations.ts';
import { applyOps, docProblem, emptyDoc, salvageDoc } from '../../../ipam/store/doc.ts';
import { MemoryStore } from '../../../ipam/store/memory.ts';
import type { Attachment, Store, Versioned } from '../../../ipam/store/types.ts';
import { formatIP, parseIP } from '../../../lib/addr/cidr.ts';
import { CniError } from '../../../lib/cni/errors.ts';
import type { NetConf } from '../../../lib/cni/types.ts';

function conf(ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf {
  return { cniVersion: '1.1.0', name: 'net1', type: 'bridge', ipam: { type: 'strand-ipam', ...ipam }, ...extra };
}

function alloc(ipam: Record<string, unknown>, opts: { store?: Store; node?: string; extra?: Partial<NetConf>; now?: () => number } = {}): Allocator {
  const config = parseIpamConfig(conf(ipam, opts.extra ?? {}), { cniArgs: '' });
  return new Allocator({ store: opts.store ?? new MemoryStore(), config, node: opts.node ?? 'node-a', ...(opts.now ? { now: opts.now } : {}) });
}

const first = async (a: Allocator, id: string, ifname = 'eth0'): Promise<string> => formatIP((await a.allocate(id, ifname))[0]!.ip);

describe('attachments are the truth', () => {
  it('a store refuses a second attachment for a held address, whatever the blocks say', () => {
    const doc = emptyDoc('n');
    const att = (id: string, ip: string): Attachment => ({
      network: 'n',
      containerId: id,
      ifname: 'eth0',
      node: 'a',
      ips: [{ ip, block: '10.0.0.0/26' }],
      created: 'x',
    });
    expect(applyOps(doc, [{ op: 'putAttachment', attachment: att('c1', '10.0.0.5'), prevRev: 0, prevIps: [] }])).toBe(1);
    expect(applyOps(doc, [{ op: 'putAttachment', attachment: att('c2', '10.0.0.5'), prevRev: 0, prevIps: [] }])).toBeUndefined();
    // freed in the same commit: allowed
    expect(
      applyOps(doc, [
        { op: 'delAttachment', network: 'n', containerId: 'c1', ifname: 'eth0', prevRev: 1, ips: ['10.0.0.5'] },
        { op: 'putAttachment', attachment: att('c2', '10.0.0.5'), prevRev: 0, prevIps: [] },
      ]),
    ).toBe(2);
  });

  for (const damage of ['blocks deleted', 'block entries deleted'] as const) {
    it(`${damage}, attachments kept: 200 allocations hand out no held address; repair restores the blocks`, async () => {
      const store = new MemoryStore();
      const r = { ranges: [[{ subnet: '10.9.0.0/23' }]] };
      const nodes = ['a', 'b'].map((n) => alloc(r, { store, node: n }));
      const held = new Set<string>();
      for (let i = 0; i < 100; i++) held.add(await first(nodes[i % 2]!, `old${i}`));
      const doc = store.rawDoc('net1');
      if (damage === 'blocks deleted') doc.blocks = {};
      else for (const b of Object.values(doc.blocks)) b.value.allocations = {};
      // fresh allocators (as fresh plugin processes: no caches)
      const fresh = ['a', 'b'].map((n) => alloc(r, { store, node: n }));
      const got: string[] = [];
      for (let i = 0; i < 200; i++) got.push(await first(fresh[i % 2]!, `new${i}`));
      expect(got.filter((ip) => held.has(ip))).toEqual([]);
      expect(new Set(got).size).toBe(200);
      const report = await alloc(r, { store, node: 'cli' }).repair();
      expect(report.conflicts).toEqual([]);
      const again = await alloc(r, { store, node: 'cli' }).repair();
      expect(again).toEqual({ orphans: [], restored: [], blocksCreated: [], attachmentsFixed: [], conflicts: [] });
      const atts = await store.listAttachments('net1');
      expect(atts).toHaveLength(300);
      const inBlocks = new Map<string, string>();
      for (const b of await store.listBlocks('net1')) for (const [ip, ref] of Object.entries(b.value.allocations)) inBlocks.set(ip, ref.containerId);
      for (const a of atts) expect(inBlocks.get(a.value.ips[0]!.ip)).toBe(a.value.containerId);
    });
  }

  it('repair drops block entries no attachment holds and corrects an attachment naming the wrong block', async () => {
    const store = new MemoryStore();
    const r = { ranges: [[{ subnet: '10.9.0.0/24' }]], blockSize: 26 };
    const a = alloc(r, { store });
    await first(a, 'c1');
    const doc = store.rawDoc('net1');
    const b = Object.values(doc.blocks)[0]!;
    b.value.allocations['10.9.0.40'] = { containerId: 'ghost', ifname: 'eth0' };
    Object.values(doc.attachments)[0]!.value.ips[0]!.block = '10.9.0.128/26';
    const rep = await alloc(r, { store }).repair();
    expect(rep.orphans).toEqual(['10.9.0.40']);
    expect(rep.attachmentsFixed).toEqual(['c1/eth0']);
    expect((await store.getAttachment('net1', 'c1', 'eth0'))?.value.ips[0]?.block).toBe('10.9.0.0/26');
  });

  it('a requested address held by an attachment its block forgot is refused (103), not handed out', async () => {
    const store = new MemoryStore();
    const r = { ranges: [[{ subnet: '10.9.0.0/24' }]] };
    await first(alloc(r, { store }), 'c1'); // 10.9.0.2
    for (const b of Object.values(store.rawDoc('net1').blocks)) b.value.allocations = {};
    const req = alloc(r, { store, extra: { args: { cni: { ips: ['10.9.0.2'] } } } });
    await expect(req.allocate('c2', 'eth0')).rejects.toBeInstanceOf(IpamConflictError);
  });
});

describe('exclude and reservations', () => {
  it('exclude: range-level and ipam-level, never handed out; a requested excluded address is code 7', async () => {
    const a = alloc({ ranges: [[{ subnet: '10.8.0.0/28', exclude: ['10.8.0.2/31'] }]], exclude: ['10.8.0.5', 'fd00::/64'] });
    // .1 gateway, .2-.3 and .5 excluded, .15 broadcast: exactly ten addresses, in order
    const got: string[] = [];
    for (let i = 0; i < 10; i++) got.push(await first(a, `c${i}`));
    expect(got).toEqual(['4', '6', '7', '8', '9', '10', '11', '12', '13', '14'].map((x) => `10.8.0.${x}`));
    await expect(a.allocate('c10', 'eth0')).rejects.toThrow(/no IP addresses available/);
    const err = (() => {
      try {
        parseIpamConfig(conf({ ranges: [[{ subnet: '10.8.0.0/28', exclude: ['10.8.0.4/30'] }]] }, { args: { cni: { ips: ['10.8.0.6'] } } }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(7);
    expect((err as CniError).message).toContain('ipam.ranges[0][0].exclude[0] (10.8.0.4/30)');
    expect(() => parseIpamConfig(conf({ ranges: [[{ subnet: '10.8.0.0/28', exclude: ['fd00::/64'] }]] }))).toThrow(/not an IPv4 CIDR/);
    expect(() => parseIpamConfig(conf({ ranges: [[{ subnet: '10.8.0.0/28' }]], exclude: ['bogus'] }))).toThrow(/ipam\.exclude\[0\]: invalid CIDR/);
  });

  it('an excluded IPv6 /64 inside a /56 costs one step, not 2^64', async () => {
    const a = alloc({ ranges: [[{ subnet: 'fd00::/56', exclude: ['fd00::/64'] }]], blockSizeV6: 56 });
    expect(await first(a, 'c1')).toBe('fd00:0:0:1::');
  });

  it('store reservations: 1,000 allocations never touch a reserved address; requested ones need allowRequested', async () => {
    const store = new MemoryStore();
    const r = { ranges: [[{ subnet: '10.7.0.0/21' }]] };
    await reserve(store, 'net1', { cidr: '10.7.0.2', note: 'router' });
    await reserve(store, 'net1', { cidr: '10.7.1.0/26', note: 'appliances' });
    await reserve(store, 'net1', { cidr: '10.7.2.77', note: 'vm', allowRequested: true });
    const reserved = (ip: string): boolean => {
      const v = parseIP(ip).value;
      return ip === '10.7.0.2' || ip === '10.7.2.77' || (v >= parseIP('10.7.1.0').value && v <= parseIP('10.7.1.63').value);
    };
    const nodes = ['a', 'b', 'c'].map((n) => alloc(r, { store, node: n }));
    const got = await Promise.all(Array.from({ length: 1000 }, (_, i) => first(nodes[i % 3]!, `c${i}`)));
    expect(got.filter(reserved)).toEqual([]);
    expect(new Set(got).size).toBe(got.length);
    const req = (ip: string): Allocator => alloc(r, { store, extra: { args: { cni: { ips: [ip] } } } });
    await expect(req('10.7.0.2').allocate('r1', 'eth0')).rejects.toBeInstanceOf(IpamReservedError);
    expect(formatIP((await req('10.7.2.77').allocate('r2', 'eth0'))[0]!.ip)).toBe('10.7.2.77');
    expect(await unreserve(store, 'net1', '10.7.0.2/32')).toBe(true);
    expect(await unreserve(store, 'net1', '10.7.0.2')).toBe(false);
    expect(formatIP((await req('10.7.0.2').allocate('r3', 'eth0'))[0]!.ip)).toBe('10.7.0.2');
    expect(reservationCidr('fd00::1')).toBe('fd00::1/128');
    expect(() => reservationCidr('10.0.0.1/24')).toThrow(/host bits/);
  });

  it('a reservation landing between an allocation plan and its commit makes the commit retry', async () => {
    const store = new MemoryStore();
    const a = alloc({ ranges: [[{ subnet: '10.6.0.0/24' }]] }, { store });
    expect(await first(a, 'c1')).toBe('10.6.0.2');
    // the warm allocator still has the old (empty) reservation list cached
    await reserve(store, 'net1', { cidr: '10.6.0.3', note: 'late' });
    expect(await first(a, 'c2')).not.toBe('10.6.0.3');
  });
});

describe('GC', () => {
  const r = { ranges: [[{ subnet: '10.5.0.0/24' }]] };

  it('releases what is not valid; keeps young attachments (grace) and live ones unless forced', async () => {
    const store = new MemoryStore();
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const a = alloc(r, { store, now: () => clock });
    for (const id of ['old', 'live', 'valid']) await first(a, id);
    clock += 60_000;
    await first(a, 'young');
    const live = async (x: Attachment): Promise<boolean> => x.containerId === 'live';
    const res = await a.gc([{ containerID: 'valid', ifname: 'eth0' }], { startedAt: clock + 1000, graceMs: 10_000, isLive: live });
    expect(res.released).toEqual(['10.5.0.2']);
    expect(res.kept.map((k) => k.containerId).sort()).toEqual(['live', 'young']);
    const forced = await a.gc([{ containerID: 'valid', ifname: 'eth0' }], { startedAt: clock + 1000, graceMs: 10_000, isLive: live, force: true });
    expect(forced.released.sort()).toEqual(['10.5.0.3', '10.5.0.5']);
    expect((await store.listAttachments('net1')).map((x) => x.value.containerId)).toEqual(['valid']);
  });

  it('an attachment written again after GC read it (DEL + new ADD) is not released', async () => {
    const inner = new MemoryStore();
    const a = alloc(r, { store: inner });
    await first(a, 'c1');
    let once = true;
    // between GC's listing and its release, c1 is deleted and added again
    const racing: Store = Object.assign(Object.create(inner) as MemoryStore, {
      async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
        const got = await inner.listAttachments(network);
        if (once) {
          once = false;
          await alloc(r, { store: inner }).release('c1', 'eth0');
          await first(alloc(r, { store: inner }), 'c1');
        }
        return got;
      },
    });
    const res = await alloc(r, { store: racing }).gc([], { startedAt: Date.now() + 60_000, graceMs: 0 });
    expect(res.released).toEqual([]);
    expect(await inner.getAttachment('net1', 'c1', 'eth0')).toBeDefined();
  });

  it('GC racing 50 allocations on the same store loses none of them', async () => {
    const store = new MemoryStore();
    const stale = alloc(r, { store, now: () => Date.parse('2000-01-01T00:00:00Z') });
    for (let i = 0; i < 20; i++) await first(stale, `stale${i}`);
    const startedAt = Date.now();
    const adders = Array.from({ length: 50 }, (_, i) => first(alloc(r, { store }), `new${i}`));
    const gc = alloc(r, { store }).gc([], { startedAt });
    const [got, res] = await Promise.all([Promise.all(adders), gc]);
    expect(res.released).toHaveLength(20);
    const left = (await store.listAttachments('net1')).map((x) => x.value.containerId).sort();
    expect(left).toEqual(Array.from({ length: 50 }, (_, i) => `new${i}`).sort());
    expect(new Set(got).size).toBe(50);
  });
});

describe('store documents', () => {
  const good = { format: 'strand-ipam/v1', network: 'n', rev: 1, blocks: {}, attachments: {} };
  it('names what is wrong, never a value from the document', () => {
    const secret = 's3cr3t-value';
    const cases: Array<[unknown, RegExp]> = [
      [null, /holds null/],
      [[secret], /holds a list/],
      [{ ...good, blocks: undefined }, /blocks is missing/],
      [{ ...good, attachments: secret }, /attachments is a string/],
      [{ ...good, format: secret }, /format is not strand-ipam\/v1/],
      [{ ...good, network: secret }, /belongs to another network/],
      [{ ...good, blocks: { [secret]: { rev: 1, value: { network: 'n', cidr: secret, node: 'a', allocations: {} } } } }, /blocks entry 1: cidr is not a CIDR/],
      [
        { ...good, attachments: { 'c/eth0': { rev: 1, value: { network: 'n', containerId: 'c', ifname: 'eth0', node: 'a', created: 'x', ips: secret } } } },
        /ips is a string/,
      ],
    ];
    for (const [raw, want] of cases) {
      const p = docProblem(raw, 'n');
      expect(p).toMatch(want);
      expect(p).not.toContain(secret);
    }
    expect(docProblem(good, 'n')).toBeUndefined();
  });

  it('salvage keeps every well-formed record and says what it dropped', () => {
    const att = { network: 'n', containerId: 'c', ifname: 'eth0', node: 'a', created: 'x', ips: [{ ip: '10.0.0.2', block: '10.0.0.0/26' }] };
    const { doc, notes } = salvageDoc({ ...good, rev: 7, blocks: 5, attachments: { 'c/eth0': { rev: 3, value: att }, bad: { rev: 1, value: null } } }, 'n');
    expect(Object.keys(doc.attachments)).toEqual(['c/eth0']);
    expect(doc.blocks).toEqual({});
    expect(doc.rev).toBe(7);
    expect(notes.join('\n')).toMatch(/blocks was a number: rebuilt/);
    expect(notes.join('\n')).toMatch(/attachments entry 2 dropped/);
  });
});
