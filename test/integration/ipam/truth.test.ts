// Attachments are the truth: a store whose block (and affinity) records were lost while
// its attachments remain (an operator's edit, a half-restored backup) never hands out an
// address an attachment holds. 200 ADDs through the built plugin, on the local store and
// on etcd over both transports; then `strand ipam gc` rebuilds the blocks from the
// attachments without dropping one.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore } from '../../../ipam/store/etcd.ts';
import { DOC_FILE, LocalStore } from '../../../ipam/store/local.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { addrOf, cli, consistency, etcdSection, holdings, netConf, requireBuilt, runMany, type Op } from './helpers.ts';

const NET = 'net-truth';
const PARALLEL = 4;
const TIMEOUT = 600_000;

describe('attachments are the truth', () => {
  let etcd: EtcdCluster;
  let dir: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'ia-truth-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const kind of ['local', 'etcd http', 'etcd grpc'] as const) {
    it(
      `${kind}: blocks deleted, attachments kept: 200 ADDs hand out no held address; gc rebuilds the blocks and keeps every attachment`,
      async () => {
        const prefix = `/truth-${kind.replace(' ', '-')}`;
        const ranges = [[{ subnet: '10.63.0.0/23' }]];
        const conf =
          kind === 'local'
            ? netConf(NET, { dataDir: dir, ranges, blockSize: 26 })
            : netConf(NET, { ranges, etcd: etcdSection(etcd, { prefix, transport: kind === 'etcd grpc' ? 'grpc' : 'http' }) });
        const store: Store = kind === 'local' ? new LocalStore(dir) : openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix })));
        const storeFlags = kind === 'local' ? ['--data-dir', dir] : ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', prefix];
        try {
          const ops = (tag: string, n: number): Op[] =>
            Array.from({ length: n }, (_, i) => ({ command: 'ADD', containerId: `${tag}${i}`, node: `node-${i % 2}` }));
          const held = new Set((await runMany(ops('old', 60), conf, PARALLEL)).map(addrOf));
          expect(held.size).toBe(60);
          const before = await holdings(store, NET);

          // lose every block and affinity record; the attachments (and etcd's address index) stay
          if (kind === 'local') {
            const file = join(dir, NET, DOC_FILE);
            const doc = JSON.parse(readFileSync(file, 'utf8'));
            doc.blocks = {};
            writeFileSync(file, JSON.stringify(doc));
          } else {
            const { keys, kv } = store as ReturnType<typeof openEtcdHttpStore>;
            for (const dirKey of [keys.block(NET), keys.affinity(NET)]) {
              const end = Buffer.from(dirKey);
              end[end.length - 1]! += 1;
              const found = await kv.range(Buffer.from(dirKey), end, true);
              await kv.txn(
                [],
                found.map((k) => ({ del: k.key })),
              );
            }
          }
          expect(await store.listBlocks(NET)).toEqual([]);

          const fresh = (await runMany(ops('new', 200), conf, PARALLEL)).map(addrOf);
          expect(fresh.filter((ip) => held.has(ip))).toEqual([]);
          expect(new Set(fresh).size).toBe(200);

          const gc = await cli([...storeFlags, '--network', NET, 'gc', '--json']);
          expect(gc.code, gc.err).toBe(0);
          const [row] = JSON.parse(gc.out);
          expect(row.conflicts).toEqual([]);
          expect(row.orphans).toEqual([]);
          expect((await consistency(store, NET)).problems).toEqual([]);
          const after = await holdings(store, NET);
          expect(after).toHaveLength(260);
          for (const h of before) expect(after).toContain(h);
          // a second gc finds nothing to do
          const again = JSON.parse((await cli([...storeFlags, '--network', NET, 'gc', '--json'])).out)[0];
          expect([...again.orphans, ...again.restored, ...again.blocksCreated, ...again.attachmentsFixed]).toEqual([]);
        } finally {
          await store.close();
        }
      },
      TIMEOUT,
    );
  }
});
