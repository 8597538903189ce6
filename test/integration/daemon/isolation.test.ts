// Requests share one daemon process and nothing else: concurrent requests with
// different PATH, CNI_PATH and log files each see their own, and a request whose code
// throws from a timer or leaves a rejection unhandled fails alone (code 999) while the
// others complete.
import { copyFileSync, linkSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { type Call, ok, settled, useWorld, type World, writeTool } from './harness.ts';

const world = useWorld();
let w: World;
beforeEach(() => {
  w = world();
});

describe('per-request environment', () => {
  it('two concurrent ADDs: each finds its own IPAM on its CNI_PATH, its own tools on its PATH, logs to its own file', async () => {
    await w.daemon.start();
    const sides = ['a', 'b'].map((tag) => {
      const dir = join(w.tmp, `side-${tag}`);
      const mark = join(dir, 'mark');
      // IPAM found through this request's CNI_PATH; says hello on stderr (logged by the bridge)
      writeTool(
        dir,
        'tagged-ipam',
        `#!/bin/sh\necho "ipam $CNI_COMMAND $CNI_CONTAINERID" >> ${mark}\necho "hello from ${tag}" >&2\n[ "$CNI_COMMAND" = ADD ] && sleep 0.5\nexec /usr/lib/cni/host-local\n`,
      );
      // masquerade tools found through this request's PATH
      const bin = join(dir, 'bin');
      for (const t of ['iptables-save', 'iptables-restore']) {
        writeTool(bin, t, `#!/bin/sh\necho "${t}" >> ${mark}\nexec /usr/sbin/${t} "$@"\n`);
      }
      return { tag, dir, mark, bin, log: join(dir, 'plugin.log'), pod: w.pod(`p${tag}`) };
    });
    const conf = { ...w.conf({ type: 'tagged-ipam', dataDir: w.dataDir, ranges: [[{ subnet: '10.98.0.0/24' }]] }, { ipMasq: true }), cniVersion: '1.0.0' };
    const run = (verb: string, s: (typeof sides)[number]): Promise<Call> =>
      w.verb(verb, s.pod, `c-${s.tag}`, conf, {
        cniPath: `${s.dir}:${w.cniPath('shim')}`,
        env: { PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`, STRAND_LOG_FILE: s.log, STRAND_LOG_LEVEL: 'debug', STRAND_SHIM_REQUIRE_DAEMON: '1' },
      });
    await Promise.all(sides.map((s) => run('ADD', s).then((r) => ok(r, `ADD ${s.tag}`))));
    await Promise.all(sides.map((s) => run('DEL', s).then((r) => ok(r, `DEL ${s.tag}`))));
    for (const s of sides) {
      const other = sides.find((o) => o !== s)!;
      const mark = readFileSync(s.mark, 'utf8');
      expect(mark, s.tag).toContain(`ipam ADD c-${s.tag}`);
      expect(mark, s.tag).toContain(`ipam DEL c-${s.tag}`);
      expect(mark, s.tag).toContain('iptables-restore');
      expect(mark, s.tag).not.toContain(`c-${other.tag}`);
      const log = readFileSync(s.log, 'utf8');
      expect(log, s.tag).toContain(`hello from ${s.tag}`);
      expect(log, s.tag).not.toContain(`hello from ${other.tag}`);
    }
    expect(await settled(w.daemon, 4)).toEqual(
      Array(4)
        .fill('strand-bridge ADD: done 0')
        .map((x, i) => (i < 2 ? x : 'strand-bridge DEL: done 0')),
    );
    expect(w.ipamRecords()).toEqual([]);
  });
});

describe('failures stay in their request (daemon from source with test plugins)', () => {
  function fixtureShims(names: string[]): string {
    const dir = join(w.tmp, 'fixture-bin');
    mkdirSync(dir);
    copyFileSync(join(repoRoot, 'dist', 'bin', 'strand-shim'), join(dir, 'strand-shim'));
    for (const n of names) linkSync(join(dir, 'strand-shim'), join(dir, n));
    return dir;
  }

  it('a throw from a timer and an unhandled rejection fail only their own requests (999); concurrent ones complete; the daemon keeps serving', async () => {
    const node = join(repoRoot, 'node_modules', '.bin', 'node');
    await w.daemon.start({ command: [node, join(repoRoot, 'test', 'helpers', 'daemon-fixture.ts')] });
    const dir = fixtureShims(['strand-echo', 'strand-throw', 'strand-reject']);
    const call = (plugin: string, id: string, extra: Record<string, string> = {}): Promise<Call> =>
      w.call(plugin, { via: dir, command: 'ADD', containerId: id, env: { STRAND_SHIM_REQUIRE_DAEMON: '1', ...extra } }, '{}');
    const [echo1, thrown, rejected, echo2] = await Promise.all([
      call('strand-echo', 'e1', { STRAND_TEST_SLEEP_MS: '400', CNI_PATH: '/e1' }),
      call('strand-throw', 't1'),
      call('strand-reject', 'r1'),
      call('strand-echo', 'e2', { STRAND_TEST_SLEEP_MS: '300', CNI_PATH: '/e2', PATH: '/only/e2' }),
    ]);
    expect(ok(echo1)).toMatchObject({ CNI_CONTAINERID: 'e1', CNI_PATH: '/e1' });
    expect(ok(echo2)).toEqual({ CNI_CONTAINERID: 'e2', CNI_PATH: '/e2', PATH: '/only/e2' });
    expect(echo1.stderr).toBe('echo e1\n');
    expect(thrown.code).toBe(1);
    expect(thrown.json).toMatchObject({ code: 999, msg: 'internal error', details: 'thrown from a timer' });
    expect(rejected.code).toBe(1);
    expect(rejected.json).toMatchObject({ code: 999, msg: 'internal error', details: 'rejected, unhandled' });
    expect(ok(await call('strand-echo', 'e3'))).toMatchObject({ CNI_CONTAINERID: 'e3' });
    const seen = await settled(w.daemon, 5);
    expect(seen.sort()).toEqual([
      'strand-echo ADD: done 0',
      'strand-echo ADD: done 0',
      'strand-echo ADD: done 0',
      'strand-reject ADD: crashed 1',
      'strand-throw ADD: crashed 1',
    ]);
  });
});
