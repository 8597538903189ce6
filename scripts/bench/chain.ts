// npm run bench:chain [-- --cycles N] [-- --json]
//
// The DaemonSet's default chain against the Go reference chain, alternating in one run
// (which goes first flips every cycle) so both see the same machine load:
//   strand:    strand-bridge (isGateway, isDefaultGateway, ipMasq, hairpinMode) with
//              strand-ipam (local store), then strand-portmap with one port mapping
//   reference: bridge with host-local, then portmap, same options and mapping
//   daemon:    strand's chain through the shims of dist/shim and a `strand daemon` in
//              the host namespace (as a node's DaemonSet runs it)
// A chain ADD is what a runtime does for a pod: the interface plugin's ADD, then
// portmap's ADD with its result as prevResult; a chain DEL runs them in reverse. Times
// are of the whole chain seen from here (every plugin process, one after the other, as
// libcni runs them); CPU is the sum over the chain's processes (delegates included),
// RSS the largest of them. Everything happens in namespaces made here: one "host"
// namespace with both bridges, one pod namespace per implementation.
//
// Implementations are rows of IMPLS: another column (strand through the daemon of #13,
// say) is one more entry with its own `key`, plugin executables and environment; the
// result carries one object per key, as bench:bridge does for strand and reference.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
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
const DIST = join(root, 'dist', 'bin');
const REF = '/usr/lib/cni';
const CNI_PATH = `${DIST}:${REF}`;

/** The interface plugin's options of the DaemonSet's conflist (manifests/strand.yaml). */
const BRIDGE_OPTS = { isGateway: true, isDefaultGateway: true, ipMasq: true, hairpinMode: true };

interface ChainImpl {
  /** Key of this implementation's object in the result ("strand", "reference", ...). */
  key: string;
  label: string;
  /** The interface plugin (executable, type) and its IPAM type. */
  main: { exe: string; type: string; ipam: string };
  portmap: { exe: string; type: string };
  /** Extra environment for every plugin process of this chain. */
  env?: Record<string, string>;
  /** CNI_PATH of this chain (default: dist/bin, then the reference plugins). */
  cniPath?: string;
}

const IMPLS: ChainImpl[] = [
  {
    key: 'reference',
    label: 'reference bridge + host-local + portmap',
    main: { exe: join(REF, 'bridge'), type: 'bridge', ipam: 'host-local' },
    portmap: { exe: join(REF, 'portmap'), type: 'portmap' },
  },
  {
    key: 'strand',
    label: 'strand-bridge + strand-ipam + strand-portmap',
    main: { exe: join(DIST, 'strand-bridge'), type: 'strand-bridge', ipam: 'strand-ipam' },
    portmap: { exe: join(DIST, 'strand-portmap'), type: 'strand-portmap' },
  },
  {
    key: 'daemon',
    label: 'the same through strand daemon (shims)',
    main: { exe: join(SHIM_DIR, 'strand-bridge'), type: 'strand-bridge', ipam: 'strand-ipam' },
    portmap: { exe: join(SHIM_DIR, 'strand-portmap'), type: 'strand-portmap' },
    cniPath: `${SHIM_DIR}:${REF}`,
  },
];

interface Ctx {
  hostNs: string;
  podNs: string;
  containerId: string;
  net: string;
  bridge: string;
  dataDir: string;
  subnet: string;
  hostPort: number;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function mainConf(impl: ChainImpl, c: Ctx): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: c.net,
    type: impl.main.type,
    bridge: c.bridge,
    ...BRIDGE_OPTS,
    ipam: { type: impl.main.ipam, dataDir: c.dataDir, ranges: [[{ subnet: c.subnet }]] },
  };
}

function portmapConf(impl: ChainImpl, c: Ctx, prevResult?: unknown): Record<string, unknown> {
  const conf: Record<string, unknown> = {
    cniVersion: '1.0.0',
    name: c.net,
    type: impl.portmap.type,
    capabilities: { portMappings: true },
    runtimeConfig: { portMappings: [{ hostPort: c.hostPort, containerPort: 80, protocol: 'tcp' }] },
  };
  if (prevResult !== undefined) conf['prevResult'] = prevResult;
  return conf;
}

async function plugin(impl: ChainImpl, c: Ctx, exe: string, command: string, conf: object): Promise<Measured> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: c.containerId,
    CNI_NETNS: `/run/netns/${c.podNs}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH: impl.cniPath ?? CNI_PATH,
    ...impl.env,
  };
  const m = await runMeasured(exe, [], { env, input: JSON.stringify(conf), timeoutMs: 60_000, netns: `/run/netns/${c.hostNs}` });
  if (m.code !== 0) throw new Error(`${exe} ${command}: exit ${m.code}: ${m.stdout} ${m.stderr}`);
  return m;
}

interface Run {
  wallMs: number;
  cpuMs: number;
  maxRssKb: number;
}

/** ADD of the chain as a runtime runs it: the interface plugin, then portmap with its result. */
async function chainAdd(impl: ChainImpl, c: Ctx): Promise<{ run: Run; result: unknown }> {
  const t0 = performance.now();
  const a = await plugin(impl, c, impl.main.exe, 'ADD', mainConf(impl, c));
  const result: unknown = JSON.parse(a.stdout);
  const p = await plugin(impl, c, impl.portmap.exe, 'ADD', portmapConf(impl, c, result));
  return { run: { wallMs: performance.now() - t0, cpuMs: a.cpuMs + p.cpuMs, maxRssKb: Math.max(a.maxRssKb, p.maxRssKb) }, result: JSON.parse(p.stdout) };
}

/** DEL of the chain: portmap first, then the interface plugin (libcni's reverse order), each with the cached result. */
async function chainDel(impl: ChainImpl, c: Ctx, result: unknown): Promise<Run> {
  const t0 = performance.now();
  const p = await plugin(impl, c, impl.portmap.exe, 'DEL', portmapConf(impl, c, result));
  const a = await plugin(impl, c, impl.main.exe, 'DEL', { ...mainConf(impl, c), prevResult: result });
  return { wallMs: performance.now() - t0, cpuMs: a.cpuMs + p.cpuMs, maxRssKb: Math.max(a.maxRssKb, p.maxRssKb) };
}

interface Samples {
  add: number[];
  del: number[];
  addCpu: number[];
  rssKb: number[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { cycles: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const cycles = Number(values.cycles ?? 30);
  const warmup = 3;
  if (process.getuid?.() !== 0) throw new Error('bench:chain needs root (network namespaces)');
  for (const i of IMPLS)
    for (const f of [i.main.exe, i.portmap.exe]) if (!existsSync(f)) throw new Error(`missing ${f} (run npm run build / scripts/setup.sh)`);

  const p = `bc${randomBytes(2).toString('hex')}`;
  const hostNs = `${p}-host`;
  const tmp = mkdtempSync(join(tmpdir(), `${p}-`));
  const ctxs: Ctx[] = IMPLS.map((impl, k) => ({
    hostNs,
    podNs: `${p}-pod${k}`,
    containerId: `bench-chain-${k}`,
    net: `bench-chain-${impl.key}`,
    bridge: `${p}-br${k}`,
    dataDir: join(tmp, `ipam-${k}`),
    subnet: `10.${120 + k}.0.0/24`,
    hostPort: 34800 + k,
  }));
  const made: string[] = [];
  const per: Record<string, Samples> = Object.fromEntries(IMPLS.map((i) => [i.key, { add: [], del: [], addCpu: [], rssKb: [] }]));
  let daemon: BenchDaemon | undefined;
  try {
    for (const ns of [hostNs, ...ctxs.map((c) => c.podNs)]) {
      ip(['netns', 'add', ns]);
      made.push(ns);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    daemon = await BenchDaemon.start(hostNs);
    IMPLS.find((i) => i.key === 'daemon')!.env = daemon.env();
    for (let cycle = 0; cycle < cycles + warmup; cycle++) {
      const order = IMPLS.map((_, k) => (k + cycle) % IMPLS.length);
      const adds: Array<{ run: Run; result: unknown }> = [];
      for (const k of order) adds[k] = await chainAdd(IMPLS[k]!, ctxs[k]!);
      const dels: Run[] = [];
      for (const k of order) dels[k] = await chainDel(IMPLS[k]!, ctxs[k]!, adds[k]!.result);
      if (cycle < warmup) continue;
      for (const [k, impl] of IMPLS.entries()) {
        const s = per[impl.key]!;
        s.add.push(adds[k]!.run.wallMs);
        s.del.push(dels[k]!.wallMs);
        s.addCpu.push(adds[k]!.run.cpuMs);
        s.rssKb.push(adds[k]!.run.maxRssKb, dels[k]!.maxRssKb);
      }
    }
  } finally {
    await daemon?.stop();
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

  const m = machine();
  console.log(
    `bench:chain — the DaemonSet's default chain vs the reference chain, ${cycles} cycles after ${warmup} warm-up, alternating, load ${m.loadavg.join(' ')}`,
  );
  const sc: Record<string, unknown> = {};
  for (const impl of IMPLS) {
    const s = per[impl.key]!;
    console.log(
      `  ${impl.label.padEnd(46)} ADD p50 ${fmtMs(median(s.add)).padStart(6)} p90 ${fmtMs(quantile(s.add, 0.9)).padStart(6)} ms | ` +
        `DEL p50 ${fmtMs(median(s.del)).padStart(6)} ms | ADD cpu p50 ${fmtMs(median(s.addCpu)).padStart(6)} ms | peak RSS ${(Math.max(...s.rssKb) / 1024).toFixed(1)} MiB`,
    );
    sc[impl.key] = {
      label: impl.label,
      add: summarize(s.add),
      del: summarize(s.del),
      addCpu: summarize(s.addCpu),
      peakRssKb: Math.max(...s.rssKb),
      samples: { add: s.add, del: s.del },
    };
  }
  const ref = per['reference']!;
  const ratios: Record<string, Record<string, number>> = {};
  for (const impl of IMPLS) {
    if (impl.key === 'reference') continue;
    const s = per[impl.key]!;
    ratios[impl.key] = {
      addP50: ratio(median(s.add), median(ref.add)),
      delP50: ratio(median(s.del), median(ref.del)),
      addCpuP50: ratio(median(s.addCpu), median(ref.addCpu)),
    };
    console.log(
      `  ratio ${impl.key}/reference: ADD p50 ${ratios[impl.key]!['addP50']}, DEL p50 ${ratios[impl.key]!['delP50']}, ADD CPU p50 ${ratios[impl.key]!['addCpuP50']}`,
    );
  }
  sc['ratio'] = ratios;
  const out = { bench: 'chain', cycles, machine: m, scenarios: { 'default chain': sc } };
  emitBenchJson(out);
  if (values.json) console.log(JSON.stringify(out));
}

await main();
