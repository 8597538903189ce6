// A burst of CNI calls run in-process through the plugin's own pluginMain (what a resident
// daemon does with concurrent requests), while perf_hooks measures the event-loop delay.
// It runs as a process of its own inside a "node" network namespace, so the bridge and
// host veths live there and never on the machine:
//
//   nsenter --net=/run/netns/<node> <pinned node> test/helpers/burst.ts '<BurstSpec JSON>'
//
// and prints one BurstReport (JSON) on stdout. Each phase runs N concurrent calls of one
// command (ADD or DEL), one pod namespace per call; strand-ipam runs in-process too (from
// source, registered with anyFile). Before the first phase the loop's delay is measured
// while idle, under the same machine load, as a control. Used by
// test/integration/bridge/burst.test.ts and `npm run bench:burst`.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { registerInProcess } from '../../lib/cni/inprocess.ts';
import type { PluginIO } from '../../lib/cni/skel.ts';

export interface BurstSpec {
  plugin: 'strand-bridge';
  /** Network config (stdin of every call). */
  conf: Record<string, unknown>;
  /** Pod network namespace paths, one per concurrent call. */
  netns: string[];
  /** CNI_PATH (must hold a file named strand-ipam; it runs in-process). */
  cniPath: string;
  /** CNI_CONTAINERID of call i: `${idPrefix}-${i}`. */
  idPrefix: string;
  /** The phases, in order (e.g. ADD, DEL, ADD, DEL). */
  commands: Array<'ADD' | 'DEL'>;
  /** Idle time measured as the control before the first phase. */
  controlMs: number;
  /**
   * A pod namespace for one ADD and DEL before anything is measured, as a resident
   * process would have served earlier requests: module loading and compilation (from
   * TypeScript source here) are start-up costs, not event-loop blocking by a request.
   */
  warmupNetns: string;
}

export interface LoopDelay {
  /** Milliseconds. */
  max: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  samples: number;
}

interface PhaseReport {
  command: 'ADD' | 'DEL';
  /** process.hrtime at the start and end, microseconds (to line up with a --cpu-prof profile). */
  startUs: number;
  endUs: number;
  wallMs: number;
  /** Per call: wall milliseconds, exit code, stdout. */
  calls: Array<{ ms: number; code: number; stdout: string; stderr: string }>;
  loop: LoopDelay;
}

export interface BurstReport {
  control: LoopDelay;
  phases: PhaseReport[];
}

function loopDelay(h: ReturnType<typeof monitorEventLoopDelay>): LoopDelay {
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  return { max: ms(h.max), p50: ms(h.percentile(50)), p90: ms(h.percentile(90)), p99: ms(h.percentile(99)), mean: ms(h.mean), samples: h.count };
}

async function call(
  main: (io: PluginIO) => Promise<number>,
  spec: BurstSpec,
  command: 'ADD' | 'DEL',
  netns: string,
  id: string,
): Promise<PhaseReport['calls'][number]> {
  let stdout = '';
  let stderr = '';
  const stdin = Buffer.from(JSON.stringify(spec.conf));
  const io: PluginIO = {
    env: { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: spec.cniPath, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    stdin: async () => stdin,
    stdout: {
      write: (s) => {
        stdout += s;
      },
    },
    stderr: {
      write: (s) => {
        stderr += s;
      },
    },
  };
  const t0 = performance.now();
  const code = await main(io);
  return { ms: performance.now() - t0, code, stdout, stderr };
}

async function phase(main: (io: PluginIO) => Promise<number>, spec: BurstSpec, command: 'ADD' | 'DEL'): Promise<PhaseReport> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const startUs = Number(process.hrtime.bigint() / 1000n);
  const t0 = performance.now();
  const calls = await Promise.all(spec.netns.map((ns, i) => call(main, spec, command, ns, `${spec.idPrefix}-${i}`)));
  const wallMs = performance.now() - t0;
  h.disable();
  return { command, startUs, endUs: Number(process.hrtime.bigint() / 1000n), wallMs, calls, loop: loopDelay(h) };
}

export async function runBurst(spec: BurstSpec): Promise<BurstReport> {
  registerInProcess('strand-ipam', { load: async () => (await import('../../ipam/main.ts')).main, anyFile: true });
  const { main } = await import('../../cni/bridge/main.ts');
  for (const command of ['ADD', 'DEL'] as const) {
    const r = await call(main, spec, command, spec.warmupNetns, `${spec.idPrefix}-warmup`);
    if (r.code !== 0) throw new Error(`warm-up ${command} failed: ${r.stdout} ${r.stderr}`);
  }
  const control = monitorEventLoopDelay({ resolution: 1 });
  control.enable();
  await new Promise((r) => setTimeout(r, spec.controlMs));
  control.disable();
  const report: BurstReport = { control: loopDelay(control), phases: [] };
  for (const command of spec.commands) report.phases.push(await phase(main, spec, command));
  return report;
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? '') as BurstSpec;
  const report = await runBurst(spec);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
