// The etcd store's two transports against a real etcd: gRPC (etcd3 client) and the JSON
// gateway over node:http(s) that plugin processes use. Same store contract on both
// (create-if-absent, compare-and-swap, prefix listing, multi-key reads), and the HTTP
// transport's own duties: failover to the next endpoint, a bounded wait when etcd is
// gone (StoreUnavailableError), mutual TLS, and username/password authentication.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { ChaosEtcd } from '../../chaos/etcd-cluster.ts';
import { openEtcdHttpStore, openEtcdStore, type EtcdStore } from '../../../ipam/store/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { isStoreUnavailable, type Block } from '../../../ipam/store/types.ts';
import { etcdSection } from './helpers.ts';

const block = (cidr: string, node = 'n1', allocations: Block['allocations'] = {}): Block => ({ network: 'net', cidr, node, allocations });

async function contract(store: EtcdStore): Promise<void> {
  const att = { network: 'net', containerId: 'c1', ifname: 'eth0', node: 'n1', ips: [{ ip: '10.0.0.2', block: '10.0.0.0/26' }], created: 'now' };
  const r1 = await store.commit([
    { op: 'putBlock', block: block('10.0.0.0/26', 'n1', { '10.0.0.2': { containerId: 'c1', ifname: 'eth0' } }), prevRev: 0 },
    { op: 'putAttachment', attachment: att, prevRev: 0, prevIps: [] },
  ]);
  expect(r1).toBeGreaterThan(0);
  // create-if-absent fails for an existing block, and nothing of the commit is applied
  expect(
    await store.commit([
      { op: 'putBlock', block: block('10.0.0.64/26'), prevRev: 0 },
      { op: 'putBlock', block: block('10.0.0.0/26', 'n2'), prevRev: 0 },
    ]),
  ).toBeUndefined();
  expect((await store.listBlocks('net')).map((b) => b.value.cidr)).toEqual(['10.0.0.0/26']);
  expect(await store.listAffinities('net')).toEqual([{ network: 'net', cidr: '10.0.0.0/26', node: 'n1' }]);
  const got = await store.getAttachment('net', 'c1', 'eth0');
  expect(got).toEqual({ value: att, rev: r1 });
  expect(await store.getAttachment('net', 'c2', 'eth0')).toBeUndefined();
  // compare-and-swap on the exact revision
  expect(await store.commit([{ op: 'putBlock', block: block('10.0.0.0/26'), prevRev: (r1 as number) - 1 }])).toBeUndefined();
  const r2 = await store.commit([
    { op: 'putBlock', block: block('10.0.0.0/26'), prevRev: r1 as number },
    { op: 'putBlock', block: block('fd00::/122'), prevRev: 0 },
  ]);
  expect(r2).toBeGreaterThan(r1 as number);
  // many keys in one read, in the order asked, missing ones left out
  const bs = await store.getBlocks('net', ['fd00::/122', '10.0.0.128/26', '10.0.0.0/26']);
  expect(bs.map((b) => [b.value.cidr, b.rev])).toEqual([
    ['fd00::/122', r2],
    ['10.0.0.0/26', r2],
  ]);
  expect(await store.listAttachments()).toHaveLength(1);
  expect(
    await store.commit([
      { op: 'delAttachment', network: 'net', containerId: 'c1', ifname: 'eth0', prevRev: r1 as number, ips: ['10.0.0.2'] },
      { op: 'delBlock', network: 'net', cidr: '10.0.0.0/26', prevRev: r2 as number },
    ]),
  ).toBeGreaterThan(r2 as number);
  expect(await store.listAttachments('net')).toEqual([]);
  expect(await store.listAffinities('net')).toEqual([{ network: 'net', cidr: 'fd00::/122', node: 'n1' }]);
  await store.ping();
}

describe('etcd store transports on one member', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  for (const transport of ['grpc', 'http'] as const) {
    it(`${transport}: the store contract`, async () => {
      const cfg = parseEtcdConfig(etcdSection(etcd, { prefix: `/contract-${transport}` }));
      const store = transport === 'grpc' ? await openEtcdStore(cfg) : openEtcdHttpStore(cfg);
      try {
        expect(store.kv.transport).toBe(transport);
        await contract(store);
      } finally {
        await store.close();
      }
    });
  }

  it('http: the records it writes are the ones the gRPC client reads, byte for byte', async () => {
    const cfg = parseEtcdConfig(etcdSection(etcd, { prefix: '/cross' }));
    const h = openEtcdHttpStore(cfg);
    const g = await openEtcdStore(cfg);
    try {
      const b = block('10.1.0.0/26', 'nü', { '10.1.0.5': { containerId: 'x/y', ifname: 'eth0' } });
      const rev = await h.commit([{ op: 'putBlock', block: b, prevRev: 0 }]);
      expect(await g.getBlocks('net', ['10.1.0.0/26'])).toEqual([{ value: b, rev }]);
      expect(() => h.client).toThrow(/not through an etcd3 client/);
    } finally {
      await h.close();
      await g.close();
    }
  });

  it('http: a dead first endpoint is skipped; all endpoints dead is StoreUnavailableError within the request timeout', async () => {
    const live = etcdSection(etcd, { prefix: '/failover' });
    const store = openEtcdHttpStore(parseEtcdConfig({ ...live, endpoints: ['http://127.0.0.1:1', ...(live['endpoints'] as string[])] }));
    try {
      for (let i = 0; i < 4; i++) await store.ping(); // whichever endpoint it starts with
    } finally {
      await store.close();
    }
    const dead = openEtcdHttpStore(parseEtcdConfig({ endpoints: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], dialTimeout: 200, requestTimeout: 700 }));
    const t0 = Date.now();
    const err = await dead.ping().then(
      () => undefined,
      (e: unknown) => e,
    );
    await dead.close();
    expect(isStoreUnavailable(err), String(err)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('http: username and password (etcd auth enabled)', async () => {
    const ep = etcd.endpoints[0] as string;
    const ctl = (...args: string[]): string =>
      execFileSync('etcdctl', [`--endpoints=${ep}`, ...args], { env: { ETCDCTL_API: '3', PATH: process.env['PATH'] ?? '/usr/bin' }, encoding: 'utf8' });
    ctl('user', 'add', 'root:s3cret-pw', '--interactive=false');
    ctl('user', 'grant-role', 'root', 'root');
    ctl('auth', 'enable');
    try {
      const good = openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix: '/auth', username: 'root', password: 's3cret-pw' })));
      try {
        await contract(good);
      } finally {
        await good.close();
      }
      const bad = openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix: '/auth', username: 'root', password: 'wrong', requestTimeout: 1000 })));
      const err = await bad.ping().then(
        () => undefined,
        (e: unknown) => e,
      );
      await bad.close();
      expect(isStoreUnavailable(err)).toBe(true);
      expect(String(err)).not.toContain('wrong'); // the password is never echoed
    } finally {
      ctl('--user=root:s3cret-pw', 'auth', 'disable');
    }
  });
});

describe('etcd store over http with mutual TLS', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd({ tls: true });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('https with a client certificate to an IP endpoint; without the certificate the store is unavailable', async () => {
    const store = openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix: '/tls' })));
    try {
      await contract(store);
    } finally {
      await store.close();
    }
    const noCert = openEtcdHttpStore(parseEtcdConfig({ ...etcdSection(etcd), tls: { ca: etcd.tls!.ca }, requestTimeout: 1000 }));
    const err = await noCert.ping().then(
      () => undefined,
      (e: unknown) => e,
    );
    await noCert.close();
    expect(isStoreUnavailable(err), String(err)).toBe(true);
  });
});

describe('etcd store over http on a 3-member cluster reached by unix sockets', () => {
  let cluster: ChaosEtcd | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('unix:/path endpoints; the leader SIGKILLed: requests move to the other members, nothing applied twice', async () => {
    cluster = await ChaosEtcd.start(3);
    const c = cluster;
    expect(c.endpoints.every((e) => e.startsWith('unix:/'))).toBe(true);
    const cfg = parseEtcdConfig({ endpoints: c.endpoints, prefix: '/unix', dialTimeout: 1000, requestTimeout: 5000 });
    const store = openEtcdHttpStore(cfg);
    try {
      await contract(store);
      let rev = await store.commit([{ op: 'putBlock', block: block('10.2.0.0/26'), prevRev: 0 }]);
      await c.kill(await c.leader());
      // every write compares the revision it read: 20 in a row across the election
      for (let i = 0; i < 20; i++) {
        const want = block('10.2.0.0/26', 'n1', { [`10.2.0.${i + 1}`]: { containerId: `c${i}`, ifname: 'eth0' } });
        let next = await store.commit([{ op: 'putBlock', block: want, prevRev: rev as number }]);
        if (next === undefined) {
          // An attempt timed out but was applied, and its resend lost the comparison: the
          // caller re-reads (as the allocator does) and finds its write, applied once.
          const [now] = await store.getBlocks('net', ['10.2.0.0/26']);
          expect(now?.value, `write ${i}`).toEqual(want);
          next = now?.rev;
        }
        expect(next, `write ${i}`).toBeGreaterThan(rev as number);
        rev = next;
      }
      const [b] = await store.getBlocks('net', ['10.2.0.0/26']);
      expect(b?.rev).toBe(rev);
      expect(Object.keys(b?.value.allocations ?? {})).toEqual(['10.2.0.20']);
    } finally {
      await store.close();
    }
  });
});
