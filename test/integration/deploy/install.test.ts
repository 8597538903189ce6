import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../../cmd/install.ts';
import { requireStrandPlugin } from '../../helpers/cnitool.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { versionOf } from './fixtures.ts';

// `strand install` doing real file operations in temp directories: what a DaemonSet
// container does to /opt/cni/bin and /etc/cni/net.d on the host.

// strand's own names, and loopback (laid down because the bin dir has none)
const NAMES = ['loopback', 'strand', 'strand-bridge', 'strand-ipam', 'strand-ipvlan', 'strand-macvlan', 'strand-portmap'];
const MANIFEST = '.strand-installed.json';
const PEM = (what: string) => `-----BEGIN ${what}-----\n${randomBytes(48).toString('base64')}\n-----END ${what}-----\n`;

const TEMPLATE = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'strand',
  plugins: [
    {
      type: 'strand-bridge',
      bridge: 'strand0',
      isGateway: true,
      ipam: {
        type: 'strand-ipam',
        nodeName: '${NODE_NAME}',
        ranges: [[{ subnet: '10.244.0.0/16' }]],
        etcd: { endpoints: '${ETCD_ENDPOINTS}', tls: { ca: '${ETCD_CA}', cert: '${ETCD_CERT}', key: '${ETCD_KEY}' } },
      },
    },
  ],
});

let root: string;
let d: { bin: string; conf: string; tls: string; template: string; source: string };
const children: number[] = [];

function io(env: Record<string, string> = {}) {
  const out = { stdout: '', stderr: '' };
  return {
    out,
    io: {
      env,
      stdin: async () => Buffer.alloc(0),
      stdout: {
        write: (s: string) => {
          out.stdout += s;
        },
      },
      stderr: {
        write: (s: string) => {
          out.stderr += s;
        },
      },
    },
  };
}

async function install(args: string[], env: Record<string, string> = {}) {
  const x = io(env);
  const code = await main(args, x.io);
  return { code, ...x.out };
}

function baseArgs(): string[] {
  return ['--bin-dir', d.bin, '--conf-dir', d.conf, '--host-conf-dir', '/etc/cni/net.d', '--template', d.template, '--source', d.source];
}

function snapshot(dir: string): Record<string, { ino: number; mode: number; size: number }> {
  const out: Record<string, { ino: number; mode: number; size: number }> = {};
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = statSync(join(dir, name));
    out[name] = { ino: st.ino, mode: st.mode & 0o7777, size: st.size };
  }
  return out;
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'strand-install-'));
  d = {
    bin: join(root, 'host/opt/cni/bin'),
    conf: join(root, 'host/etc/cni/net.d'),
    tls: join(root, 'secret'),
    template: join(root, 'conflist.template'),
    source: join(root, 'strand-src'),
  };
  mkdirSync(d.tls);
  writeFileSync(join(d.tls, 'ca.crt'), PEM('CERTIFICATE'));
  writeFileSync(join(d.tls, 'tls.crt'), PEM('CERTIFICATE'));
  writeFileSync(join(d.tls, 'tls.key'), PEM('PRIVATE KEY'));
  writeFileSync(d.template, TEMPLATE);
  writeFileSync(d.source, randomBytes(256 * 1024));
});

afterEach(() => {
  for (const pid of children.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited
    }
  }
  rmSync(root, { recursive: true, force: true });
});

describe('strand install (in-process, real files)', () => {
  it('installs binary + hardlinks, TLS files 0600, conflist 0644 with host paths', async () => {
    const r = await install([...baseArgs(), '--etcd-tls-dir', d.tls], { STRAND_ETCD_ENDPOINTS: 'https://127.0.0.1:24379', K8S_NODE_NAME: 'node-a' });
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(d.source);
    const main = statSync(join(d.bin, 'strand'));
    expect(readdirSync(d.bin).sort()).toEqual([MANIFEST, ...NAMES]);
    expect(JSON.parse(readFileSync(join(d.bin, MANIFEST), 'utf8'))).toEqual({ files: NAMES });
    for (const n of NAMES) {
      const st = statSync(join(d.bin, n));
      expect(st.ino, n).toBe(main.ino);
      expect(st.mode & 0o7777).toBe(0o755);
    }
    expect(readFileSync(join(d.bin, 'strand')).equals(src)).toBe(true);

    const tlsDir = join(d.conf, 'strand-etcd');
    expect(statSync(tlsDir).mode & 0o7777).toBe(0o700);
    for (const f of ['ca.crt', 'tls.crt', 'tls.key']) {
      expect(statSync(join(tlsDir, f)).mode & 0o7777).toBe(0o600);
      expect(readFileSync(join(tlsDir, f), 'utf8')).toBe(readFileSync(join(d.tls, f), 'utf8'));
    }
    const conf = join(d.conf, '10-strand.conflist');
    expect(statSync(conf).mode & 0o7777).toBe(0o644);
    const list = JSON.parse(readFileSync(conf, 'utf8'));
    expect(list.plugins[0].ipam.nodeName).toBe('node-a');
    expect(list.plugins[0].ipam.etcd).toEqual({
      endpoints: ['https://127.0.0.1:24379'],
      tls: { ca: '/etc/cni/net.d/strand-etcd/ca.crt', cert: '/etc/cni/net.d/strand-etcd/tls.crt', key: '/etc/cni/net.d/strand-etcd/tls.key' },
    });
    // no temp files left behind
    expect(readdirSync(d.conf).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(readdirSync(d.bin).filter((f) => f.startsWith('.') && f !== MANIFEST)).toEqual([]);
  });

  it('is idempotent: a re-run rewrites nothing (same inodes) and says unchanged', async () => {
    const args = [...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'http://127.0.0.1:24379'];
    expect((await install(args)).code).toBe(0);
    const before = { bin: snapshot(d.bin), conf: snapshot(d.conf) };
    const again = await install(args);
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/: written/);
    expect(again.stderr.match(/: unchanged/g)).toHaveLength(6); // binaries, their record, 3 TLS files, conflist
    expect({ bin: snapshot(d.bin), conf: snapshot(d.conf) }).toEqual(before);
  });

  it('replaces binaries that are running (no ETXTBSY) and a changed conflist, by rename', async () => {
    copyFileSync('/bin/sleep', d.source);
    expect((await install([...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379'])).code).toBe(0);
    const running = spawn(join(d.bin, 'strand-bridge'), ['60'], { stdio: 'ignore' });
    children.push(running.pid!);
    await new Promise((r) => setTimeout(r, 100));
    const oldConf = statSync(join(d.conf, '10-strand.conflist')).ino;

    copyFileSync('/bin/true', d.source);
    const r = await install([...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24380']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(d.bin, 'strand-bridge')).equals(readFileSync('/bin/true'))).toBe(true);
    execFileSync(join(d.bin, 'strand-ipam')); // the new binary runs
    expect(running.exitCode).toBeNull(); // the old one keeps running from its old inode
    expect(statSync(join(d.conf, '10-strand.conflist')).ino).not.toBe(oldConf);
    expect(JSON.parse(readFileSync(join(d.conf, '10-strand.conflist'), 'utf8')).plugins[0].ipam.etcd.endpoints).toEqual(['http://127.0.0.1:24380']);
  });

  it('missing or unreadable secret: clear error, nothing written', async () => {
    rmSync(join(d.tls, 'tls.key'));
    const r = await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'https://127.0.0.1:24379']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot read etcd TLS file ${join(d.tls, 'tls.key')}: ENOENT`);
    expect(existsSync(join(root, 'host'))).toBe(false);

    mkdirSync(join(d.tls, 'tls.key')); // a directory where the key should be
    const r2 = await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'https://127.0.0.1:24379']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('EISDIR');
    writeFileSync(join(d.tls, 'ca.crt'), 'not a certificate');
    rmSync(join(d.tls, 'tls.key'), { recursive: true });
    writeFileSync(join(d.tls, 'tls.key'), PEM('PRIVATE KEY'));
    const r3 = await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'https://127.0.0.1:24379']);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain('is not PEM');
    expect(existsSync(join(root, 'host'))).toBe(false);
  });

  it('--etcd-tls-optional: an empty TLS dir (optional Secret absent) means no TLS, a partial one is an error', async () => {
    const empty = join(root, 'empty-secret');
    mkdirSync(empty);
    const args = [...baseArgs(), '--etcd-tls-dir', empty, '--etcd-tls-optional', '--etcd-endpoints', 'http://127.0.0.1:24379'];
    const r = await install(args);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(d.conf, '10-strand.conflist'), 'utf8')).plugins[0].ipam.etcd).not.toHaveProperty('tls');
    expect(existsSync(join(d.conf, 'strand-etcd'))).toBe(false);

    rmSync(join(d.tls, 'tls.crt'));
    const partial = await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-tls-optional', '--etcd-endpoints', 'http://127.0.0.1:24379']);
    expect(partial.code).toBe(1);
    expect(partial.stderr).toContain(`cannot read etcd TLS file ${join(d.tls, 'tls.crt')}: ENOENT`);
  });

  it('missing values and bad inputs: clear error, nothing written', async () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [baseArgs(), {}, /template needs ETCD_ENDPOINTS .*STRAND_ETCD_ENDPOINTS/],
      [[...baseArgs(), '--etcd-endpoints', '127.0.0.1:2379'], {}, /not a URL/],
      [[...baseArgs().slice(0, -2), '--source', join(root, 'nope')], { STRAND_ETCD_ENDPOINTS: 'http://a:1' }, /cannot read binary .*ENOENT/],
      [[...baseArgs(), '--template', join(root, 'nope')], { STRAND_ETCD_ENDPOINTS: 'http://a:1' }, /cannot read template .*ENOENT/],
    ];
    for (const [args, env, msg] of cases) {
      const r = await install(args, env);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(msg);
    }
    expect(existsSync(join(root, 'host'))).toBe(false);
    const noSource = await install(baseArgs().slice(0, -2), { STRAND_ETCD_ENDPOINTS: 'http://a:1' });
    expect(noSource.code).toBe(1);
    expect(noSource.stderr).toMatch(/pass --source/);
    expect((await install([...baseArgs(), '--bogus'])).code).toBe(2);
  });

  it('--uninstall removes what install wrote (loopback included) and nothing else; twice is fine', async () => {
    expect((await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'http://127.0.0.1:24379'])).code).toBe(0);
    writeFileSync(join(d.bin, 'bridge'), 'someone else');
    writeFileSync(join(d.conf, '99-other.conflist'), '{}');
    const args = ['--uninstall', '--bin-dir', d.bin, '--conf-dir', d.conf];
    expect((await install(args)).code).toBe(0);
    expect(readdirSync(d.bin)).toEqual(['bridge']);
    expect(readdirSync(d.conf)).toEqual(['99-other.conflist']);
    expect((await install(args)).code).toBe(0);
  });

  it('a loopback of someone else is never replaced nor removed; one strand installed is kept up to date', async () => {
    mkdirSync(d.bin, { recursive: true });
    const args = [...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379'];
    // someone else's: a file, and (second round) a symlink to the reference plugin
    for (const make of [
      () => writeFileSync(join(d.bin, 'loopback'), 'someone else', { mode: 0o755 }),
      () => symlinkSync('/usr/lib/cni/loopback', join(d.bin, 'loopback')),
    ]) {
      make();
      const before = lstatSync(join(d.bin, 'loopback'));
      const r = await install(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`${join(d.bin, 'loopback')} is not strand's: left as it is`);
      const after = lstatSync(join(d.bin, 'loopback'));
      expect([after.ino, after.size, after.isSymbolicLink()]).toEqual([before.ino, before.size, before.isSymbolicLink()]);
      expect(JSON.parse(readFileSync(join(d.bin, MANIFEST), 'utf8')).files).not.toContain('loopback');
      expect((await install(['--uninstall', '--bin-dir', d.bin, '--conf-dir', d.conf])).code).toBe(0);
      expect(readdirSync(d.bin)).toEqual(['loopback']);
      rmSync(join(d.bin, 'loopback'));
    }

    // strand's own: installed into the empty dir, then replaced with a new strand (not left pointing at the old one)
    expect((await install(args)).code).toBe(0);
    expect(statSync(join(d.bin, 'loopback')).ino).toBe(statSync(join(d.bin, 'strand')).ino);
    writeFileSync(d.source, randomBytes(1024));
    expect((await install(args)).code).toBe(0);
    expect(statSync(join(d.bin, 'loopback')).ino).toBe(statSync(join(d.bin, 'strand')).ino);
    expect(readFileSync(join(d.bin, 'loopback')).equals(readFileSync(d.source))).toBe(true);
    // an install interrupted before it wrote its record: the loopback it linked is still recognised as strand's
    rmSync(join(d.bin, MANIFEST));
    expect((await install(args)).code).toBe(0);
    expect(JSON.parse(readFileSync(join(d.bin, MANIFEST), 'utf8')).files).toContain('loopback');
  });

  it('refuses a broken chain: a plugin type or ipam.type the bin dir lacks and strand does not install names the plugin; nothing is written', async () => {
    const chain = (plugins: object[]) => JSON.stringify({ cniVersion: '1.0.0', name: 'strand', plugins });
    const bridge = { type: 'strand-bridge', ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.244.0.0/16' }]] } };
    const cases: Array<[object[], RegExp]> = [
      [[bridge, { type: 'portmap', capabilities: { portMappings: true } }], /needs plugin "portmap" \(plugins\[1\]\.type\)/],
      [[{ ...bridge, ipam: { type: 'host-local' } }], /needs plugin "host-local" \(plugins\[0\]\.ipam\.type\)/],
      [[{ type: 'bridge' }], /needs plugin "bridge"/],
    ];
    for (const [plugins, msg] of cases) {
      writeFileSync(d.template, chain(plugins));
      const r = await install([...baseArgs()]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(existsSync(join(root, 'host')), 'nothing written').toBe(false);
    }
    // the plugin is there (an executable file), or strand installs it: fine
    mkdirSync(d.bin, { recursive: true });
    writeFileSync(join(d.bin, 'portmap'), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(d.template, chain([bridge, { type: 'portmap' }, { type: 'strand-portmap' }, { type: 'loopback' }]));
    expect((await install([...baseArgs()])).code).toBe(0);
    // present but not executable is as good as absent
    writeFileSync(join(d.bin, 'tuning'), 'x', { mode: 0o644 });
    writeFileSync(d.template, chain([bridge, { type: 'tuning' }]));
    const r = await install([...baseArgs()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs plugin "tuning"/);
  });

  it('dropping TLS on re-install removes the old TLS files after the conflist stops naming them', async () => {
    expect((await install([...baseArgs(), '--etcd-tls-dir', d.tls, '--etcd-endpoints', 'http://127.0.0.1:24379'])).code).toBe(0);
    const r = await install([...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379']);
    expect(r.code).toBe(0);
    expect(existsSync(join(d.conf, 'strand-etcd'))).toBe(false);
    expect(JSON.parse(readFileSync(join(d.conf, '10-strand.conflist'), 'utf8')).plugins[0].ipam.etcd).not.toHaveProperty('tls');
  });

  it('--sleep installs, then waits until SIGTERM and exits 0', async () => {
    const x = io({ STRAND_ETCD_ENDPOINTS: 'http://127.0.0.1:24379' });
    let done = false;
    const p = main([...baseArgs(), '--sleep'], x.io).then((c) => {
      done = true;
      return c;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(join(d.conf, '10-strand.conflist'))).toBe(true);
    expect(done).toBe(false);
    process.emit('SIGTERM', 'SIGTERM');
    expect(await p).toBe(0);
  });
});

describe('strand install with the shim: strand first, then the shim under every plugin name', () => {
  const shimBytes = (): Buffer => readFileSync(join(repoRoot, 'dist', 'bin', 'strand-shim'));
  const shimArgs = (): string[] => [...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379', '--shim', join(repoRoot, 'dist', 'bin', 'strand-shim')];

  it('lays out strand and the shims (one inode), idempotently', async () => {
    requireStrandPlugin('strand');
    const r = await install(shimArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(d.bin).sort()).toEqual(['.strand-installed.json', ...NAMES]);
    expect(readFileSync(join(d.bin, 'strand')).equals(readFileSync(d.source))).toBe(true);
    const ino = statSync(join(d.bin, 'strand-bridge')).ino;
    for (const n of NAMES.filter((x) => x !== 'strand')) {
      expect(readFileSync(join(d.bin, n)).equals(shimBytes()), n).toBe(true);
      expect(statSync(join(d.bin, n)).ino, n).toBe(ino);
      expect(statSync(join(d.bin, n)).mode & 0o7777).toBe(0o755);
    }
    const before = snapshot(d.bin);
    const again = await install(shimArgs());
    expect(again.stderr).toMatch(/shims in .*: unchanged/);
    expect(snapshot(d.bin)).toEqual(before);
  });

  it('upgrades a hardlink install in place: at no moment does a plugin name lack a working target', async () => {
    expect((await install([...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379'])).code).toBe(0);
    const oldIno = statSync(join(d.bin, 'strand-bridge')).ino;
    expect(statSync(join(d.bin, 'strand')).ino).toBe(oldIno); // the old layout: hardlinks
    writeFileSync(d.source, randomBytes(200 * 1024)); // a new version
    const r = await install(shimArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.indexOf('binaries in')).toBeLessThan(r.stderr.indexOf('shims in')); // strand before the shims
    expect(readFileSync(join(d.bin, 'strand')).equals(readFileSync(d.source))).toBe(true);
    expect(readFileSync(join(d.bin, 'strand-ipam')).equals(shimBytes())).toBe(true);
    expect(readdirSync(d.bin).filter((f) => f.startsWith('.'))).toEqual(['.strand-installed.json']); // no temp file left
  });

  it('refuses a --shim that is not a strand shim, before writing anything', async () => {
    const r = await install([...baseArgs(), '--etcd-endpoints', 'http://127.0.0.1:24379', '--shim', d.source]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not a strand shim');
    expect(existsSync(d.bin)).toBe(false);
  });
});

describe('strand install from the single executable', () => {
  it('dist/strand install copies itself (no --source) and its embedded shim; the plugins answer VERSION without a daemon', async () => {
    const strand = requireStrandPlugin('strand');
    const out = execFileSync(strand, ['install', '--bin-dir', d.bin, '--conf-dir', d.conf, '--template', d.template], {
      env: { PATH: '/usr/bin:/bin', STRAND_ETCD_ENDPOINTS: 'http://127.0.0.1:24379', NODENAME: 'node-b' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(out).toBe('');
    expect(readFileSync(join(d.bin, 'strand')).equals(readFileSync(join(repoRoot, 'dist', 'strand')))).toBe(true);
    for (const n of NAMES.filter((x) => x !== 'strand')) {
      expect(readFileSync(join(d.bin, n)).equals(readFileSync(join(repoRoot, 'dist', 'bin', 'strand-shim'))), n).toBe(true);
      // no daemon at the socket versionOf names: the shim runs the strand beside it
      const v = versionOf(join(d.bin, n));
      expect(v.supportedVersions).toContain('1.1.0');
    }
    expect(JSON.parse(readFileSync(join(d.conf, '10-strand.conflist'), 'utf8')).plugins[0].ipam.nodeName).toBe('node-b');
  });
});
