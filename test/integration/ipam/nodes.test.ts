// Node lifecycle through the CLI (issue #14 item 5): `strand ipam node ls` and `node
// release <node> [--force] [--dry-run]` against a real etcd with simulated nodes (a gone
// node with an empty block, a gone node still holding a pod, a node whose agent is
// alive) and against the local store. A released node's empty blocks go back to the
// pool (the next node claims them); a node with attachments is reported, not emptied,
// unless --force.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore, type EtcdStore } from '../../../ipam/store/etcd.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import type { NodeSummary } from '../../../ipam/nodes.ts';
import { addrOf, cli, netConf, plugin, requireBuilt } from './helpers.ts';

describe('strand ipam node ls / release', () => {
  let etcd: EtcdCluster;
  let dir: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'lf-nodes-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('etcd: empty blocks of a gone node go back to the pool; a node with a pod is reported unless --force; an alive node is refused', async () => {
    const prefix = '/lfnodes';
    const conf = (node: string): Record<string, unknown> =>
      netConf('net-n', { nodeName: node, dataDir: join(dir, node), ranges: [[{ subnet: '10.92.0.0/24' }]], etcd: { endpoints: etcd.endpoints, prefix } });
    const add = async (id: string, node: string): Promise<string> => addrOf(await plugin({ command: 'ADD', containerId: id, node }, conf(node)));
    const del = async (id: string, node: string): Promise<void> => {
      expect((await plugin({ command: 'DEL', containerId: id, node }, conf(node))).code).toBe(0);
    };
    // "empty": left with its last block, empty; "ghost": still holds a pod; "live": its agent runs
    expect(await add('e1', 'empty')).toBe('10.92.0.2');
    await del('e1', 'empty');
    const g1 = await add('g1', 'ghost');
    expect(g1).toBe('10.92.0.64');
    await add('l1', 'live');
    await del('l1', 'live');
    const store: EtcdStore = openEtcdHttpStore(parseEtcdConfig({ endpoints: etcd.endpoints, prefix }));
    try {
      const put = (key: string, value: unknown): Promise<unknown> => store.kv.txn([], [{ put: Buffer.from(key), value: Buffer.from(JSON.stringify(value)) }]);
      for (const [n, addr] of [
        ['empty', '192.168.9.1'],
        ['ghost', '192.168.9.2'],
        ['live', '192.168.9.3'],
      ] as const)
        await put(store.keys.node(n), { name: n, addresses: [addr], mode: 'host-gw' });
      await put(store.keys.alive('live'), { name: 'live' });
      const flags = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', prefix, '--data-dir', dir];

      const ls = JSON.parse((await cli([...flags, '--json', 'node', 'ls'])).out) as NodeSummary[];
      expect(ls.map((n) => [n.name, n.record, n.alive, n.blocks.map((b) => `${b.cidr}:${b.allocated}`), n.attachments])).toEqual([
        ['empty', true, false, ['10.92.0.0/26:0'], 0],
        ['ghost', true, false, ['10.92.0.64/26:1'], 1],
        ['live', true, true, ['10.92.0.128/26:0'], 0],
      ]);
      expect((await cli([...flags, 'node', 'ls'])).out).toMatch(
        /^NODE\s+RECORD\s+AGENT ALIVE\s+ADDRESSES\s+BLOCKS\s+EMPTY BLOCKS\s+ATTACHMENTS\nempty\s+yes\s+no\s+192\.168\.9\.1\s+1\s+1\s+0\n/,
      );

      const dry = await cli([...flags, 'node', 'release', 'empty', '--dry-run']);
      expect(dry.code, dry.err).toBe(0);
      expect(dry.out).toContain('would release block net-n 10.92.0.0/26');
      expect(dry.out).toContain('would remove the record of node empty');
      expect((await store.listAffinities('net-n')).map((a) => a.node).sort()).toEqual(['empty', 'ghost', 'live']);

      const rel = await cli([...flags, 'node', 'release', 'empty']);
      expect(rel.code, rel.out + rel.err).toBe(0);
      expect(rel.out).toMatch(/released block net-n 10\.92\.0\.0\/26\nremoved the record of node empty\n/);
      expect((await store.nodeRecords()).has('empty')).toBe(false);

      const held = await cli([...flags, 'node', 'release', 'ghost']);
      expect(held.code).toBe(1);
      expect(held.out).toContain(`kept block net-n 10.92.0.64/26: holds 1 address(es) of its pods`);
      expect(held.out).toContain(`held by the node: net-n g1/eth0: ${g1} (--force releases it)`);
      expect((await store.nodeRecords()).has('ghost')).toBe(true);
      expect((await store.getAttachment('net-n', 'g1', 'eth0'))?.value.ips.map((e) => e.ip)).toEqual([g1]);

      const refused = await cli([...flags, 'node', 'release', 'live']);
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/agent of node live is alive/);
      expect((await store.listAffinities('net-n')).map((a) => a.node).sort()).toEqual(['ghost', 'live']);

      const forced = JSON.parse((await cli([...flags, '--json', 'node', 'release', 'ghost', '--force'])).out) as Record<string, unknown>;
      expect(forced).toMatchObject({
        attachmentsReleased: [`net-n g1/eth0: ${g1}`],
        blocksReleased: ['net-n 10.92.0.64/26'],
        blocksKept: [],
        recordRemoved: true,
      });
      expect(await store.listAttachments('net-n')).toEqual([]);
      expect((await store.listAffinities('net-n')).map((a) => `${a.cidr} ${a.node}`)).toEqual(['10.92.0.128/26 live']);
      // back in the pool: a new node claims the lowest free block, the released one
      expect(await add('n1', 'newcomer')).toBe('10.92.0.2');
      expect(await add('n2', 'other')).toBe('10.92.0.64');
      // idempotent
      const again = await cli([...flags, 'node', 'release', 'ghost']);
      expect(again.code).toBe(0);
      expect(again.out).toBe('nothing of node ghost in the store\n');
    } finally {
      await store.close();
    }
  });

  it('local store: node ls lists the node names of blocks and attachments; release frees the empty blocks of a renamed node', async () => {
    const dataDir = join(dir, 'local');
    const conf = (node: string): Record<string, unknown> =>
      netConf('net-l', { nodeName: node, dataDir, ranges: [[{ subnet: '10.93.0.0/24' }]], blockSize: 28 });
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'a1', node: 'old-name' }, conf('old-name')))).toBe('10.93.0.2');
    expect((await plugin({ command: 'DEL', containerId: 'a1', node: 'old-name' }, conf('old-name'))).code).toBe(0);
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'b1', node: 'new-name' }, conf('new-name')))).toBe('10.93.0.16');
    const ls = JSON.parse((await cli(['--data-dir', dataDir, '--json', 'node', 'ls'])).out) as NodeSummary[];
    expect(ls.map((n) => [n.name, n.record, n.alive, n.blocks.length, n.attachments])).toEqual([
      ['new-name', undefined, undefined, 1, 1],
      ['old-name', undefined, undefined, 1, 0],
    ]);
    const rel = await cli(['--data-dir', dataDir, 'node', 'release', 'old-name']);
    expect(rel.code, rel.out + rel.err).toBe(0);
    expect(rel.out).toBe('released block net-l 10.93.0.0/28\n');
    expect((await new LocalStore(dataDir).listBlocks('net-l')).map((b) => `${b.value.cidr} ${b.value.node}`)).toEqual(['10.93.0.16/28 new-name']);
  });
});
