// strand-ipam against a real etcd (single member, then mTLS): the built plugin's verbs,
// the key layout a node agent watches, and code 11 / 50 when etcd is gone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { openEtcdStore } from '../../../ipam/store/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { consistency, etcdSection, gcConf, netConf, plugin, requireBuilt, addrOf } from './helpers.ts';

describe('strand-ipam on a single etcd member', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    it(`ADD/CHECK/DEL in cniVersion ${v}; repeated ADD returns the same address; DEL twice`, async () => {
      const conf = netConf(
        `net-${v.replace(/\./g, '')}`,
        {
          ranges: [[{ subnet: '10.20.0.0/16' }], [{ subnet: 'fd20::/64' }]],
          routes: [{ dst: '0.0.0.0/0' }],
          etcd: etcdSection(etcd),
        },
        v,
      );
      const add = await plugin({ command: 'ADD', containerId: 'c1', node: 'node-a' }, conf);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(add.json.ips.map((i: { address: string }) => i.address)).toEqual(['10.20.0.2/16', 'fd20::2/64']);
      expect(add.json.ips[0].gateway).toBe('10.20.0.1');
      expect(add.json.routes).toEqual([{ dst: '0.0.0.0/0' }]);
      const again = await plugin({ command: 'ADD', containerId: 'c1', node: 'node-a' }, conf);
      expect(again.json.ips).toEqual(add.json.ips);
      if (v !== '0.3.1') {
        const check = await plugin({ command: 'CHECK', containerId: 'c1', node: 'node-a' }, { ...conf, prevResult: add.json });
        expect(check.code, check.stdout).toBe(0);
      }
      for (let i = 0; i < 2; i++) {
        const del = await plugin({ command: 'DEL', containerId: 'c1', node: 'node-a' }, conf);
        expect(del.code, del.stdout).toBe(0);
      }
      if (v !== '0.3.1') {
        const check = await plugin({ command: 'CHECK', containerId: 'c1', node: 'node-a' }, { ...conf, prevResult: add.json });
        expect(check.code).toBe(1);
        expect(check.json.code).toBe(105);
      }
    });
  }

  it('transport "grpc" (the etcd3 client) and the default JSON gateway share the records: ADD over one, repeated ADD and CHECK over the other, DEL over each', async () => {
    const ranges = [[{ subnet: '10.21.0.0/24' }]];
    const grpc = netConf('net-transport', { ranges, etcd: { ...etcdSection(etcd), transport: 'grpc' } });
    const http = netConf('net-transport', { ranges, etcd: etcdSection(etcd) });
    const add = await plugin({ command: 'ADD', containerId: 'g1', node: 'node-a' }, grpc);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const again = await plugin({ command: 'ADD', containerId: 'g1', node: 'node-a' }, http);
    expect(again.json.ips, again.stdout).toEqual(add.json.ips);
    expect((await plugin({ command: 'CHECK', containerId: 'g1', node: 'node-a' }, { ...grpc, prevResult: add.json })).code).toBe(0);
    const second = await plugin({ command: 'ADD', containerId: 'g2', node: 'node-a' }, http);
    expect(addrOf(second)).not.toBe(addrOf(add));
    expect((await plugin({ command: 'DEL', containerId: 'g1', node: 'node-a' }, http)).code).toBe(0);
    expect((await plugin({ command: 'DEL', containerId: 'g2', node: 'node-a' }, grpc)).code).toBe(0);
    const store = await openEtcdStore(parseEtcdConfig(etcdSection(etcd)));
    try {
      expect(await store.listAttachments('net-transport')).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('keys: block -> node ownership listable under <prefix>/affinity/, allocations consistent; GC releases what is not valid', async () => {
    const conf = netConf('net-keys', { ranges: [[{ subnet: '10.21.0.0/24' }]], etcd: etcdSection(etcd) });
    for (const [id, node] of [
      ['a1', 'node-a'],
      ['a2', 'node-a'],
      ['b1', 'node-b'],
    ] as const) {
      expect((await plugin({ command: 'ADD', containerId: id, node }, conf)).code).toBe(0);
    }
    const store = await openEtcdStore(parseEtcdConfig(etcdSection(etcd)));
    try {
      const aff = await store.client.getAll().prefix('/s4test/affinity/net-keys/').strings();
      expect(
        Object.entries(aff)
          .map(([k, v]) => [k, JSON.parse(v).node])
          .sort(),
      ).toEqual([
        ['/s4test/affinity/net-keys/10.21.0.0-26', 'node-a'],
        ['/s4test/affinity/net-keys/10.21.0.64-26', 'node-b'],
      ]);
      const gc = await plugin({ command: 'GC', containerId: 'x', node: 'node-a' }, gcConf(conf, [{ containerID: 'a2', ifname: 'eth0' }]));
      expect(gc.code, gc.stdout).toBe(0);
      const left = (await store.listAttachments('net-keys')).map((a) => a.value.containerId).sort();
      expect(left).toEqual(['a2', 'b1']); // node-b's attachment is not node-a's to collect
      const st = await consistency(store, 'net-keys');
      expect(st.problems).toEqual([]);
      expect(st.allocated.sort()).toEqual(['10.21.0.3', '10.21.0.64']); // .64 is a block's first address, usable
      const status = await plugin({ command: 'STATUS', containerId: 'x', node: 'node-a' }, conf);
      expect(status.code, status.stdout).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('a requested IP is honoured on etcd and refused (103) when taken', async () => {
    const conf = netConf('net-req', { ranges: [[{ subnet: '10.22.0.0/24' }]], etcd: etcdSection(etcd) });
    const r1 = await plugin({ command: 'ADD', containerId: 'r1', node: 'node-a' }, { ...conf, args: { cni: { ips: ['10.22.0.200'] } } });
    expect(addrOf(r1)).toBe('10.22.0.200');
    const r2 = await plugin({ command: 'ADD', containerId: 'r2', node: 'node-b' }, { ...conf, runtimeConfig: { ips: ['10.22.0.200'] } });
    expect(r2.code).toBe(1);
    expect(r2.json.code).toBe(103);
  });

  it('etcd unreachable: ADD answers 11, DEL records the release and succeeds (pending.test.ts), STATUS 50', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'lf-etcd-down-'));
    try {
      const conf = netConf('net-down', {
        dataDir,
        ranges: [[{ subnet: '10.23.0.0/24' }]],
        etcd: { endpoints: ['http://127.0.0.1:1'], dialTimeout: 500, requestTimeout: 500 },
      });
      const add = await plugin({ command: 'ADD', containerId: 'd1', node: 'node-a' }, conf);
      expect(add.code).toBe(1);
      expect(add.json.code).toBe(11);
      const del = await plugin({ command: 'DEL', containerId: 'd1', node: 'node-a' }, conf);
      expect(del.code, del.stdout).toBe(0);
      const st = await plugin({ command: 'STATUS', containerId: 'd1', node: 'node-a' }, conf);
      expect(st.json.code).toBe(50);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('strand-ipam on etcd with mutual TLS', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd({ tls: true });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('allocates with a client certificate (both transports); without one the store is unavailable (11); a bad cert path is 7', async () => {
    const conf = netConf('net-tls', { ranges: [[{ subnet: '10.24.0.0/24' }]], etcd: etcdSection(etcd) });
    const ok = await plugin({ command: 'ADD', containerId: 't1', node: 'node-a' }, conf);
    expect(addrOf(ok)).toBe('10.24.0.2');
    const tls = etcd.tls!;
    const noCert = netConf('net-tls', { ranges: [[{ subnet: '10.24.0.0/24' }]], etcd: { ...etcdSection(etcd), tls: { ca: tls.ca }, requestTimeout: 1000 } });
    const refused = await plugin({ command: 'ADD', containerId: 't2', node: 'node-a' }, noCert);
    expect(refused.json?.code, refused.stdout).toBe(11);
    const badPath = netConf('net-tls', {
      ranges: [[{ subnet: '10.24.0.0/24' }]],
      etcd: { ...etcdSection(etcd), tls: { ca: tls.ca, cert: '/nonexistent.crt', key: tls.clientKey } },
    });
    const bad = await plugin({ command: 'ADD', containerId: 't3', node: 'node-a' }, badPath);
    expect(bad.json.code).toBe(7);
    expect(bad.json.msg).toContain('ipam.etcd.tls.cert');
    const grpc = netConf('net-tls', { ranges: [[{ subnet: '10.24.0.0/24' }]], etcd: { ...etcdSection(etcd), transport: 'grpc' } });
    const overGrpc = await plugin({ command: 'ADD', containerId: 't4', node: 'node-a' }, grpc);
    expect(addrOf(overGrpc), overGrpc.stdout + overGrpc.stderr).toBe('10.24.0.3');
    expect((await plugin({ command: 'DEL', containerId: 't4', node: 'node-a' }, grpc)).code).toBe(0);
    expect((await plugin({ command: 'DEL', containerId: 't1', node: 'node-a' }, conf)).code).toBe(0);
  });
});
