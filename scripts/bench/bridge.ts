// npm run bench:bridge [-- --cycles N] [-- --json]
//
// ADD and DEL wall time of strand-bridge against Debian's reference `bridge` (v1.1.1),
// both with the reference `host-local` IPAM, alternating in one run (the order rotates
// every cycle) so all see the same machine load. Three columns: the reference, strand's
// standalone executable (dist/bin), and strand through the daemon (the shim in
// dist/shim, served by a `strand daemon` running in the host namespace, as a node's
// DaemonSet daemon shares the node's). Configurations: a gateway bridge (isGateway),
// the kind-style one (isGateway + ipMasq + hairpinMode, which adds the iptables work
// both implementations do), and isGateway with strand-ipam on etcd (an etcd in the host
// namespace) for strand's columns. Everything happens in namespaces made here: one
// "host" namespace holding the bridges, one pod namespace per column (ADD then DEL each
// cycle). Plugins start in the host namespace under a wait4 wrapper that enters it
// itself (setns + exec, same cost for all) and reports CPU time and peak RSS (of the
// plugin or its IPAM child, whichever is larger: for the shim, the shim's own); the
// daemon's CPU time and resident size are read from /proc around its column.
//
// Then "where the time goes" for strand: process start (VERSION), the host-local
// delegate run alone, and strand's own ADD phases (debug log of cni/bridge/add.ts).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startEtcdInNetns } from '../../test/helpers/containerd.ts';
import { freePort } from '../../test/helpers/etcd.ts';
import {
  BenchDaemon,
  cleanupMeasured,
  emitBenchJson,
  fmtMs,
  machine,
  median,
  quantile,
  ratio,
  runMeasured,
  SHIM_DIR,
  summarize,
  type Measured,
} from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const STRAND = join(root, 'dist', 'bin', 'strand-bridge');
const REF = '/usr/lib/cni/bridge';
const HOST_LOCAL = '/usr/lib/cni/host-local';
const SHIM = join(SHIM_DIR, 'strand-bridge');
const CNI_PATH = `${join(root, 'dist', 'bin')}:/usr/lib/cni`;
const DAEMON_CNI_PATH = `${SHIM_DIR}:/usr/lib/cni`;
const GOAL = 1.5;
/** Issue 13's goals for the daemon column, against the reference in the same run. */
const DAEMON_GOAL = { add: 0.6, del: 0.6, etcdAdd: 1.0, rssMiB: 2 };

interface Impl {
  key: 'reference' | 'strand' | 'daemon';
  label: string;
  exe: string;
  type: string;
  podNs: string;
  bridge: string;
  cniPath: string;
}

interface Scenario {
  name: string;
  opts: Record<string, unknown>;
  /** strand's columns use strand-ipam on etcd instead of host-local (the reference keeps host-local). */
  etcd?: boolean;
}

const scenarios: Scenario[] = [
  { name: 'isGateway', opts: { isGateway: true } },
  { name: 'isGateway+ipMasq+hairpin', opts: { isGateway: true, ipMasq: true, hairpinMode: true } },
  { name: 'isGateway, strand-ipam on etcd', opts: { isGateway: true }, etcd: true },
];

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * The network of a column: the reference and the standalone column with host-local (as
 * before the daemon); the daemon column with strand-ipam in-process on its local store
 * (how a node runs it: the comparison, "in-process strand-ipam against the Go
 * bridge + host-local"); strand's columns on etcd in the etcd scenario.
 */
function conf(impl: Impl, sc: Scenario, dataDir: string, subnet: string, brSuffix: string, etcd?: string): Record<string, unknown> {
  const routes = [{ dst: '0.0.0.0/0' }];
  const ipam =
    sc.etcd && impl.key !== 'reference'
      ? { type: 'strand-ipam', ranges: [[{ subnet }]], routes, etcd: { endpoints: [etcd], prefix: `/bench/${impl.key}` } }
      : impl.key === 'daemon'
        ? { type: 'strand-ipam', dataDir, ranges: [[{ subnet }]], routes }
        : { type: 'host-local', dataDir, ranges: [[{ subnet }]], routes };
  return { cniVersion: '1.0.0', name: `bench-${impl.key}`, type: impl.type, bridge: `${impl.bridge}${brSuffix}`, ...sc.opts, ipam };
}

async function run(
  hostNs: string,
  exe: string,
  command: string,
  podNs: string,
  netconf: object,
  extraEnv: Record<string, string> = {},
  cniPath = CNI_PATH,
): Promise<Measured> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: `bench-${podNs}`,
    CNI_NETNS: `/run/netns/${podNs}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH: cniPath,
    ...extraEnv,
  };
  const m = await runMeasured(exe, [], { env, input: JSON.stringify(netconf), timeoutMs: 60_000, netns: `/run/netns/${hostNs}` });
  if (m.code !== 0) throw new Error(`${exe} ${command}: exit ${m.code}: ${m.stdout} ${m.stderr}`);
  return m;
}

interface Samples {
  add: number[];
  del: number[];
  addCpu: number[];
  rssKb: number[];
}

const empty = (): Samples => ({ add: [], del: [], addCpu: [], rssKb: [] });

/** Medians of each phase over the runs' phase records. */
function medianPhases(runs: Array<Record<string, { wall: number; cpu: number }>>): Record<string, { wall: number; cpu: number }> {
  const out: Record<string, { wall: number; cpu: number }> = {};
  for (const k of Object.keys(runs[0] ?? {})) {
    const med = (f: 'wall' | 'cpu'): number => Number(median(runs.map((p) => p[k]?.[f] ?? 0)).toFixed(2));
    out[k] = { wall: med('wall'), cpu: med('cpu') };
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { cycles: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const cycles = Number(values.cycles ?? 30);
  const warmup = 3;
  if (process.getuid?.() !== 0) throw new Error('bench:bridge needs root (network namespaces)');
  for (const f of [STRAND, SHIM, REF, HOST_LOCAL]) if (!existsSync(f)) throw new Error(`missing ${f} (run npm run build / scripts/setup.sh)`);

  const p = `bb${randomBytes(2).toString('hex')}`;
  const hostNs = `${p}-host`;
  const tmp = mkdtempSync(join(tmpdir(), `${p}-`));
  const impls: Impl[] = [
    { key: 'reference', label: 'reference bridge', exe: REF, type: 'bridge', podNs: `${p}-rpod`, bridge: `${p}-rbr`, cniPath: CNI_PATH },
    { key: 'strand', label: 'strand-bridge', exe: STRAND, type: 'strand-bridge', podNs: `${p}-spod`, bridge: `${p}-sbr`, cniPath: CNI_PATH },
    { key: 'daemon', label: 'strand via daemon', exe: SHIM, type: 'strand-bridge', podNs: `${p}-dpod`, bridge: `${p}-dbr`, cniPath: DAEMON_CNI_PATH },
  ];
  let daemon: BenchDaemon | undefined;
  let etcd: Awaited<ReturnType<typeof startEtcdInNetns>> | undefined;
  const daemonUse = { cpuMs: 0, requests: 0, rssKb: 0, hwmKb: 0 };
  const made: string[] = [];
  const results: Record<string, Record<string, Samples>> = {};
  const phases: Array<Record<string, { wall: number; cpu: number }>> = [];
  const daemonPhases: Array<Record<string, { wall: number; cpu: number }>> = [];
  const startup: number[] = [];
  const startupCpu: number[] = [];
  const ipamAlone: number[] = [];
  const ipamCpu: number[] = [];
  try {
    for (const ns of [hostNs, ...impls.map((i) => i.podNs)]) {
      ip(['netns', 'add', ns]);
      made.push(ns);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    daemon = await BenchDaemon.start(hostNs);
    etcd = await startEtcdInNetns(hostNs, join(tmp, 'etcd'), await freePort(), await freePort());
    for (const [si, sc] of scenarios.entries()) {
      const per: Record<string, Samples> = {};
      for (const impl of impls) per[impl.label] = empty();
      const confs = impls.map((impl, k) => conf(impl, sc, join(tmp, `ipam-${si}-${k}`), `10.${100 + si}.${k}.0/24`, String(si), etcd?.endpoint));
      const call = async (k: number, verb: string): Promise<Measured> => {
        const impl = impls[k]!;
        if (impl.key !== 'daemon') return run(hostNs, impl.exe, verb, impl.podNs, confs[k]!, {}, impl.cniPath);
        const before = daemon!.usage();
        const m = await run(hostNs, impl.exe, verb, impl.podNs, confs[k]!, daemon!.env(), impl.cniPath);
        const after = daemon!.usage();
        daemonUse.cpuMs += after.cpuMs - before.cpuMs;
        daemonUse.requests++;
        return m;
      };
      for (let c = 0; c < cycles + warmup; c++) {
        const order = [0, 1, 2].map((i) => (i + c) % 3);
        const adds: Measured[] = [];
        for (const k of order) adds[k] = await call(k, 'ADD');
        const dels: Measured[] = [];
        for (const k of order) dels[k] = await call(k, 'DEL');
        if (c < warmup) continue;
        for (const [k, impl] of impls.entries()) {
          const s = per[impl.label]!;
          s.add.push(adds[k]!.wallMs);
          s.del.push(dels[k]!.wallMs);
          s.addCpu.push(adds[k]!.cpuMs);
          s.rssKb.push(adds[k]!.maxRssKb, dels[k]!.maxRssKb);
        }
      }
      results[sc.name] = per;
    }

    // Where strand's ADD time goes: process start floor, the IPAM delegate alone, and
    // strand's own phases from its debug log (same host namespace, first scenario).
    const sc = scenarios[0]!;
    const strandImpl = impls[1]!;
    const sconf = conf(strandImpl, sc, join(tmp, 'ipam-phases'), '10.99.0.0/24', 'x');
    const ipamConf = { ...sconf, type: 'host-local' };
    for (let i = 0; i < 10; i++) {
      const v = await runMeasured(STRAND, [], { env: { CNI_COMMAND: 'VERSION', PATH: process.env['PATH'] ?? '' }, input: '{}' });
      startup.push(v.wallMs);
      startupCpu.push(v.cpuMs);
      const ia = await run(hostNs, HOST_LOCAL, 'ADD', strandImpl.podNs, { ...ipamConf, ipam: (sconf as { ipam: object }).ipam });
      ipamAlone.push(ia.wallMs);
      ipamCpu.push(ia.cpuMs);
      await run(hostNs, HOST_LOCAL, 'DEL', strandImpl.podNs, { ...ipamConf, ipam: (sconf as { ipam: object }).ipam });
      const a = await run(hostNs, STRAND, 'ADD', strandImpl.podNs, sconf, { STRAND_LOG_LEVEL: 'debug' });
      const line = a.stderr.split('\n').find((l) => l.includes('ADD phases (ms)'));
      if (line) phases.push(JSON.parse(line.slice(line.indexOf('{'))) as Record<string, { wall: number; cpu: number }>);
      await run(hostNs, STRAND, 'DEL', strandImpl.podNs, sconf);
    }
    // The same phases through the daemon (strand-ipam in-process, as its column runs).
    const dImpl = impls[2]!;
    const dconf = conf(dImpl, sc, join(tmp, 'ipam-phases-daemon'), '10.98.0.0/24', 'x');
    for (let i = 0; i < 10; i++) {
      const a = await run(hostNs, SHIM, 'ADD', dImpl.podNs, dconf, { ...daemon.env(), STRAND_LOG_LEVEL: 'debug' }, dImpl.cniPath);
      const line = a.stderr.split('\n').find((l) => l.includes('ADD phases (ms)'));
      if (line) daemonPhases.push(JSON.parse(line.slice(line.indexOf('{'))) as Record<string, { wall: number; cpu: number }>);
      await run(hostNs, SHIM, 'DEL', dImpl.podNs, dconf, daemon.env(), dImpl.cniPath);
    }
  } finally {
    if (daemon) {
      const u = daemon.usage();
      daemonUse.rssKb = u.rssKb;
      daemonUse.hwmKb = u.hwmKb;
      await daemon.stop();
    }
    await etcd?.stop();
    for (const ns of made.reverse()) {
      try {
        ip(['netns', 'del', ns]);
      } catch {
        // gone
      }
    }
    rmSync(tmp, { recursive: true, force: true });
    cleanupMeasured();
  }

  const out: Record<string, unknown> = { bench: 'bridge', cycles, machine: machine(), scenarios: {} };
  const perRequest = daemonUse.requests ? daemonUse.cpuMs / daemonUse.requests : Number.NaN;
  out['daemonProcess'] = { requests: daemonUse.requests, cpuMsPerRequest: Number(perRequest.toFixed(3)), rssKb: daemonUse.rssKb, peakRssKb: daemonUse.hwmKb };
  console.log(`bench:bridge — ${cycles} cycles per scenario after ${warmup} warm-up, alternating, load ${machine().loadavg.join(' ')}`);
  for (const [name, per] of Object.entries(results)) {
    const ref = per['reference bridge']!;
    const ours = per['strand-bridge']!;
    const viaDaemon = per['strand via daemon']!;
    const row = (label: string, s: Samples): string =>
      `  ${label.padEnd(17)} ADD p50 ${fmtMs(median(s.add)).padStart(6)} p90 ${fmtMs(quantile(s.add, 0.9)).padStart(6)} ms | ` +
      `DEL p50 ${fmtMs(median(s.del)).padStart(6)} p90 ${fmtMs(quantile(s.del, 0.9)).padStart(6)} ms | ` +
      `ADD cpu p50 ${fmtMs(median(s.addCpu)).padStart(6)} ms | peak RSS ${(Math.max(...s.rssKb) / 1024).toFixed(2)} MiB`;
    console.log(`\n${name}${name.includes('etcd') ? '' : ' (the daemon column: strand-ipam in-process, local store)'}`);
    console.log(row('reference bridge', ref));
    console.log(row('strand-bridge', ours));
    console.log(row('strand via daemon', viaDaemon));
    const addRatio = ratio(median(ours.add), median(ref.add));
    console.log(
      `  ratio strand/ref: ADD p50 ${addRatio} (goal <= ${GOAL}: ${addRatio <= GOAL ? 'met' : 'NOT met'}), ADD p90 ${ratio(quantile(ours.add, 0.9), quantile(ref.add, 0.9))}, ` +
        `DEL p50 ${ratio(median(ours.del), median(ref.del))}, DEL p90 ${ratio(quantile(ours.del, 0.9), quantile(ref.del, 0.9))}, ` +
        `peak RSS ${ratio(Math.max(...ours.rssKb), Math.max(...ref.rssKb))}`,
    );
    const dAdd = ratio(median(viaDaemon.add), median(ref.add));
    const dDel = ratio(median(viaDaemon.del), median(ref.del));
    const addGoal = name.includes('etcd') ? DAEMON_GOAL.etcdAdd : DAEMON_GOAL.add;
    const rssMiB = Math.max(...viaDaemon.rssKb) / 1024;
    console.log(
      `  ratio daemon/ref:  ADD p50 ${dAdd} (goal <= ${addGoal}: ${dAdd <= addGoal ? 'met' : 'NOT met'}), DEL p50 ${dDel} (goal <= ${DAEMON_GOAL.del}: ${dDel <= DAEMON_GOAL.del ? 'met' : 'NOT met'}), ` +
        `peak RSS per call ${rssMiB.toFixed(2)} MiB (goal <= ${DAEMON_GOAL.rssMiB}: ${rssMiB <= DAEMON_GOAL.rssMiB ? 'met' : 'NOT met'})`,
    );
    (out['scenarios'] as Record<string, unknown>)[name] = {
      reference: {
        add: summarize(ref.add),
        del: summarize(ref.del),
        addCpu: summarize(ref.addCpu),
        peakRssKb: Math.max(...ref.rssKb),
        samples: { add: ref.add, del: ref.del },
      },
      strand: {
        add: summarize(ours.add),
        del: summarize(ours.del),
        addCpu: summarize(ours.addCpu),
        peakRssKb: Math.max(...ours.rssKb),
        samples: { add: ours.add, del: ours.del },
      },
      daemon: {
        add: summarize(viaDaemon.add),
        del: summarize(viaDaemon.del),
        addCpu: summarize(viaDaemon.addCpu),
        peakRssKb: Math.max(...viaDaemon.rssKb),
        samples: { add: viaDaemon.add, del: viaDaemon.del },
      },
      ratio: { addP50: addRatio, addP90: ratio(quantile(ours.add, 0.9), quantile(ref.add, 0.9)), delP50: ratio(median(ours.del), median(ref.del)) },
      daemonRatio: { addP50: dAdd, delP50: dDel, addP90: ratio(quantile(viaDaemon.add, 0.9), quantile(ref.add, 0.9)) },
    };
  }
  const phaseMedians = medianPhases(phases);
  const daemonPhaseMedians = medianPhases(daemonPhases);
  console.log(
    `\nstrand daemon: ${daemonUse.requests} requests, ${fmtMs(perRequest)} ms CPU per request (including warm-up), RSS ${(daemonUse.rssKb / 1024).toFixed(0)} MiB (peak ${(daemonUse.hwmKb / 1024).toFixed(0)} MiB)`,
  );
  console.log('\nwhere strand-bridge ADD time goes (isGateway, medians of 10):');
  console.log(`  process start (VERSION, no netns work): ${fmtMs(median(startup))} ms wall, ${fmtMs(median(startupCpu))} ms cpu`);
  console.log(`  host-local ADD run alone (the delegate both plugins exec): ${fmtMs(median(ipamAlone))} ms wall, ${fmtMs(median(ipamCpu))} ms cpu`);
  console.log('  strand phases, wall/cpu ms since the previous mark (start = process start to the ADD handler):');
  for (const [k, v] of Object.entries(phaseMedians)) console.log(`    ${k.padEnd(8)} ${fmtMs(v.wall).padStart(7)} wall ${fmtMs(v.cpu).padStart(7)} cpu`);
  console.log('  the same through the daemon (strand-ipam in-process; start = request received to the ADD handler):');
  for (const [k, v] of Object.entries(daemonPhaseMedians)) console.log(`    ${k.padEnd(8)} ${fmtMs(v.wall).padStart(7)} wall ${fmtMs(v.cpu).padStart(7)} cpu`);
  out['breakdown'] = {
    startupMs: summarize(startup),
    startupCpuMs: summarize(startupCpu),
    hostLocalAddMs: summarize(ipamAlone),
    hostLocalCpuMs: summarize(ipamCpu),
    strandPhasesMs: phaseMedians,
    daemonPhasesMs: daemonPhaseMedians,
  };
  emitBenchJson(out as { bench: string });
  if (values.json) console.log(JSON.stringify(out));
}

await main();
