// Security review, item 3: etcd credentials never reach a log, stderr or the CNI answer
// (which kubelet logs). The built strand-ipam, with an etcd section holding a username
// and password (and TLS key material) against an endpoint where nothing listens, run
// with STRAND_LOG_FILE at debug level for every verb; the same through `strand ipam`
// and for configs that are wrong in ways that make validators echo values.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binDir } from '../../helpers/run-plugin.ts';

const DEAD = 'http://127.0.0.1:26989';
const SECRET = `pw-${randomBytes(9).toString('base64url')}`;
const URL_SECRET = `urlpw${randomBytes(6).toString('hex')}`;
const KEY_SECRET = `KEYBYTES${randomBytes(12).toString('hex')}`;

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sa-sec-cred-'));
  writeFileSync(join(dir, 'key.pem'), `-----BEGIN PRIVATE KEY-----\n${KEY_SECRET}\n-----END PRIVATE KEY-----\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nnot-a-cert\n-----END CERTIFICATE-----\n');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function conf(etcd: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: 'sec-net',
    type: 'strand-ipam',
    logLevel: 'debug',
    ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.98.0.0/24' }]], etcd: { dialTimeout: '300ms', requestTimeout: '500ms', ...etcd } },
    ...extra,
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  log: string;
}

function run(bin: string, args: string[], env: Record<string, string>, stdin: string): Run {
  const exe = join(binDir, bin);
  if (!existsSync(exe)) throw new Error(`${exe} missing: run scripts/build.sh`);
  const logFile = join(dir, `log-${randomBytes(4).toString('hex')}`);
  const r = spawnSync(exe, args, {
    input: stdin,
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: '/usr/bin:/bin', STRAND_LOG_FILE: logFile, STRAND_LOG_LEVEL: 'debug', ...env },
  });
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, log };
}

function plugin(verb: string, c: Record<string, unknown>): Run {
  const env: Record<string, string> = { CNI_COMMAND: verb, CNI_PATH: binDir };
  if (verb !== 'STATUS' && verb !== 'GC') Object.assign(env, { CNI_CONTAINERID: 'sec-ctr', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/sa-sec-none' });
  // the node-local state (DEL's journal of pending releases) in the test's directory
  const withDir = { ...c, ipam: { dataDir: join(dir, 'ipam'), ...(c['ipam'] as object) } };
  return run('strand-ipam', [], env, JSON.stringify(withDir));
}

/** Every file of the pending-release journal, concatenated. */
function journalText(): string {
  const d = join(dir, 'ipam', '.strand-ipam-pending');
  return existsSync(d)
    ? readdirSync(d)
        .map((n) => readFileSync(join(d, n), 'utf8'))
        .join('\n')
    : '';
}

function expectNoSecret(r: Run, secrets: string[]): void {
  const all = `${r.stdout}\n${r.stderr}\n${r.log}`;
  for (const s of secrets) expect(all.includes(s), `secret ${s} leaked:\n${all.slice(0, 3000)}`).toBe(false);
}

describe('etcd credentials are never logged', () => {
  const withAuth = conf({ endpoints: [DEAD], username: 'strand', password: SECRET });

  it.each(['ADD', 'DEL', 'CHECK', 'STATUS', 'GC'])('%s against an unreachable etcd: an error, the log written, no password', (verb) => {
    const c =
      verb === 'CHECK'
        ? { ...withAuth, prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.98.0.2/24' }] } }
        : verb === 'GC'
          ? { ...withAuth, 'cni.dev/valid-attachments': [] }
          : withAuth;
    const r = plugin(verb, c);
    if (verb === 'DEL') {
      // DEL records the release for later (issue #19 item 4): the journal holds no password either
      expect(r.code, r.stdout).toBe(0);
      expect(r.log, 'the log file received the failure (so the check below is not vacuous)').toMatch(/WARN strand-ipam .*IPAM store unavailable/);
      expect(journalText()).toContain('"username":"strand"');
      expect(journalText().includes(SECRET), 'password in the journal').toBe(false);
    } else {
      expect(r.code, r.stdout).toBe(1);
      expect(JSON.parse(r.stdout).code).toBe(verb === 'STATUS' ? 50 : 11);
      expect(r.log, 'the log file received the failure (so the check below is not vacuous)').toMatch(/ERROR strand-ipam/);
    }
    expectNoSecret(r, [SECRET]);
  });

  it('credentials inside the endpoint URL are not echoed either', () => {
    const r = plugin('ADD', conf({ endpoints: [`http://strand:${URL_SECRET}@127.0.0.1:26989`] }));
    expect(r.code).toBe(1);
    expect(r.log).toMatch(/ERROR/);
    expectNoSecret(r, [URL_SECRET]);
  });

  it('a password of the wrong type is reported by field name, not by value', () => {
    for (const password of [{ valueFrom: SECRET }, [SECRET], { secretKeyRef: { name: SECRET } }]) {
      const r = plugin('ADD', conf({ endpoints: [DEAD], username: 'strand', password }));
      expect(r.code).toBe(1);
      const e = JSON.parse(r.stdout) as { code: number; msg: string; details?: string };
      expect(e.code).toBe(7);
      expect(`${e.msg} ${e.details ?? ''}`).toContain('password');
      expectNoSecret(r, [SECRET]);
    }
  });

  it('a username without its password (and the reverse) does not echo the one given', () => {
    const r = plugin('ADD', conf({ endpoints: [DEAD], password: SECRET }));
    expect(r.code).toBe(1);
    expectNoSecret(r, [SECRET]);
  });

  it('TLS key material is never echoed, even when the key is not a valid key', () => {
    const r = plugin(
      'ADD',
      conf({
        endpoints: [DEAD.replace('http:', 'https:')],
        username: 'strand',
        password: SECRET,
        tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') },
      }),
    );
    expect(r.code).toBe(1);
    expectNoSecret(r, [SECRET, KEY_SECRET]);
  });

  it('strand ipam (the admin CLI) with a conf holding the password: no password in its output', () => {
    const file = join(dir, 'net.conflist');
    writeFileSync(file, JSON.stringify({ cniVersion: '1.1.0', name: 'sec-net', plugins: [{ type: 'strand-bridge', ipam: withAuth['ipam'] }] }), {
      mode: 0o600,
    });
    for (const cmd of [['ls'], ['usage'], ['--json', 'ls'], ['show', '10.98.0.5']]) {
      const r = run('strand', ['ipam', '--conf', file, ...cmd], {}, '');
      expect(r.code, `${cmd.join(' ')}: ${r.stdout} ${r.stderr}`).not.toBe(0);
      expectNoSecret(r, [SECRET]);
    }
  });
});
