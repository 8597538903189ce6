// bench:agent — the node agent on a simulated 3-node cluster (network namespaces, the
// same harness as test/integration/agent):
//   1. convergence: a block claimed in etcd for node n1 (the IPAM's own transaction:
//      block + affinity) until the route is in the kernel of both other nodes; and the
//      block's release until the route is gone. Polled through rtnetlink every ~1 ms.
//   2. pod-to-pod latency with sockperf (UDP ping-pong, 64 bytes): same node, across
//      nodes in host-gw mode, across nodes in vxlan mode.
//
//   node scripts/bench/agent.ts [--claims 30] [--seconds 3] [--rounds 3]
//                               [--plugin strand-bridge|bridge] [--json]
// Needs root, dist/ built (scripts/build.sh), etcd and sockperf.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { openEtcdStore } from '../../ipam/store/etcd.ts';
import { parseEtcdConfig } from '../../ipam/store/etcd-config.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { requireTools, ROUTE_PROTO, SimCluster, type Mode, type PluginKind, type SimPod } from '../../test/integration/agent/cluster.ts';

process.env['STRAND_TEST_PREFIX'] ??= 's9';
const PORT = 25600;

const { values: opt } = parseArgs({
  options: {
    claims: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    plugin: { type: 'string', default: 'strand-bridge' },
    json: { type: 'boolean', default: false },
  },
});
const CLAIMS = Number(opt.claims);
const SECONDS = Number(opt.seconds);
const ROUNDS = Number(opt.rounds);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const median = (xs: number[]): number => pct(xs, 50);

interface Stats {
  median: number;
  p90: number;
  max: number;
  n: number;
}
const stats = (xs: number[]): Stats => ({ median: median(xs), p90: pct(xs, 90), max: Math.max(...xs), n: xs.length });

async function hasRoute(ns: rtnl.Netns, dst: string): Promise<boolean> {
  return (await rtnl.listRoutes(ns, { version: 4 })).some((r) => r.dst === dst && r.protocol === ROUTE_PROTO);
}

/** ms from now until `pred` holds for every handle (polled ~every ms). */
async function until(handles: rtnl.Netns[], pred: (ns: rtnl.Netns) => Promise<boolean>, t0: number, timeoutMs = 10_000): Promise<number> {
  const left = new Set(handles);
  let last = 0;
  while (left.size) {
    for (const h of [...left]) {
      if (await pred(h)) {
        left.delete(h);
        last = performance.now() - t0;
      }
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`route did not converge within ${timeoutMs} ms in ${[...left].map((h) => h.path).join(', ')}`);
    if (left.size) await sleep(1);
  }
  return last;
}

async function convergence(c: SimCluster): Promise<{ claim: Stats; release: Stats }> {
  const store = await openEtcdStore(parseEtcdConfig({ endpoints: [c.etcd.tcpEndpoint], prefix: c.etcdPrefix }, 'etcd'));
  const others = c.nodes.slice(1).map((n) => rtnl.Netns.open(`/run/netns/${n.ns}`));
  const claim: number[] = [];
  const release: number[] = [];
  try {
    for (let i = 0; i < CLAIMS; i++) {
      const cidr = `10.244.${200 + Math.floor(i / 4)}.${(i % 4) * 64}/26`;
      const t0 = performance.now();
      const rev = await store.commit([{ op: 'putBlock', block: { network: c.opts.network, cidr, node: 'n1', allocations: {} }, prevRev: 0 }]);
      if (rev === undefined) throw new Error(`claim of ${cidr} conflicted`);
      claim.push(
        await until(others, (h) => hasRoute(h, cidr), t0).catch((e: unknown) => {
          throw new Error(`${(e as Error).message}\n${c.nodes.map((n) => `--- ${n.name}\n${c.agentLog(n).slice(-1500)}`).join('\n')}`);
        }),
      );
      const t1 = performance.now();
      const ok = await store.commit([{ op: 'delBlock', network: c.opts.network, cidr, prevRev: rev }]);
      if (ok === undefined) throw new Error(`release of ${cidr} conflicted`);
      release.push(await until(others, async (h) => !(await hasRoute(h, cidr)), t1));
      await sleep(20);
    }
  } finally {
    for (const h of others) h.close();
    await store.close();
  }
  return { claim: stats(claim), release: stats(release) };
}

function num(re: RegExp, text: string, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`sockperf output has no ${what}:\n${text}`);
  return Number(m[1]);
}

interface Lat {
  latUs: number;
  p99Us: number;
  tps: number;
}

function startServer(pod: SimPod): ChildProcess {
  return spawn('ip', ['netns', 'exec', pod.ns, 'sockperf', 'server', '-i', pod.ip, '-p', String(PORT)], { stdio: 'ignore' });
}

function pingPongOnce(server: SimPod, client: SimPod): Lat {
  const out = execFileSync(
    'ip',
    ['netns', 'exec', client.ns, 'sockperf', 'ping-pong', '-i', server.ip, '-p', String(PORT), '-t', String(SECONDS), '-m', '64'],
    {
      encoding: 'utf8',
      timeout: (SECONDS + 20) * 1000,
    },
  );
  const runtime = num(/\[Valid Duration\] RunTime=([\d.]+) sec/, out, 'valid duration');
  const received = num(/\[Valid Duration\].*ReceivedMessages=(\d+)/, out, 'received messages');
  return {
    latUs: num(/Summary: Latency is ([\d.]+) usec/, out, 'latency'),
    p99Us: num(/percentile 99\.000 =\s+([\d.]+)/, out, 'p99'),
    tps: received / runtime,
  };
}

/** A sockperf server may take a while to come up on a loaded machine: try again. */
async function withRetry<T>(fn: () => T, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return fn();
    } catch (e) {
      if (i >= attempts) throw e;
      await sleep(1000);
    }
  }
}

interface Setup {
  cluster: SimCluster;
  podsConvergedMs: number;
  /** [server, client] */
  sameNode: [SimPod, SimPod];
  crossNode: [SimPod, SimPod];
}

async function setupMode(mode: Mode): Promise<Setup> {
  // the default lease TTL: a short one can lapse on a loaded machine and measure a flap
  const c = new SimCluster({ mode, nodes: 3, plugin: opt.plugin as PluginKind, resync: '30s', leaseTTL: '20s' });
  await c.setup();
  await c.startAgents();
  const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
  const a1 = await c.addPod(n1);
  const a2 = await c.addPod(n1);
  const b1 = await c.addPod(n2);
  const podsConvergedMs = await c.waitConverged();
  return { cluster: c, podsConvergedMs, sameNode: [a2, a1], crossNode: [b1, a1] };
}

/** Latency per path, rounds interleaved across paths so machine load hits all alike. */
async function latencies(paths: Array<[string, [SimPod, SimPod]]>): Promise<Map<string, Lat>> {
  const servers = paths.map(([, [srv]]) => startServer(srv));
  try {
    await sleep(300);
    const per = new Map<string, Lat[]>(paths.map(([n]) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, [srv, cli]] of paths) per.get(name)?.push(await withRetry(() => pingPongOnce(srv, cli)));
    }
    const out = new Map<string, Lat>();
    for (const [name, ls] of per)
      out.set(name, { latUs: median(ls.map((x) => x.latUs)), p99Us: median(ls.map((x) => x.p99Us)), tps: median(ls.map((x) => x.tps)) });
    return out;
  } finally {
    for (const s of servers) s.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  requireTools();
  execFileSync('sockperf', ['--version'], { stdio: 'ignore' });
  const setups: Partial<Record<Mode, Setup>> = {};
  try {
    // both clusters at once (separate namespaces, etcds and prefixes), so the latency
    // rounds can be interleaved
    for (const mode of ['host-gw', 'vxlan'] as const) setups[mode] = await setupMode(mode);
    const hg = setups['host-gw'] as Setup;
    const vx = setups['vxlan'] as Setup;
    const conv = { 'host-gw': await convergence(hg.cluster), vxlan: await convergence(vx.cluster) };
    const lat = await latencies([
      ['same node', hg.sameNode],
      ['cross-node host-gw', hg.crossNode],
      ['cross-node vxlan', vx.crossNode],
    ]);
    if (opt.json) {
      process.stdout.write(
        `${JSON.stringify({ convergence: conv, latency: Object.fromEntries(lat), podsConvergedMs: { 'host-gw': hg.podsConvergedMs, vxlan: vx.podsConvergedMs } }, null, 2)}\n`,
      );
      return;
    }
    const f = (x: number): string => x.toFixed(1).padStart(7);
    const lines = [
      `bench:agent  3 simulated nodes (netns) per mode, plugin ${opt.plugin}, agents via ip netns exec, etcd over a unix socket`,
      `convergence, ${CLAIMS} blocks claimed for n1 in etcd (IPAM transaction) -> route present on n2 and n3 (ms)`,
      '  mode      median     p90     max   | release -> route gone: median     p90     max',
    ];
    for (const [m, r] of Object.entries(conv))
      lines.push(
        `  ${m.padEnd(8)}${f(r.claim.median)} ${f(r.claim.p90)} ${f(r.claim.max)}   |                        ${f(r.release.median)} ${f(r.release.p90)} ${f(r.release.max)}`,
      );
    lines.push(`pod-to-pod latency, sockperf UDP ping-pong 64 B, median of ${ROUNDS} interleaved rounds x ${SECONDS} s`);
    lines.push('  path                 latency us   p99 us     trans/s');
    for (const [name, l] of lat) lines.push(`  ${name.padEnd(20)}${f(l.latUs)}    ${f(l.p99Us)}  ${l.tps.toFixed(0).padStart(10)}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const st of Object.values(setups)) await st.cluster.destroy();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:agent: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
