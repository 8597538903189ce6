// In-process delegation (lib/cni/inprocess.ts + invoke.ts): a registered plugin runs in
// this process only when the file CNI_PATH resolves its type to is the running executable
// (here: a symlink to node, the same inode), or when registered with the test-only opt-in;
// it sees the exec path's env and stdin, and its output and errors are read the same way.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import { registerInProcess, unregisterInProcess, type PluginMain } from '../../../lib/cni/inprocess.ts';
import { delegateAdd, delegateAddWithRollback, delegateCheck, delegateDel, delegateGc, delegateStatus, inProcessFor } from '../../../lib/cni/invoke.ts';
import { createLogger } from '../../../lib/cni/log.ts';
import type { CmdArgs, PluginIO } from '../../../lib/cni/skel.ts';
import { main as ipamMain } from '../../../ipam/main.ts';

const TYPE = 'sc-fake-ipam';
// The exec'd stand-in: leaves a marker per verb, answers like the in-process fake does.
const SCRIPT = `#!/bin/sh
touch "$FAKE_DIR/exec.$CNI_COMMAND"
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then printf '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.9/24"}]}'; fi
`;

let dir = '';
let calls: Array<{ env: Record<string, string | undefined>; stdin: string }> = [];
let behave: (io: PluginIO, verb: string) => number = () => 0;

const fake: PluginMain = async (io) => {
  const stdin = (await io.stdin()).toString('utf8');
  calls.push({ env: io.env, stdin });
  return behave(io, io.env['CNI_COMMAND'] ?? '');
};

function args(path: string[], env: Record<string, string> = {}): CmdArgs {
  return {
    containerId: 'c1',
    netns: '/var/run/netns/x',
    ifName: 'eth0',
    args: 'IgnoreUnknown=1;K8S_POD_NAME=p',
    path,
    stdinData: Buffer.from(''),
    env: {
      PATH: process.env['PATH'],
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/var/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_PATH: path.join(':'),
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p',
      NODE_OPTIONS: '--require /evil.js',
      FAKE_DIR: dir,
      ...env,
    },
  };
}

/** A CNI_PATH dir where TYPE is the running executable (symlink to node: same inode). */
function selfDir(): string {
  const d = join(dir, 'self');
  mkdirSync(d, { recursive: true });
  if (!existsSync(join(d, TYPE))) symlinkSync(process.execPath, join(d, TYPE));
  return d;
}

/** A CNI_PATH dir where TYPE is another file (exec'd). */
function otherDir(): string {
  const d = join(dir, 'other');
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, TYPE), SCRIPT);
  chmodSync(join(d, TYPE), 0o755);
  return d;
}

async function cniErrorOf(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

const CONF = Buffer.from(JSON.stringify({ cniVersion: '0.4.0', name: 'net1', type: 'strand-bridge', ipam: { type: TYPE } }));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sc-inproc-'));
  calls = [];
  behave = (io, verb) => {
    if (verb === 'ADD') io.stdout.write('{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1"}]}\n');
    return 0;
  };
  registerInProcess(TYPE, { load: async () => fake, execEnv: 'STRAND_IPAM_EXEC' });
});

afterEach(() => {
  unregisterInProcess(TYPE);
  rmSync(dir, { recursive: true, force: true });
});

describe('in-process delegation', () => {
  it('runs a registered plugin in-process when CNI_PATH resolves it to the running executable', async () => {
    const a = args([join(dir, 'missing'), selfDir(), otherDir()]);
    const r = await delegateAdd(TYPE, CONF, a);
    expect(r).toEqual({ cniVersion: '1.1.0', ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }] });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.stdin).toBe(CONF.toString('utf8'));
    // the exec path's environment: ours with CNI_COMMAND set, Node's variables scrubbed
    expect(calls[0]!.env['CNI_COMMAND']).toBe('ADD');
    expect(calls[0]!.env['CNI_ARGS']).toBe('IgnoreUnknown=1;K8S_POD_NAME=p');
    expect(calls[0]!.env['CNI_PATH']).toBe(a.env['CNI_PATH']);
    expect(calls[0]!.env['NODE_OPTIONS']).toBeUndefined();
    expect(existsSync(join(dir, 'exec.ADD'))).toBe(false);
  });

  it('sets CNI_COMMAND per verb for DEL, CHECK, STATUS and GC', async () => {
    const a = args([selfDir()]);
    await delegateDel(TYPE, CONF, a);
    await delegateCheck(TYPE, CONF, a);
    await delegateStatus(TYPE, CONF, a);
    await delegateGc(TYPE, CONF, a);
    expect(calls.map((c) => c.env['CNI_COMMAND'])).toEqual(['DEL', 'CHECK', 'STATUS', 'GC']);
  });

  it('execs when the first file on CNI_PATH is another file, even if the running executable comes later', async () => {
    const r = await delegateAdd(TYPE, CONF, args([otherDir(), selfDir()]));
    expect(r.ips).toEqual([{ address: '10.9.0.9/24' }]);
    expect(calls).toHaveLength(0);
    expect(existsSync(join(dir, 'exec.ADD'))).toBe(true);
  });

  it("execs when STRAND_IPAM_EXEC=1 (the registration's execEnv) or a timeout is asked for", async () => {
    const self = selfDir();
    const a = args([self], { STRAND_IPAM_EXEC: '1' });
    expect(await inProcessFor(TYPE, join(self, TYPE), a.env)).toBeUndefined();
    expect(await inProcessFor(TYPE, join(self, TYPE), args([self]).env, { timeoutMs: 1000 })).toBeUndefined();
    expect(await inProcessFor(TYPE, join(self, TYPE), args([self]).env)).toBeDefined();
    expect(await inProcessFor(TYPE, join(self, TYPE), args([self], { STRAND_IPAM_EXEC: '0' }).env)).toBeDefined();
  });

  it('never runs an unregistered type in-process', async () => {
    expect(await inProcessFor('host-local', join(selfDir(), TYPE), args([]).env)).toBeUndefined();
  });

  it('the test-only anyFile opt-in runs in-process whatever file CNI_PATH finds', async () => {
    registerInProcess(TYPE, { load: async () => fake, anyFile: true });
    await delegateAdd(TYPE, CONF, args([otherDir()]));
    expect(calls).toHaveLength(1);
    expect(existsSync(join(dir, 'exec.ADD'))).toBe(false);
  });

  it('still reports a type missing from CNI_PATH as libcni does, without running anything', async () => {
    const e = await cniErrorOf(delegateAdd(TYPE, CONF, args([join(dir, 'missing')])));
    expect(e.code).toBe(Code.Internal);
    expect(e.msg).toMatch(/failed to find plugin/);
    expect(calls).toHaveLength(0);
  });

  it("an error JSON keeps its code, msg and details; the delegate's stderr is logged", async () => {
    behave = (io) => {
      io.stderr.write('store is busy\n');
      io.stdout.write('{"cniVersion":"0.4.0","code":11,"msg":"try later","details":"store busy"}');
      return 1;
    };
    const lines: string[] = [];
    const log = createLogger({ name: 't', stderr: { write: (s) => void lines.push(s) } });
    const e = await cniErrorOf(delegateAdd(TYPE, CONF, args([selfDir()]), { log }));
    expect([e.code, e.msg, e.details]).toEqual([11, 'try later', 'store busy']);
    expect(lines.join('')).toMatch(new RegExp(`${TYPE} stderr: store is busy`));
  });

  it("a failing status without error JSON is DelegateFailed (104), as an exec'd one", async () => {
    behave = () => 3;
    const e = await cniErrorOf(delegateDel(TYPE, CONF, args([selfDir()])));
    expect(e.code).toBe(Code.DelegateFailed);
    expect(e.details).toMatch(/exit status 3/);
  });

  it('a plugin that throws (cannot load) is DelegateFailed with the cause', async () => {
    registerInProcess(TYPE, {
      load: () => Promise.reject(new Error('module broken')),
    });
    const e = await cniErrorOf(delegateAdd(TYPE, CONF, args([selfDir()])));
    expect(e.code).toBe(Code.DelegateFailed);
    expect(e.details).toMatch(/module broken/);
  });

  it("an undecodable ADD result is a decoding failure, as from an exec'd delegate", async () => {
    behave = (io) => {
      io.stdout.write('hello');
      return 0;
    };
    const e = await cniErrorOf(delegateAdd(TYPE, CONF, args([selfDir()])));
    expect(e.code).toBe(Code.DecodingFailure);
  });

  it('delegateAddWithRollback runs the in-process DEL after a failed in-process ADD', async () => {
    behave = (io, verb) => {
      if (verb === 'ADD') {
        io.stdout.write('{"code":102,"msg":"range exhausted"}');
        return 1;
      }
      return 0;
    };
    const e = await cniErrorOf(delegateAddWithRollback(TYPE, CONF, args([selfDir()])));
    expect(e.code).toBe(102);
    expect(calls.map((c) => c.env['CNI_COMMAND'])).toEqual(['ADD', 'DEL']);
  });
});

describe('strand-ipam in-process (from source, opt-in)', () => {
  it('allocates and releases with the local store through its own pluginMain', async () => {
    registerInProcess('strand-ipam', { load: async () => ipamMain, anyFile: true });
    try {
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      writeFileSync(join(bin, 'strand-ipam'), '#!/bin/sh\nexit 99\n', { mode: 0o755 });
      const dataDir = join(dir, 'data');
      const conf = Buffer.from(
        JSON.stringify({
          cniVersion: '1.0.0',
          name: 'sc-net',
          type: 'strand-bridge',
          ipam: { type: 'strand-ipam', dataDir, ranges: [[{ subnet: '10.5.0.0/24' }]] },
        }),
      );
      const a = args([bin]);
      const r = await delegateAdd('strand-ipam', conf, a);
      expect(r.ips).toEqual([{ address: '10.5.0.2/24', gateway: '10.5.0.1' }]);
      const doc = readFileSync(join(dataDir, 'sc-net', 'strand-ipam.json'), 'utf8');
      expect(doc).toContain('c1/eth0');
      await delegateDel('strand-ipam', conf, a);
      expect(readFileSync(join(dataDir, 'sc-net', 'strand-ipam.json'), 'utf8')).not.toContain('c1/eth0');
      // config errors keep strand-ipam's code 7 naming the field
      const bad = Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'sc-net', type: 'x', ipam: { type: 'strand-ipam', dataDir, ranges: 'no' } }));
      const e = await cniErrorOf(delegateAdd('strand-ipam', bad, a));
      expect(e.code).toBe(Code.InvalidNetworkConfig);
      expect(`${e.msg} ${e.details}`).toMatch(/ranges/);
    } finally {
      unregisterInProcess('strand-ipam');
    }
  });
});
