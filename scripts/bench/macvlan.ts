// npm run bench:macvlan [-- --cycles N] [-- --json]
//
// ADD and DEL wall time of strand-macvlan against Debian's reference `macvlan` (v1.1.1),
// alternating in one run (the order rotates every cycle) so all see the same machine
// load. Three columns: the reference and strand's standalone executable, both with the
// reference `host-local` IPAM, and strand through the daemon (the shim of dist/shim and a
// `strand daemon` in the host namespace) with strand-ipam in-process, as a node runs it.
// Everything happens in namespaces made here: a "host" namespace whose veth end is the
// master (peer in an "external" namespace), and a fresh pod namespace per cycle. Plugins
// are started in the host namespace by the wait4 wrapper of lib.ts (setns + exec, the
// same for all), which reports CPU time (user+sys, children included: the IPAM delegate
// counts) and peak RSS of each run. Wall time on a busy machine mostly measures the
// scheduler; CPU time is the steadier figure, so both are printed. Medians, p90, ratios.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchDaemon, cleanupMeasured, emitBenchJson, runMeasured, SHIM_DIR } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const STRAND = join(root, 'dist', 'bin', 'strand-macvlan');
const REF = '/usr/lib/cni/macvlan';
const CNI_PATH = `${join(root, 'dist', 'bin')}:/usr/lib/cni`;
const SHIM = join(SHIM_DIR, 'strand-macvlan');

interface Subject {
  key: 'reference' | 'strand' | 'daemon';
  label: string;
  exe: string;
  type: string;
  dataDir: string;
  add: number[];
  del: number[];
  addCpu: number[];
  delCpu: number[];
  rssKb: number[];
}

interface RunStats {
  ms: number;
  cpuMs: number;
  rssKb: number;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.9) - 1)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { cycles: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const cycles = Number(values.cycles ?? 40);
  if (!Number.isInteger(cycles) || cycles < 30) throw new Error('--cycles must be an integer >= 30');
  if (process.getuid?.() !== 0) throw new Error('bench:macvlan creates network namespaces: run as root');
  for (const f of [STRAND, SHIM, REF, '/usr/lib/cni/host-local'])
    if (!existsSync(f)) throw new Error(`${f} missing (scripts/build.sh, containernetworking-plugins)`);

  const p = `s8${randomBytes(2).toString('hex')}`;
  const host = `${p}-h`;
  const ext = `${p}-x`;
  const tmp = mkdtempSync(join(tmpdir(), `${p}-`));
  const made: string[] = [];
  const addNs = (n: string): void => {
    ip(['netns', 'add', n]);
    made.push(n);
  };
  const fresh = { add: [], del: [], addCpu: [], delCpu: [], rssKb: [] };
  const subjects: Subject[] = [
    { key: 'reference', label: 'reference macvlan', exe: REF, type: 'macvlan', dataDir: join(tmp, 'ref'), ...structuredClone(fresh) },
    { key: 'strand', label: 'strand-macvlan', exe: STRAND, type: 'strand-macvlan', dataDir: join(tmp, 'strand'), ...structuredClone(fresh) },
    { key: 'daemon', label: 'strand via daemon', exe: SHIM, type: 'strand-macvlan', dataDir: join(tmp, 'daemon'), ...structuredClone(fresh) },
  ];
  const hostPath = `/run/netns/${host}`;
  let daemon: BenchDaemon | undefined;
  const run = async (s: Subject, verb: string, pod: string): Promise<RunStats> => {
    const ipamType = s.key === 'daemon' ? 'strand-ipam' : 'host-local';
    const conf = JSON.stringify({
      cniVersion: '1.0.0',
      name: `benchmv-${s.key}`,
      type: s.type,
      master: 'm0',
      mode: 'bridge',
      ipam: { type: ipamType, dataDir: s.dataDir, ranges: [[{ subnet: '10.88.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }] },
    });
    const r = await runMeasured(s.exe, [], {
      input: conf,
      netns: hostPath,
      timeoutMs: 60_000,
      env: {
        PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: verb,
        CNI_CONTAINERID: `${pod}-cid`,
        CNI_NETNS: `/run/netns/${pod}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: s.key === 'daemon' ? `${SHIM_DIR}:/usr/lib/cni` : CNI_PATH,
        ...(s.key === 'daemon' ? daemon!.env() : {}),
      },
    });
    if (r.code !== 0) throw new Error(`${s.label} ${verb} failed (exit ${r.code}): ${r.stdout} ${r.stderr}`);
    return { ms: r.wallMs, cpuMs: r.cpuMs, rssKb: r.maxRssKb };
  };

  try {
    addNs(host);
    addNs(ext);
    ip(['-n', host, 'link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'e0', 'netns', ext]);
    ip(['-n', host, 'link', 'set', 'm0', 'up']);
    ip(['-n', ext, 'link', 'set', 'e0', 'up']);

    // the wrapper's own cost (setns + exec of /bin/true), for reading the absolute figures
    const base: number[] = [];
    for (let i = 0; i < 10; i++) base.push((await runMeasured('/bin/true', [], { env: {}, netns: hostPath })).wallMs);
    daemon = await BenchDaemon.start(host);

    const warm = `${p}-w`;
    addNs(warm);
    for (const s of subjects) {
      await run(s, 'ADD', warm);
      await run(s, 'DEL', warm);
    }
    for (let i = 0; i < cycles; i++) {
      const pod = `${p}-p${i}`;
      addNs(pod);
      const order = [0, 1, 2].map((k) => subjects[(k + i) % 3]!);
      for (const s of order) {
        const a = await run(s, 'ADD', pod);
        const d = await run(s, 'DEL', pod);
        s.add.push(a.ms);
        s.addCpu.push(a.cpuMs);
        s.rssKb.push(a.rssKb);
        s.del.push(d.ms);
        s.delCpu.push(d.cpuMs);
      }
      ip(['netns', 'del', pod]);
      made.splice(made.indexOf(pod), 1);
    }

    const [ref, ours, viaDaemon] = subjects as [Subject, Subject, Subject];
    const stats = (x: Subject) => ({
      addMedianMs: +median(x.add).toFixed(2),
      addP90Ms: +p90(x.add).toFixed(2),
      delMedianMs: +median(x.del).toFixed(2),
      delP90Ms: +p90(x.del).toFixed(2),
      addCpuMedianMs: +median(x.addCpu).toFixed(1),
      delCpuMedianMs: +median(x.delCpu).toFixed(1),
      peakRssKb: Math.max(...x.rssKb),
    });
    const summary = {
      bench: 'macvlan',
      cycles,
      wrapperMedianMs: +median(base).toFixed(2),
      reference: stats(ref),
      strand: stats(ours),
      daemon: stats(viaDaemon),
      daemonAddRatio: +(median(viaDaemon.add) / median(ref.add)).toFixed(3),
      daemonDelRatio: +(median(viaDaemon.del) / median(ref.del)).toFixed(3),
      addRatio: +(median(ours.add) / median(ref.add)).toFixed(3),
      delRatio: +(median(ours.del) / median(ref.del)).toFixed(3),
      addCpuRatio: +(median(ours.addCpu) / Math.max(median(ref.addCpu), 1)).toFixed(2),
    };
    const row = (l: string, x: ReturnType<typeof stats>): string =>
      `${l.padEnd(18)} ADD ${x.addMedianMs.toFixed(2).padStart(7)} ms (p90 ${x.addP90Ms.toFixed(2).padStart(7)}, cpu ${x.addCpuMedianMs.toFixed(0).padStart(3)})   DEL ${x.delMedianMs.toFixed(2).padStart(7)} ms (p90 ${x.delP90Ms.toFixed(2).padStart(7)}, cpu ${x.delCpuMedianMs.toFixed(0).padStart(3)})   peak RSS ${(x.peakRssKb / 1024).toFixed(2)} MiB`;
    process.stdout.write(
      [
        `bench:macvlan  ${cycles} cycles, rotating; host-local for the reference and standalone strand, strand-ipam in-process through the daemon; setns+exec itself: ${summary.wrapperMedianMs} ms; load average ${loadavg()[0]!.toFixed(1)}`,
        row('reference macvlan', summary.reference),
        row('strand-macvlan', summary.strand),
        row('strand via daemon', summary.daemon),
        `ratio strand/reference: ADD ${summary.addRatio}, DEL ${summary.delRatio} (wall medians)`,
        `ratio daemon/reference: ADD ${summary.daemonAddRatio} (goal <= 0.6), DEL ${summary.daemonDelRatio}`,
        '',
      ].join('\n'),
    );
    emitBenchJson(summary);
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  } finally {
    await daemon?.stop();
    cleanupMeasured();
    for (const n of made.reverse()) {
      try {
        ip(['netns', 'del', n]);
      } catch {
        // gone
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
