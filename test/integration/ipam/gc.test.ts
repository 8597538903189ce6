// CNI GC as the spec says and as runtimes call it, through the built plugin: the valid
// list as null (what libcni sends for a nil list), [], an absent key and a real list;
// attachments younger than ipam.gcGracePeriod and those whose network namespace still
// exists are kept; and a GC racing 50 ADDs loses none of them. Local store and etcd.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { NetnsSet, ip } from '../../helpers/netns.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore, type EtcdStore } from '../../../ipam/store/etcd.ts';
import { DOC_FILE, LocalStore } from '../../../ipam/store/local.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { addrOf, consistency, etcdSection, gcConf, netConf, plugin, requireBuilt, runMany, type Op } from './helpers.ts';

const NET = 'net-gc';
const TIMEOUT = 300_000;
type Kind = 'local' | 'etcd http' | 'etcd grpc';

describe('CNI GC', () => {
  let etcd: EtcdCluster;
  let tmp: string;
  const ns = new NetnsSet();
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    tmp = mkdtempSync(join(tmpdir(), 'ia-gc-'));
  });
  afterEach(() => ns.cleanup());
  afterAll(async () => {
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  function setup(kind: Kind, tag: string): { conf: Record<string, unknown>; store: Store } {
    const prefix = `/gc-${tag}`;
    const ranges = [[{ subnet: '10.65.0.0/24' }]];
    if (kind === 'local') {
      const dataDir = join(tmp, tag);
      return { conf: netConf(NET, { dataDir, ranges }), store: new LocalStore(dataDir) };
    }
    const transport = kind === 'etcd grpc' ? 'grpc' : 'http';
    return {
      conf: netConf(NET, { ranges, etcd: etcdSection(etcd, { prefix, transport }) }),
      store: openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix }))),
    };
  }

  const ids = async (store: Store): Promise<string[]> => (await store.listAttachments(NET)).map((a) => a.value.containerId).sort();

  for (const kind of ['local', 'etcd http'] as const) {
    it(
      `${kind}: null, [] and an absent key mean no attachment is valid; a real list keeps its attachments; only this node's`,
      async () => {
        const cases: Array<[string, unknown, string[]]> = [
          ['null', null, []],
          ['empty', [], []],
          ['absent', undefined, []],
          ['list', [{ containerID: 'list-b', ifname: 'eth0' }], ['list-b']],
        ];
        for (const [tag, valid, keep] of cases) {
          const { conf, store } = setup(kind, `sem-${kind.replace(' ', '-')}-${tag}`);
          try {
            for (const id of ['a', 'b', 'c']) addrOf(await plugin({ command: 'ADD', containerId: `${tag}-${id}`, node: 'n1' }, conf));
            addrOf(await plugin({ command: 'ADD', containerId: `${tag}-other`, node: 'n2' }, conf));
            const gc = await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, valid));
            expect(gc.code, `${tag}: ${gc.stdout}`).toBe(0);
            expect(await ids(store), tag).toEqual([...keep, `${tag}-other`].sort());
            expect((await consistency(store, NET)).problems).toEqual([]);
          } finally {
            await store.close();
          }
        }
      },
      TIMEOUT,
    );

    it(`${kind}: a young attachment (gcGracePeriod) and one whose netns lives are kept; released when old, gone or when told`, async () => {
      const { conf: base, store } = setup(kind, `keep-${kind.replace(' ', '-')}`);
      // GC's "kept ... because" lines are info: shown on stderr with logLevel info
      const conf = { ...base, logLevel: 'info' };
      try {
        addrOf(await plugin({ command: 'ADD', containerId: 'young', node: 'n1' }, conf));
        const g1 = await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, { ...conf, 'cni.dev/valid-attachments': [] });
        expect(g1.code, g1.stdout).toBe(0);
        expect(g1.stderr).toMatch(/gc kept young\/eth0 .*within the GC grace period of 10000 ms/);
        expect(await ids(store)).toEqual(['young']);

        const pod = ns.add('gc');
        const r = await plugin({ command: 'ADD', containerId: 'live', node: 'n1' }, conf, { CNI_NETNS: ns.path(pod) });
        const liveIp = addrOf(r);
        ip(['addr', 'add', `${liveIp}/24`, 'dev', 'lo'], { ns: pod });
        expect((await store.getAttachment(NET, 'live', 'eth0'))?.value.netns).toBe(ns.path(pod));
        const g2 = await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, []));
        expect(g2.stderr).toMatch(/gc kept live\/eth0 .*network namespace .* still holds its address/);
        expect(await ids(store)).toEqual(['live']);
        // the same path, reused by a later pod that holds another address: not this attachment's pod
        ip(['addr', 'del', `${liveIp}/24`, 'dev', 'lo'], { ns: pod });
        ip(['addr', 'add', '10.65.0.250/24', 'dev', 'lo'], { ns: pod });
        addrOf(await plugin({ command: 'ADD', containerId: 'reused', node: 'n1' }, conf, { CNI_NETNS: ns.path(pod) }));
        const g2b = await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, [{ containerID: 'reused', ifname: 'eth0' }]));
        expect(g2b.code).toBe(0);
        expect(await ids(store)).toEqual(['reused']);
        ip(['addr', 'add', `${liveIp}/24`, 'dev', 'lo'], { ns: pod });
        addrOf(await plugin({ command: 'ADD', containerId: 'live', node: 'n1' }, { ...conf, args: { cni: { ips: [liveIp] } } }, { CNI_NETNS: ns.path(pod) }));
        expect((await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, []))).code).toBe(0);
        expect(await ids(store)).toEqual(['live']);
        // told so: released although its namespace lives
        const g3 = await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, [], { gcGracePeriod: 0, gcKeepLiveNetns: false }));
        expect(g3.code).toBe(0);
        expect(await ids(store)).toEqual([]);
        // and the usual case: the pod's namespace is gone
        addrOf(await plugin({ command: 'ADD', containerId: 'gone', node: 'n1' }, conf, { CNI_NETNS: ns.path(pod) }));
        ns.cleanup();
        expect((await plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, gcConf(conf, []))).code).toBe(0);
        expect(await ids(store)).toEqual([]);
      } finally {
        await store.close();
      }
    });
  }

  for (const kind of ['local', 'etcd http', 'etcd grpc'] as const) {
    it(
      `${kind}: a GC racing 50 ADDs releases the 20 stale attachments and none of the 50`,
      async () => {
        const { conf, store } = setup(kind, `race-${kind.replace(' ', '-')}`);
        try {
          const stale: Op[] = Array.from({ length: 20 }, (_, i) => ({ command: 'ADD', containerId: `stale${i}`, node: 'n1' }));
          (await runMany(stale, conf, 4)).forEach(addrOf);
          await backdate(kind, store, conf);
          const adds: Op[] = Array.from({ length: 50 }, (_, i) => ({ command: 'ADD', containerId: `new${i}`, node: 'n1' }));
          let done = 0;
          let gcRun: ReturnType<typeof plugin> | undefined;
          const results = await runMany(adds, conf, 8, () => {
            // GC starts while ADDs are running: after the first few, long before the last
            if (++done === 5) gcRun = plugin({ command: 'GC', containerId: 'gc', node: 'n1' }, { ...conf, 'cni.dev/valid-attachments': [] });
          });
          results.forEach(addrOf);
          const gc = await (gcRun as ReturnType<typeof plugin>);
          expect(gc.code, gc.stdout + gc.stderr).toBe(0);
          expect(await ids(store)).toEqual(adds.map((o) => o.containerId).sort());
          expect((await consistency(store, NET)).problems).toEqual([]);
        } finally {
          await store.close();
        }
      },
      TIMEOUT,
    );
  }
});

/** Makes every attachment of NET a day old (a store holding stale attachments from before). */
async function backdate(kind: Kind, store: Store, conf: Record<string, unknown>): Promise<void> {
  const old = new Date(Date.now() - 86_400_000).toISOString();
  if (kind === 'local') {
    const file = join((conf['ipam'] as { dataDir: string }).dataDir, NET, DOC_FILE);
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    for (const a of Object.values(doc.attachments) as Array<{ value: { created: string } }>) a.value.created = old;
    writeFileSync(file, JSON.stringify(doc));
    return;
  }
  const s = store as EtcdStore;
  for (const a of await s.listAttachments(NET)) {
    const key = s.keys.attachment(NET, a.value.containerId, a.value.ifname);
    await s.kv.txn([], [{ put: Buffer.from(key), value: Buffer.from(JSON.stringify({ ...a.value, created: old })) }]);
  }
}
