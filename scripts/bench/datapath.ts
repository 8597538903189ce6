// npm run bench:datapath [-- --time S] [-- --rounds N] [-- --json]
//
// Why users pick macvlan/ipvlan over veth+bridge: the datapath. Request/response latency
// (TCP and UDP ping-pong: transactions per second, like netperf TCP_RR) and TCP
// throughput, measured with Debian's `sockperf` between network namespaces built here
// (nothing leaves this machine, nothing touches the host's own interfaces):
//
//   node ns  N: m0 10.10.0.1/24 ── veth "wire" ── P: p0 10.10.0.2/24   (peer: "the network")
//             br0 10.20.0.1/24, routes the bridge pods to the wire
//   bridge pods BA, BB: veth into br0, 10.20.0.2/.3, default via 10.20.0.1
//   macvlan pods MA, MB: macvlan (bridge mode) on m0, 10.10.0.10/.11
//
//   flat mode (docs/flat.md): a switch namespace (bridge), nodes F1, F2 whose uplink eth1
//   (a veth into the switch) strand's takeover (agent/flat.ts) put into br0 with the
//   node address 10.30.0.11/.12, pods FA on F1 and FB on F2 (veth into br0,
//   10.30.0.101/.102 on the segment itself)
//
// Scenarios: host->peer (the node's own namespace: the baseline), bridge pod->peer,
// macvlan pod->peer, bridge pod<->pod, macvlan pod<->pod, and flat mode's host->host
// across nodes (F1 -> F2: both through their br0) and pod->pod across nodes (FA -> FB).
// Every round runs every scenario (order rotated per round); medians over rounds are
// reported with ratios against the host baseline, macvlan against bridge, and flat
// pod<->pod against flat host<->host. ipvlan is not measured: this
// kernel has no ipvlan (the guest runs under TCG emulation, useless for timing).
//
// Two CPUs are shared with whatever else runs: client and server compete with it, so
// read the ratios (same run, interleaved) rather than the absolute figures.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { takeover } from '../../agent/flat.ts';
import { Netns } from '../../lib/netlink/netns.ts';

const PORT = 11111;

interface Scenario {
  key: string;
  label: string;
  clientNs: string;
  serverNs: string;
  serverIp: string;
}

interface Measure {
  tcpRrTps: number;
  tcpLatUs: number;
  tcpP99Us: number;
  udpRrTps: number;
  udpLatUs: number;
  tcpMBps: number;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function nsexec(ns: string, cmd: string, args: string[], timeoutMs: number): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  });
}

class Topology {
  readonly p = `${(process.env['STRAND_TEST_PREFIX'] ?? 's8').slice(0, 3)}${randomBytes(2).toString('hex')}`;
  private readonly made: string[] = [];
  readonly ns = {
    node: `${this.p}-n`,
    peer: `${this.p}-p`,
    ba: `${this.p}-ba`,
    bb: `${this.p}-bb`,
    ma: `${this.p}-ma`,
    mb: `${this.p}-mb`,
    fs: `${this.p}-fs`,
    f1: `${this.p}-f1`,
    f2: `${this.p}-f2`,
    fa: `${this.p}-fa`,
    fb: `${this.p}-fb`,
  };

  private addNs(name: string): void {
    ip(['netns', 'add', name]);
    this.made.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  build(): void {
    const { node, peer, ba, bb, ma, mb } = this.ns;
    for (const n of [node, peer, ba, bb, ma, mb]) this.addNs(n);
    // the wire
    ip(['-n', node, 'link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', peer]);
    ip(['-n', node, 'addr', 'add', '10.10.0.1/24', 'dev', 'm0']);
    ip(['-n', peer, 'addr', 'add', '10.10.0.2/24', 'dev', 'p0']);
    ip(['-n', node, 'link', 'set', 'm0', 'up']);
    ip(['-n', peer, 'link', 'set', 'p0', 'up']);
    ip(['-n', peer, 'route', 'add', '10.20.0.0/24', 'via', '10.10.0.1']);
    // veth + bridge pods
    ip(['-n', node, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', node, 'addr', 'add', '10.20.0.1/24', 'dev', 'br0']);
    ip(['-n', node, 'link', 'set', 'br0', 'up']);
    nsexec(node, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], 5000);
    [ba, bb].forEach((pod, i) => {
      const hv = `vb${i}`;
      ip(['-n', node, 'link', 'add', hv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod]);
      ip(['-n', node, 'link', 'set', hv, 'master', 'br0', 'up']);
      ip(['-n', pod, 'addr', 'add', `10.20.0.${i + 2}/24`, 'dev', 'eth0']);
      ip(['-n', pod, 'link', 'set', 'eth0', 'up']);
      ip(['-n', pod, 'route', 'add', 'default', 'via', '10.20.0.1']);
    });
    // macvlan pods, created directly in the pod namespace
    [ma, mb].forEach((pod, i) => {
      ip(['-n', node, 'link', 'add', `mv${i}`, 'link', 'm0', 'netns', pod, 'type', 'macvlan', 'mode', 'bridge']);
      ip(['-n', pod, 'link', 'set', `mv${i}`, 'name', 'eth0']);
      ip(['-n', pod, 'addr', 'add', `10.10.0.${i + 10}/24`, 'dev', 'eth0']);
      ip(['-n', pod, 'link', 'set', 'eth0', 'up']);
    });
  }

  /** Flat mode: two nodes on a switch, each uplink taken over by strand into br0, a pod on each. */
  async buildFlat(dir: string): Promise<void> {
    const { fs, f1, f2, fa, fb } = this.ns;
    for (const n of [fs, f1, f2, fa, fb]) this.addNs(n);
    ip(['-n', fs, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', fs, 'link', 'set', 'br0', 'up']);
    const nodes: Array<[string, string, string, string]> = [
      [f1, '10.30.0.11', fa, '10.30.0.101'],
      [f2, '10.30.0.12', fb, '10.30.0.102'],
    ];
    for (const [i, [n, addr, pod, podAddr]] of nodes.entries()) {
      ip(['-n', n, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', `u${i}`, 'netns', fs]);
      ip(['-n', fs, 'link', 'set', `u${i}`, 'master', 'br0', 'up']);
      ip(['-n', n, 'addr', 'add', `${addr}/24`, 'dev', 'eth1']);
      ip(['-n', n, 'link', 'set', 'eth1', 'up']);
      const handle = Netns.open(`/run/netns/${n}`);
      try {
        const quiet = (): void => {};
        await takeover(
          handle,
          { uplink: 'eth1', bridge: 'br0', record: `${dir}/${n}.json`, vlans: [] },
          { log: { debug: quiet, info: quiet, warn: quiet, error: quiet } },
        );
      } finally {
        handle.close();
      }
      ip(['-n', n, 'link', 'add', 'vf0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod]);
      ip(['-n', n, 'link', 'set', 'vf0', 'master', 'br0', 'up']);
      ip(['-n', pod, 'addr', 'add', `${podAddr}/24`, 'dev', 'eth0']);
      ip(['-n', pod, 'link', 'set', 'eth0', 'up']);
    }
  }

  scenarios(): Scenario[] {
    const { node, peer, ba, bb, ma, mb, f1, f2, fa, fb } = this.ns;
    return [
      { key: 'host', label: 'host ns -> peer', clientNs: node, serverNs: peer, serverIp: '10.10.0.2' },
      { key: 'bridgePod', label: 'veth+bridge pod -> peer', clientNs: ba, serverNs: peer, serverIp: '10.10.0.2' },
      { key: 'macvlanPod', label: 'macvlan pod -> peer', clientNs: ma, serverNs: peer, serverIp: '10.10.0.2' },
      { key: 'bridgePodPod', label: 'veth+bridge pod <-> pod', clientNs: ba, serverNs: bb, serverIp: '10.20.0.3' },
      { key: 'macvlanPodPod', label: 'macvlan pod <-> pod', clientNs: ma, serverNs: mb, serverIp: '10.10.0.11' },
      { key: 'flatHostHost', label: 'flat host <-> host', clientNs: f1, serverNs: f2, serverIp: '10.30.0.12' },
      { key: 'flatPodPod', label: 'flat pod <-> pod (2 nodes)', clientNs: fa, serverNs: fb, serverIp: '10.30.0.102' },
    ];
  }

  destroy(): void {
    for (const n of this.made.splice(0).reverse()) {
      try {
        ip(['netns', 'del', n]);
      } catch {
        // already gone
      }
    }
  }
}

function startServer(ns: string, addr: string, tcp: boolean): ChildProcess {
  const args = ['netns', 'exec', ns, 'sockperf', 'server', '-i', addr, '-p', String(PORT)];
  if (tcp) args.push('--tcp');
  return spawn('ip', args, { stdio: 'ignore' });
}

function stopServer(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function num(re: RegExp, text: string, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`sockperf output has no ${what}:\n${text}`);
  return Number(m[1]);
}

/** Transactions/s, mean one-way latency (us) and p99 (us) of a ping-pong run. */
function pingPong(s: Scenario, tcp: boolean, seconds: number): { tps: number; lat: number; p99: number } {
  const args = ['ping-pong', '-i', s.serverIp, '-p', String(PORT), '-t', String(seconds), '-m', '64'];
  if (tcp) args.push('--tcp');
  const out = nsexec(s.clientNs, 'sockperf', args, (seconds + 20) * 1000);
  const runtime = num(/\[Valid Duration\] RunTime=([\d.]+) sec/, out, 'valid duration');
  const received = num(/\[Valid Duration\].*ReceivedMessages=(\d+)/, out, 'received messages');
  return {
    tps: received / runtime,
    lat: num(/Summary: Latency is ([\d.]+) usec/, out, 'latency'),
    p99: num(/percentile 99\.000 =\s+([\d.]+)/, out, 'p99'),
  };
}

function throughput(s: Scenario, seconds: number): number {
  const out = nsexec(
    s.clientNs,
    'sockperf',
    ['throughput', '-i', s.serverIp, '-p', String(PORT), '--tcp', '-t', String(seconds), '-m', '1400'],
    (seconds + 20) * 1000,
  );
  return num(/BandWidth is ([\d.]+) MBps/, out, 'bandwidth');
}

async function withServer<T>(s: Scenario, tcp: boolean, body: () => T): Promise<T> {
  const srv = startServer(s.serverNs, s.serverIp, tcp);
  try {
    await sleep(300);
    return body();
  } finally {
    await stopServer(srv);
  }
}

async function measure(s: Scenario, seconds: number): Promise<Measure> {
  const tcp = await withServer(s, true, () => ({ rr: pingPong(s, true, seconds), bw: throughput(s, seconds) }));
  const udp = await withServer(s, false, () => pingPong(s, false, seconds));
  return {
    tcpRrTps: tcp.rr.tps,
    tcpLatUs: tcp.rr.lat,
    tcpP99Us: tcp.rr.p99,
    udpRrTps: udp.tps,
    udpLatUs: udp.lat,
    tcpMBps: tcp.bw,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function medianOf(ms: Measure[]): Measure {
  const keys = Object.keys(ms[0]!) as Array<keyof Measure>;
  const out = {} as Measure;
  for (const k of keys) out[k] = median(ms.map((m) => m[k]));
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { time: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' } },
    strict: true,
  });
  const seconds = Number(values.time ?? 2);
  const rounds = Number(values.rounds ?? 3);
  if (!(seconds >= 1) || !Number.isInteger(rounds) || rounds < 1) throw new Error('--time >= 1 and --rounds >= 1');
  if (process.getuid?.() !== 0) throw new Error('bench:datapath creates network namespaces: run as root');
  execFileSync('sockperf', ['--version'], { stdio: 'ignore' });

  const topo = new Topology();
  const dir = mkdtempSync(join(tmpdir(), 'strand-bench-flat-'));
  const cleanup = (): void => {
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    topo.build();
    await topo.buildFlat(dir);
    const scenarios = topo.scenarios();
    const samples = new Map<string, Measure[]>(scenarios.map((s) => [s.key, []]));
    for (let r = 0; r < rounds; r++) {
      const order = scenarios.map((_, i) => scenarios[(i + r) % scenarios.length]!);
      for (const s of order) {
        const m = await measure(s, seconds);
        samples.get(s.key)!.push(m);
        process.stderr.write(
          `round ${r + 1}/${rounds} ${s.label.padEnd(26)} TCP_RR ${m.tcpRrTps.toFixed(0)}/s  UDP_RR ${m.udpRrTps.toFixed(0)}/s  TCP ${m.tcpMBps.toFixed(0)} MB/s\n`,
        );
      }
    }
    const med = Object.fromEntries(scenarios.map((s) => [s.key, medianOf(samples.get(s.key)!)])) as Record<string, Measure>;
    const ratio = (a: string, b: string, k: keyof Measure): number => +(med[a]![k] / med[b]![k]).toFixed(3);
    const ratios = {
      bridgePodVsHost_tcpRr: ratio('bridgePod', 'host', 'tcpRrTps'),
      macvlanPodVsHost_tcpRr: ratio('macvlanPod', 'host', 'tcpRrTps'),
      macvlanVsBridgePod_tcpRr: ratio('macvlanPod', 'bridgePod', 'tcpRrTps'),
      macvlanVsBridgePodPod_tcpRr: ratio('macvlanPodPod', 'bridgePodPod', 'tcpRrTps'),
      bridgePodVsHost_udpRr: ratio('bridgePod', 'host', 'udpRrTps'),
      macvlanPodVsHost_udpRr: ratio('macvlanPod', 'host', 'udpRrTps'),
      bridgePodVsHost_tcpMBps: ratio('bridgePod', 'host', 'tcpMBps'),
      macvlanPodVsHost_tcpMBps: ratio('macvlanPod', 'host', 'tcpMBps'),
      flatPodVsHost_tcpRr: ratio('flatPodPod', 'flatHostHost', 'tcpRrTps'),
      flatPodVsHost_udpRr: ratio('flatPodPod', 'flatHostHost', 'udpRrTps'),
      flatPodVsHost_tcpMBps: ratio('flatPodPod', 'flatHostHost', 'tcpMBps'),
    };
    const lines = [
      `bench:datapath  sockperf, ${seconds} s per measurement, median of ${rounds} rounds (64-byte ping-pong, 1400-byte TCP stream)`,
      `${'scenario'.padEnd(26)} ${'TCP_RR/s'.padStart(9)} ${'lat us'.padStart(7)} ${'p99 us'.padStart(7)} ${'UDP_RR/s'.padStart(9)} ${'lat us'.padStart(7)} ${'TCP MB/s'.padStart(9)}`,
      ...scenarios.map((s) => {
        const m = med[s.key]!;
        return `${s.label.padEnd(26)} ${m.tcpRrTps.toFixed(0).padStart(9)} ${m.tcpLatUs.toFixed(2).padStart(7)} ${m.tcpP99Us.toFixed(2).padStart(7)} ${m.udpRrTps.toFixed(0).padStart(9)} ${m.udpLatUs.toFixed(2).padStart(7)} ${m.tcpMBps.toFixed(0).padStart(9)}`;
      }),
      `TCP_RR vs host ns: veth+bridge pod ${pct(ratios.bridgePodVsHost_tcpRr)}, macvlan pod ${pct(ratios.macvlanPodVsHost_tcpRr)}; macvlan vs bridge: pod->peer x${ratios.macvlanVsBridgePod_tcpRr}, pod<->pod x${ratios.macvlanVsBridgePodPod_tcpRr}`,
      `flat mode, across nodes, pod<->pod vs host<->host: TCP_RR ${pct(ratios.flatPodVsHost_tcpRr)}, UDP_RR ${pct(ratios.flatPodVsHost_udpRr)}, TCP stream ${pct(ratios.flatPodVsHost_tcpMBps)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ bench: 'datapath', seconds, rounds, medians: med, ratios })}\n`);
    }
  } finally {
    cleanup();
  }
}

function pct(r: number): string {
  const d = (r - 1) * 100;
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)}%`;
}

await main();
