// strand daemon behind the shim, as a runtime sees it: the built shim (dist/shim/<plugin>)
// run inside a fresh "host" namespace with CNI env and stdin, the daemon on a private
// socket. The answers equal the standalone executable's; nothing leaks.
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TestDaemon } from '../../helpers/daemon.ts';
import { freePort } from '../../helpers/etcd.ts';
import { requireBuilt } from '../ipam/helpers.ts';
import { fdsBackTo, outcomes, settled, stableStderr, World } from './harness.ts';

let w: World;
let baseFds: string[];

beforeEach(async () => {
  requireBuilt();
  w = new World();
  await w.daemon.start();
  baseFds = w.daemon.fds();
});

afterEach(async () => {
  await w.cleanup();
});

/** The daemon holds no more descriptors than after start-up and runs no child. */
async function expectNoDaemonLeak(): Promise<void> {
  expect(await fdsBackTo(w.daemon, baseFds), 'daemon descriptors').toEqual(baseFds);
  expect(w.daemon.children(), 'daemon children').toEqual([]);
}

describe('served by the daemon', () => {
  it('VERSION: byte for byte the standalone answer, without starting Node', async () => {
    const shim = await w.call('strand-bridge', { command: 'VERSION', env: { STRAND_SHIM_REQUIRE_DAEMON: '1' } }, '');
    const alone = await w.call('strand-bridge', { command: 'VERSION', via: 'standalone' }, '');
    expect(shim).toMatchObject({ code: alone.code, stdout: alone.stdout, stderr: alone.stderr });
    expect(shim.json.supportedVersions).toContain('1.1.0');
    expect(await settled(w.daemon, 1)).toEqual(['strand-bridge VERSION: done 0']);
    await expectNoDaemonLeak();
  });

  it('ADD, CHECK, DEL (twice) of a bridge pod: the standalone result, IPAM in-process, nothing left', async () => {
    const pod = w.pod('p');
    const conf = w.conf();
    const env = { STRAND_SHIM_REQUIRE_DAEMON: '1' };
    const add = await w.verb('ADD', pod, 'c1', conf, { env });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(add.json.interfaces[2]).toMatchObject({ name: 'eth0', sandbox: w.ns.path(pod) }); // the runtime's path, not /proc/self/fd
    expect(add.json.ips[0].address).toBe('10.98.0.2/24');
    expect(w.podLinks(pod)).toEqual(['eth0']);
    expect(w.ipamRecords()).toHaveLength(1);

    const check = await w.verb('CHECK', pod, 'c1', { ...conf, prevResult: add.json }, { env });
    expect(check.code, check.stdout + check.stderr).toBe(0);
    for (let i = 0; i < 2; i++) {
      const del = await w.verb('DEL', pod, 'c1', conf, { env });
      expect(del.code, del.stdout + del.stderr).toBe(0);
    }
    expect(w.podLinks(pod)).toEqual([]);
    expect(w.hostLinks()).toEqual([`${w.prefix}-br`]);
    expect(w.ipamRecords()).toEqual([]);
    // strand-ipam ran inside the request: a shim exec'd for it would have come back as a request of its own
    expect(await settled(w.daemon, 4)).toEqual([
      'strand-bridge ADD: done 0',
      'strand-bridge CHECK: done 0',
      'strand-bridge DEL: done 0',
      'strand-bridge DEL: done 0',
    ]);

    // the same calls standalone give the same shape of result (names and MACs are random)
    const pod2 = w.pod('q');
    const alone = await w.verb('ADD', pod2, 'c2', conf, { via: 'standalone' });
    expect(alone.code).toBe(0);
    const shape = (r: any): unknown =>
      JSON.parse(
        JSON.stringify(r)
          .replace(/"(mac|sandbox)":"[^"]*"/g, '"$1":"_"')
          .replace(/"veth[0-9a-f]+"/g, '"veth_"')
          .replace(/10\.98\.0\.\d+/g, '10.98.0.x'),
      );
    expect(shape(add.json)).toEqual(shape(alone.json));
    expect((await w.verb('DEL', pod2, 'c2', conf, { via: 'standalone' })).code).toBe(0);
    await expectNoDaemonLeak();
  });

  it('error answers are the standalone ones: exit status, stdout and stderr', async () => {
    const pod = w.pod('p');
    const conf = w.conf();
    const cases: Array<[string, (via: 'shim' | 'standalone') => Promise<unknown>]> = [
      ['not JSON', (via) => w.verb('ADD', pod, 'c1', '{"cniVersion":', { via })],
      ['missing CNI_IFNAME', (via) => w.call('strand-bridge', { via, command: 'ADD', containerId: 'c1', netns: w.ns.path(pod) }, conf)],
      ['unknown CNI_COMMAND', (via) => w.verb('FROB', pod, 'c1', conf, { via })],
      ['no CNI_COMMAND', (via) => w.call('strand-bridge', { via, command: '' }, conf)],
      ['invalid field', (via) => w.verb('ADD', pod, 'c1', { ...conf, mtu: 'big' }, { via })],
      ['netns missing on ADD', (via) => w.verb('ADD', `${w.prefix}-gone`, 'c1', conf, { via })],
      ['netns missing on DEL', (via) => w.verb('DEL', `${w.prefix}-gone`, 'c1', conf, { via })],
      ['netns is a plain file', (via) => w.call('strand-bridge', { via, command: 'ADD', containerId: 'c1', ifName: 'eth0', netns: '/etc/hostname' }, conf)],
      ["the caller's own netns", (via) => w.call('strand-bridge', { via, command: 'ADD', containerId: 'c1', ifName: 'eth0', netns: w.ns.path(w.host) }, conf)],
      ['incompatible version', (via) => w.verb('ADD', pod, 'c1', { ...conf, cniVersion: '9.9.9' }, { via })],
      [
        'ipam exhausted',
        (via) => w.verb('ADD', pod, 'c1', w.conf({ type: 'strand-ipam', dataDir: w.dataDir, ranges: [[{ subnet: '10.97.0.0/31' }]] }), { via }),
      ],
    ];
    for (const [what, run] of cases) {
      const shim = (await run('shim')) as { code: number; stdout: string; stderr: string };
      const alone = (await run('standalone')) as { code: number; stdout: string; stderr: string };
      expect({ code: shim.code, stdout: shim.stdout, stderr: stableStderr(shim.stderr) }, what).toEqual({
        code: alone.code,
        stdout: alone.stdout,
        stderr: stableStderr(alone.stderr),
      });
    }
    expect(outcomes(w.daemon.log).filter((o) => !o.includes(': done'))).toEqual([]);
    expect(w.podLinks(pod)).toEqual([]);
    await expectNoDaemonLeak();
  });

  it('calls the protocol does not carry run standalone with the same answer: a config over 1 MiB, an env var over 32 KiB', async () => {
    const pod = w.pod('p');
    const big = { ...w.conf(), pad: 'x'.repeat(1100 * 1024) };
    const env = { STRAND_SHIM_REQUIRE_DAEMON: '1' };
    const add = await w.verb('ADD', pod, 'c1', big, { env });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const del = await w.verb('DEL', pod, 'c1', w.conf(), { env: { ...env, STRAND_BIG: 'y'.repeat(40 * 1024) } });
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(await settled(w.daemon, 0)).toEqual([]);
    expect(w.ipamRecords()).toEqual([]);
  });
});

describe('observability (--metrics-address)', () => {
  it('/metrics counts the requests the plugin code ran (CNI calls, IPAM operations, connection outcomes); /healthz and /readyz fail once the socket file is gone', async () => {
    const port = await freePort();
    const d = new TestDaemon();
    try {
      await d.start({ args: ['--metrics-address', `127.0.0.1:${port}`] });
      const get = async (path: string): Promise<{ status: number; body: string }> => {
        const r = await fetch(`http://127.0.0.1:${port}${path}`);
        return { status: r.status, body: await r.text() };
      };
      const env = { STRAND_DAEMON_SOCKET: d.socket, STRAND_SHIM_REQUIRE_DAEMON: '1' };
      const pod = w.pod('p');
      const conf = w.conf();
      expect((await w.verb('ADD', pod, 'c1', conf, { env })).code).toBe(0);
      expect((await w.verb('DEL', pod, 'c1', conf, { env })).code).toBe(0);
      const bad = await w.verb('ADD', pod, 'c2', { ...conf, bridge: 'x'.repeat(20) }, { env });
      expect(bad.code).toBe(1);
      expect(await settled(d, 3)).toHaveLength(3);

      const m = (await get('/metrics')).body;
      const sample = (name: string, labels: string): number | undefined => {
        const line = m.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
        return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
      };
      expect(sample('strand_cni_requests_total', 'plugin="strand-bridge",verb="ADD",result="success"')).toBe(1);
      expect(sample('strand_cni_requests_total', 'plugin="strand-bridge",verb="DEL",result="success"')).toBe(1);
      expect(sample('strand_cni_requests_total', 'plugin="strand-bridge",verb="ADD",result="error"')).toBe(1);
      expect(sample('strand_cni_request_errors_total', 'plugin="strand-bridge",verb="ADD",code="7"')).toBe(1);
      // strand-ipam ran in-process inside the bridge's request, with the same observer
      expect(sample('strand_cni_requests_total', 'plugin="strand-ipam",verb="ADD",result="success"')).toBe(1);
      expect(sample('strand_ipam_operations_total', `network="${w.prefix}-net",op="allocate",result="success"`)).toBe(1);
      expect(sample('strand_ipam_operations_total', `network="${w.prefix}-net",op="release",result="success"`)).toBe(1);
      expect(sample('strand_daemon_connections_total', 'outcome="done"')).toBe(3);
      expect(m).toMatch(/^process_resident_memory_bytes \d+/m);
      expect(await get('/healthz')).toEqual({ status: 200, body: 'ok\n' });
      expect(await get('/readyz')).toEqual({ status: 200, body: 'ok\n' });

      // a socket file someone removed: the shims cannot reach this daemon; a restart recreates it
      rmSync(d.socket);
      const h = await get('/healthz');
      expect(h.status).toBe(503);
      expect(h.body).toContain('was removed');
      expect((await get('/readyz')).status).toBe(503);
    } finally {
      await d.stop(5000);
    }
  });

  it('an address already in use: logged, the daemon serves CNI calls without metrics', async () => {
    const port = await freePort();
    const { createServer } = await import('node:net');
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    const d = new TestDaemon();
    try {
      await d.start({ args: ['--metrics-address', `127.0.0.1:${port}`] });
      const r = await w.call('strand-bridge', { command: 'VERSION', env: { STRAND_DAEMON_SOCKET: d.socket, STRAND_SHIM_REQUIRE_DAEMON: '1' } }, '');
      expect(r.code).toBe(0);
      expect(d.log).toMatch(/cannot listen on 127\.0\.0\.1:\d+ \(--metrics-address\): no metrics/);
    } finally {
      await d.stop(5000);
      squatter.close();
    }
  });
});
