// Security review, item 2: file modes of what strand writes. A real run of the built
// `dist/bin/strand install` in a temp dir: etcd TLS material 0600 in a 0700 directory,
// the conflist and the install record 0644, binaries 0755, whatever the umask (0000 would make 0666 files,
// 0077 unreadable conflists), and weak modes left by someone else are corrected. strace
// shows the secret files are created 0600 from the first moment, never chmod-ed down.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { binDir } from '../../helpers/run-plugin.ts';

const STRAND = join(binDir, 'strand');
const KEY_MARK = `KEYMATERIAL${randomBytes(8).toString('hex')}`;
const pem = (what: string, body: string) => `-----BEGIN ${what}-----\n${body}\n-----END ${what}-----\n`;

let root: string;
let d: { bin: string; conf: string; tls: string; template: string };

function mode(p: string): number {
  return statSync(p).mode & 0o7777;
}

/** Runs `strand install` under `umask`, optionally under strace; returns status and output. */
function install(umask: string, extra: string[] = [], strace?: string) {
  if (!existsSync(STRAND)) throw new Error(`${STRAND} missing: run scripts/build.sh`);
  const args = [
    'install',
    '--bin-dir',
    d.bin,
    '--conf-dir',
    d.conf,
    '--template',
    d.template,
    '--source',
    STRAND,
    '--etcd-tls-dir',
    d.tls,
    '--etcd-endpoints',
    'https://127.0.0.1:26990',
    '--node-name',
    'sec-node',
    ...extra,
  ];
  const cmd = strace
    ? ['strace', '-f', '-qq', '-e', 'trace=openat,open,creat,chmod,fchmod,fchmodat,mkdir,mkdirat', '-o', strace, STRAND, ...args]
    : [STRAND, ...args];
  // A test may use a shell to set the umask; the product may not (see no-shell.test.ts).
  const r = spawnSync('sh', ['-c', `umask ${umask}; exec "$@"`, 'sh', ...cmd], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'sa-sec-install-'));
  d = { bin: join(root, 'opt/cni/bin'), conf: join(root, 'etc/cni/net.d'), tls: join(root, 'secret'), template: join(root, 'conflist.template') };
  mkdirSync(d.tls);
  writeFileSync(join(d.tls, 'ca.crt'), pem('CERTIFICATE', randomBytes(32).toString('base64')));
  writeFileSync(join(d.tls, 'tls.crt'), pem('CERTIFICATE', randomBytes(32).toString('base64')));
  writeFileSync(join(d.tls, 'tls.key'), pem('PRIVATE KEY', KEY_MARK));
  writeFileSync(
    d.template,
    JSON.stringify({
      cniVersion: '1.1.0',
      name: 'sec',
      plugins: [
        {
          type: 'strand-bridge',
          ipam: {
            type: 'strand-ipam',
            nodeName: '${NODE_NAME}',
            ranges: [[{ subnet: '10.99.0.0/16' }]],
            etcd: { endpoints: '${ETCD_ENDPOINTS}', tls: { ca: '${ETCD_CA}', cert: '${ETCD_CERT}', key: '${ETCD_KEY}' } },
          },
        },
      ],
    }),
  );
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function expectModes(): void {
  const tlsDir = join(d.conf, 'strand-etcd');
  expect(mode(tlsDir), 'TLS dir').toBe(0o700);
  for (const f of ['ca.crt', 'tls.crt', 'tls.key']) expect(mode(join(tlsDir, f)), f).toBe(0o600);
  expect(mode(join(d.conf, '10-strand.conflist')), 'conflist').toBe(0o644);
  // the binaries 0755; the record of what was installed 0644 (data, not a program)
  for (const n of readdirSync(d.bin)) expect(mode(join(d.bin, n)), n).toBe(n === '.strand-installed.json' ? 0o644 : 0o755);
  // The conflist names the key file; it never holds the key.
  expect(readFileSync(join(d.conf, '10-strand.conflist'), 'utf8')).not.toContain(KEY_MARK);
}

describe('strand install file modes (built binary, temp dir)', () => {
  it.each(['0000', '0022', '0077'])('umask %s: secrets 0600 in 0700, conflist 0644, binaries 0755; no key in the output', (umask) => {
    const r = install(umask);
    expect(r.code, r.out).toBe(0);
    expectModes();
    expect(r.out).not.toContain(KEY_MARK);
  });

  it('corrects weak modes left on existing files with the same content', () => {
    expect(install('0022').code).toBe(0);
    const tlsDir = join(d.conf, 'strand-etcd');
    chmodSync(tlsDir, 0o755);
    chmodSync(join(tlsDir, 'tls.key'), 0o644);
    chmodSync(join(d.conf, '10-strand.conflist'), 0o666);
    const r = install('0022');
    expect(r.code, r.out).toBe(0);
    expectModes();
  });

  it('creates the secret files 0600 from the start (strace: no O_CREAT with a wider mode)', () => {
    const trace = join(root, 'strace.out');
    const r = install('0000', [], trace);
    expect(r.code, r.out).toBe(0);
    const lines = readFileSync(trace, 'utf8').split('\n');
    const creates = lines.filter((l) => l.includes('strand-etcd') && /O_CREAT/.test(l));
    expect(creates.length, 'the trace shows the TLS files being created').toBeGreaterThanOrEqual(3);
    for (const l of creates) expect(l, l).toMatch(/, 0600\)/);
    const mkdirs = lines.filter((l) => /mkdir(at)?\(/.test(l) && /strand-etcd"/.test(l));
    for (const l of mkdirs) expect(l, l).toMatch(/, 0700\)/);
  });
});
