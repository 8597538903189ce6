// A simulated multi-node cluster on one machine, for the agent's integration tests and
// for scripts/bench/agent.ts:
//
//   - every node is a network namespace with its own pod bridge (cni0, made by the
//     bridge plugin on the first ADD) and an underlay interface eth1;
//   - host-gw: the nodes' eth1 sit on one L2 segment (a bridge in a "switch" namespace);
//     vxlan: every node is on its own subnet behind a "router" namespace (a routed hop);
//   - a pod is a namespace with a veth into its node's bridge, made by running the real
//     plugin (dist/bin/strand-bridge, or the reference /usr/lib/cni/bridge) inside the
//     node namespace with strand-ipam (etcd store) as IPAM;
//   - one etcd (temp dir, stopped by PID) serves everyone over a unix socket, which every
//     namespace can reach (a filesystem path is not per-namespace), and over loopback TCP
//     (ports 25000-25999) for the test process itself;
//   - agents run as `ip netns exec <node> dist/bin/strand agent ...`.
//
// Everything is named with one run prefix and removed by destroy().
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../helpers/etcd.ts';
import { ip, ipJson } from '../../helpers/netns.ts';
import { runPrefix } from '../../helpers/prefix.ts';
import { binDir, refBinDir, repoRoot } from '../../helpers/run-plugin.ts';

process.env['STRAND_TEST_PORTS'] ??= '25000-25999';

const execFileP = promisify(execFile);
export const STRAND_BIN = join(binDir, 'strand');
export const ROUTE_PROTO = 115;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type Mode = 'host-gw' | 'vxlan';
export type PluginKind = 'strand-bridge' | 'bridge';

export function requireTools(): void {
  for (const f of [STRAND_BIN, join(binDir, 'strand-bridge'), join(binDir, 'strand-ipam'), join(refBinDir, 'bridge'), '/usr/bin/etcd']) {
    if (!existsSync(f)) throw new Error(`${f} missing (scripts/build.sh; apt-get install etcd-server containernetworking-plugins)`);
  }
}

/** etcd on a temp dir that can be stopped and started again with its data. */
export class SimEtcd {
  readonly dir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  proc: ChildProcess | undefined;
  private exited = true;

  private constructor(dir: string, clientPort: number, peerPort: number) {
    this.dir = dir;
    this.clientPort = clientPort;
    this.peerPort = peerPort;
  }

  static async create(): Promise<SimEtcd> {
    const e = new SimEtcd(mkdtempSync(join(tmpdir(), 's9-etcd-')), await freePort(), await freePort());
    await e.start();
    return e;
  }

  /** Endpoint for processes in any namespace. */
  get unixEndpoint(): string {
    return `unix:${join(this.dir, `etcd:${this.clientPort}`)}`;
  }

  get tcpEndpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  async start(): Promise<void> {
    rmSync(join(this.dir, `etcd:${this.clientPort}`), { force: true });
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      '--name=s9',
      `--data-dir=${join(this.dir, 'data')}`,
      `--listen-client-urls=${this.tcpEndpoint},unix://etcd:${this.clientPort}`,
      `--advertise-client-urls=${this.tcpEndpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=s9=${peer}`,
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--log-level=warn',
    ];
    const log = createWriteStream(join(this.dir, 'etcd.log'), { flags: 'a' });
    const proc = spawn('/usr/bin/etcd', args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    proc.stderr?.pipe(log);
    this.proc = proc;
    this.exited = false;
    proc.on('exit', () => (this.exited = true));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (this.exited) throw new Error(`etcd exited: ${readFileSync(join(this.dir, 'etcd.log'), 'utf8').slice(-2000)}`);
      try {
        const r = await fetch(`${this.tcpEndpoint}/health`, { signal: AbortSignal.timeout(500) });
        const j = (await r.json()) as { health?: string };
        if (j.health === 'true' && existsSync(join(this.dir, `etcd:${this.clientPort}`))) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error('etcd did not become healthy');
      await sleep(50);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || this.exited || p.pid === undefined) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    await Promise.race([gone, sleep(5000)]);
    if (!this.exited) {
      p.kill('SIGKILL');
      await gone;
    }
  }

  async destroy(): Promise<void> {
    await this.stop().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs etcdctl (v3 API) against this etcd over loopback TCP; returns its stdout. */
  etcdctl(args: string[]): string {
    return execFileSync('etcdctl', [`--endpoints=${this.tcpEndpoint}`, ...args], {
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin', ETCDCTL_API: '3' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
}

export interface SimNode {
  name: string;
  ns: string;
  ip: string;
  stateFile: string;
  /** The agent's pod MTU file (--pod-mtu-file; strand-bridge's mtuFile with `autoMtu`). */
  mtuFile: string;
  logFile: string;
  agent?: ChildProcess;
  pods: SimPod[];
}

export interface SimPod {
  ns: string;
  node: SimNode;
  ip: string;
  containerId: string;
}

export interface ProbeReport {
  sent: number;
  received: number;
  maxGapMs: number;
  error?: string;
  /** Source addresses the server saw. */
  peers: string[];
}

export interface SimOptions {
  mode: Mode;
  nodes: number;
  plugin?: PluginKind;
  /** Pod network (strand-ipam range). */
  subnet?: string;
  blockSize?: number;
  leaseTTL?: string;
  resync?: string;
  network?: string;
  /** The bridge plugin's ipMasq (default false). */
  ipMasq?: boolean;
  /** strand-bridge takes the pod MTU from the agent's file (`mtuFile`), as the DaemonSet's conflist does. */
  autoMtu?: boolean;
}

export interface AgentState {
  pid: number;
  synced: boolean;
  registered: boolean;
  routes: Array<{ dst: string; gw?: string; dev?: string; node: string }>;
  peers: Array<{ name: string; alive?: boolean }>;
  [k: string]: unknown;
}

export class SimCluster {
  readonly opts: Required<SimOptions>;
  readonly prefix = runPrefix();
  readonly dir = mkdtempSync(join(tmpdir(), 's9-cluster-'));
  readonly etcdPrefix: string;
  readonly infraNs: string;
  etcd!: SimEtcd;
  nodes: SimNode[] = [];
  private readonly namespaces: string[] = [];
  private podSeq = 0;

  constructor(opts: SimOptions) {
    this.opts = {
      plugin: 'strand-bridge',
      subnet: '10.244.0.0/16',
      blockSize: 26,
      leaseTTL: '10s',
      resync: '2s',
      network: 's9net',
      ipMasq: false,
      autoMtu: false,
      ...opts,
    };
    this.etcdPrefix = `/${this.prefix}`;
    this.infraNs = `${this.prefix}-${opts.mode === 'host-gw' ? 'sw' : 'rt'}`;
  }

  private addNs(name: string): string {
    ip(['netns', 'add', name]);
    this.namespaces.push(name);
    ip(['link', 'set', 'lo', 'up'], { ns: name });
    return name;
  }

  /** Namespaces, underlay wiring and etcd; agents are started separately. */
  async setup(): Promise<void> {
    this.etcd = await SimEtcd.create();
    const infra = this.addNs(this.infraNs);
    if (this.opts.mode === 'host-gw') {
      ip(['link', 'add', 'br0', 'type', 'bridge'], { ns: infra });
      ip(['link', 'set', 'br0', 'up'], { ns: infra });
    } else {
      sysctl(infra, 'net.ipv4.ip_forward', '1');
    }
    for (let i = 1; i <= this.opts.nodes; i++) {
      const name = `n${i}`;
      const ns = this.addNs(`${this.prefix}-${name}`);
      ip(['link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', infra], { ns });
      let nodeIp: string;
      if (this.opts.mode === 'host-gw') {
        nodeIp = `192.168.77.${10 + i}`;
        ip(['link', 'set', `p${i}`, 'master', 'br0', 'up'], { ns: infra });
        ip(['addr', 'add', `${nodeIp}/24`, 'dev', 'eth1'], { ns });
        ip(['link', 'set', 'eth1', 'up'], { ns });
      } else {
        nodeIp = `192.168.${100 + i}.10`;
        ip(['addr', 'add', `192.168.${100 + i}.1/24`, 'dev', `p${i}`], { ns: infra });
        ip(['link', 'set', `p${i}`, 'up'], { ns: infra });
        ip(['addr', 'add', `${nodeIp}/24`, 'dev', 'eth1'], { ns });
        ip(['link', 'set', 'eth1', 'up'], { ns });
        ip(['route', 'add', 'default', 'via', `192.168.${100 + i}.1`], { ns });
      }
      this.nodes.push({
        name,
        ns,
        ip: nodeIp,
        stateFile: join(this.dir, `${name}.json`),
        mtuFile: join(this.dir, `${name}.mtu`),
        logFile: join(this.dir, `${name}.log`),
        pods: [],
      });
    }
  }

  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  agentArgs(n: SimNode, extra: string[] = []): string[] {
    return [
      'agent',
      `--node-name=${n.name}`,
      `--node-ip=${n.ip}`,
      `--mode=${this.opts.mode}`,
      `--network=${this.opts.network}`,
      `--etcd-endpoints=${this.etcd.unixEndpoint}`,
      `--etcd-prefix=${this.etcdPrefix}`,
      `--lease-ttl=${this.opts.leaseTTL}`,
      `--resync=${this.opts.resync}`,
      `--state-file=${n.stateFile}`,
      `--pod-mtu-file=${n.mtuFile}`,
      `--ipam-data-dir=${this.ipamDir(n)}`,
      '--log-level=debug',
      ...extra,
    ];
  }

  /** Starts the node's agent (`ip netns exec` execs it: the child's PID is the agent's). */
  startAgent(n: SimNode, extra: string[] = []): ChildProcess {
    if (n.agent && n.agent.exitCode === null && n.agent.signalCode === null) throw new Error(`agent of ${n.name} already running`);
    const log = createWriteStream(n.logFile, { flags: 'a' });
    const child = spawn('ip', ['netns', 'exec', n.ns, STRAND_BIN, ...this.agentArgs(n, extra)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    n.agent = child;
    return child;
  }

  /** Stops the node's agent with `signal` and waits for it to exit. */
  async stopAgent(n: SimNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const a = n.agent;
    if (!a || a.exitCode !== null || a.signalCode !== null) return a?.exitCode ?? null;
    const done = new Promise<number | null>((r) => a.once('exit', (code) => r(code)));
    a.kill(signal);
    const code = await Promise.race([done, sleep(10_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      a.kill('SIGKILL');
      return done;
    }
    return code;
  }

  readState(n: SimNode): AgentState | undefined {
    try {
      return JSON.parse(readFileSync(n.stateFile, 'utf8')) as AgentState;
    } catch {
      return undefined;
    }
  }

  /** Waits until the node's running agent reports synced. */
  async waitSynced(n: SimNode, timeoutMs = 20_000): Promise<AgentState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.readState(n);
      if (s?.synced && s.registered && s.pid === n.agent?.pid) return s;
      if (n.agent && (n.agent.exitCode !== null || n.agent.signalCode !== null)) throw new Error(`agent of ${n.name} exited:\n${this.agentLog(n)}`);
      if (Date.now() > deadline) throw new Error(`agent of ${n.name} not synced after ${timeoutMs} ms:\n${this.agentLog(n)}`);
      await sleep(25);
    }
  }

  agentLog(n: SimNode): string {
    try {
      return readFileSync(n.logFile, 'utf8').slice(-4000);
    } catch {
      return '(no log)';
    }
  }

  async startAgents(): Promise<void> {
    for (const n of this.nodes) this.startAgent(n);
    for (const n of this.nodes) await this.waitSynced(n);
  }

  /** The agent's routes (our protocol) in a node, by destination. */
  routes(n: SimNode): Map<string, { dst: string; gateway?: string; dev?: string }> {
    const out = new Map<string, { dst: string; gateway?: string; dev?: string }>();
    for (const v of [4, 6] as const) {
      for (const r of ipJson<Array<{ dst: string; gateway?: string; dev?: string }>>([`-${v}`, 'route', 'show', 'proto', String(ROUTE_PROTO)], { ns: n.ns })) {
        // ip -j prints host routes without their prefix length
        const dst = r.dst.includes('/') ? r.dst : `${r.dst}/${v === 4 ? 32 : 128}`;
        out.set(dst, { ...r, dst });
      }
    }
    return out;
  }

  /** Polls until `pred` holds for the node's routes; returns the elapsed ms. */
  async waitRoutes(n: SimNode, pred: (r: Map<string, { dst: string; gateway?: string; dev?: string }>) => boolean, timeoutMs = 15_000): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (pred(this.routes(n))) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`routes of ${n.name} not as expected after ${timeoutMs} ms: ${JSON.stringify([...this.routes(n).values()])}\n${this.agentLog(n)}`);
      await sleep(20);
    }
  }

  /** The blocks (network form) of the pods of every node but `n`: the routes `n` needs. */
  expectedDsts(n: SimNode): string[] {
    const out = new Set<string>();
    for (const o of this.nodes) {
      if (o === n) continue;
      for (const p of o.pods) out.add(blockOf(p.ip, this.opts.blockSize));
    }
    return [...out].sort();
  }

  /**
   * Waits until every node has exactly the routes its peers' pods need and every node
   * with pods has proxy ARP on its bridge; returns the elapsed ms.
   */
  async waitConverged(timeoutMs = 15_000): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const pending: string[] = [];
      for (const n of this.nodes) {
        const want = this.expectedDsts(n);
        const have = [...this.routes(n).keys()].filter((d) => !d.endsWith('/32')).sort();
        if (JSON.stringify(want) !== JSON.stringify(have)) pending.push(`${n.name}: routes ${have.join(',')} want ${want.join(',')}`);
        if (n.pods.length && !this.readState(n)?.['podLinks']?.toString().includes('cni0')) pending.push(`${n.name}: no proxy ARP on cni0 yet`);
      }
      if (!pending.length) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs)
        throw new Error(
          `not converged after ${timeoutMs} ms:\n${pending.join('\n')}\n${this.nodes.map((n) => `--- ${n.name}\n${this.agentLog(n)}`).join('\n')}`,
        );
      await sleep(20);
    }
  }

  /** The node's strand-ipam data directory (its journal of pending releases), never the machine's. */
  ipamDir(n: SimNode): string {
    return join(this.dir, `${n.name}-ipam`);
  }

  netConf(n: SimNode): Record<string, unknown> {
    const kind = this.opts.plugin;
    return {
      cniVersion: '1.0.0',
      name: this.opts.network,
      type: kind === 'bridge' ? 'bridge' : 'strand-bridge',
      bridge: 'cni0',
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: this.opts.ipMasq,
      ...(this.opts.autoMtu ? { mtuFile: n.mtuFile } : {}),
      ipam: {
        type: 'strand-ipam',
        nodeName: n.name,
        dataDir: this.ipamDir(n),
        ranges: [[{ subnet: this.opts.subnet }]],
        blockSize: this.opts.blockSize,
        etcd: { endpoints: [this.etcd.unixEndpoint], prefix: this.etcdPrefix, dialTimeout: 3000, requestTimeout: 5000 },
      },
    };
  }

  /** Runs the bridge plugin's ADD inside the node namespace for a new pod namespace. */
  async addPod(n: SimNode): Promise<SimPod> {
    const seq = ++this.podSeq;
    const ns = this.addNs(`${this.prefix}-${n.name}p${seq}`);
    const containerId = `${this.prefix}-pod-${seq}`;
    const exe = this.opts.plugin === 'bridge' ? join(refBinDir, 'bridge') : join(binDir, 'strand-bridge');
    const r = await runIn(
      n.ns,
      exe,
      {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: containerId,
        CNI_NETNS: `/run/netns/${ns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: `${binDir}:${refBinDir}`,
      },
      JSON.stringify(this.netConf(n)),
    );
    if (r.code !== 0) throw new Error(`ADD on ${n.name} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    const res = JSON.parse(r.stdout) as { ips?: Array<{ address: string }> };
    const addr = res.ips?.[0]?.address;
    if (!addr) throw new Error(`ADD on ${n.name}: no address in ${r.stdout}`);
    const pod: SimPod = { ns, node: n, ip: addr.split('/')[0] as string, containerId };
    n.pods.push(pod);
    return pod;
  }

  /** Runs the bridge plugin's DEL for a pod (inside its node) and removes the pod's namespace. */
  async delPod(pod: SimPod): Promise<void> {
    const n = pod.node;
    const exe = this.opts.plugin === 'bridge' ? join(refBinDir, 'bridge') : join(binDir, 'strand-bridge');
    const r = await runIn(
      n.ns,
      exe,
      { CNI_COMMAND: 'DEL', CNI_CONTAINERID: pod.containerId, CNI_NETNS: `/run/netns/${pod.ns}`, CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:${refBinDir}` },
      JSON.stringify(this.netConf(n)),
    );
    if (r.code !== 0) throw new Error(`DEL on ${n.name} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    n.pods = n.pods.filter((p) => p !== pod);
    ip(['netns', 'del', pod.ns]);
    this.namespaces.splice(this.namespaces.indexOf(pod.ns), 1);
  }

  /**
   * Pings `target` from `from` every `intervalMs` for `durationMs`; resolves with the
   * counts (ping's own summary).
   */
  async pingFor(from: SimPod, target: string, durationMs: number, intervalMs = 100): Promise<{ sent: number; received: number }> {
    const count = Math.ceil(durationMs / intervalMs);
    const r = await execFileP('ip', [
      'netns',
      'exec',
      from.ns,
      'ping',
      '-n',
      '-q',
      '-i',
      String(intervalMs / 1000),
      '-c',
      String(count),
      '-W',
      '2',
      target,
    ]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    if (!m) throw new Error(`no ping summary: ${r.stdout}`);
    return { sent: Number(m[1]), received: Number(m[2]) };
  }

  get pods(): SimPod[] {
    return this.nodes.flatMap((n) => n.pods);
  }

  /** Pings each target once from `from`; returns the addresses that did not answer. */
  async unreachable(from: SimPod, targets: readonly string[], waitS = 1, count = 1): Promise<string[]> {
    if (!targets.length) return [];
    const script = `for ip in ${targets.join(' ')}; do ping -n -q -c ${count} -i 0.2 -W ${waitS} $ip >/dev/null 2>&1 || echo $ip; done`;
    const { stdout } = await execFileP('ip', ['netns', 'exec', from.ns, 'sh', '-c', script]);
    return stdout.split('\n').filter(Boolean);
  }

  /**
   * Every pod pings every other pod (one process per source pod, in parallel). A pair
   * whose single ping got no answer within 1 s (this machine is shared and often
   * loaded) is tried again with 3 pings and 3 s; only pairs failing that too are
   * returned. `firstRound` gets the pairs that needed the second try.
   */
  async allPairsFailures(firstRound?: string[]): Promise<string[]> {
    const pods = this.pods;
    const res = await Promise.all(
      pods.map(async (p) => {
        const bad = await this.unreachable(
          p,
          pods.filter((q) => q !== p).map((q) => q.ip),
        );
        firstRound?.push(...bad.map((ipAddr) => `${p.node.name}/${p.ip} -> ${ipAddr}`));
        const still = await this.unreachable(p, bad, 3, 3);
        return still.map((ipAddr) => `${p.node.name}/${p.ip} -> ${ipAddr}`);
      }),
    );
    return res.flat();
  }

  /**
   * Starts a TCP echo server in `server` and a client in `client` that keeps one
   * connection for `durationMs`; resolves with the client's report.
   */
  async probe(server: SimPod, client: SimPod, durationMs: number, port = 25500): Promise<ProbeReport> {
    const srv = spawn('ip', ['netns', 'exec', server.ns, NODE_BIN, PROBE, 'server', server.ip, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.probes.push(srv);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('listening')) resolve();
      });
      srv.on('exit', (code) => reject(new Error(`probe server exited ${code}`)));
    });
    const { stdout } = await execFileP('ip', ['netns', 'exec', client.ns, NODE_BIN, PROBE, 'client', server.ip, String(port), String(durationMs), '20']);
    srv.kill('SIGKILL');
    const peers = [...out.matchAll(/^peer (\S+)$/gm)].map((m) => (m[1] as string).replace(/^::ffff:/, ''));
    return { ...(JSON.parse(stdout.trim()) as Omit<ProbeReport, 'peers'>), peers };
  }

  /** Sends `bytes` over one TCP connection from `client` to a counting server in `server`. */
  async transfer(server: SimPod, client: SimPod, bytes: number, port = 25502): Promise<{ sent: number; counted: number; ms: number; error?: string }> {
    const srv = spawn('ip', ['netns', 'exec', server.ns, NODE_BIN, PROBE, 'sink', server.ip, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.probes.push(srv);
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.setEncoding('utf8').on('data', (d: string) => d.includes('listening') && resolve());
      srv.on('exit', (code) => reject(new Error(`sink exited ${code}`)));
    });
    const { stdout } = await execFileP('ip', ['netns', 'exec', client.ns, NODE_BIN, PROBE, 'send', server.ip, String(port), String(bytes)]);
    srv.kill('SIGKILL');
    return JSON.parse(stdout.trim()) as { sent: number; counted: number; ms: number; error?: string };
  }

  private readonly probes: ChildProcess[] = [];

  /** Records `ip monitor route neigh` in a node until stop() (returns the event lines). */
  monitor(n: SimNode): { stop(): Promise<string[]> } {
    const child = spawn('ip', ['-n', n.ns, 'monitor', 'route', 'neigh'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.probes.push(child);
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    return {
      stop: async () => {
        await sleep(100);
        child.kill('SIGTERM');
        return out.split('\n').filter(Boolean);
      },
    };
  }

  async destroy(): Promise<void> {
    for (const p of this.probes) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const n of this.nodes) {
      if (n.agent && n.agent.exitCode === null && n.agent.signalCode === null) {
        n.agent.kill('SIGKILL');
        await new Promise((r) => n.agent?.once('exit', r));
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        ip(['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
    await this.etcd?.destroy();
    if (!process.env['S9_KEEP_LOGS']) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The block (network form) of `ip` for a block prefix length (IPv4). */
export function blockOf(ipAddr: string, prefix: number): string {
  const v = ipAddr.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  const base = Math.floor(v / size) * size;
  return `${[24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.')}/${prefix}`;
}

export function sysctl(ns: string, key: string, value: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Runs a program inside a namespace with an environment and stdin. */
export function runIn(
  ns: string,
  exe: string,
  env: Record<string, string>,
  stdin: string,
  args: string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, exe, ...args], {
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** The probe script (TCP echo server/client) and the Node that runs it. */
export const PROBE = join(repoRoot, 'test/integration/agent/probe.ts');
export const NODE_BIN = join(repoRoot, 'node_modules/.bin/node');
