// A simulated flat-mode cluster (docs/flat.md) for the integration tests and
// bench:datapath: the segment of segment.ts (switch, router), N node namespaces each with
// a veth uplink eth1 on it, one etcd (agent/cluster.ts's SimEtcd: unix socket, reachable
// from every namespace), an agent per node in mode flat (taking eth1 over into br0), and
// pods made by the real strand-bridge (isGateway false, bridge br0) with strand-ipam on
// etcd, run inside the node namespace as a runtime would.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, runPlugin } from '../../helpers/run-plugin.ts';
import { runIn, SimEtcd, STRAND_BIN } from '../agent/cluster.ts';
import { ip } from '../../helpers/netns.ts';
import { Segment, settled, sleep } from './segment.ts';

const SUBNET = '192.168.77.0/24';
export const ROUTER = '192.168.77.1';
export const nodeIp = (i: number): string => `192.168.77.${10 + i}`;
export const ROUTER6 = 'fd77::1';
export const nodeIp6 = (i: number): string => `fd77::${10 + i}`;

export interface FlatNode {
  name: string;
  ns: string;
  ip: string;
  stateFile: string;
  /** The agent's pod MTU file (--pod-mtu-file). */
  podMtuFile: string;
  record: string;
  logFile: string;
  agent?: ChildProcess;
}

export interface FlatPod {
  ns: string;
  node: FlatNode;
  ip: string;
  /** Dual stack: the pod's IPv6 address. */
  ip6?: string;
  mac: string;
  containerId: string;
}

export interface FlatOptions {
  nodes: number;
  /** The strand-ipam range (default: the whole segment, gateway the router). */
  range?: Record<string, unknown>;
  /** More keys of the strand-ipam section. */
  ipam?: Record<string, unknown>;
  /** Dual stack: the segment also has fd77::/64 (router fd77::1, nodes fd77::1N), pods get an address of it. */
  ipv6?: boolean;
  network?: string;
}

export class FlatCluster {
  readonly seg = new Segment();
  readonly dir = mkdtempSync(join(tmpdir(), 'fl-cluster-'));
  readonly network: string;
  readonly etcdPrefix: string;
  etcd!: SimEtcd;
  nodes: FlatNode[] = [];
  pods: FlatPod[] = [];
  private readonly range: Record<string, unknown>;
  private podSeq = 0;

  readonly opts: FlatOptions;

  constructor(opts: FlatOptions) {
    this.opts = opts;
    this.network = opts.network ?? 'flatnet';
    this.etcdPrefix = `/${this.seg.prefix}`;
    this.range = opts.range ?? { subnet: SUBNET, gateway: ROUTER };
  }

  /** Router, nodes (eth1 with the node address, default route via the router), etcd. */
  async setup(): Promise<void> {
    this.etcd = await SimEtcd.create();
    this.seg.router([`${ROUTER}/24`, ...(this.opts.ipv6 ? [`${ROUTER6}/64`] : [])]);
    for (let i = 1; i <= this.opts.nodes; i++) {
      const name = `n${i}`;
      const ns = this.seg.node(name, [`${nodeIp(i)}/24`, ...(this.opts.ipv6 ? [`${nodeIp6(i)}/64`] : [])]);
      ip(['route', 'add', 'default', 'via', ROUTER], { ns });
      if (this.opts.ipv6) ip(['-6', 'route', 'add', 'default', 'via', ROUTER6], { ns });
      this.nodes.push({
        name,
        ns,
        ip: nodeIp(i),
        stateFile: join(this.dir, `${name}.json`),
        podMtuFile: join(this.dir, `${name}-pod-mtu`),
        record: join(this.dir, `${name}-flat.json`),
        logFile: join(this.dir, `${name}.log`),
      });
    }
    for (const n of this.nodes) await settled(n.ns);
  }

  agentArgs(n: FlatNode, extra: string[] = []): string[] {
    return [
      'agent',
      `--node-name=${n.name}`,
      '--mode=flat',
      '--uplink=eth1',
      '--flat-bridge=br0',
      `--flat-record=${n.record}`,
      `--network=${this.network}`,
      `--etcd-endpoints=${this.etcd.unixEndpoint}`,
      `--etcd-prefix=${this.etcdPrefix}`,
      '--lease-ttl=10s',
      '--resync=2s',
      `--state-file=${n.stateFile}`,
      `--pod-mtu-file=${n.podMtuFile}`,
      '--log-level=debug',
      ...extra,
    ];
  }

  startAgent(n: FlatNode, extra: string[] = []): ChildProcess {
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

  agentLog(n: FlatNode): string {
    try {
      return readFileSync(n.logFile, 'utf8').slice(-4000);
    } catch {
      return '(no log)';
    }
  }

  state(n: FlatNode): Record<string, unknown> | undefined {
    try {
      return JSON.parse(readFileSync(n.stateFile, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** Starts every agent and waits until each has taken its uplink over and is synced with etcd. */
  async startAgents(timeoutMs = 30_000): Promise<void> {
    for (const n of this.nodes) this.startAgent(n);
    for (const n of this.nodes) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = this.state(n);
        if (s?.['synced'] && s['registered'] && s['flat'] && s['pid'] === n.agent?.pid) break;
        if (n.agent?.exitCode !== null) throw new Error(`agent of ${n.name} exited:\n${this.agentLog(n)}`);
        if (Date.now() > deadline) throw new Error(`agent of ${n.name} not ready after ${timeoutMs} ms:\n${this.agentLog(n)}`);
        await sleep(25);
      }
    }
  }

  /** Waits until the node's agent has reserved its addresses in the IPAM; returns them. */
  async waitReserved(n: FlatNode, timeoutMs = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = (this.state(n) as { flat?: { reserved?: string[] } } | undefined)?.flat?.reserved;
      if (r) return r;
      if (Date.now() > deadline) throw new Error(`${n.name} reserved nothing after ${timeoutMs} ms:\n${this.agentLog(n)}`);
      await sleep(50);
    }
  }

  netConf(n: FlatNode): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: this.network,
      type: 'strand-bridge',
      bridge: 'br0',
      isGateway: false,
      ipMasq: false,
      ipam: {
        type: 'strand-ipam',
        nodeName: n.name,
        ranges: [[this.range], ...(this.opts.ipv6 ? [[{ subnet: 'fd77::/64', gateway: ROUTER6 }]] : [])],
        routes: [{ dst: '0.0.0.0/0' }, ...(this.opts.ipv6 ? [{ dst: '::/0' }] : [])],
        blockAffinity: false,
        ...this.opts.ipam,
        etcd: { endpoints: [this.etcd.unixEndpoint], prefix: this.etcdPrefix, dialTimeout: 3000, requestTimeout: 5000 },
      },
    };
  }

  /** `strand ipam <args>` against this cluster's etcd; stdout (exit codes other than `ok` throw). */
  async ipamCli(args: string[], ok: readonly number[] = [0]): Promise<string> {
    const r = await runIn(this.seg.rt, STRAND_BIN, {}, '', [
      'ipam',
      `--etcd-endpoints=${this.etcd.unixEndpoint}`,
      `--etcd-prefix=${this.etcdPrefix}`,
      `--network=${this.network}`,
      ...args,
    ]);
    if (!ok.includes(r.code ?? -1)) throw new Error(`strand ipam ${args.join(' ')}: ${r.code} ${r.stdout} ${r.stderr}`);
    return r.stdout;
  }

  /**
   * strand-ipam ADD alone (what strand-bridge delegates) with node `n`'s config, run from
   * the test's namespace (IPAM touches no namespace; CNI_NETNS names the node's): the
   * CNI result or error JSON and the exit code.
   */
  async ipamAdd(n: FlatNode, containerId: string): Promise<{ code: number | null; out: Record<string, unknown> }> {
    const conf = this.netConf(n);
    const r = await runPlugin(
      'strand-ipam',
      { command: 'ADD', containerId, netns: `/run/netns/${n.ns}`, ifName: 'eth0', path: binDir },
      { ...conf, type: 'strand-ipam' },
    );
    return { code: r.code, out: (r.json ?? {}) as Record<string, unknown> };
  }

  /** strand-bridge ADD inside the node namespace for a new pod namespace: the plugin's exit code and output. */
  async runAdd(n: FlatNode): Promise<{ ns: string; containerId: string; code: number | null; stdout: string; stderr: string }> {
    const seq = ++this.podSeq;
    const ns = this.seg.addNs(`${n.name}p${seq}`);
    const containerId = `${this.seg.prefix}-pod-${seq}`;
    const r = await runIn(
      n.ns,
      join(binDir, 'strand-bridge'),
      { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir },
      JSON.stringify(this.netConf(n)),
    );
    return { ns, containerId, ...r };
  }

  /** strand-bridge ADD of a new pod; throws when it fails. */
  async addPod(n: FlatNode): Promise<FlatPod> {
    const r = await this.runAdd(n);
    const { ns, containerId } = r;
    if (r.code !== 0) throw new Error(`ADD on ${n.name} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    const res = JSON.parse(r.stdout) as { ips?: Array<{ address: string }>; interfaces?: Array<{ mac?: string; sandbox?: string }> };
    const addr = res.ips?.find((x) => !x.address.includes(':'))?.address;
    const addr6 = res.ips?.find((x) => x.address.includes(':'))?.address;
    const mac = res.interfaces?.find((i) => i.sandbox)?.mac;
    if (!addr || !mac) throw new Error(`ADD on ${n.name}: no address or MAC in ${r.stdout}`);
    const pod: FlatPod = { ns, node: n, ip: addr.split('/')[0] as string, mac, containerId };
    if (addr6) pod.ip6 = addr6.split('/')[0] as string;
    this.pods.push(pod);
    return pod;
  }

  async destroy(): Promise<void> {
    for (const n of this.nodes) {
      const a = n.agent;
      if (a && a.exitCode === null && a.signalCode === null) {
        a.kill('SIGKILL');
        await new Promise((r) => a.once('exit', r));
      }
    }
    this.seg.destroy();
    await this.etcd?.destroy();
    if (existsSync(this.dir) && !process.env['FL_KEEP_LOGS']) rmSync(this.dir, { recursive: true, force: true });
  }
}
