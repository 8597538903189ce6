// The journal of pending releases (ipam/pending.ts): durable entries, named damage,
// completion that releases only what the entry's node still holds, and completers that
// exclude each other within one process and across processes (flock).
import { spawn } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Allocator } from '../../../ipam/allocator.ts';
import { parseIpamConfig } from '../../../ipam/config.ts';
import {
  completePending,
  completePendingReleases,
  PendingJournal,
  pendingDirOf,
  sameStore,
  type PendingRelease,
  type StoreRef,
} from '../../../ipam/pending.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import { MemoryStore } from '../../../ipam/store/memory.ts';
import type { Store } from '../../../ipam/store/types.ts';

const NET = 'net-p';

function config(network = NET) {
  return parseIpamConfig(
    { cniVersion: '1.1.0', name: network, type: 'x', ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.70.0.0/24' }]] } },
    { cniArgs: '' },
  );
}

function entry(containerId: string, store: StoreRef, extra: Partial<PendingRelease> = {}): PendingRelease {
  return {
    version: 1,
    network: NET,
    containerId,
    ifname: 'eth0',
    node: 'n1',
    since: new Date().toISOString(),
    reason: 'etcd range failed: connect ECONNREFUSED',
    store,
    ...extra,
  };
}

async function allocate(store: Store, ids: string[], node = 'n1'): Promise<void> {
  const al = new Allocator({ store, config: config(), node });
  for (const id of ids) await al.allocate(id, 'eth0');
}

describe('pending-release journal', () => {
  let dir: string;
  let journal: PendingJournal;
  const ref: StoreRef = { kind: 'etcd', prefix: '/strand/ipam', etcd: { endpoints: ['http://127.0.0.1:1'] } };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lf-pending-'));
    journal = new PendingJournal(pendingDirOf(dir));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records an entry durably as one 0600 file in a 0700 directory; a repeat keeps the first time; remove is idempotent', async () => {
    const first = entry('c1', ref, { since: '2026-01-01T00:00:00.000Z' });
    const file = await journal.record(first);
    expect(file).toBe(journal.fileOf(NET, 'c1', 'eth0'));
    expect(statSync(journal.dir).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await journal.record(entry('c1', ref, { since: '2026-02-02T00:00:00.000Z', reason: 'again' }));
    expect(await journal.get(NET, 'c1', 'eth0')).toMatchObject({ since: '2026-01-01T00:00:00.000Z', reason: 'again' });
    expect(readdirSync(journal.dir).sort()).toEqual([PendingJournal.fileName(NET, 'c1', 'eth0')]);
    expect(await journal.remove(NET, 'c1', 'eth0')).toBe(true);
    expect(await journal.remove(NET, 'c1', 'eth0')).toBe(false);
    expect(await journal.get(NET, 'c1', 'eth0')).toBeUndefined();
  });

  it('a damaged entry is named, never quoted; a symbolic link is never followed; the journal directory must not be a link', async () => {
    await journal.record(entry('c1', ref));
    const bad = join(journal.dir, PendingJournal.fileName(NET, 'c2', 'eth0'));
    writeFileSync(bad, '{"secret": "TOPSECRET-1"');
    const other = join(dir, 'other');
    writeFileSync(other, JSON.stringify(entry('c3', ref)));
    symlinkSync(other, join(journal.dir, PendingJournal.fileName(NET, 'c3', 'eth0')));
    const { entries, damaged } = await journal.list();
    expect(entries.map((e) => e.containerId)).toEqual(['c1']);
    expect(damaged.join('\n')).toContain(bad);
    expect(damaged.join('\n')).toMatch(/is not valid JSON/);
    expect(damaged.join('\n')).toMatch(/symbolic link/);
    expect(damaged.join('\n')).not.toContain('TOPSECRET');

    const d2 = mkdtempSync(join(tmpdir(), 'lf-pending-link-'));
    try {
      symlinkSync(dir, join(d2, '.strand-ipam-pending'));
      await expect(new PendingJournal(pendingDirOf(d2)).record(entry('c1', ref))).rejects.toThrow(/not a directory/);
    } finally {
      rmSync(d2, { recursive: true, force: true });
    }
  });

  it('stores are matched by local directory or etcd prefix (endpoints may change)', () => {
    expect(sameStore(ref, { kind: 'etcd', prefix: 'strand/ipam/', etcd: { endpoints: ['https://10.0.0.1:2379'] } })).toBe(true);
    expect(sameStore(ref, { kind: 'etcd', prefix: '/other', etcd: {} })).toBe(false);
    expect(sameStore({ kind: 'local', dataDir: '/a/b/../c' }, { kind: 'local', dataDir: '/a/c' })).toBe(true);
    expect(sameStore({ kind: 'local', dataDir: '/a' }, ref)).toBe(false);
  });

  it('completion releases what the entry node still holds, leaves another node and another store alone, removes done entries', async () => {
    const store = new MemoryStore();
    await allocate(store, ['c1', 'c2', 'c3']);
    await allocate(store, ['x1'], 'n2');
    await journal.record(entry('c1', ref));
    await journal.record(entry('gone', ref)); // its attachment is already released
    await journal.record(entry('x1', ref)); // recorded on n1, but n2 holds x1: not n1's to release
    await journal.record(entry('c3', { kind: 'etcd', prefix: '/elsewhere', etcd: {} }));
    const dry = await completePending(journal, store, ref, { dryRun: true });
    expect(dry.completed.sort()).toEqual([
      `${NET} c1/eth0: would release 10.70.0.2`,
      `${NET} gone/eth0: nothing held any more`,
      `${NET} x1/eth0: held on node n2, not n1: left alone`,
    ]);
    expect((await journal.list()).entries).toHaveLength(4);

    const r = await completePending(journal, store, ref, {});
    expect(r.completed.sort()).toEqual([
      `${NET} c1/eth0: released 10.70.0.2`,
      `${NET} gone/eth0: nothing held any more`,
      `${NET} x1/eth0: held on node n2, not n1: left alone`,
    ]);
    expect(r.left).toBe(1);
    expect((await store.listAttachments(NET)).map((a) => a.value.containerId).sort()).toEqual(['c2', 'c3', 'x1']);
    expect((await journal.list()).entries.map((e) => e.containerId)).toEqual(['c3']);
  });

  it('a store that is down keeps the entries (one failure stops the run); a limit leaves the rest for later', async () => {
    const store = new MemoryStore();
    await allocate(store, ['c1', 'c2', 'c3']);
    for (const id of ['c1', 'c2', 'c3']) await journal.record(entry(id, ref));
    store.down = true;
    const down = await completePending(journal, store, ref, {});
    expect(down.completed).toEqual([]);
    expect(down.failed).toHaveLength(1);
    expect(down.left).toBe(2);
    expect((await journal.list()).entries).toHaveLength(3);
    store.down = false;
    const one = await completePending(journal, store, ref, { limit: 1 });
    expect(one.completed).toHaveLength(1);
    expect(one.left).toBe(2);
    const rest = await completePending(journal, store, ref, {});
    expect(rest.completed).toHaveLength(2);
    expect(await store.listAttachments(NET)).toEqual([]);
    expect(await journal.any()).toBe(false);
  });

  it('concurrent writers and completers in one process: every entry recorded, each completed exactly once', async () => {
    const store = new MemoryStore();
    const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
    await allocate(store, ids);
    await Promise.all(ids.map((id) => journal.record(entry(id, ref))));
    expect((await journal.list()).entries).toHaveLength(40);
    // slow reads, so that the completers overlap
    const slow: Store = Object.create(store) as Store;
    slow.getAttachment = async (...a) => {
      await new Promise((r) => setTimeout(r, 2));
      return store.getAttachment(...a);
    };
    const reports = await Promise.all([1, 2, 3, 4].map(() => completePending(journal, slow, ref, {})));
    expect(reports.flatMap((r) => r.completed)).toHaveLength(40);
    expect(reports.flatMap((r) => r.completed).filter((l) => l.includes('released'))).toHaveLength(40);
    expect(await store.listAttachments(NET)).toEqual([]);
  });

  it('concurrent completers in 4 processes over a local store: each entry completed by exactly one (flock)', async () => {
    const store = new LocalStore(dir);
    const ids = Array.from({ length: 30 }, (_, i) => `c${i}`);
    await allocate(store, ids);
    const local: StoreRef = { kind: 'local', dataDir: resolve(dir) };
    await Promise.all(ids.map((id) => journal.record(entry(id, local))));
    const script = `
      import { completePending, PendingJournal, pendingDirOf } from ${JSON.stringify(resolve('ipam/pending.ts'))};
      import { LocalStore } from ${JSON.stringify(resolve('ipam/store/local.ts'))};
      const dir = process.argv[1];
      const r = await completePending(new PendingJournal(pendingDirOf(dir)), new LocalStore(dir), { kind: 'local', dataDir: dir }, {});
      process.stdout.write(JSON.stringify(r.completed));
    `;
    const run = (): Promise<string[]> =>
      new Promise((res, rej) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, resolve(dir)], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('close', (code) => (code === 0 ? res(JSON.parse(out) as string[]) : rej(new Error(`child failed (${code}): ${err}`))));
      });
    const outs = await Promise.all([run(), run(), run(), run()]);
    const all = outs.flat();
    expect(all).toHaveLength(30);
    expect(new Set(all.map((l) => l.split(':')[0])).size).toBe(30);
    expect(await new LocalStore(dir).listAttachments(NET)).toEqual([]);
    expect(await journal.any()).toBe(false);
  });

  it("the daemon's hook reopens each recorded local store; etcd entries needing a password are left to those who have it", async () => {
    const store = new LocalStore(dir);
    await allocate(store, ['c1']);
    await journal.record(entry('c1', { kind: 'local', dataDir: resolve(dir) }));
    await journal.record(entry('c2', { kind: 'etcd', prefix: '/p', etcd: { endpoints: ['http://127.0.0.1:1'], username: 'u' } }));
    const r = await completePendingReleases([dir, join(dir, '.')]);
    expect(r.completed).toEqual([`${NET} c1/eth0: released 10.70.0.2`]);
    expect(r.left).toBe(1);
    expect(await store.listAttachments(NET)).toEqual([]);
    expect((await journal.list()).entries.map((e) => e.containerId)).toEqual(['c2']);
    expect(lstatSync(journal.dir).isDirectory()).toBe(true);
  });
});
