// npm run bench:bridge [-- --cycles N] [-- --json]
//
// ADD and DEL wall time of strand-bridge against Debian's reference `bridge` (v1.1.1),
// both with the reference `host-local` IPAM, alternating in one run (which goes first
// flips every cycle) so both see the same machine load. Two configurations: a gateway
// bridge (isGateway) and the kind-style one (isGateway + ipMasq + hairpinMode, which
// adds the iptables work both implementations do). Everything happens in namespaces made
// here: one "host" namespace holding both bridges, one pod namespace per implementation
// (ADD then DEL each cycle). Plugins start through `nsenter --net=<host ns>` (setns +
// exec, same cost for both) under a wait4 wrapper that reports CPU time and peak RSS
// (of the plugin or its IPAM child, whichever is larger).
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
import { cleanupMeasured, emitBenchJson, fmtMs, machine, median, quantile, ratio, runMeasured, summarize, type Measured } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const STRAND = join(root, 'dist', 'bin', 'strand-bridge');
const REF = '/usr/lib/cni/bridge';
const HOST_LOCAL = '/usr/lib/cni/host-local';
const CNI_PATH = `${join(root, 'dist', 'bin')}:/usr/lib/cni`;
const GOAL = 1.5;

interface Impl {
  label: string;
  exe: string;
  type: string;
  podNs: string;
  bridge: string;
}

interface Scenario {
  name: string;
  opts: Record<string, unknown>;
}

const scenarios: Scenario[] = [
  { name: 'isGateway', opts: { isGateway: true } },
  { name: 'isGateway+ipMasq+hairpin', opts: { isGateway: true, ipMasq: true, hairpinMode: true } },
];

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function conf(impl: Impl, sc: Scenario, dataDir: string, subnet: string, brSuffix: string): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: `bench-${impl.type}`,
    type: impl.type,
    bridge: `${impl.bridge}${brSuffix}`,
    ...sc.opts,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
}

async function run(hostNs: string, exe: string, command: string, podNs: string, netconf: object, extraEnv: Record<string, string> = {}): Promise<Measured> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: `bench-${podNs}`,
    CNI_NETNS: `/run/netns/${podNs}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH,
    ...extraEnv,
  };
  const m = await runMeasured('nsenter', [`--net=/run/netns/${hostNs}`, exe], { env, input: JSON.stringify(netconf), timeoutMs: 60_000 });
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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { cycles: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const cycles = Number(values.cycles ?? 30);
  const warmup = 3;
  if (process.getuid?.() !== 0) throw new Error('bench:bridge needs root (network namespaces)');
  for (const f of [STRAND, REF, HOST_LOCAL]) if (!existsSync(f)) throw new Error(`missing ${f} (run npm run build / scripts/setup.sh)`);

  const p = `bb${randomBytes(2).toString('hex')}`;
  const hostNs = `${p}-host`;
  const tmp = mkdtempSync(join(tmpdir(), `${p}-`));
  const impls: Impl[] = [
    { label: 'reference bridge', exe: REF, type: 'bridge', podNs: `${p}-rpod`, bridge: `${p}-rbr` },
    { label: 'strand-bridge', exe: STRAND, type: 'strand-bridge', podNs: `${p}-spod`, bridge: `${p}-sbr` },
  ];
  const made: string[] = [];
  const results: Record<string, Record<string, Samples>> = {};
  const phases: Array<Record<string, { wall: number; cpu: number }>> = [];
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
    for (const [si, sc] of scenarios.entries()) {
      const per: Record<string, Samples> = {};
      for (const impl of impls) per[impl.label] = empty();
      const confs = impls.map((impl, k) => conf(impl, sc, join(tmp, `ipam-${si}-${k}`), `10.${100 + si}.${k}.0/24`, String(si)));
      for (let c = 0; c < cycles + warmup; c++) {
        const order = c % 2 === 0 ? [0, 1] : [1, 0];
        const adds: Measured[] = [];
        for (const k of order) adds[k] = await run(hostNs, impls[k]!.exe, 'ADD', impls[k]!.podNs, confs[k]!);
        const dels: Measured[] = [];
        for (const k of order) dels[k] = await run(hostNs, impls[k]!.exe, 'DEL', impls[k]!.podNs, confs[k]!);
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
  } finally {
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
  console.log(`bench:bridge — ${cycles} cycles per scenario after ${warmup} warm-up, alternating, load ${machine().loadavg.join(' ')}`);
  for (const [name, per] of Object.entries(results)) {
    const ref = per['reference bridge']!;
    const ours = per['strand-bridge']!;
    const row = (label: string, s: Samples): string =>
      `  ${label.padEnd(17)} ADD p50 ${fmtMs(median(s.add)).padStart(6)} p90 ${fmtMs(quantile(s.add, 0.9)).padStart(6)} ms | ` +
      `DEL p50 ${fmtMs(median(s.del)).padStart(6)} p90 ${fmtMs(quantile(s.del, 0.9)).padStart(6)} ms | ` +
      `ADD cpu p50 ${fmtMs(median(s.addCpu)).padStart(6)} ms | peak RSS ${(Math.max(...s.rssKb) / 1024).toFixed(1)} MiB`;
    console.log(`\n${name}`);
    console.log(row('reference bridge', ref));
    console.log(row('strand-bridge', ours));
    const addRatio = ratio(median(ours.add), median(ref.add));
    console.log(
      `  ratio strand/ref: ADD p50 ${addRatio} (goal <= ${GOAL}: ${addRatio <= GOAL ? 'met' : 'NOT met'}), ADD p90 ${ratio(quantile(ours.add, 0.9), quantile(ref.add, 0.9))}, ` +
        `DEL p50 ${ratio(median(ours.del), median(ref.del))}, DEL p90 ${ratio(quantile(ours.del, 0.9), quantile(ref.del, 0.9))}, ` +
        `peak RSS ${ratio(Math.max(...ours.rssKb), Math.max(...ref.rssKb))}`,
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
      ratio: { addP50: addRatio, addP90: ratio(quantile(ours.add, 0.9), quantile(ref.add, 0.9)), delP50: ratio(median(ours.del), median(ref.del)) },
    };
  }
  const phaseMedians: Record<string, { wall: number; cpu: number }> = {};
  for (const k of Object.keys(phases[0] ?? {})) {
    const med = (f: 'wall' | 'cpu'): number => Number(median(phases.map((p) => p[k]?.[f] ?? 0)).toFixed(2));
    phaseMedians[k] = { wall: med('wall'), cpu: med('cpu') };
  }
  console.log('\nwhere strand-bridge ADD time goes (isGateway, medians of 10):');
  console.log(`  process start (VERSION, no netns work): ${fmtMs(median(startup))} ms wall, ${fmtMs(median(startupCpu))} ms cpu`);
  console.log(`  host-local ADD run alone (the delegate both plugins exec): ${fmtMs(median(ipamAlone))} ms wall, ${fmtMs(median(ipamCpu))} ms cpu`);
  console.log('  strand phases, wall/cpu ms since the previous mark (start = process start to the ADD handler):');
  for (const [k, v] of Object.entries(phaseMedians)) console.log(`    ${k.padEnd(8)} ${fmtMs(v.wall).padStart(7)} wall ${fmtMs(v.cpu).padStart(7)} cpu`);
  out['breakdown'] = {
    startupMs: summarize(startup),
    startupCpuMs: summarize(startupCpu),
    hostLocalAddMs: summarize(ipamAlone),
    hostLocalCpuMs: summarize(ipamCpu),
    strandPhasesMs: phaseMedians,
  };
  emitBenchJson(out as { bench: string });
  if (values.json) console.log(JSON.stringify(out));
}

await main();
