// npm run bench:churn [-- --pods N] [-- --rounds R] [-- --json]      (root)
//
// Pod churn on one node: N (default 50) concurrent ADDs, then N concurrent DELs, of a
// bridge + IPAM network, strand-bridge + strand-ipam (local store) against the reference
// bridge + host-local, from their executables exactly as a runtime calls them: strand's
// standalone executable, and strand through the daemon (the shims of dist/shim and a
// `strand daemon` in the node namespace). Each round runs the subjects one after the
// other (the order rotates), so all see the same machine load. At the end, the kernel's
// own floor for the DEL phase: N veth pairs deleted by one `ip -batch` (RTM_DELLINK is
// serialized by the kernel's RTNL lock, whoever sends it).
//
// Everything happens inside a "node" network namespace made here (the plugins are started
// in it by the measuring wrapper, so the bridges live there, never on the host) and N pod
// namespaces. Every invocation runs under the wait4 wrapper of lib.ts: its CPU time
// (user + system, including the IPAM delegate it waits for) and peak RSS (the larger of
// plugin and delegate; for the shim its own) are recorded along with its wall time.
//
// Reports per subject: wall time of the ADD phase and of the DEL phase (median over
// rounds), total CPU time of each phase, the per-invocation latency distribution, peak
// RSS per invocation, and the strand/reference ratios. Checks as it goes: every ADD
// succeeds with a unique address, and after the DELs no veth, pod interface or IPAM
// record is left.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchDaemon, cleanupMeasured, emitBenchJson, fmtMs, machine, median, nowMs, ratio, runMeasured, SHIM_DIR, summarize, type Measured } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = join(root, 'dist', 'bin');
const REF = '/usr/lib/cni';

interface Subject {
  key: 'strand' | 'reference' | 'daemon';
  label: string;
  exe: string;
  cniPath: string;
  conf: Record<string, unknown>;
  dataDir: string;
  network: string;
  bridge: string;
  addWall: number[];
  delWall: number[];
  addCpu: number[];
  delCpu: number[];
  add: number[];
  del: number[];
  rss: number[];
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function subject(key: Subject['key'], tmp: string, p: string): Subject {
  const strand = key !== 'reference';
  const dataDir = join(tmp, key);
  const network = `churn-${key}`;
  const bridge = `${p}${key[0]}`;
  const ipam = strand
    ? { type: 'strand-ipam', dataDir, ranges: [[{ subnet: key === 'daemon' ? '10.73.0.0/24' : '10.71.0.0/24' }]] }
    : { type: 'host-local', dataDir, ranges: [[{ subnet: '10.72.0.0/24' }]] };
  const dir = key === 'daemon' ? SHIM_DIR : DIST;
  return {
    key,
    label: key === 'daemon' ? 'strand via daemon (shim + strand daemon)' : strand ? 'strand-bridge + strand-ipam' : 'bridge + host-local (reference)',
    exe: strand ? join(dir, 'strand-bridge') : join(REF, 'bridge'),
    cniPath: strand ? `${dir}:${REF}` : REF,
    conf: { cniVersion: '1.0.0', name: network, type: strand ? 'strand-bridge' : 'bridge', bridge, isGateway: true, ipam },
    dataDir,
    network,
    bridge,
    addWall: [],
    delWall: [],
    addCpu: [],
    delCpu: [],
    add: [],
    del: [],
    rss: [],
  };
}

let daemon: BenchDaemon | undefined;

function invoke(s: Subject, nodeNs: string, command: 'ADD' | 'DEL', pod: string, id: string): Promise<Measured> {
  return runMeasured(s.exe, [], {
    env: {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/run/netns/${pod}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: s.cniPath,
      ...(s.key === 'daemon' ? daemon!.env() : {}),
    },
    input: JSON.stringify(s.conf),
    timeoutMs: 120_000,
    netns: `/run/netns/${nodeNs}`,
  });
}

/** The kernel's floor for deleting `n` veth pairs: one `ip -batch` process, serial RTM_DELLINKs. */
function kernelDelFloorMs(nodeNs: string, p: string, n: number): number {
  const names = Array.from({ length: n }, (_, i) => `${p}k${i}`);
  execFileSync('ip', ['-n', nodeNs, '-batch', '-'], { input: names.map((v) => `link add ${v} type veth peer name ${v}x`).join('\n') });
  const t0 = nowMs();
  execFileSync('ip', ['-n', nodeNs, '-batch', '-'], { input: names.map((v) => `link del ${v}`).join('\n') });
  return nowMs() - t0;
}

function fail(what: string, r: Measured): never {
  throw new Error(`${what}: exit ${r.code} signal ${r.signal}\nstdout: ${r.stdout.slice(0, 1000)}\nstderr: ${r.stderr.slice(0, 1000)}`);
}

/** Addresses still recorded by either IPAM in its data dir. */
function leftoverRecords(s: Subject): string[] {
  const d = join(s.dataDir, s.network);
  if (!existsSync(d)) return [];
  if (s.key === 'reference') return readdirSync(d).filter((f) => /^[0-9a-f.:]+$/.test(f) && f.includes('.') && !f.startsWith('last_reserved'));
  const text = readdirSync(d)
    .filter((f) => f.endsWith('.json'))
    .map((f) => readFileSync(join(d, f), 'utf8'))
    .join('\n');
  return text.match(new RegExp(`churn-${s.key}-[0-9]+-[0-9]+`, 'g')) ?? [];
}

async function round(s: Subject, r: number, nodeNs: string, pods: string[]): Promise<void> {
  const ids = pods.map((_, i) => `churn-${s.key}-${r}-${i}`);
  let t0 = nowMs();
  const adds = await Promise.all(pods.map((pod, i) => invoke(s, nodeNs, 'ADD', pod, ids[i]!)));
  s.addWall.push(nowMs() - t0);
  const addrs = new Set<string>();
  adds.forEach((a, i) => {
    if (a.code !== 0) fail(`${s.label} ADD ${ids[i]}`, a);
    const address = (JSON.parse(a.stdout) as { ips?: Array<{ address: string }> }).ips?.[0]?.address;
    if (!address) fail(`${s.label} ADD ${ids[i]} returned no address`, a);
    if (addrs.has(address)) throw new Error(`${s.label}: duplicate address ${address}`);
    addrs.add(address);
  });
  s.addCpu.push(adds.reduce((x, a) => x + a.cpuMs, 0));
  s.add.push(...adds.map((a) => a.wallMs));
  s.rss.push(...adds.map((a) => a.maxRssKb));

  t0 = nowMs();
  const dels = await Promise.all(pods.map((pod, i) => invoke(s, nodeNs, 'DEL', pod, ids[i]!)));
  s.delWall.push(nowMs() - t0);
  dels.forEach((d, i) => {
    if (d.code !== 0) fail(`${s.label} DEL ${ids[i]}`, d);
  });
  s.delCpu.push(dels.reduce((x, d) => x + d.cpuMs, 0));
  s.del.push(...dels.map((d) => d.wallMs));
  s.rss.push(...dels.map((d) => d.maxRssKb));

  // nothing leaked: no veth left on the node, no pod interface, no IPAM record
  const links = (JSON.parse(ip(['-n', nodeNs, '-j', 'link', 'show'])) as Array<{ ifname: string; master?: string }>).filter((l) => l.master === s.bridge);
  if (links.length) throw new Error(`${s.label}: ${links.length} veths left on ${s.bridge}: ${links.map((l) => l.ifname).join(' ')}`);
  for (const pod of pods) {
    const names = (JSON.parse(ip(['-n', pod, '-j', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname);
    if (names.includes('eth0')) throw new Error(`${s.label}: eth0 left in ${pod}`);
  }
  const left = leftoverRecords(s);
  if (left.length) throw new Error(`${s.label}: IPAM records left: ${left.slice(0, 5).join(' ')}`);
}

function sideSummary(s: Subject) {
  return {
    label: s.label,
    addPhaseWallMs: +median(s.addWall).toFixed(1),
    delPhaseWallMs: +median(s.delWall).toFixed(1),
    addPhaseCpuMs: +median(s.addCpu).toFixed(1),
    delPhaseCpuMs: +median(s.delCpu).toFixed(1),
    perRound: {
      addWallMs: s.addWall.map((x) => +x.toFixed(1)),
      delWallMs: s.delWall.map((x) => +x.toFixed(1)),
      addCpuMs: s.addCpu.map((x) => +x.toFixed(1)),
      delCpuMs: s.delCpu.map((x) => +x.toFixed(1)),
    },
    add: summarize(s.add),
    del: summarize(s.del),
    peakRssKb: summarize(s.rss),
    samples: { add: s.add.map((x) => +x.toFixed(2)), del: s.del.map((x) => +x.toFixed(2)) },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const podCount = Number(values.pods ?? 50);
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(podCount) || podCount < 1 || podCount > 200) throw new Error('--pods must be 1..200');
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be >= 1');
  if (process.getuid?.() !== 0) throw new Error('bench:churn needs root (network namespaces)');
  for (const f of [join(DIST, 'strand-bridge'), join(DIST, 'strand-ipam'), join(SHIM_DIR, 'strand-bridge'), join(REF, 'bridge'), join(REF, 'host-local')]) {
    if (!existsSync(f)) throw new Error(`${f} missing (strand: scripts/build.sh; reference: containernetworking-plugins)`);
  }

  const p = `sa${randomBytes(2).toString('hex')}`;
  const nodeNs = `${p}-node`;
  const pods = Array.from({ length: podCount }, (_, i) => `${p}-p${i}`);
  const made: string[] = [];
  const tmp = mkdtempSync(join(tmpdir(), `${p}-churn-`));
  const start = machine();
  try {
    for (const ns of [nodeNs, ...pods]) {
      ip(['netns', 'add', ns]);
      made.push(ns);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    daemon = await BenchDaemon.start(nodeNs);
    const subjects = [subject('strand', tmp, p), subject('reference', tmp, p), subject('daemon', tmp, p)];
    // warm-up: page cache, bridge creation (both plugins create their bridge on first ADD)
    for (const s of subjects) await round(s, 0, nodeNs, pods.slice(0, 2));
    for (const s of subjects) Object.assign(s, { addWall: [], delWall: [], addCpu: [], delCpu: [], add: [], del: [], rss: [] });

    const cpu0 = daemon.usage().cpuMs;
    let daemonCpu = 0;
    for (let r = 1; r <= rounds; r++) {
      const order = [0, 1, 2].map((i) => subjects[(i + r) % 3]!);
      for (const s of order) {
        const before = daemon.usage().cpuMs;
        await round(s, r, nodeNs, pods);
        if (s.key === 'daemon') daemonCpu += daemon.usage().cpuMs - before;
        process.stderr.write(`round ${r}/${rounds} ${s.label.padEnd(32)} ADD phase ${fmtMs(s.addWall.at(-1)!)} ms, DEL phase ${fmtMs(s.delWall.at(-1)!)} ms\n`);
      }
    }

    const [ours, ref, viaDaemon] = subjects.map(sideSummary) as [
      ReturnType<typeof sideSummary>,
      ReturnType<typeof sideSummary>,
      ReturnType<typeof sideSummary>,
    ];
    void cpu0;
    const kernelFloor = [0, 1, 2].map(() => kernelDelFloorMs(nodeNs, p, podCount));
    const daemonUse = daemon.usage();
    const result = {
      bench: 'churn',
      pods: podCount,
      rounds,
      machine: start,
      loadavgAfter: machine().loadavg,
      strand: ours,
      reference: ref,
      daemon: viaDaemon,
      daemonProcess: { cpuMsPerRequest: +(daemonCpu / (rounds * podCount * 2)).toFixed(3), rssKb: daemonUse.rssKb, peakRssKb: daemonUse.hwmKb },
      kernelDelFloorMs: +median(kernelFloor).toFixed(1),
      daemonRatios: {
        addPhaseWall: ratio(viaDaemon.addPhaseWallMs, ref.addPhaseWallMs),
        delPhaseWall: ratio(viaDaemon.delPhaseWallMs, ref.delPhaseWallMs),
        addP50: ratio(viaDaemon.add.p50, ref.add.p50),
        delP50: ratio(viaDaemon.del.p50, ref.del.p50),
      },
      ratios: {
        addPhaseWall: ratio(ours.addPhaseWallMs, ref.addPhaseWallMs),
        delPhaseWall: ratio(ours.delPhaseWallMs, ref.delPhaseWallMs),
        addPhaseCpu: ratio(ours.addPhaseCpuMs, ref.addPhaseCpuMs),
        delPhaseCpu: ratio(ours.delPhaseCpuMs, ref.delPhaseCpuMs),
        addP50: ratio(ours.add.p50, ref.add.p50),
        delP50: ratio(ours.del.p50, ref.del.p50),
        peakRssP50: ratio(ours.peakRssKb.p50, ref.peakRssKb.p50),
      },
    };
    emitBenchJson(result);
    const row = (x: typeof ours): string =>
      [
        `${x.label}`,
        `  ADD phase ${fmtMs(x.addPhaseWallMs)} ms wall, ${fmtMs(x.addPhaseCpuMs)} ms CPU; per ADD p50 ${fmtMs(x.add.p50)} ms, p90 ${fmtMs(x.add.p90)} ms, max ${fmtMs(x.add.max)} ms`,
        `  DEL phase ${fmtMs(x.delPhaseWallMs)} ms wall, ${fmtMs(x.delPhaseCpuMs)} ms CPU; per DEL p50 ${fmtMs(x.del.p50)} ms, p90 ${fmtMs(x.del.p90)} ms, max ${fmtMs(x.del.max)} ms`,
        `  peak RSS per invocation p50 ${(x.peakRssKb.p50 / 1024).toFixed(1)} MiB, max ${(x.peakRssKb.max / 1024).toFixed(1)} MiB`,
      ].join('\n');
    process.stdout.write(
      [
        `bench:churn  ${podCount} concurrent ADDs then ${podCount} concurrent DELs on one node, ${rounds} rounds (median shown), ${start.cpus} CPUs, load ${start.loadavg.join(' ')}`,
        row(ours),
        row(ref),
        row(viaDaemon),
        `ratio strand/reference: ADD phase wall ${result.ratios.addPhaseWall}, DEL phase wall ${result.ratios.delPhaseWall}, ADD CPU ${result.ratios.addPhaseCpu}, DEL CPU ${result.ratios.delPhaseCpu}, peak RSS ${result.ratios.peakRssP50}`,
        `ratio daemon/reference: ADD phase wall ${result.daemonRatios.addPhaseWall} (goal <= 0.5), DEL phase wall ${result.daemonRatios.delPhaseWall} (goal <= 1.0)`,
        `strand daemon: ${fmtMs(result.daemonProcess.cpuMsPerRequest)} ms CPU per request, RSS ${(daemonUse.rssKb / 1024).toFixed(0)} MiB; kernel floor of the DEL phase (${podCount} veth deletions by one ip -batch): ${fmtMs(result.kernelDelFloorMs)} ms`,
        '',
      ].join('\n'),
    );
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
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
}

await main();
