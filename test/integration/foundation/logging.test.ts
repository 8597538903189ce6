// Plugin logs through the built binaries (lib/cni/log.ts, README "Logs"): at debug level
// every step of ADD and DEL, each line naming the container and the time since the call
// began; errors logged at the default level with the container ID; the default file
// /var/log/strand/cni.log when that directory exists (a private mount namespace here);
// many concurrent plugin processes sharing one small, rotating file lose no line.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsSet } from '../../helpers/netns.ts';
import { binDir } from '../../helpers/run-plugin.ts';

process.env['STRAND_TEST_PREFIX'] ??= 'st';

let nets: NetnsSet;
let dir = '';
beforeEach(() => {
  nets = new NetnsSet();
  dir = mkdtempSync(join(tmpdir(), 'strand-logs-'));
});
afterEach(() => {
  nets.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `argv` with `env` and `stdin`, as a runtime runs a plugin. */
function run(argv: string[], env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

function conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: `${nets.prefix}net`,
    type: 'strand-bridge',
    bridge: `${nets.prefix}-br`,
    isGateway: true,
    ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.123.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(dir, 'ipam') },
    ...extra,
  };
}

function pluginIn(hostNs: string, verb: string, id: string, podNs: string, c: Record<string, unknown>): Promise<Run> {
  return run(
    ['ip', 'netns', 'exec', hostNs, join(binDir, 'strand-bridge')],
    { CNI_COMMAND: verb, CNI_CONTAINERID: id, CNI_NETNS: nets.path(podNs), CNI_IFNAME: 'eth0', CNI_PATH: binDir },
    JSON.stringify(c),
  );
}

const LINE = /^(\S+) (DEBUG|INFO|WARN|ERROR) (strand-bridge|strand-ipam) (ADD|DEL|CHECK) (\S+)\/eth0 \+(\d+\.\d)ms: (.*)$/;

describe('plugin logs', () => {
  it('debug: every step of ADD and DEL, each line with the verb, the container ID and the elapsed time', async () => {
    const host = nets.add('host');
    const pod = nets.add('pod');
    const id = `${nets.prefix}-0123456789abcdef`;
    const file = join(dir, 'cni.log');
    const c = conf({ logFile: file, logLevel: 'debug' });
    const add = await pluginIn(host, 'ADD', id, pod, c);
    expect(add.code, add.stdout).toBe(0);
    expect(add.stderr).toBe('');
    const del = await pluginIn(host, 'DEL', id, pod, c);
    expect(del.code, del.stdout).toBe(0);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const parsed = lines.map((l) => {
      const m = LINE.exec(l);
      expect(m, l).not.toBeNull();
      const [, , level, who, verb, cid, ms, msg] = m as unknown as string[];
      expect(cid).toBe(id);
      return { level, who, verb, ms: Number(ms), msg: msg as string };
    });
    const text = (who: string, verb: string): string =>
      parsed
        .filter((p) => p.who === who && p.verb === verb)
        .map((p) => p.msg)
        .join('\n');
    const bridgeAdd = text('strand-bridge', 'ADD');
    for (const step of [
      /^mtu kernel default$/m,
      new RegExp(`^bridge ${nets.prefix}-br index \\d+ mtu 1500$`, 'm'),
      /^veth veth\w+ \(index \d+\) on \S+, peer eth0 \(index \d+, mac [0-9a-f:]{17}\) in \/run\/netns\/\S+$/m,
      /^delegate ADD strand-ipam \(in-process\)$/m,
      /^delegate ADD strand-ipam done in \d+\.\d ms$/m,
      /^IPAM strand-ipam: 10\.123\.0\.2\/24, routes 0\.0\.0\.0\/0$/m,
      /^address 10\.123\.0\.2\/24 on eth0$/m,
      /^route 0\.0\.0\.0\/0 via 10\.123\.0\.1 dev eth0$/m,
      /^gateway 10\.123\.0\.1\/24 on \S+$/m,
      /^ADD succeeded$/m,
    ])
      expect(bridgeAdd).toMatch(step);
    const ipamAdd = text('strand-ipam', 'ADD');
    expect(ipamAdd).toMatch(/^store local \(.*\), network \S+, node \S+$/m);
    expect(ipamAdd).toMatch(/^allocated 10\.123\.0\.2$/m);
    expect(ipamAdd).toMatch(/^ADD succeeded$/m);
    const bridgeDel = text('strand-bridge', 'DEL');
    expect(bridgeDel).toMatch(/^DEL: removing the pod interface done$/m);
    expect(bridgeDel).toMatch(/^delegate DEL strand-ipam \(in-process\)$/m);
    expect(bridgeDel).toMatch(/^DEL succeeded$/m);
    expect(text('strand-ipam', 'DEL')).toMatch(/^released 10\.123\.0\.2$/m);
    // timings: the elapsed time grows along a call
    const addMs = parsed.filter((p) => p.who === 'strand-bridge' && p.verb === 'ADD').map((p) => p.ms);
    expect(addMs).toEqual([...addMs].sort((x, y) => x - y));
  });

  it('an error is logged at the default level with the container ID, in the file and not on stderr', async () => {
    const host = nets.add('host');
    const id = `${nets.prefix}-failing`;
    const file = join(dir, 'cni.log');
    const r = await pluginIn(host, 'ADD', id, 'no-such-pod', conf({ logFile: file }));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 4 });
    expect(r.stderr).toBe('');
    expect(readFileSync(file, 'utf8')).toMatch(
      new RegExp(`^\\S+ ERROR strand-bridge ADD ${id}/eth0 \\+\\d+\\.\\dms: ADD ${id}/eth0 failed with code 4: `, 'm'),
    );
  });

  it('without logFile: /var/log/strand/cni.log when that directory exists (private mount namespace), else stderr', async () => {
    const host = nets.add('host');
    const id = `${nets.prefix}-deflog`;
    const input = JSON.stringify(conf());
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: '/run/netns/no-such-pod', CNI_IFNAME: 'eth0', CNI_PATH: binDir };
    // /var/log is a fresh tmpfs in a mount namespace of its own: the machine's is untouched
    const script = `mount -t tmpfs strand-test /var/log && mkdir /var/log/strand && ip netns exec ${host} ${join(binDir, 'strand-bridge')} >/dev/null; cat /var/log/strand/cni.log`;
    const withDir = await run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], env, input);
    expect(withDir.stderr).toBe('');
    expect(withDir.stdout).toMatch(new RegExp(`^\\S+ ERROR strand-bridge ADD ${id}/eth0 \\+\\S+ms: ADD ${id}/eth0 failed with code 4`));
    expect(existsSync('/var/log/strand/cni.log') && readFileSync('/var/log/strand/cni.log', 'utf8').includes(id)).toBe(false);
    const noDir = await run(
      [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount -t tmpfs strand-test /var/log && ip netns exec ${host} ${join(binDir, 'strand-bridge')}`,
      ],
      env,
      input,
    );
    expect(noDir.stderr).toMatch(new RegExp(`ERROR strand-bridge ADD ${id}/eth0 .*failed with code 4`));
  });

  it('16 concurrent ADDs and DELs share one small rotating file: every line whole, none lost', async () => {
    const host = nets.add('host');
    const file = join(dir, 'shared', 'cni.log');
    const n = 16;
    const pods = Array.from({ length: n }, (_, i) => nets.add(`p${i}`));
    const c = conf({ logFile: file, logLevel: 'debug', logFileMaxSize: 8192, logFileMaxFiles: 100 });
    mkdirSync(join(dir, 'shared'));
    const adds = await Promise.all(pods.map((p, i) => pluginIn(host, 'ADD', `${nets.prefix}-c${i}`, p, c)));
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    const dels = await Promise.all(pods.map((p, i) => pluginIn(host, 'DEL', `${nets.prefix}-c${i}`, p, c)));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    const files = readdirSync(join(dir, 'shared'));
    expect(files.length).toBeGreaterThan(5);
    expect(files.every((f) => /^cni\.log(\.\d+)?$/.test(f))).toBe(true);
    const done = new Map<string, number>();
    for (const f of files) {
      for (const l of readFileSync(join(dir, 'shared', f), 'utf8')
        .trimEnd()
        .split('\n')) {
        const m = LINE.exec(l);
        expect(m, `${f}: ${l}`).not.toBeNull();
        const [, , , who, verb, cid, , msg] = m as unknown as string[];
        if (msg === `${verb} succeeded`) done.set(`${who} ${verb} ${cid}`, (done.get(`${who} ${verb} ${cid}`) ?? 0) + 1);
      }
    }
    // each call's last line is there exactly once: bridge and in-process IPAM, ADD and DEL
    expect(done.size).toBe(4 * n);
    expect([...done.values()].every((x) => x === 1)).toBe(true);
  });
});
