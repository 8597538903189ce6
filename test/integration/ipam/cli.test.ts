// `strand ipam` admin CLI against both stores: ls, show, usage, release, gc, --json.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { main as cli } from '../../../ipam/cli.ts';
import { addrOf, etcdSection, netConf, plugin, requireBuilt } from './helpers.ts';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await cli(argv, { stdout: { write: (s: string) => void (out += s) }, stderr: { write: (s: string) => void (err += s) } });
  return { code, out, err };
}

describe('strand ipam CLI', () => {
  let etcd: EtcdCluster;
  let dir: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 's4-ipam-cli-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const kind of ['local', 'etcd'] as const) {
    it(`ls / show / usage / release / gc on the ${kind} store`, async () => {
      const ipam =
        kind === 'etcd' ? { ranges: [[{ subnet: '10.70.0.0/24' }]], etcd: etcdSection(etcd) } : { ranges: [[{ subnet: '10.70.0.0/24' }]], dataDir: dir };
      const conf = netConf('net-cli', ipam);
      const confFile = join(dir, `${kind}.conf`);
      writeFileSync(confFile, JSON.stringify(conf));
      const a = addrOf(await plugin({ command: 'ADD', containerId: 'ca', node: 'node-a' }, conf));
      const b = addrOf(await plugin({ command: 'ADD', containerId: 'cb', node: 'node-b' }, conf));
      const storeFlags = kind === 'etcd' ? ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', '/s4test'] : ['--data-dir', dir];

      const ls = await run([...storeFlags, 'ls', '--json']);
      expect(ls.code, ls.err).toBe(0);
      expect(JSON.parse(ls.out).map((x: { containerId: string }) => x.containerId)).toEqual(['ca', 'cb']);
      const table = await run([...storeFlags, 'ls']);
      expect(table.out).toMatch(/^NETWORK\s+CONTAINER\s+IFNAME\s+NODE\s+IPS/);

      const show = await run([...storeFlags, 'show', b, '--json']);
      expect(JSON.parse(show.out)[0]).toMatchObject({ ip: b, allocated: true, containerId: 'cb', node: 'node-b' });
      expect((await run([...storeFlags, 'show', '10.70.0.250'])).code).toBe(1);

      const usage = await run(['--conf', confFile, 'usage', '--json']);
      expect(usage.code, usage.err).toBe(0);
      const u = JSON.parse(usage.out);
      // etcd: two /26 blocks (.2-.63 and .64-.127 usable); local: the whole /24 is one block
      expect(u.pools).toEqual([{ key: 'net-cli IPv4', blocks: kind === 'etcd' ? 2 : 1, used: 2, capacity: kind === 'etcd' ? 126 : 253 }]);
      expect(u.nodes.map((n: { key: string }) => n.key)).toEqual(kind === 'etcd' ? ['net-cli node-a', 'net-cli node-b'] : ['net-cli node-a']);

      const rel = await run([...storeFlags, 'release', a, '--json']);
      expect(JSON.parse(rel.out)).toEqual([{ network: 'net-cli', containerId: 'ca', ifname: 'eth0', ips: [a] }]);
      const relId = await run([...storeFlags, 'release', 'cb']);
      expect(relId.code).toBe(0);
      expect((await run([...storeFlags, 'release', 'cb'])).code).toBe(1);
      const gc = await run([...storeFlags, 'gc', '--json']);
      expect(JSON.parse(gc.out)).toEqual([
        { network: 'net-cli', orphans: [], restored: [], blocksCreated: [], attachmentsFixed: [], conflicts: [], notes: [], released: [], kept: [] },
      ]);
      expect(JSON.parse((await run([...storeFlags, 'ls', '--json'])).out)).toEqual([]);
    });
  }

  it('bad usage exits 2 with the usage text', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('usage: strand ipam');
  });
});
