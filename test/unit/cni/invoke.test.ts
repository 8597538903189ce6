import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import {
  delegateAdd,
  delegateAddWithRollback,
  delegateCheck,
  delegateDel,
  delegateEnv,
  delegateGc,
  delegateStatus,
  findInPath,
  isScrubbedEnv,
  nsexecError,
} from '../../../lib/cni/invoke.ts';
import { createLogger } from '../../../lib/cni/log.ts';
import type { CmdArgs } from '../../../lib/cni/skel.ts';

// A fake delegate: records its stdin and environment per verb, then behaves as FAKE_MODE
// says. Written fresh into a temp dir for every test.
const FAKE = `#!/bin/sh
cat > "$FAKE_DIR/stdin.$CNI_COMMAND"
env > "$FAKE_DIR/env.$CNI_COMMAND"
case "$FAKE_MODE" in
  ok)
    if [ "$CNI_COMMAND" = ADD ]; then printf '%s' "$FAKE_RESULT"; fi ;;
  error)
    printf '{"cniVersion":"0.4.0","code":11,"msg":"try later","details":"store busy"}'; exit 1 ;;
  add-error)
    if [ "$CNI_COMMAND" = ADD ]; then printf '{"code":7,"msg":"bad range"}'; exit 1; fi ;;
  add-and-del-error)
    printf '{"code":7,"msg":"bad %s"}' "$CNI_COMMAND"; exit 1 ;;
  garbage)
    echo 'panic: runtime error'; exit 2 ;;
  stderr-only)
    echo 'something broke' >&2; exit 3 ;;
  silent)
    exit 4 ;;
  bad-result)
    printf '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}' ;;
  not-json)
    printf 'hello' ;;
  sleep)
    sleep 5 ;;
esac
`;

let dir = '';
let bin = '';

function args(env: Record<string, string>, path?: string[]): CmdArgs {
  return {
    containerId: 'c1',
    netns: '/var/run/netns/x',
    ifName: 'eth0',
    args: '',
    path: path ?? ['/s1-nonexistent', bin],
    stdinData: Buffer.from(''),
    env: {
      PATH: process.env['PATH'],
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/var/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_PATH: `/s1-nonexistent:${bin}`,
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p',
      FAKE_DIR: dir,
      ...env,
    },
  };
}

function recorded(file: string): string {
  return readFileSync(join(dir, file), 'utf8');
}

function envOf(verb: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of recorded(`env.${verb}`).split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

const CONF = { cniVersion: '0.4.0', name: 'net1', type: 'fake-ipam', subnet: '10.1.0.0/16' };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 's1-invoke-'));
  bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'fake-ipam'), FAKE);
  chmodSync(join(bin, 'fake-ipam'), 0o755);
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('findInPath', () => {
  it('finds the first regular file', async () => {
    expect(await findInPath('fake-ipam', ['/s1-nonexistent', dir, bin])).toBe(join(bin, 'fake-ipam'));
  });
  it('skips directories of that name', async () => {
    mkdirSync(join(dir, 'fake-ipam'));
    expect(await findInPath('fake-ipam', [dir, bin])).toBe(join(bin, 'fake-ipam'));
  });
  it('reports a missing plugin as libcni does (code 999, path listed)', async () => {
    const e = await codeOf(findInPath('host-local', ['/a', '/b']));
    expect(e.code).toBe(Code.Internal);
    expect(e.msg).toBe('failed to find plugin "host-local" in path [/a /b]');
  });
  it('rejects names with a slash and an empty path', async () => {
    expect((await codeOf(findInPath('../fake-ipam', [bin]))).msg).toMatch(/invalid plugin name/);
    expect((await codeOf(findInPath('fake-ipam', []))).msg).toMatch(/no paths/);
    expect((await codeOf(findInPath('', [bin]))).msg).toMatch(/no plugin name/);
  });
});

describe('environment', () => {
  it('scrubs Node and OpenSSL loader variables, keeps the rest, sets CNI_COMMAND', () => {
    const env = delegateEnv(
      {
        CNI_COMMAND: 'ADD',
        NODE_OPTIONS: '--require /tmp/evil.js',
        NODE_PATH: '/x',
        NODE_NAME: 'node-1',
        OPENSSL_CONF: '/x',
        K8S_NODE_NAME: 'n',
        X: undefined,
      },
      'DEL',
    );
    expect(env).toEqual({ CNI_COMMAND: 'DEL', NODE_NAME: 'node-1', K8S_NODE_NAME: 'n' });
    expect(isScrubbedEnv('NODE_REPL_EXTERNAL_MODULE')).toBe(true);
    expect(isScrubbedEnv('NODENAME')).toBe(false);
  });
  it('the delegate gets our environment, CNI_COMMAND replaced, NODE_OPTIONS removed', async () => {
    const a = args({ FAKE_MODE: 'ok', FAKE_RESULT: '{}', NODE_OPTIONS: '--require /s1/evil.js', NODE_V8_COVERAGE: '/tmp/x' });
    await delegateDel('fake-ipam', CONF, a);
    const env = envOf('DEL');
    expect(env['CNI_COMMAND']).toBe('DEL');
    expect(env['CNI_CONTAINERID']).toBe('c1');
    expect(env['CNI_IFNAME']).toBe('eth0');
    expect(env['CNI_NETNS']).toBe('/var/run/netns/x');
    expect(env['CNI_ARGS']).toBe('IgnoreUnknown=1;K8S_POD_NAME=p');
    expect(env['CNI_PATH']).toBe(`/s1-nonexistent:${bin}`);
    expect(env).not.toHaveProperty('NODE_OPTIONS');
    expect(env).not.toHaveProperty('NODE_V8_COVERAGE');
  });
  it('each verb sets its own CNI_COMMAND', async () => {
    const a = args({ FAKE_MODE: 'ok' });
    await delegateCheck('fake-ipam', CONF, a);
    await delegateStatus('fake-ipam', { ...CONF, cniVersion: '1.1.0' }, a);
    await delegateGc('fake-ipam', { ...CONF, cniVersion: '1.1.0' }, a);
    expect(envOf('CHECK')['CNI_COMMAND']).toBe('CHECK');
    expect(envOf('STATUS')['CNI_COMMAND']).toBe('STATUS');
    expect(envOf('GC')['CNI_COMMAND']).toBe('GC');
  });
});

describe('stdin', () => {
  it('passes a Buffer config byte for byte', async () => {
    const raw = Buffer.from('{"cniVersion":"0.4.0", "name":"net1","type":"fake-ipam","x":"é"}\n');
    await delegateDel('fake-ipam', raw, args({ FAKE_MODE: 'ok' }));
    expect(readFileSync(join(dir, 'stdin.DEL')).equals(raw)).toBe(true);
  });
  it('serialises an object config', async () => {
    await delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'ok' }));
    expect(JSON.parse(recorded('stdin.DEL'))).toEqual(CONF);
  });
});

describe('results', () => {
  it('converts a 0.4.0 result to the 1.1.0 form', async () => {
    const result = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.0.5/16', gateway: '10.1.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} };
    const r = await delegateAdd('fake-ipam', CONF, args({ FAKE_MODE: 'ok', FAKE_RESULT: JSON.stringify(result) }));
    expect(r).toEqual({ cniVersion: '1.1.0', ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  });
  it('a result without cniVersion has the config version (0.2.0 shape)', async () => {
    const result = { ip4: { ip: '10.1.0.5/16', gateway: '10.1.0.1' }, ip6: { ip: 'FD00::5/64' } };
    const r = await delegateAdd('fake-ipam', { ...CONF, cniVersion: '0.2.0' }, args({ FAKE_MODE: 'ok', FAKE_RESULT: JSON.stringify(result) }));
    expect(r.ips).toEqual([{ address: '10.1.0.5/16', gateway: '10.1.0.1' }, { address: 'fd00::5/64' }]);
  });
  it('an invalid result: code 6 naming the field', async () => {
    const e = await codeOf(delegateAdd('fake-ipam', CONF, args({ FAKE_MODE: 'bad-result' })));
    expect(e.code).toBe(Code.DecodingFailure);
    expect(e.details).toContain('ips[0].address');
  });
  it('output that is not JSON: code 6', async () => {
    const e = await codeOf(delegateAdd('fake-ipam', CONF, args({ FAKE_MODE: 'not-json' })));
    expect(e.code).toBe(Code.DecodingFailure);
  });
});

describe('errors', () => {
  it("keeps the delegate's error code, msg and details", async () => {
    const e = await codeOf(delegateAdd('fake-ipam', CONF, args({ FAKE_MODE: 'error' })));
    expect([e.code, e.msg, e.details]).toEqual([11, 'try later', 'store busy']);
  });
  it('garbage on stdout: code 104 with the output', async () => {
    const e = await codeOf(delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'garbage' })));
    expect(e.code).toBe(Code.DelegateFailed);
    expect(e.details).toContain('exit status 2');
    expect(e.details).toContain('panic: runtime error');
  });
  it('nothing on stdout: code 104 with stderr', async () => {
    const e = await codeOf(delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'stderr-only' })));
    expect(e.code).toBe(Code.DelegateFailed);
    expect(e.details).toContain('something broke');
    const s = await codeOf(delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'silent' })));
    expect(s.details).toContain('exit status 4');
  });
  it('missing delegate: code 999 "failed to find plugin"', async () => {
    const e = await codeOf(delegateAdd('host-local-s1', CONF, args({ FAKE_MODE: 'ok' })));
    expect(e.code).toBe(Code.Internal);
    expect(e.msg).toContain('failed to find plugin "host-local-s1"');
  });
  it('a file that cannot be executed: code 999', async () => {
    writeFileSync(join(bin, 'noexec'), '#!/bin/sh\n');
    chmodSync(join(bin, 'noexec'), 0o644);
    const e = await codeOf(delegateDel('noexec', CONF, args({})));
    expect(e.code).toBe(Code.Internal);
    expect(e.details).toContain('EACCES');
  });
  it('timeout kills the delegate: code 104', async () => {
    const t0 = Date.now();
    const e = await codeOf(delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'sleep' }), { timeoutMs: 200 }));
    expect(e.code).toBe(Code.DelegateFailed);
    expect(e.msg).toMatch(/timed out/);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
  it("logs the delegate's stderr", async () => {
    let logged = '';
    const log = createLogger({
      name: 't',
      stderr: {
        write: (s) => {
          logged += s;
        },
      },
    });
    await codeOf(delegateDel('fake-ipam', CONF, args({ FAKE_MODE: 'stderr-only' }), { log }));
    expect(logged).toContain('fake-ipam stderr: something broke');
  });
});

describe('delegateAddWithRollback', () => {
  it('returns the result when ADD works, without DEL', async () => {
    const r = await delegateAddWithRollback('fake-ipam', CONF, args({ FAKE_MODE: 'ok', FAKE_RESULT: '{"cniVersion":"0.4.0"}' }));
    expect(r).toEqual({ cniVersion: '1.1.0' });
    expect(existsSync(join(dir, 'env.DEL'))).toBe(false);
  });
  it('runs DEL after a failed ADD and rethrows the ADD error', async () => {
    const e = await codeOf(delegateAddWithRollback('fake-ipam', CONF, args({ FAKE_MODE: 'add-error' })));
    expect([e.code, e.msg]).toEqual([7, 'bad range']);
    expect(envOf('DEL')['CNI_COMMAND']).toBe('DEL');
    expect(JSON.parse(recorded('stdin.DEL'))).toEqual(CONF);
  });
  it('runs DEL after an unparseable ADD result too', async () => {
    await codeOf(delegateAddWithRollback('fake-ipam', CONF, args({ FAKE_MODE: 'bad-result' })));
    expect(existsSync(join(dir, 'env.DEL'))).toBe(true);
  });
  it('a failing DEL is logged; the ADD error is what the caller sees', async () => {
    let logged = '';
    const log = createLogger({
      name: 't',
      stderr: {
        write: (s) => {
          logged += s;
        },
      },
    });
    const e = await codeOf(delegateAddWithRollback('fake-ipam', CONF, args({ FAKE_MODE: 'add-and-del-error' }), { log }));
    expect(e.msg).toBe('bad ADD');
    expect(logged).toMatch(/rollback: DEL of fake-ipam after its failed ADD also failed/);
    expect(logged).toContain('bad DEL');
  });
  it('does not try DEL when the delegate cannot be found', async () => {
    const e = await codeOf(delegateAddWithRollback('fake-ipam', CONF, args({ FAKE_MODE: 'ok' }, ['/s1-nonexistent'])));
    expect(e.msg).toMatch(/failed to find plugin/);
    expect(existsSync(join(dir, 'env.DEL'))).toBe(false);
  });
});

// The reference IPAM plugin (Debian containernetworking-plugins) as a real delegate: no
// root needed, its store lives in the test's temp dir.
describe('with the reference host-local', () => {
  const refBin = '/usr/lib/cni';
  const ipamConf = (v: string): object => ({
    cniVersion: v,
    name: 's1net',
    type: 'host-local',
    ipam: {
      type: 'host-local',
      dataDir: join(dir, 'ipam'),
      ranges: [[{ subnet: '10.99.0.0/24' }], [{ subnet: 'fd99::/64' }]],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    },
  });
  it('is installed (setup.sh installs containernetworking-plugins)', () => {
    expect(existsSync(join(refBin, 'host-local'))).toBe(true);
  });
  for (const v of ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0']) {
    it(`ADD/DEL in ${v}: its result arrives in the 1.1.0 form`, async () => {
      const a = args({}, [refBin]);
      const r = await delegateAdd('host-local', ipamConf(v), a);
      expect(r.cniVersion).toBe('1.1.0');
      expect(r.ips).toEqual([
        { address: '10.99.0.2/24', gateway: '10.99.0.1' },
        { address: 'fd99::2/64', gateway: 'fd99::1' },
      ]);
      expect(r.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
      expect(r.dns).toBeUndefined();
      expect(readFileSync(join(dir, 'ipam', 's1net', '10.99.0.2'), 'utf8')).toContain('c1');
      await delegateDel('host-local', ipamConf(v), a);
      expect(existsSync(join(dir, 'ipam', 's1net', '10.99.0.2'))).toBe(false);
    });
  }
  it('a version it does not speak comes back as its own error (code 1)', async () => {
    const e = await codeOf(delegateAdd('host-local', ipamConf('1.1.0'), args({}, [refBin])));
    expect(e.code).toBe(Code.IncompatibleVersion);
  });
});

describe('nsexecError (a delegate run in the caller namespace of a daemon request)', () => {
  it("turns nsenter's failed exec into the error spawn() gives for the file itself", () => {
    const e = nsexecError('/opt/cni/bin/x', 126, 'strand-nsexec: failed to execute /opt/cni/bin/x: Permission denied\n');
    expect(e?.code).toBe('EACCES');
    expect(e?.message).toBe('spawn /opt/cni/bin/x EACCES');
    expect(nsexecError('/opt/cni/bin/x', 127, 'strand-nsexec: failed to execute /opt/cni/bin/x: No such file or directory\n')?.code).toBe('ENOENT');
    expect(nsexecError('/opt/cni/bin/x', 126, 'strand-nsexec: failed to execute /opt/cni/bin/x: Text file busy\n')?.code).toBe('ETXTBSY');
  });
  it("leaves the plugin's own exit statuses and messages alone", () => {
    expect(nsexecError('/opt/cni/bin/x', 126, 'something else\n')).toBeUndefined();
    expect(nsexecError('/opt/cni/bin/x', 1, 'strand-nsexec: failed to execute /opt/cni/bin/x: Permission denied\n')).toBeUndefined();
    expect(nsexecError('/opt/cni/bin/x', 126, 'strand-nsexec: failed to execute /opt/cni/bin/y: Permission denied\n')).toBeUndefined();
  });
});
