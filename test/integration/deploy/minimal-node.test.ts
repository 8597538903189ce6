import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireStrandPlugin } from '../../helpers/cnitool.ts';
import { ipJson, NetnsSet, nsExec } from '../../helpers/netns.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { linkNames } from './fixtures.ts';

// strand on a minimal node: a Debian 12 root file system made by `debootstrap
// --variant=minbase` (scripts/minbase-rootfs.sh, cached in .vm/), which has glibc,
// libstdc++ and libgcc_s but not libatomic.so.1. `strand install` runs inside it (chroot)
// from dist/, then the installed strand-bridge + strand-ipam do ADD/CHECK/DEL for a pod
// network namespace, exactly as a runtime on that node would. The chroot sees the node
// through an overlay (the cached tree stays pristine), its own /proc, /sys and /run,
// and the test's "host" network namespace.

const LIBDIR = 'usr/lib/x86_64-linux-gnu';

let rootfs: string;
let netns: NetnsSet;
let host: string;
let pod: string;
let work: string;

beforeAll(() => {
  requireStrandPlugin('strand');
  rootfs = execFileSync('bash', [join(repoRoot, 'scripts', 'minbase-rootfs.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 900_000,
  }).trim();
  netns = new NetnsSet();
  host = netns.add('h');
  pod = netns.add('p');
  work = mkdtempSync(join(tmpdir(), 'strand-minbase-'));
  for (const d of ['upper', 'work', 'root', 'in']) mkdirSync(join(work, d));
}, 900_000);

afterAll(() => {
  netns?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

function shq(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * Runs `argv` chrooted into the node's root (overlay of the cached tree, writes kept in
 * work/upper across calls) with a clean environment plus `env`, in the host namespace.
 * The mounts live in a private mount namespace and vanish with the process.
 */
function onNode(argv: string[], env: Record<string, string> = {}, input = ''): { code: number; stdout: string; stderr: string } {
  const root = join(work, 'root');
  const script = [
    'set -e',
    `mount -t overlay overlay -o ${shq(`lowerdir=${rootfs},upperdir=${join(work, 'upper')},workdir=${join(work, 'work')}`)} ${shq(root)}`,
    `mount -t proc proc ${shq(`${root}/proc`)}`,
    `mount -t sysfs sysfs ${shq(`${root}/sys`)}`,
    `mount --rbind /dev ${shq(`${root}/dev`)}`,
    `mount -t tmpfs -o mode=0755 tmpfs ${shq(`${root}/run`)}`,
    `mkdir -p ${shq(`${root}/run/netns`)} ${shq(`${root}/strand-dist`)} ${shq(`${root}/strand-in`)}`,
    `touch ${shq(`${root}/run/netns/pod`)}`,
    `mount --bind ${shq(netns.path(pod))} ${shq(`${root}/run/netns/pod`)}`,
    `mount --bind -o ro ${shq(join(repoRoot, 'dist'))} ${shq(`${root}/strand-dist`)}`,
    `mount --bind -o ro ${shq(join(work, 'in'))} ${shq(`${root}/strand-in`)}`,
    `exec chroot ${shq(root)} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"`,
  ].join('\n');
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const r = spawnSync('ip', ['netns', 'exec', host, 'unshare', '--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'sh', ...envArgs, ...argv], {
    input,
    encoding: 'utf8',
    timeout: 120_000,
  });
  // EPIPE: the command finished without reading all of `input` (a VERSION answer), as
  // Go's os/exec in a runtime would also ignore
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const upper = (p: string) => join(work, 'upper', p);

describe('a minimal Debian 12 node (debootstrap --variant=minbase bookworm)', () => {
  it('the node lacks libatomic.so.1 and has libstdc++/libgcc_s: what strand ships beside the executable is what it needs', () => {
    expect(existsSync(join(rootfs, LIBDIR, 'libatomic.so.1'))).toBe(false);
    expect(existsSync(join(rootfs, LIBDIR, 'libstdc++.so.6'))).toBe(true);
    expect(existsSync(join(rootfs, LIBDIR, 'libgcc_s.so.1'))).toBe(true);
    expect(readFileSync(join(rootfs, 'etc/debian_version'), 'utf8')).toMatch(/^12\./);
    // every library dist/strand links beyond glibc, libstdc++ and libgcc_s is in dist/strand-lib
    const needed = execFileSync('readelf', ['-d', join(repoRoot, 'dist', 'strand')], { encoding: 'utf8' })
      .split('\n')
      .flatMap((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)?.[1] ?? []);
    const glibc = /^(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so\.\d+$/;
    const fromNode = needed.filter((n) => !glibc.test(n) && !['libstdc++.so.6', 'libgcc_s.so.1'].includes(n));
    expect(fromNode).toEqual(['libatomic.so.1']);
    for (const n of fromNode) expect(existsSync(join(repoRoot, 'dist', 'strand-lib', n)), n).toBe(true);
    expect(execFileSync('readelf', ['-d', join(repoRoot, 'dist', 'strand')], { encoding: 'utf8' })).toContain('Library runpath: [$ORIGIN/strand-lib]');
  });

  it('`strand install` runs there and lays down the executable, its hardlinks and strand-lib/', () => {
    const template = {
      cniVersion: '1.0.0',
      cniVersions: ['1.0.0', '1.1.0'],
      name: 'minbase',
      plugins: [
        {
          type: 'strand-bridge',
          bridge: `${netns.prefix}-br`,
          isGateway: true,
          isDefaultGateway: true,
          ipam: { type: 'strand-ipam', nodeName: '${NODE_NAME}', ranges: [[{ subnet: '10.213.0.0/24' }]] },
        },
      ],
    };
    writeFileSync(join(work, 'in', 'template'), JSON.stringify(template));
    const r = onNode(['/strand-dist/strand', 'install', '--template=/strand-in/template'], { K8S_NODE_NAME: 'minbase-node' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/libraries libatomic\.so\.1 in \/opt\/cni\/bin\/strand-lib: written/);
    expect(existsSync(upper('opt/cni/bin/strand-lib/libatomic.so.1'))).toBe(true);
    expect(existsSync(upper('etc/cni/net.d/10-strand.conflist'))).toBe(true);
    const v = onNode(['/opt/cni/bin/strand-bridge'], { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).supportedVersions).toContain('1.1.0');
  });

  it('the same executable without strand-lib/ beside it does not start there (the test can fail)', () => {
    const r = onNode(['/bin/sh', '-c', 'mkdir -p /root/alone && ln /opt/cni/bin/strand /root/alone/strand && exec /root/alone/strand version']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('libatomic.so.1: cannot open shared object file');
  });

  it('ADD, CHECK, DEL (twice) of a pod with the installed strand-bridge + strand-ipam; nothing left', () => {
    const list = JSON.parse(readFileSync(upper('etc/cni/net.d/10-strand.conflist'), 'utf8'));
    const conf = (prevResult?: unknown) =>
      JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0], ...(prevResult ? { prevResult } : {}) });
    const env = (command: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'minbase-pod-1',
      CNI_NETNS: '/run/netns/pod',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
    });
    const add = onNode(['/opt/cni/bin/strand-bridge'], env('ADD'), conf());
    expect(add.code, `${add.stdout}\n${add.stderr}`).toBe(0);
    const result = JSON.parse(add.stdout);
    const address: string = result.ips[0].address;
    expect(address).toMatch(/^10\.213\.0\.\d+\/24$/);
    const [eth0] = ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(['addr', 'show', 'eth0'], { ns: pod });
    expect(eth0?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toContain(address);
    nsExec(pod, 'ping', ['-c', '1', '-W', '2', '10.213.0.1']);
    expect(readFileSync(upper('var/lib/cni/networks/minbase/strand-ipam.json'), 'utf8')).toContain('minbase-pod-1');

    const check = onNode(['/opt/cni/bin/strand-bridge'], env('CHECK'), conf(result));
    expect(check.code, `${check.stdout}\n${check.stderr}`).toBe(0);
    for (let i = 0; i < 2; i++) {
      const del = onNode(['/opt/cni/bin/strand-bridge'], env('DEL'), conf(result));
      expect(del.code, `${del.stdout}\n${del.stderr}`).toBe(0);
    }
    expect(linkNames(pod)).toEqual(['lo']);
    expect(linkNames(host).sort()).toEqual([`${netns.prefix}-br`, 'lo'].sort());
    expect(readFileSync(upper('var/lib/cni/networks/minbase/strand-ipam.json'), 'utf8')).not.toContain('minbase-pod-1');
  });

  it('`strand install --uninstall` there removes the executable, the hardlinks and strand-lib/', () => {
    const r = onNode(['/opt/cni/bin/strand', 'install', '--uninstall']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('removed /opt/cni/bin/strand-lib/libatomic.so.1');
    expect(existsSync(upper('opt/cni/bin/strand'))).toBe(false);
    expect(existsSync(upper('opt/cni/bin/strand-lib'))).toBe(false);
    expect(r.stderr).toMatch(/left in place: bridge .*-br/);
  });
});
