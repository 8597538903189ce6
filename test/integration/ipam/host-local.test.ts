// Migration from the reference host-local (Debian's containernetworking-plugins in
// /usr/lib/cni): a node network with 20 pods addressed by host-local switches to
// strand-ipam by changing "type". strand-ipam honours host-local's reservations (adopts
// them as attachments keyed by host-local's container ID and ifname): 200 more ADDs give
// no duplicate, DEL of the host-local pods releases their addresses, and the explicit
// `strand ipam import-host-local` gives the same end state. Local store and etcd.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { refBinDir, runPlugin } from '../../helpers/run-plugin.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore } from '../../../ipam/store/etcd.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { addrOf, cli, consistency, etcdSection, holdings, plugin, requireBuilt } from './helpers.ts';

const NET = 'net-mig';
const HOST_LOCAL = join(refBinDir, 'host-local');
const TIMEOUT = 600_000;
const RANGES = [[{ subnet: '10.64.0.0/24' }], [{ subnet: 'fd64::/120' }]];

describe('migration from the reference host-local', () => {
  let etcd: EtcdCluster;
  let tmp: string;
  beforeAll(async () => {
    requireBuilt();
    if (!existsSync(HOST_LOCAL)) throw new Error(`${HOST_LOCAL} missing (apt-get install containernetworking-plugins)`);
    etcd = await startEtcd();
    tmp = mkdtempSync(join(tmpdir(), 'ia-hl-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** 20 pods through host-local itself; returns their addresses (both families). */
  async function hostLocalPods(dataDir: string): Promise<Set<string>> {
    const conf = { cniVersion: '1.0.0', name: NET, type: 'bridge', ipam: { type: 'host-local', dataDir, ranges: RANGES } };
    const out = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await runPlugin(HOST_LOCAL, { command: 'ADD', containerId: `hl${i}`, netns: '/var/run/netns/none', ifName: 'eth0', path: refBinDir }, conf);
      expect(r.code, r.stdout).toBe(0);
      for (const ip of r.json.ips) out.add((ip.address as string).split('/')[0] as string);
    }
    return out;
  }

  const ipFiles = (dataDir: string): string[] => readdirSync(join(dataDir, NET)).filter((f) => /^[0-9a-f.:]+$/.test(f) && f.includes('.') !== f.includes(':'));

  for (const kind of ['local', 'etcd'] as const) {
    it(
      `${kind} store: no duplicate after the switch, DEL releases host-local's pods, import-host-local gives the same end state`,
      async () => {
        const ends: string[][] = [];
        for (const path of ['switch', 'import'] as const) {
          const dataDir = join(tmp, `${kind}-${path}`);
          const prefix = `/hl-${kind}-${path}`;
          const held = await hostLocalPods(dataDir);
          expect(held.size).toBe(40);
          expect(ipFiles(dataDir)).toHaveLength(40);
          const conf = {
            cniVersion: '1.1.0',
            name: NET,
            type: 'bridge',
            ipam: { type: 'strand-ipam', dataDir, ranges: RANGES, ...(kind === 'etcd' ? { etcd: etcdSection(etcd, { prefix }) } : {}) },
          };
          const store: Store = kind === 'etcd' ? openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix }))) : new LocalStore(dataDir);
          try {
            if (path === 'import') {
              const confFile = join(tmp, `${kind}.conf`);
              writeFileSync(confFile, JSON.stringify(conf));
              const dry = await cli(['--conf', confFile, 'import-host-local', '--node', 'node-1', '--dry-run', '--json']);
              expect(dry.code, dry.err).toBe(0);
              expect(JSON.parse(dry.out).imported).toHaveLength(40);
              expect(await store.listAttachments(NET)).toEqual([]);
              const imp = await cli(['--conf', confFile, 'import-host-local', '--node', 'node-1', '--json']);
              expect(imp.code, imp.err).toBe(0);
              const res = JSON.parse(imp.out);
              expect(res.imported).toHaveLength(40);
              expect(res.conflicts).toEqual([]);
              expect(ipFiles(dataDir)).toEqual([]); // moved into the store
            }
            // 200 more pods: never one of host-local's addresses (sequential: the end states compare exactly)
            const fresh: string[] = [];
            for (let i = 0; i < 200; i++) fresh.push(addrOf(await plugin({ command: 'ADD', containerId: `new${i}`, node: 'node-1' }, conf)));
            expect(fresh.filter((ip) => held.has(ip))).toEqual([]);
            expect(new Set(fresh).size).toBe(200);
            // host-local's pods are attachments keyed by its container ID and ifname
            const hl0 = await store.getAttachment(NET, 'hl0', 'eth0');
            expect(hl0?.value).toMatchObject({ containerId: 'hl0', ifname: 'eth0', node: 'node-1', origin: 'host-local' });
            expect(hl0?.value.ips.map((e) => e.ip)).toEqual(['10.64.0.2', 'fd64::2']);
            expect(ipFiles(dataDir)).toEqual([]);
            // DEL of the host-local pods, through strand-ipam, releases their addresses
            for (let i = 0; i < 20; i++) expect((await plugin({ command: 'DEL', containerId: `hl${i}`, node: 'node-1' }, conf)).code).toBe(0);
            const left = await holdings(store, NET);
            expect(left).toHaveLength(200);
            expect(left.some((h) => h.startsWith('hl'))).toBe(false);
            expect((await consistency(store, NET)).problems).toEqual([]);
            ends.push(left);
          } finally {
            await store.close();
          }
        }
        expect(ends[1]).toEqual(ends[0]);
      },
      TIMEOUT,
    );
  }

  it('a host-local address another attachment holds is a conflict: not adopted, not handed out twice, its file kept', async () => {
    const dataDir = join(tmp, 'conflict');
    await hostLocalPods(dataDir);
    const conf = { cniVersion: '1.1.0', name: NET, type: 'bridge', ipam: { type: 'strand-ipam', dataDir, ranges: RANGES } };
    // move hl0's file aside, let strand hand its address to someone else, put the file back
    const f = join(dataDir, NET, '10.64.0.2');
    const f6 = join(dataDir, NET, 'fd64::2');
    rmSync(f);
    rmSync(f6);
    const other = await plugin({ command: 'ADD', containerId: 'other', node: 'n' }, { ...conf, args: { cni: { ips: ['10.64.0.2', 'fd64::2'] } } });
    expect(addrOf(other)).toBe('10.64.0.2');
    writeFileSync(f, 'hl0\r\neth0');
    const r = await plugin({ command: 'ADD', containerId: 'late', node: 'n' }, conf);
    expect(['10.64.0.2']).not.toContain(addrOf(r));
    expect(r.stderr).toMatch(/host-local reservation not adopted: 10\.64\.0\.2 hl0\/eth0: requested IP 10\.64\.0\.2 is already allocated to other\/eth0/);
    expect(existsSync(f)).toBe(true);
    // DEL of hl0 removes its remaining file even so
    expect((await plugin({ command: 'DEL', containerId: 'hl0', node: 'n' }, conf)).code).toBe(0);
    expect(existsSync(f)).toBe(false);
    expect((await new LocalStore(dataDir).getAttachment(NET, 'other', 'eth0'))?.value.ips.map((e) => e.ip)).toEqual(['10.64.0.2', 'fd64::2']);
  });
});
