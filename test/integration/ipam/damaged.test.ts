// A damaged store is a clear error, never a 999 and never a duplicate: every damaged shape
// of a local store file (truncated, garbage, null, wrong structure, a symbolic or hard link
// to another file) and of an etcd value gives code 11 (50 on STATUS) naming the file or key
// and what is wrong, for ADD, CHECK, DEL, STATUS and the CLI, without ever echoing the
// bytes; `strand ipam repair` rebuilds what can be rebuilt and says what it cannot.
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore, type EtcdStore } from '../../../ipam/store/etcd.ts';
import { DOC_FILE, LOCK_FILE, LocalStore } from '../../../ipam/store/local.ts';
import { addrOf, cli, consistency, etcdSection, holdings, netConf, plugin, requireBuilt, type Op } from './helpers.ts';
import type { PluginRun } from '../../helpers/run-plugin.ts';

const SECRET = 'TOPSECRET-9f2c';
const NET = 'net-dmg';

function expectNamedError(r: PluginRun, code: number, where: string, problem: RegExp): void {
  expect(r.code, r.stdout).toBe(1);
  expect(r.json?.code, r.stdout).toBe(code);
  expect(r.json.details).toContain(where);
  expect(r.json.details).toMatch(problem);
  expect(r.stdout + r.stderr).not.toContain(SECRET);
}

const verbs: Array<[Op['command'], number]> = [
  ['ADD', 11],
  ['CHECK', 11],
  ['DEL', 11],
  ['STATUS', 50],
];

describe('damaged local store', () => {
  let dir: string;
  let conf: Record<string, unknown>;
  let file: string;
  let good: Record<string, unknown>;
  beforeEach(async () => {
    requireBuilt();
    dir = mkdtempSync(join(tmpdir(), 'ia-dmg-'));
    conf = netConf(NET, { dataDir: dir, ranges: [[{ subnet: '10.61.0.0/24' }]] });
    file = join(dir, NET, DOC_FILE);
    for (const id of ['p1', 'p2', 'p3']) addrOf(await plugin({ command: 'ADD', containerId: id, node: 'n1' }, conf));
    good = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const shapes: Array<[string, () => void, RegExp]> = [
    ['truncated', () => writeFileSync(file, JSON.stringify({ ...good, secret: SECRET }).slice(0, 60)), /is not valid JSON/],
    ['garbage', () => writeFileSync(file, `\u0000\u00ff${SECRET}{{`), /is not valid JSON/],
    ['empty', () => writeFileSync(file, ''), /is empty/],
    ['null', () => writeFileSync(file, 'null'), /holds null/],
    ['a list', () => writeFileSync(file, JSON.stringify([SECRET])), /holds a list/],
    ['missing blocks', () => writeFileSync(file, JSON.stringify({ ...good, blocks: undefined })), /blocks is missing/],
    ['missing attachments', () => writeFileSync(file, JSON.stringify({ ...good, attachments: undefined })), /attachments is missing/],
    ['blocks of the wrong type', () => writeFileSync(file, JSON.stringify({ ...good, blocks: SECRET })), /blocks is a string/],
    [
      'an attachment whose ips is not a list',
      () => {
        const d = structuredClone(good) as { attachments: Record<string, { value: { ips: unknown } }> };
        for (const a of Object.values(d.attachments)) a.value.ips = SECRET;
        writeFileSync(file, JSON.stringify(d));
      },
      /attachments entry 1: ips is a string/,
    ],
    [
      'a symbolic link to another file',
      () => {
        const other = join(dir, 'secret.json');
        writeFileSync(other, JSON.stringify({ ...good, secret: SECRET }));
        rmSync(file);
        symlinkSync(other, file);
      },
      /symbolic link/,
    ],
    [
      'a hard link to another file',
      () => {
        const other = join(dir, 'secret2.json');
        writeFileSync(other, JSON.stringify({ ...good, secret: SECRET }));
        rmSync(file);
        linkSync(other, file);
      },
      /hard links/,
    ],
  ];

  for (const [name, damage, problem] of shapes) {
    it(`${name}: ADD, CHECK, DEL, STATUS and the CLI name the file and the problem`, async () => {
      damage();
      for (const [command, code] of verbs) {
        expectNamedError(await plugin({ command, containerId: 'new', node: 'n1' }, conf), code, file, problem);
      }
      const ls = await cli(['--data-dir', dir, '--network', NET, 'ls']);
      expect(ls.code).toBe(1);
      expect(ls.err).toContain(file);
      expect(ls.err).toMatch(problem);
      expect(ls.out + ls.err).not.toContain(SECRET);
    });
  }

  it('repair rebuilds a document whose blocks are gone (no duplicate after it); a garbage one only with --force', async () => {
    const held = (await holdings(new LocalStore(dir), NET)).map((h) => h.split('=')[1]);
    writeFileSync(file, JSON.stringify({ ...good, blocks: 5 }));
    const rep = await cli(['--data-dir', dir, 'repair', '--json']);
    expect(rep.code, rep.err).toBe(0);
    const [row] = JSON.parse(rep.out);
    expect(row.notes.join('\n')).toMatch(/blocks was a number: rebuilt from the other records/);
    expect(row.blocksCreated).toEqual(['10.61.0.0/24']);
    expect((await consistency(new LocalStore(dir), NET)).problems).toEqual([]);
    const next = addrOf(await plugin({ command: 'ADD', containerId: 'after', node: 'n1' }, conf));
    expect(held).not.toContain(next);

    writeFileSync(file, `${SECRET}garbage`);
    const no = await cli(['--data-dir', dir, 'repair']);
    expect(no.code).toBe(1);
    expect(no.err).toMatch(/is not valid JSON.*nothing in it can be rebuilt/);
    expect(no.err).not.toContain(SECRET);
    const forced = await cli(['--data-dir', dir, 'repair', '--force']);
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).toMatch(/moved aside to .*strand-ipam\.json\.damaged-/);
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'fresh', node: 'n1' }, conf))).toMatch(/^10\.61\.0\./);
  });

  it('a symbolic link planted as the lock file is refused and nothing is created through it', async () => {
    const d = join(dir, 'other-net');
    mkdirSync(d);
    const target = join(dir, 'must-not-exist');
    symlinkSync(target, join(d, LOCK_FILE));
    const r = await plugin({ command: 'ADD', containerId: 'x', node: 'n1' }, { ...conf, name: 'other-net' });
    expectNamedError(r, 11, join(d, LOCK_FILE), /lock file is a symbolic link/);
    expect(existsSync(target)).toBe(false);
  });
});

describe('damaged etcd records', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  for (const transport of ['http', 'grpc'] as const) {
    it(`${transport}: a damaged value is code 11 naming its key for every verb that reads it; repair rebuilds`, async () => {
      const prefix = `/dmg-${transport}`;
      const conf = netConf(NET, { ranges: [[{ subnet: '10.62.0.0/24' }]], etcd: etcdSection(etcd, { prefix, transport }) });
      const store: EtcdStore = openEtcdHttpStore(parseEtcdConfig(etcdSection(etcd, { prefix })));
      const put = async (key: string, value: string): Promise<void> => {
        await store.kv.txn([], [{ put: Buffer.from(key), value: Buffer.from(value) }]);
      };
      const get = async (key: string): Promise<string | undefined> => (await store.kv.range(Buffer.from(key)))[0]?.value.toString();
      try {
        const ips: Record<string, string> = {};
        for (const [id, node] of [
          ['a1', 'node-a'],
          ['a2', 'node-a'],
          ['b1', 'node-b'],
        ] as const) {
          ips[id] = addrOf(await plugin({ command: 'ADD', containerId: id, node }, conf));
        }
        const blockA = store.keys.block(NET, '10.62.0.0/26');
        const attB = store.keys.attachment(NET, 'b1', 'eth0');
        const aff = store.keys.affinity(NET, '10.62.0.64/26');
        const res = store.keys.reservations(NET);

        // node-a's own block is garbage: node-a's verbs that read it fail, naming the key
        const savedBlock = (await get(blockA)) as string;
        await put(blockA, `${SECRET}{`);
        expectNamedError(await plugin({ command: 'ADD', containerId: 'a3', node: 'node-a' }, conf), 11, blockA, /is not valid JSON/);
        expectNamedError(await plugin({ command: 'DEL', containerId: 'a1', node: 'node-a' }, conf), 11, blockA, /is not valid JSON/);
        await put(blockA, savedBlock);

        // another node's attachment is null: not read by node-a's ADD (which still gets a
        // correct address), but by node-b's DEL/CHECK and by the CLI
        await put(attB, 'null');
        const a3 = addrOf(await plugin({ command: 'ADD', containerId: 'a3', node: 'node-a' }, conf));
        expect(Object.values(ips)).not.toContain(a3);
        expectNamedError(await plugin({ command: 'CHECK', containerId: 'b1', node: 'node-b' }, conf), 11, attB, /is null, not an attachment/);
        expectNamedError(await plugin({ command: 'DEL', containerId: 'b1', node: 'node-b' }, conf), 11, attB, /is null/);
        const storeFlags = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', prefix];
        const ls = await cli([...storeFlags, 'ls']);
        expect(ls.code).toBe(1);
        expect(ls.err).toContain(attB);

        // an affinity of the wrong type and garbage reservations: every ADD reads them
        const savedAff = (await get(aff)) as string;
        await put(aff, JSON.stringify({ network: NET, cidr: 5, node: SECRET }));
        expectNamedError(await plugin({ command: 'ADD', containerId: 'a4', node: 'node-a' }, conf), 11, aff, /cidr is missing or not a string/);
        await put(aff, savedAff);
        await put(res, SECRET);
        expectNamedError(await plugin({ command: 'STATUS', containerId: 'x', node: 'node-a' }, conf), 50, res, /is not valid JSON/);
        expectNamedError(await plugin({ command: 'ADD', containerId: 'a4', node: 'node-a' }, conf), 11, res, /is not valid JSON/);
        await put(aff, JSON.stringify({ network: NET, cidr: 5, node: SECRET }));

        const rep = await cli([...storeFlags, 'repair', '--json']);
        expect(rep.code, rep.err).toBe(0);
        const [row] = JSON.parse(rep.out);
        const notes = row.notes.join('\n');
        expect(notes).toContain(`${attB}: is null, not an attachment: rebuilt from the records naming it (${ips['b1']})`);
        expect(notes).toContain(`${res}: is not valid JSON`);
        expect(notes).toMatch(/affinity.*removed|10\.62\.0\.64\/26.*had no affinity: added/);
        expect(notes).not.toContain(SECRET);
        expect((await consistency(store, NET)).problems).toEqual([]);
        expect(await holdings(store, NET)).toEqual([`a1/eth0=${ips['a1']}`, `a2/eth0=${ips['a2']}`, `a3/eth0=${a3}`, `b1/eth0=${ips['b1']}`]);
        for (const [id, node] of [
          ['b1', 'node-b'],
          ['a1', 'node-a'],
        ] as const) {
          expect((await plugin({ command: 'DEL', containerId: id, node }, conf)).code).toBe(0);
        }
      } finally {
        await store.close();
      }
    });
  }
});
