// strand-bridge with strand-ipam: when the strand-ipam found first on CNI_PATH is the
// running executable (a hardlink), the IPAM runs in-process, with no second process;
// STRAND_IPAM_EXEC=1 or a different file of that name (a copy: another inode) is exec'd.
// Both paths give the same result, the same IPAM records and the same errors. Proved with
// strace: every execve of the plugin run and its children is recorded.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd } from '../../helpers/etcd.ts';
import { binDir, refBinDir, repoRoot, runPlugin, type PluginRun } from '../../helpers/run-plugin.ts';
import { BridgeEnv, STRAND_BRIDGE, requireBinaries } from '../bridge/harness.ts';

const STRACE = '/usr/bin/strace';
const CONTAINER = 'c-inproc';
const NET = 'sc-inproc-net';

interface Traced {
  run: PluginRun;
  /** Every program the run exec'd (strace's execve lines, first argument). */
  execs: string[];
}

const envs: BridgeEnv[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const e of envs.splice(0)) e.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

beforeAll(() => {
  requireBinaries();
  if (!existsSync(STRACE)) throw new Error(`${STRACE} missing: apt-get install strace (scripts/setup.sh lists it)`);
});

/** Runs strand-bridge in `env`'s host namespace under strace -f, recording execve calls. */
async function traced(
  env: BridgeEnv,
  hostNs: string,
  podNs: string,
  command: string,
  conf: object,
  opts: { path?: string; extra?: Record<string, string>; args?: string } = {},
): Promise<Traced> {
  const trace = join(env.tmp, `trace.${command}.${Date.now()}`);
  const wrapper = join(env.tmp, 'traced');
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec ${STRACE} -f -qq -e trace=execve -e signal=none -o "$STRAND_T_TRACE" /usr/bin/ip netns exec "$STRAND_T_NS" "$STRAND_T_BIN"\n`,
  );
  chmodSync(wrapper, 0o755);
  const pe: Parameters<typeof runPlugin>[1] = {
    command,
    containerId: CONTAINER,
    netns: env.ns.path(podNs),
    ifName: 'eth0',
    path: opts.path ?? `${binDir}:${refBinDir}`,
    extra: { STRAND_T_NS: hostNs, STRAND_T_BIN: STRAND_BRIDGE, STRAND_T_TRACE: trace, ...(opts.extra ?? {}) },
  };
  if (opts.args !== undefined) pe.args = opts.args;
  const run = await runPlugin(wrapper, pe, conf);
  const execs = readFileSync(trace, 'utf8')
    .split('\n')
    .map((l) => /execve\("([^"]+)"/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);
  return { run, execs };
}

function ipamExecs(t: Traced): string[] {
  return t.execs.filter((f) => f.endsWith('/strand-ipam'));
}

/** A fresh host + pod, one ADD (traced), the IPAM records, then DEL twice. */
async function addOnce(opts: { path?: string; extra?: Record<string, string>; args?: string } = {}, ipam: Record<string, unknown> = {}) {
  const env = new BridgeEnv();
  envs.push(env);
  const host = env.ns.add('h');
  const pod = env.ns.add('p');
  const conf = env.conf('1.1.0', { name: NET }, { type: 'strand-ipam', ...ipam });
  const add = await traced(env, host, pod, 'ADD', conf, opts);
  const records = env.ipamReservations();
  const docs = Object.fromEntries(
    Object.entries(env.ipamFiles())
      .filter(([f]) => f.endsWith('strand-ipam.json'))
      // the attachment's creation time and netns path differ between two runs; all else must not
      .map(([f, body]) => [f, body.replace(/"created":"[^"]*"/g, '"created":"-"').replace(/"netns":"[^"]*"/g, '"netns":"-"')]),
  );
  for (let i = 0; i < 2; i++) {
    const del = await traced(env, host, pod, 'DEL', conf, opts);
    expect(del.run.code, del.run.stdout + del.run.stderr).toBe(0);
    expect(ipamExecs(del).length > 0).toBe(ipamExecs(add).length > 0);
  }
  expect(env.ipamReservations()).toEqual([]);
  return { add, records, docs };
}

/** The parts of a bridge result that do not depend on the namespaces (MACs, sandbox paths). */
function stable(result: any): unknown {
  return {
    cniVersion: result.cniVersion,
    ips: result.ips,
    routes: result.routes,
    dns: result.dns,
    interfaces: result.interfaces?.length,
    podIf: result.interfaces?.at(-1)?.name,
  };
}

describe('strand-bridge + strand-ipam in-process', () => {
  it('runs the IPAM in-process (no execve of strand-ipam) with the same result and records as the exec path', async () => {
    const inproc = await addOnce();
    expect(inproc.add.run.code, inproc.add.run.stdout + inproc.add.run.stderr).toBe(0);
    expect(inproc.add.execs.some((f) => f.endsWith('/strand-bridge'))).toBe(true);
    expect(ipamExecs(inproc.add)).toEqual([]);

    const exec = await addOnce({ extra: { STRAND_IPAM_EXEC: '1' } });
    expect(exec.add.run.code, exec.add.run.stdout + exec.add.run.stderr).toBe(0);
    expect(ipamExecs(exec.add)).toEqual([join(binDir, 'strand-ipam')]);

    expect(inproc.add.run.json.ips).toEqual([{ address: '10.77.0.2/24', gateway: '10.77.0.1', interface: 2 }]);
    expect(stable(inproc.add.run.json)).toEqual(stable(exec.add.run.json));
    expect(inproc.records).toEqual(exec.records);
    expect(inproc.records.length).toBe(1);
    expect(inproc.docs).toEqual(exec.docs);
  });

  it('execs a strand-ipam that is a different file (first on CNI_PATH), not the running executable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc-ipam-copy-'));
    dirs.push(dir);
    copyFileSync(join(binDir, 'strand-ipam'), join(dir, 'strand-ipam'));
    chmodSync(join(dir, 'strand-ipam'), 0o755);
    const copy = await addOnce({ path: `${dir}:${binDir}:${refBinDir}` });
    expect(copy.add.run.code, copy.add.run.stdout + copy.add.run.stderr).toBe(0);
    expect(ipamExecs(copy.add)).toEqual([join(dir, 'strand-ipam')]);
    expect(copy.add.run.json.ips).toEqual([{ address: '10.77.0.2/24', gateway: '10.77.0.1', interface: 2 }]);
  });

  it("an IPAM error comes back the same in-process and exec'd (code, msg, details), nothing left behind", async () => {
    // A requested address outside the range: strand-ipam refuses it.
    const bad = { args: 'IgnoreUnknown=1;IP=10.99.0.5' };
    const inproc = await addOnce(bad);
    const exec = await addOnce({ ...bad, extra: { STRAND_IPAM_EXEC: '1' } });
    expect(ipamExecs(inproc.add)).toEqual([]);
    expect(ipamExecs(exec.add).length).toBeGreaterThan(0);
    expect(inproc.add.run.code).toBe(1);
    expect(exec.add.run.code).toBe(1);
    expect(inproc.add.run.json.code).toBeGreaterThan(0);
    expect(inproc.add.run.json).toEqual(exec.add.run.json);
    expect(inproc.records).toEqual([]);
    expect(exec.records).toEqual([]);
  });

  it('with the etcd store in-process, the etcd client is closed: a delegating process exits promptly', async () => {
    // The bridge runs in its own host namespace, where the test's etcd (host loopback) is
    // out of reach; so a small program from source makes the same in-process delegation
    // (registered as cmd/main.ts does, opted in for a non-executable file) in the root
    // namespace, and must exit by itself once ADD and DEL returned.
    const etcd = await startEtcd();
    const dir = mkdtempSync(join(tmpdir(), 'sc-ipam-etcd-'));
    dirs.push(dir);
    try {
      writeFileSync(join(dir, 'strand-ipam'), '#!/bin/sh\nexit 99\n', { mode: 0o755 });
      const conf = {
        cniVersion: '1.1.0',
        name: NET,
        type: 'strand-bridge',
        ipam: {
          type: 'strand-ipam',
          ranges: [[{ subnet: '10.78.0.0/24' }]],
          etcd: { endpoints: etcd.endpoints, prefix: `/sc-inproc-${process.pid}`, dialTimeout: 2000, requestTimeout: 3000 },
        },
      };
      const script = join(dir, 'delegate.mjs');
      writeFileSync(
        script,
        `import { registerInProcess } from ${JSON.stringify(join(repoRoot, 'lib/cni/inprocess.ts'))};
import { delegateAdd, delegateDel } from ${JSON.stringify(join(repoRoot, 'lib/cni/invoke.ts'))};
registerInProcess('strand-ipam', { load: async () => (await import(${JSON.stringify(join(repoRoot, 'ipam/main.ts'))})).main, anyFile: true });
const a = { containerId: 'c-inproc', netns: '/run/netns/none', ifName: 'eth0', args: '', path: [${JSON.stringify(dir)}],
  stdinData: Buffer.from(process.argv[2]), env: { CNI_CONTAINERID: 'c-inproc', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: ${JSON.stringify(dir)}, K8S_NODE_NAME: 'sc-node' } };
const r = await delegateAdd('strand-ipam', a.stdinData, a);
await delegateDel('strand-ipam', a.stdinData, a);
process.stdout.write(JSON.stringify(r));
`,
      );
      const t0 = Date.now();
      const r = spawnSync(process.execPath, [script, JSON.stringify(conf)], { encoding: 'utf8', timeout: 20_000 });
      const took = Date.now() - t0;
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).ips[0].address).toBe('10.78.0.2/24'); // not the stub's exit 99: in-process
      // An etcd client (gRPC channel, timers) left open keeps the process alive for many seconds.
      expect(took).toBeLessThan(8000);
    } finally {
      await etcd.stop();
    }
  });
});
