// Faults between the shim and the daemon (issue 13, "Done when"): daemon absent, stale
// socket file, daemon killed mid-ADD, daemon hung, protocol version mismatch, non-root
// caller, concurrency cap exceeded, SIGTERM during a burst, oversized and malformed
// frames. In every case a call either completes exactly once (through the daemon or the
// standalone fallback) or fails with code 999 naming the daemon, and nothing leaks.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { encodeHeader, encodeRequest, HEADER_SIZE, Kind, NetnsState, decodeHeader, decodeNotice } from '../../../daemon/protocol.ts';
import { SHIM_DIR } from '../../helpers/daemon.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { fdsBackTo, ok, outcomes, settled, shimDir, useWorld, type World } from './harness.ts';

const world = useWorld();
let w: World;
beforeEach(() => {
  w = world();
});

const REQUIRE = { STRAND_SHIM_REQUIRE_DAEMON: '1' };

/** After DEL of every container: no pod link, no host veth, no IPAM record. */
function expectClean(pods: string[]): void {
  for (const p of pods) expect(w.podLinks(p), p).toEqual([]);
  expect(w.hostLinks().filter((l) => l !== `${w.prefix}-br`)).toEqual([]);
  expect(w.ipamRecords()).toEqual([]);
}

describe('no daemon to talk to', () => {
  it('socket absent: the standalone executable answers at once; REQUIRE_DAEMON=1 says why', async () => {
    const pod = w.pod('p');
    expect(existsSync(w.daemon.socket)).toBe(false);
    const add = await w.verb('ADD', pod, 'c1', w.conf());
    expect(ok(add).ips[0].address).toBe('10.98.0.2/24');
    const strict = await w.verb('DEL', pod, 'c1', w.conf(), { env: REQUIRE });
    expect(strict.code).toBe(1);
    expect(strict.json).toMatchObject({ code: 999, msg: 'strand daemon did not take the call' });
    expect(strict.json.details).toContain(w.daemon.socket);
    ok(await w.verb('DEL', pod, 'c1', w.conf()));
    expectClean([pod]);
  });

  it('stale socket file (its daemon died): refused, falls back; a new daemon replaces the file', async () => {
    // a socket file nobody listens on, as a SIGKILLed daemon leaves it
    execFileSync('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(w.daemon.socket)})`]);
    expect(existsSync(w.daemon.socket)).toBe(true);
    const v = await w.call('strand-bridge', { command: 'VERSION' }, '');
    expect(ok(v).supportedVersions).toContain('1.1.0');
    expect((await w.call('strand-bridge', { command: 'VERSION', env: REQUIRE }, '')).json.details).toContain('cannot connect to the daemon');
    await w.daemon.start();
    ok(await w.call('strand-bridge', { command: 'VERSION', env: REQUIRE }, ''));
    expect(await settled(w.daemon, 1)).toEqual(['strand-bridge VERSION: done 0']);
  });

  it('not root: the shim does not try the daemon (the standalone plugin runs, and answers as it would)', async () => {
    await w.daemon.start();
    const v = await w.call('strand-bridge', { command: 'VERSION', uid: 65534, env: REQUIRE }, '');
    expect(ok(v).supportedVersions).toContain('1.1.0');
    expect(await settled(w.daemon, 0)).toEqual([]);
  });
});

describe('daemon failures', () => {
  it('killed mid-ADD: code 999 naming the daemon, never run twice; the runtime DEL then cleans up everything', async () => {
    await w.daemon.start();
    const pod = w.pod('p');
    const mark = join(w.tmp, 'ipam-calls');
    const adding = w.verb('ADD', pod, 'c1', w.slowConf(), { env: { STRAND_TEST_SLEEP: '3', STRAND_TEST_MARK: mark } });
    for (let i = 0; i < 200 && !existsSync(mark); i++) await new Promise((r) => setTimeout(r, 25));
    expect(readFileSync(mark, 'utf8')).toBe('ADD c1\n'); // the request runs (IPAM sleeping)
    await w.daemon.kill(); // the daemon and its IPAM child
    const add = await adding;
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 999, msg: 'strand daemon failed during the request' });
    expect(readFileSync(mark, 'utf8')).toBe('ADD c1\n'); // not re-run by a fallback
    // the runtime's DEL after a failed ADD (the daemon is gone: standalone)
    ok(await w.verb('DEL', pod, 'c1', w.slowConf()));
    expectClean([pod]);
  });

  it('hung before STARTED (SIGSTOP): the shim gives up after STRAND_SHIM_ACK_TIMEOUT and runs standalone; the daemon, resumed, does not run it', async () => {
    await w.daemon.start();
    const pod = w.pod('p');
    w.daemon.signal('SIGSTOP');
    try {
      const add = await w.verb('ADD', pod, 'c1', w.conf(), { env: { STRAND_SHIM_ACK_TIMEOUT: '1' } });
      expect(ok(add).ips[0].address).toBe('10.98.0.2/24');
      expect(add.ms).toBeGreaterThan(900);
    } finally {
      w.daemon.signal('SIGCONT');
    }
    for (let i = 0; i < 100 && !outcomes(w.daemon.log).length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await settled(w.daemon, 1)).toEqual(['strand-bridge ADD: cancelled']);
    expect(w.ipamRecords()).toHaveLength(1);
    ok(await w.verb('DEL', pod, 'c1', w.conf()));
    expectClean([pod]);
  });

  it('no answer after STARTED: code 999 at the reply deadline (STRAND_SHIM_TIMEOUT); the work finishes in the daemon, DEL cleans up', async () => {
    await w.daemon.start();
    const pod = w.pod('p');
    const add = await w.verb('ADD', pod, 'c1', w.slowConf(), { env: { STRAND_TEST_SLEEP: '4', STRAND_SHIM_TIMEOUT: '1' } });
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 999, msg: 'strand daemon did not answer in time' });
    expect(add.ms).toBeLessThan(3500);
    for (let i = 0; i < 300 && !outcomes(w.daemon.log).length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await settled(w.daemon, 1)).toEqual(['strand-bridge ADD: lost 0']); // it succeeded; nobody was left to tell
    ok(await w.verb('DEL', pod, 'c1', w.slowConf()));
    expectClean([pod]);
  });

  it("the daemon's request deadline: 999 from the daemon, later work does not leak descriptors", async () => {
    await w.daemon.start({ args: ['--request-timeout', '1'] });
    const pod = w.pod('p');
    const add = await w.verb('ADD', pod, 'c1', w.slowConf(), { env: { STRAND_TEST_SLEEP: '2' } });
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 999, msg: 'strand daemon: request deadline passed' });
    // the work goes on (2 s of IPAM, then the bridge ADD) and closes the namespace
    // descriptors once it settles, however late
    const nsFds = (): string[] => w.daemon.fds().filter((f) => f.includes('net:['));
    for (let i = 0; i < 150 && nsFds().length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(nsFds()).toEqual([]);
    ok(await w.verb('DEL', pod, 'c1', w.slowConf()));
    expectClean([pod]);
    expect(nsFds()).toEqual([]);
  });
});

describe('version, admission and limits', () => {
  function buildShim(version: number): string {
    const dir = join(w.tmp, `v${version}`);
    mkdirSync(dir);
    execFileSync('musl-gcc', [
      '-static',
      '-Os',
      '-std=gnu11',
      `-DSHIM_PROTOCOL_VERSION=${version}`,
      '-o',
      join(dir, 'strand-shim'),
      join(repoRoot, 'native', 'shim.c'),
    ]);
    return shimDir(dir, ['strand-bridge', 'strand-ipam']);
  }

  it('protocol version mismatch: the daemon answers UNSUPPORTED, the shim runs standalone', async () => {
    await w.daemon.start();
    const dir = buildShim(99);
    const pod = w.pod('p');
    const add = await w.verb('ADD', pod, 'c1', w.conf(), { via: dir });
    expect(ok(add).ips[0].address).toBe('10.98.0.2/24');
    const strict = await w.call('strand-bridge', { via: dir, command: 'VERSION', env: REQUIRE }, '');
    expect(strict.json.details).toContain('unsupported protocol version');
    ok(await w.verb('DEL', pod, 'c1', w.conf(), { via: dir }));
    // the body of a version it does not speak is skipped unread: no plugin name in the log
    expect(await settled(w.daemon, 3)).toEqual(['- -: unsupported', '- -: unsupported', '- -: unsupported']);
    expectClean([pod]);
  });

  it("a shim of another build (the previous version's, during a rolling update) is served; its strand-ipam is not this build's, so it runs as a request of its own, not in-process", async () => {
    await w.daemon.start();
    const dir = buildShim(1); // this protocol, build "dev": not the daemon's build
    const cniPath = `${dir}:${w.tools}`;
    const pod = w.pod('p');
    const add = await w.verb('ADD', pod, 'c1', w.conf(), { via: dir, cniPath, env: REQUIRE });
    expect(ok(add).ips[0].address).toBe('10.98.0.2/24');
    ok(await w.verb('DEL', pod, 'c1', w.conf(), { via: dir, cniPath, env: REQUIRE }));
    expect((await settled(w.daemon, 4)).sort()).toEqual([
      'strand-bridge ADD: done 0',
      'strand-bridge DEL: done 0',
      'strand-ipam ADD: done 0',
      'strand-ipam DEL: done 0',
    ]);
    expectClean([pod]);
  });

  it('concurrency cap: the request over --max-requests is told BUSY and runs standalone; both complete', async () => {
    await w.daemon.start({ args: ['--max-requests', '1'] });
    const [p1, p2] = [w.pod('p1'), w.pod('p2')];
    const slow = w.verb('ADD', p1, 'c1', w.slowConf(), { env: { STRAND_TEST_SLEEP: '2' } });
    await new Promise((r) => setTimeout(r, 500));
    const second = await w.verb('ADD', p2, 'c2', w.slowConf(), { env: { STRAND_TEST_SLEEP: '0' } });
    ok(second);
    ok(await slow);
    expect((await settled(w.daemon, 2)).sort()).toEqual(['strand-bridge ADD: busy', 'strand-bridge ADD: done 0']);
    for (const [p, id] of [
      [p1, 'c1'],
      [p2, 'c2'],
    ] as const)
      ok(await w.verb('DEL', p, id, w.slowConf()));
    expectClean([p1, p2]);
  });

  it('SIGTERM during a burst: the socket goes at once, running requests finish, later calls run standalone: none lost', async () => {
    await w.daemon.start({ args: ['--grace', '15'] });
    const pods = Array.from({ length: 12 }, (_, i) => w.pod(`b${i}`));
    const env = { STRAND_TEST_SLEEP: '1' };
    const first = pods.slice(0, 6).map((p, i) => w.verb('ADD', p, `c${i}`, w.slowConf(), { env }));
    await new Promise((r) => setTimeout(r, 400));
    w.daemon.signal('SIGTERM');
    for (let i = 0; i < 50 && w.daemon.socketExists(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.daemon.socketExists()).toBe(false);
    const later = pods.slice(6).map((p, i) => w.verb('ADD', p, `c${i + 6}`, w.slowConf(), { env }));
    const results = await Promise.all([...first, ...later]);
    for (const [i, r] of results.entries()) ok(r, `ADD ${i}`);
    expect(new Set(results.map((r) => r.json.ips[0].address)).size).toBe(12);
    expect(await w.daemon.waitExit()).toBe(0);
    const seen = await settled(w.daemon, 6);
    expect(seen.filter((o) => o.endsWith('done 0')).length).toBeGreaterThanOrEqual(1);
    expect(seen.filter((o) => !o.endsWith('done 0') && !o.endsWith('busy'))).toEqual([]);
    for (const [i, p] of pods.entries()) ok(await w.verb('DEL', p, `c${i}`, w.slowConf()));
    expectClean(pods);
  });
});

describe('the socket itself', () => {
  /** Sends raw bytes (no descriptors) and returns what the daemon answered before closing. */
  function raw(bytes: Buffer, opts: { end?: boolean } = {}): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = connect(w.daemon.socket);
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d as Buffer));
      s.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' || (e as NodeJS.ErrnoException).code === 'EPIPE' ? undefined : reject(e)));
      s.on('close', () => resolve(Buffer.concat(got)));
      s.write(bytes);
      if (opts.end !== false) s.end();
    });
  }

  it('root-only: directory 0700, socket 0600; a non-root peer that gets through is dropped (SO_PEERCRED)', async () => {
    await w.daemon.start();
    expect(statSync(w.daemon.dir).mode & 0o777).toBe(0o700);
    expect(statSync(w.daemon.socket).mode & 0o777).toBe(0o600);
    const client = `require('net').connect(${JSON.stringify(w.daemon.socket)}).on('error', (e) => { console.log(e.code); process.exit(0) }).on('close', () => { console.log('closed'); })`;
    const node = join(repoRoot, 'node_modules', '.bin', 'node');
    expect(spawnSync(node, ['-e', client], { uid: 65534, gid: 65534, encoding: 'utf8' }).stdout.trim()).toBe('EACCES');
    chmodSync(w.daemon.dir, 0o755);
    chmodSync(w.daemon.socket, 0o666);
    try {
      expect(spawnSync(node, ['-e', client], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 }).stdout.trim()).toBe('closed');
    } finally {
      chmodSync(w.daemon.dir, 0o700);
      chmodSync(w.daemon.socket, 0o600);
    }
    expect(await settled(w.daemon, 1)).toEqual(['- -: unauthorized']);
  });

  it('malformed, oversized and stalled frames are refused without running anything; the daemon keeps serving and holds nothing', async () => {
    await w.daemon.start({ args: ['--read-timeout', '1'] });
    const base = w.daemon.fds();
    const notice = (b: Buffer): string => `${decodeHeader(b).kind}:${decodeNotice(b.subarray(HEADER_SIZE))}`;
    expect(notice(await raw(Buffer.from('GET / HTTP/1.1\r\n\r\n')))).toBe('6:bad magic (not a strand shim)');
    expect(notice(await raw(encodeHeader(Kind.Request, 64 << 20)))).toMatch(/^6:request of 67108864 bytes is over the limit/);
    expect(notice(await raw(encodeHeader(Kind.Result, 0)))).toBe('6:frame kind 3 is not a request');
    const req = {
      flags: 0,
      netnsState: NetnsState.Unset,
      netnsErrno: 0,
      fdCount: 2,
      plugin: 'strand-bridge',
      env: ['CNI_COMMAND=VERSION'],
      stdin: Buffer.alloc(0),
    };
    // a well-formed request without the descriptor it announces
    expect(notice(await raw(encodeRequest(req)))).toBe('6:0 descriptors, expected 2');
    // a field over its limit
    const big = encodeRequest({ ...req, env: [`X=${'x'.repeat(40 * 1024)}`] });
    expect(notice(await raw(big))).toMatch(/^6:environment variable is 40962 bytes, the limit is 32768/);
    // a version from the future is skipped whole, then UNSUPPORTED
    expect(notice(await raw(encodeRequest(req, 9)))).toMatch(/^5:protocol version 9/);
    // a client that stops half way through its header is dropped at the read deadline
    const t0 = Date.now();
    expect(await raw(Buffer.from('STRD'), { end: false })).toHaveLength(0);
    expect(Date.now() - t0).toBeGreaterThan(800);
    ok(await w.call('strand-bridge', { command: 'VERSION', env: REQUIRE }, ''));
    expect(await settled(w.daemon, 8)).toEqual([
      '- -: rejected',
      '- -: rejected',
      '- -: rejected',
      '- -: rejected',
      '- -: rejected',
      '- -: unsupported',
      '- -: cancelled',
      'strand-bridge VERSION: done 0',
    ]);
    expect(await fdsBackTo(w.daemon, base)).toEqual(base);
  });

  it('a stale socket of a live daemon is taken over by a new one; the old one, stopped, leaves the new socket in place', async () => {
    await w.daemon.start();
    const { TestDaemon } = await import('../../helpers/daemon.ts');
    const second = new TestDaemon(w.daemon.dir);
    await second.start();
    try {
      ok(await w.call('strand-bridge', { command: 'VERSION', env: REQUIRE }, ''));
      expect(await settled(second, 1)).toEqual(['strand-bridge VERSION: done 0']);
      w.daemon.signal('SIGTERM');
      expect(await w.daemon.waitExit()).toBe(0);
      expect(existsSync(second.socket)).toBe(true);
      ok(await w.call('strand-bridge', { command: 'VERSION', env: REQUIRE }, ''));
    } finally {
      await second.stop(2000);
    }
    expect(existsSync(second.socket)).toBe(false);
  });
});

// The shim directory is the install layout: strand beside the shims.
it('dist/shim holds the shim under each plugin name and the executable as strand', () => {
  for (const n of ['strand-bridge', 'strand-macvlan', 'strand-ipvlan', 'strand-ipam']) {
    expect(readFileSync(join(SHIM_DIR, n)).includes('STRAND-SHIM protocol=1')).toBe(true);
  }
  expect(existsSync(join(SHIM_DIR, 'strand'))).toBe(true);
});
