// `strand ipam` etcd password sources (issue 8, security): --etcd-password-file and
// $STRAND_ETCD_PASSWORD keep the password off the command line; --etcd-password still
// works but warns that /proc/<pid>/cmdline is readable by every local user.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdPassword, main, PASSWORD_ENV } from '../../../ipam/cli.ts';

const SECRET = 'pw-Zq8vN3xR';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ha-ipam-cli-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function pwFile(name: string, text: string, mode: number): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

function resolve(flags: Record<string, string>, env: Record<string, string> = {}): { pw: string | undefined; warnings: string[] } {
  const warnings: string[] = [];
  const pw = etcdPassword(new Map(Object.entries(flags)), env, (l) => warnings.push(l));
  return { pw, warnings };
}

describe('strand ipam: where the etcd password comes from', () => {
  it('--etcd-password-file: the first line, no warning for a 0600 file', () => {
    const f = pwFile('pw', `${SECRET}\nignored second line\n`, 0o600);
    expect(resolve({ 'etcd-username': 'u', 'etcd-password-file': f })).toEqual({ pw: SECRET, warnings: [] });
    const crlf = pwFile('pw-crlf', `${SECRET}\r\n`, 0o600);
    expect(resolve({ 'etcd-password-file': crlf }).pw).toBe(SECRET);
  });

  it('a password file readable by group or others is used with a warning (never the password)', () => {
    const f = pwFile('pw-wide', `${SECRET}\n`, 0o644);
    const r = resolve({ 'etcd-password-file': f });
    expect(r.pw).toBe(SECRET);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/open to group or others.*chmod 600/);
    expect(r.warnings[0]).not.toContain(SECRET);
  });

  it('a missing or empty password file is a usage error', () => {
    expect(() => resolve({ 'etcd-password-file': join(dir, 'nope') })).toThrow(/--etcd-password-file .*ENOENT/);
    const empty = pwFile('pw-empty', '\n', 0o600);
    expect(() => resolve({ 'etcd-password-file': empty })).toThrow(/first line is empty/);
  });

  it(`${PASSWORD_ENV} is used with --etcd-username; a flag wins over it`, () => {
    expect(resolve({ 'etcd-username': 'u' }, { [PASSWORD_ENV]: SECRET })).toEqual({ pw: SECRET, warnings: [] });
    expect(resolve({}, { [PASSWORD_ENV]: SECRET }).pw).toBeUndefined();
    const f = pwFile('pw2', 'from-file\n', 0o600);
    expect(resolve({ 'etcd-username': 'u', 'etcd-password-file': f }, { [PASSWORD_ENV]: SECRET }).pw).toBe('from-file');
  });

  it('--etcd-password still works, with a warning that other users can see it', () => {
    const r = resolve({ 'etcd-username': 'u', 'etcd-password': SECRET });
    expect(r.pw).toBe(SECRET);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/visible to other users.*\/proc\/<pid>\/cmdline.*--etcd-password-file/);
    expect(r.warnings[0]).not.toContain(SECRET);
  });

  it('both flags at once: exit 2 (usage), the password not echoed', async () => {
    const f = pwFile('pw3', `${SECRET}\n`, 0o600);
    let out = '';
    let err = '';
    const code = await main(['--etcd-endpoints', '127.0.0.1:24099', '--etcd-username', 'u', '--etcd-password', SECRET, '--etcd-password-file', f, 'ls'], {
      stdout: {
        write: (s: string) => {
          out += s;
        },
      },
      stderr: {
        write: (s: string) => {
          err += s;
        },
      },
      env: {},
    });
    expect(code).toBe(2);
    expect(err).toMatch(/give the etcd password one way/);
    expect(`${out}${err}`).not.toContain(SECRET);
  });

  it('the help names the safe ways', async () => {
    let out = '';
    const code = await main(['help'], {
      stdout: {
        write: (s: string) => {
          out += s;
        },
      },
      stderr: { write: () => undefined },
    });
    expect(code).toBe(0);
    expect(out).toContain('--etcd-password-file');
    expect(out).toContain(`$${PASSWORD_ENV}`);
    expect(out).toMatch(/--etcd-password <pw>\s+discouraged/);
  });
});
