// npm run bench:ipam [-- --runs N] [-- --allocs N] [-- --json] [-- --only process|etcd]
//
// (a) One process per allocation, the way a runtime calls IPAM: `dist/bin/strand-ipam`
//     with the local store vs the reference host-local (/usr/lib/cni/host-local), and
//     strand-ipam through the daemon (the shim of dist/shim, a `strand daemon` started
//     here), ADD and DEL rotating between the three in this one run so all see the same
//     machine load.
// (b) The allocator in-process against a real etcd the script starts (loopback, temp
//     dir): 1 node and 8 simulated nodes, on a single member and on a 3-member cluster.
// Prints allocations/s, p50 and p99 latency of each, the ratios, and the goals
// (8-node single-member >= 500 alloc/s; local per-process ADD within 1.5x host-local).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Allocator } from '../../ipam/allocator.ts';
import { parseIpamConfig } from '../../ipam/config.ts';
import { openEtcdStore } from '../../ipam/store/etcd.ts';
import { startEtcd } from '../../test/helpers/etcd.ts';
import { BenchDaemon, SHIM_DIR } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const strandIpam = join(root, 'dist', 'bin', 'strand-ipam');
const hostLocal = '/usr/lib/cni/host-local';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '40' },
    allocs: { type: 'string', default: '2000' },
    json: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const RUNS = Number(opts.runs);
const ALLOCS = Number(opts.allocs);

interface Stat {
  label: string;
  n: number;
  allocPerSec: number;
  p50ms: number;
  p99ms: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

function stat(label: string, lat: number[], wallMs: number): Stat {
  const s = [...lat].sort((a, b) => a - b);
  return { label, n: lat.length, allocPerSec: (lat.length / wallMs) * 1000, p50ms: pct(s, 50), p99ms: pct(s, 99) };
}

const log = (s: string): void => {
  if (!opts.json) process.stdout.write(`${s}\n`);
};

// ---------------------------------------------------------------------------------
// (a) one process per allocation

let floorStat: Stat | undefined;

function benchProcesses(daemon: BenchDaemon): Stat[] {
  const shimIpam = join(SHIM_DIR, 'strand-ipam');
  for (const f of [strandIpam, hostLocal, shimIpam])
    if (!existsSync(f)) throw new Error(`missing ${f} (run scripts/build.sh / apt-get install containernetworking-plugins)`);
  const dir = mkdtempSync(join(tmpdir(), 's4-bench-ipam-'));
  try {
    const subjects = [
      { label: 'strand-ipam (local store), one process per ADD', bin: strandIpam, type: 'strand-ipam', env: {}, lat: [] as number[], del: [] as number[] },
      { label: 'host-local (reference), one process per ADD', bin: hostLocal, type: 'host-local', env: {}, lat: [] as number[], del: [] as number[] },
      {
        label: 'strand-ipam through the daemon, one shim per ADD',
        bin: shimIpam,
        type: 'strand-ipam',
        env: daemon.env(),
        lat: [] as number[],
        del: [] as number[],
      },
    ];
    const run = (s: (typeof subjects)[number], command: string, id: string): number => {
      const conf = {
        cniVersion: '1.0.0',
        name: `bench-${s.type}-${subjects.indexOf(s)}`,
        type: 'bridge',
        ipam: { type: s.type, dataDir: dir, ranges: [[{ subnet: '10.60.0.0/16' }]] },
      };
      const t0 = process.hrtime.bigint();
      const r = spawnSync(s.bin, [], {
        env: {
          PATH: '/usr/bin:/bin',
          CNI_COMMAND: command,
          CNI_CONTAINERID: id,
          CNI_NETNS: '/var/run/netns/none',
          CNI_IFNAME: 'eth0',
          CNI_PATH: '/usr/lib/cni',
          ...s.env,
        },
        input: JSON.stringify(conf),
        encoding: 'utf8',
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`${s.label} ${command}: exit ${r.status} ${r.stdout} ${r.stderr}`);
      return ms;
    };
    // The start-up floor of the single executable: VERSION does no IPAM work at all.
    const floor: number[] = [];
    const version = (): number => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(strandIpam, [], { env: { PATH: '/usr/bin:/bin', CNI_COMMAND: 'VERSION' }, input: '{}', encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`VERSION: exit ${r.status} ${r.stdout}`);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    for (const s of subjects) run(s, 'ADD', 'warm'); // page cache, first-run costs
    for (let i = 0; i < RUNS; i++) {
      for (const s of [0, 1, 2].map((k) => subjects[(k + i) % 3]!)) s.lat.push(run(s, 'ADD', `c${i}`));
      for (const s of subjects) s.del.push(run(s, 'DEL', `c${i}`));
      floor.push(version());
    }
    floorStat = stat(
      'strand-ipam VERSION (start-up floor, no IPAM work)',
      floor,
      floor.reduce((a, b) => a + b, 0),
    );
    // Sequential: allocations/s = 1 / mean latency.
    return subjects.flatMap((s) => [
      stat(
        s.label,
        s.lat,
        s.lat.reduce((a, b) => a + b, 0),
      ),
      stat(
        s.label.replace('ADD', 'DEL').replace('allocation', 'release'),
        s.del,
        s.del.reduce((a, b) => a + b, 0),
      ),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------
// (b) allocator in-process against etcd

async function benchEtcd(members: number, nodes: number, allocs: number): Promise<Stat & { conflicts: number }> {
  const cluster = await startEtcd({ members });
  try {
    const cfg = parseIpamConfig({
      cniVersion: '1.1.0',
      name: 'bench',
      type: 'bridge',
      ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.61.0.0/16' }]], etcd: { endpoints: cluster.endpoints, prefix: '/bench' } },
    });
    if (!cfg.etcd) throw new Error('no etcd config');
    const store = await openEtcdStore(cfg.etcd);
    try {
      const als = Array.from({ length: nodes }, (_, i) => new Allocator({ store, config: cfg, node: `node-${i}` }));
      // warm-up: connection, first block claim per node
      await Promise.all(als.map((a, i) => a.allocate(`warm-${i}`, 'eth0')));
      const lat: number[] = [];
      let next = 0;
      const t0 = performance.now();
      // Each simulated node runs its ADDs one after another (as kubelet's pod workers on
      // a node would hit one IPAM); nodes run concurrently.
      await Promise.all(
        als.map(async (a) => {
          for (;;) {
            const i = next++;
            if (i >= allocs) return;
            const t = performance.now();
            await a.allocate(`c${i}`, 'eth0');
            lat.push(performance.now() - t);
          }
        }),
      );
      const wall = performance.now() - t0;
      const conflicts = als.reduce((s, a) => s + a.conflicts, 0);
      return {
        ...stat(`etcd ${members === 1 ? 'single member' : `${members}-member cluster`}, ${nodes} node${nodes > 1 ? 's' : ''}, in-process`, lat, wall),
        conflicts,
      };
    } finally {
      await store.close();
    }
  } finally {
    await cluster.stop();
  }
}

function fmt(s: Stat): string {
  return `${s.label.padEnd(62)} ${s.allocPerSec.toFixed(1).padStart(8)} /s   p50 ${s.p50ms.toFixed(2).padStart(7)} ms   p99 ${s.p99ms.toFixed(2).padStart(8)} ms   (n=${s.n})`;
}

const out: Record<string, unknown> = { cpus: cpus().length, loadavg: loadavg() };
log(
  `bench:ipam on ${cpus().length} CPUs, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);

if (opts.only !== 'etcd') {
  log(`\n(a) one process per allocation, ${RUNS} ADD+DEL each, rotating`);
  const daemon = await BenchDaemon.start();
  let p: Stat[];
  try {
    p = benchProcesses(daemon);
  } finally {
    await daemon.stop();
  }
  for (const s of p) log(fmt(s));
  const [ours, , ref, , viaDaemon] = p as [Stat, Stat, Stat, Stat, Stat];
  const ratio = ours.p50ms / ref.p50ms;
  const daemonRatio = viaDaemon.p50ms / ref.p50ms;
  if (floorStat) log(fmt(floorStat));
  log(`ratio strand-ipam / host-local ADD p50: ${ratio.toFixed(2)}x (goal <= 1.5x: ${ratio <= 1.5 ? 'met' : 'NOT met'})`);
  if (floorStat)
    log(
      `of strand-ipam's ADD p50, process start-up (VERSION p50) is ${floorStat.p50ms.toFixed(1)} ms; the IPAM work itself ${(ours.p50ms - floorStat.p50ms).toFixed(1)} ms`,
    );
  log(`ratio strand-ipam through the daemon / host-local ADD p50: ${daemonRatio.toFixed(2)}x`);
  out['process'] = { stats: p, ratioP50: ratio, daemonRatioP50: daemonRatio, startupFloor: floorStat };
}

if (opts.only !== 'process') {
  log(`\n(b) allocator in-process against etcd, ${ALLOCS} allocations`);
  const e: Array<Stat & { conflicts: number }> = [];
  for (const [members, nodes, n] of [
    [1, 1, Math.min(ALLOCS, 500)],
    [1, 8, ALLOCS],
    [3, 1, Math.min(ALLOCS, 500)],
    [3, 8, ALLOCS],
  ] as const) {
    const s = await benchEtcd(members, nodes, n);
    e.push(s);
    log(`${fmt(s)}   cas conflicts ${s.conflicts}`);
  }
  const [one, eight, one3, eight3] = e as unknown as [Stat, Stat, Stat, Stat];
  log(
    `ratio 8 nodes / 1 node: single member ${(eight.allocPerSec / one.allocPerSec).toFixed(2)}x, 3 members ${(eight3.allocPerSec / one3.allocPerSec).toFixed(2)}x`,
  );
  log(`ratio 3-member / single member (8 nodes): ${(eight3.allocPerSec / eight.allocPerSec).toFixed(2)}x`);
  log(`goal 8-node single member >= 500 alloc/s: ${eight.allocPerSec >= 500 ? 'met' : 'NOT met'} (${eight.allocPerSec.toFixed(0)}/s)`);
  out['etcd'] = e;
}

if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
