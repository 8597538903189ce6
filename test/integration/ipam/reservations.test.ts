// Reservations: the config's `exclude` (Whereabouts' name and meaning) and the store's
// reservation list (`strand ipam reserve|unreserve`, shown by `usage`). 1,000 allocations
// on real stores (files, etcd over both transports) never touch a reserved address; a
// requested address inside one is refused with code 7 unless the reservation allows it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { Allocator } from '../../../ipam/allocator.ts';
import { loadConfig } from '../../../ipam/main.ts';
import { reserve } from '../../../ipam/reservations.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore, openEtcdStore } from '../../../ipam/store/etcd.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { formatIP, parseIP } from '../../../lib/addr/cidr.ts';
import type { NetConf } from '../../../lib/cni/types.ts';
import { addrOf, cli, etcdSection, netConf, plugin, requireBuilt } from './helpers.ts';

const NET = 'net-res';
const TIMEOUT = 300_000;
// 10.66.0.0/21: 2,045 usable; the router, a /26 of appliances, a VM that may be requested,
// and an excluded /28 in the config
const RANGES = [[{ subnet: '10.66.0.0/21', exclude: ['10.66.4.0/28'] }]];

const reservedOrExcluded = (ip: string): boolean => {
  const v = parseIP(ip).value;
  const within = (lo: string, hi: string): boolean => v >= parseIP(lo).value && v <= parseIP(hi).value;
  return ip === '10.66.0.2' || ip === '10.66.3.3' || within('10.66.1.0', '10.66.1.63') || within('10.66.4.0', '10.66.4.15');
};

describe('exclude and reservations', () => {
  let etcd: EtcdCluster;
  let tmp: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    tmp = mkdtempSync(join(tmpdir(), 'ia-res-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  for (const kind of ['local', 'etcd http', 'etcd grpc'] as const) {
    it(
      `${kind}: 1,000 allocations on 4 nodes never touch a reserved or excluded address; the CLI shows the reservations`,
      async () => {
        const tag = kind.replace(' ', '-');
        const prefix = `/res-${tag}`;
        const dataDir = join(tmp, tag);
        const ipam = kind === 'local' ? { dataDir, ranges: RANGES, blockSize: 26 } : { ranges: RANGES, etcd: etcdSection(etcd, { prefix }) };
        const conf = netConf(NET, ipam) as unknown as NetConf;
        const cfg = loadConfig(conf, '', true);
        const open = async (): Promise<Store> => {
          if (kind === 'local') return new LocalStore(dataDir);
          const ec = parseEtcdConfig(etcdSection(etcd, { prefix }));
          return kind === 'etcd grpc' ? openEtcdStore(ec) : openEtcdHttpStore(ec);
        };
        const confFile = join(tmp, `${tag}.conf`);
        writeFileSync(confFile, JSON.stringify(conf));
        // reservations through the CLI, as an operator makes them
        for (const [what, note, extra] of [
          ['10.66.0.2', 'router', []],
          ['10.66.1.0/26', 'appliances', []],
          ['10.66.3.3', 'vm with a fixed address', ['--allow-requested']],
        ] as Array<[string, string, string[]]>) {
          const r = await cli(['--conf', confFile, 'reserve', what, '--note', note, ...extra]);
          expect(r.code, r.err).toBe(0);
        }
        const stores = await Promise.all([0, 1, 2, 3].map(open));
        try {
          const nodes = stores.map((store, i) => new Allocator({ store, config: cfg, node: `node-${i}` }));
          const got: string[] = [];
          await Promise.all(
            nodes.map(async (al, n) => {
              for (let i = 0; i < 250; i++) got.push(formatIP((await al.allocate(`c${n}-${i}`, 'eth0'))[0]!.ip));
            }),
          );
          expect(got).toHaveLength(1000);
          expect(got.filter(reservedOrExcluded)).toEqual([]);
          expect(new Set(got).size).toBe(1000);

          const usage = await cli(['--conf', confFile, 'usage', '--json']);
          expect(usage.code, usage.err).toBe(0);
          const u = JSON.parse(usage.out);
          expect(u.reservations.map((r: { cidr: string; note: string; allowRequested?: boolean }) => [r.cidr, r.note, !!r.allowRequested])).toEqual([
            ['10.66.0.2/32', 'router', false],
            ['10.66.1.0/26', 'appliances', false],
            ['10.66.3.3/32', 'vm with a fixed address', true],
          ]);
          expect(u.pools[0].used).toBe(1000);
          const table = await cli(['--conf', confFile, 'usage']);
          expect(table.out).toMatch(/RESERVATIONS\nNETWORK\s+RESERVED\s+NOTE\s+REQUESTABLE\s+CREATED\n/);
          expect(table.out).toMatch(/net-res\s+10\.66\.0\.2\/32\s+router\s+no/);
          const show = await cli(['--conf', confFile, 'show', '10.66.1.5', '--json']);
          expect(JSON.parse(show.out)[0]).toMatchObject({ allocated: false, reserved: 'reservation 10.66.1.0/26 "appliances"' });
        } finally {
          for (const s of stores) await s.close();
        }
      },
      TIMEOUT,
    );
  }

  it('through the plugin: a requested address in an exclusion or reservation is code 7; allowRequested lets it through; unreserve', async () => {
    const dataDir = join(tmp, 'plugin');
    const conf = netConf(NET, { dataDir, ranges: RANGES });
    const store = new LocalStore(dataDir);
    await reserve(store, NET, { cidr: '10.66.0.2', note: 'router' });
    await reserve(store, NET, { cidr: '10.66.3.3', note: 'vm', allowRequested: true });
    const req = (ip: string): Record<string, unknown> => ({ ...conf, args: { cni: { ips: [ip] } } });
    const ex = await plugin({ command: 'ADD', containerId: 'r1', node: 'n' }, req('10.66.4.7'));
    expect(ex.json.code, ex.stdout).toBe(7);
    expect(ex.json.msg + ex.json.details).toContain('requested IP 10.66.4.7 is excluded by ipam.ranges[0][0].exclude[0] (10.66.4.0/28)');
    const rs = await plugin({ command: 'ADD', containerId: 'r2', node: 'n' }, req('10.66.0.2'));
    expect(rs.json.code, rs.stdout).toBe(7);
    expect(rs.json.msg).toContain('requested IP 10.66.0.2 is reserved (reservation 10.66.0.2/32 "router")');
    // an unrequested ADD gets neither: the first free is .3
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'r4', node: 'n' }, conf))).toBe('10.66.0.3');
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'r3', node: 'n' }, req('10.66.3.3')))).toBe('10.66.3.3');
    const un = await cli(['--data-dir', dataDir, '--network', NET, 'unreserve', '10.66.0.2']);
    expect(un.code, un.err).toBe(0);
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'r5', node: 'n' }, req('10.66.0.2')))).toBe('10.66.0.2');
    expect((await cli(['--data-dir', dataDir, '--network', NET, 'unreserve', '10.66.0.2'])).code).toBe(1);
    // reserving an address a pod holds warns and keeps the pod's address
    const warn = await cli(['--data-dir', dataDir, '--network', NET, 'reserve', '10.66.0.3', '--note', 'late']);
    expect(warn.code).toBe(0);
    expect(warn.out).toContain('warning: 10.66.0.3 is held by r4/eth0');
    expect((await store.getAttachment(NET, 'r4', 'eth0'))?.value.ips[0]?.ip).toBe('10.66.0.3');
    expect((await cli(['--data-dir', dataDir, '--network', NET, 'reserve', '10.66.0.0/8'])).code).toBe(2);
  });
});
