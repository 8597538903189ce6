// The bad-input corpus (test/fixtures/badinput/cases/**.json, >= 100 cases) through the
// built binaries, each inside a throwaway host namespace: every answer is CNI error JSON
// with the documented code, exit 1, no stack trace on stdout, and nothing changed in the
// host namespace, the pod namespace or the IPAM data directory. Cases run a few at a
// time, each in its own namespaces (a WorldPool), so the file stays well under a minute.
//
// A control per plugin first proves the base configs are valid (ADD then DEL succeeds,
// or only DEL for ipvlan, which this kernel lacks), so every failure below is caused by
// the hostile part of the case and nothing else.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { buildRequest, DEAD_ETCD_PORT, loadCorpus, PLUGINS, report, runCase, runInHost, WorldPool, worldState, type BadCase } from './harness.ts';

const corpus = loadCorpus();

let pool: WorldPool;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

beforeAll(async () => {
  process.env['STRAND_TEST_PREFIX'] ??= 'sa';
  // The "unreachable etcd" cases need a port where nothing listens.
  expect(await portIsFree(DEAD_ETCD_PORT), `port ${DEAD_ETCD_PORT} must be free for the unreachable-etcd cases`).toBe(true);
  pool = new WorldPool(3);
});

afterAll(() => {
  pool?.destroy();
});

describe('bad-input corpus', () => {
  it('has at least 100 cases, each plugin covered', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(100);
    for (const p of PLUGINS) expect(corpus.filter((c) => c.plugin === p).length, p).toBeGreaterThanOrEqual(10);
  });

  describe.each(PLUGINS)('%s base config (control)', (plugin) => {
    it('is accepted: ADD then DEL succeed and leave no pod link, address or record', async () => {
      await pool.use(async (w) => {
        const before = worldState(w);
        // ipvlan: this kernel has no ipvlan, so only DEL (which needs no link) is a control.
        const verbs = plugin === 'strand-ipvlan' ? ['DEL'] : ['ADD', 'DEL'];
        for (const command of verbs) {
          const c: BadCase = { id: `control-${plugin}`, plugin, why: 'control', command, expect: { ok: true } };
          const r = await runInHost(w, plugin, buildRequest(w, c));
          expect(r.code, `${command}: ${r.stdout} ${r.stderr}`).toBe(0);
        }
        const after = worldState(w);
        // The bridge (with its gateway address) stays after DEL, as with the reference
        // plugin; the world is rebuilt so later cases start from the plain host.
        w.dirty = true;
        expect(after.pod).toBe(before.pod);
        const links = (s: string): string[] => (JSON.parse(s.split('@@')[0]!) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n !== 'bi0');
        expect(links(after.host)).toEqual(links(before.host));
        expect(after.data, 'the IPAM record of the control is released').not.toContain('badinput-control');
      });
    });
  });

  describe.concurrent('cases', () => {
    it.each(corpus.map((c) => [c.id, c] as const))('%s', async (id, c) => {
      const outcome = await pool.use((w) => runCase(w, c));
      if (outcome.problems.length) expect.fail(report(id, outcome));
    });
  });
});
