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
import { openEtcdStore } from '../../ipam/store/etcd.ts';
import { parseEtcdConfig } from '../../ipam/range.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { requireTools, ROUTE_PROTO, SimCluster, type Mode, type PluginKind, type SimPod } from '../../test/integration/agent/cluster.ts';

process.env['STRAND_TEST_PREFIX'] ??= 's9';
const PORT = 25600;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

function hasRoute(ns: rtnl.Netns, dst: string): boolean {
  return rtnl.listRoutes(ns, { version: 4 }).some((r) => r.dst === dst && r.protocol === ROUTE_PROTO);
}

/** ms from now until `pred` holds for every handle (polled ~every ms). */
async function until(handles: rtnl.Netns[], pred: (ns: rtnl.Netns) => boolean, t0: number, timeoutMs = 10_000): Promise<number> {
  const left = new Set(handles);
  let last = 0;
  while (left.size) {
    for (const h of [...left]) {
      if (pred(h)) {
        left.delete(h);
        last = performance.now() - t0;
      }
    }
    if (performance.now() - t0 > timeoutMs) throw new Error('route did not converge within 10 s');
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
      claim.push(await until(others, (h) => hasRoute(h, cidr), t0));
      const t1 = performance.now();
      const ok = await store.commit([{ op: 'delBlock', network: c.opts.network, cidr, prevRev: rev }]);
      if (ok === undefined) throw new Error(`release of ${cidr} conflicted`);
      release.push(await until(others, (h) => !hasRoute(h, cidr), t1));
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

async function pingPong(server: SimPod, client: SimPod): Promise<Lat> {
  const srv: ChildProcess = spawn('ip', ['netns', 'exec', server.ns, 'sockperf', 'server', '-i', server.ip, '-p', String(PORT)], { stdio: 'ignore' });
  try {
    await sleep(300);
    const rounds: Lat[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const out = execFileSync('ip', ['netns', 'exec', client.ns, 'sockperf', 'ping-pong', '-i', server.ip, '-p', String(PORT), '-t', String(SECONDS), '-m', '64'], {
        encoding: 'utf8',
        timeout: (SECONDS + 20) * 1000,
      });
      const runtime = num(/\[Valid Duration\] RunTime=([\d.]+) sec/, out, 'valid duration');
      const received = num(/\[Valid Duration\].*ReceivedMessages=(\d+)/, out, 'received messages');
      rounds.push({ latUs: num(/Summary: Latency is ([\d.]+) usec/, out, 'latency'), p99Us: num(/percentile 99\.000 =\s+([\d.]+)/, out, 'p99'), tps: received / runtime });
    }
    return { latUs: median(rounds.map((x) => x.latUs)), p99Us: median(rounds.map((x) => x.p99Us)), tps: median(rounds.map((x) => x.tps)) };
  } finally {
    srv.kill('SIGTERM');
  }
}

async function runMode(mode: Mode): Promise<{ claim: Stats; release: Stats; sameNode: Lat; crossNode: Lat; podsConvergedMs: number }> {
  const c = new SimCluster({ mode, nodes: 3, plugin: opt.plugin as PluginKind, resync: '30s' });
  try {
    await c.setup();
    await c.startAgents();
    const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
    const a1 = await c.addPod(n1);
    const a2 = await c.addPod(n1);
    const b1 = await c.addPod(n2);
    const podsConvergedMs = await c.waitConverged();
    const conv = await convergence(c);
    const sameNode = await pingPong(a2, a1);
    const crossNode = await pingPong(b1, a1);
    return { ...conv, sameNode, crossNode, podsConvergedMs };
  } finally {
    await c.destroy();
  }
}

async function main(): Promise<void> {
  requireTools();
  execFileSync('sockperf', ['--version'], { stdio: 'ignore' });
  const res: Record<string, Awaited<ReturnType<typeof runMode>>> = {};
  for (const mode of ['host-gw', 'vxlan'] as const) res[mode] = await runMode(mode);
  if (opt.json) {
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    return;
  }
  const f = (x: number): string => x.toFixed(1).padStart(7);
  const lines = [
    `bench:agent  3 simulated nodes (netns), plugin ${opt.plugin}, agents via ip netns exec, etcd over a unix socket`,
    `convergence, ${CLAIMS} blocks claimed for n1 in etcd -> route present on n2 and n3 (ms)`,
    '  mode      median     p90     max   | release -> route gone: median     p90     max',
  ];
  for (const [m, r] of Object.entries(res)) lines.push(`  ${m.padEnd(8)}${f(r.claim.median)} ${f(r.claim.p90)} ${f(r.claim.max)}   |                        ${f(r.release.median)} ${f(r.release.p90)} ${f(r.release.max)}`);
  lines.push(`pod-to-pod latency, sockperf UDP ping-pong 64 B, median of ${ROUNDS} x ${SECONDS} s`);
  lines.push('  path                 latency us   p99 us     trans/s');
  const row = (name: string, l: Lat): string => `  ${name.padEnd(20)}${f(l.latUs)}    ${f(l.p99Us)}  ${l.tps.toFixed(0).padStart(10)}`;
  const hg = res['host-gw'];
  const vx = res['vxlan'];
  if (hg) lines.push(row('same node', hg.sameNode));
  if (hg) lines.push(row('cross-node host-gw', hg.crossNode));
  if (vx) lines.push(row('cross-node vxlan', vx.crossNode));
  if (vx) lines.push(row('same node (vxlan run)', vx.sameNode));
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:agent: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
