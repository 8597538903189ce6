// Shared set-up of the hostPort tests: a "node" (host network namespace) with an uplink
// to a "client" namespace (192.0.2.1/24 and fd00:192::1/64 on the node's side), a bridge
// with pods on it made by the reference bridge + host-local (dual stack, hairpin on, the
// bridge is the gateway), and the portmap plugin under test chained after it with the
// bridge's result as prevResult, run inside the node namespace exactly as a runtime
// would run it there.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { probe, type ProbeResult, startServer } from '../../helpers/hostport.ts';
import { waitDadSettled } from '../../helpers/kstate.ts';
import { ip, nsExec } from '../../helpers/netns.ts';
import { binDir, refBinDir, type PluginRun } from '../../helpers/run-plugin.ts';
import { BridgeEnv, ok, REF_BRIDGE, type Attachment, type Conf } from '../bridge/harness.ts';

export const STRAND_PORTMAP = join(binDir, 'strand-portmap');
export const REF_PORTMAP = join(refBinDir, 'portmap');

export const UPLINK4 = '192.0.2.1';
const UPLINK6 = 'fd00:192::1';
const CLIENT4 = '192.0.2.2';
export const GATEWAY4 = '10.78.0.1';
const SUBNET4 = '10.78.0.0/24';
const SUBNET6 = 'fd78::/64';

/** The bridge's ADD result (what portmap gets as prevResult). */
export interface BridgeResult {
  cniVersion: string;
  ips: Array<{ address: string; interface?: number }>;
  [k: string]: unknown;
}

export interface Pod extends Attachment {
  ip4: string;
  ip6: string;
  result: BridgeResult;
}

export interface Node {
  tag: string;
  host: string;
  client: string;
  pods: Pod[];
}

export type Mapping = { hostPort: number; containerPort: number; protocol: string; hostIP?: string };

export class PortmapEnv {
  readonly e: BridgeEnv;
  private readonly servers: ChildProcess[] = [];

  constructor() {
    this.e = new BridgeEnv();
  }

  get prefix(): string {
    return this.e.prefix;
  }

  get netName(): string {
    return `${this.prefix}-net`;
  }

  /** A node with `pods` pods (no portmap yet). */
  async node(tag: string, pods: number): Promise<Node> {
    const host = this.e.ns.add(`${tag}h`);
    const client = this.e.ns.add(`${tag}c`);
    const up = `${this.prefix}${tag}u`;
    ip(['link', 'add', up, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', client], { ns: host });
    ip(['addr', 'add', `${UPLINK4}/24`, 'dev', up], { ns: host });
    ip(['addr', 'add', `${UPLINK6}/64`, 'dev', up, 'nodad'], { ns: host });
    ip(['link', 'set', up, 'up'], { ns: host });
    ip(['addr', 'add', `${CLIENT4}/24`, 'dev', 'uplink'], { ns: client });
    ip(['addr', 'add', 'fd00:192::2/64', 'dev', 'uplink', 'nodad'], { ns: client });
    ip(['link', 'set', 'uplink', 'up'], { ns: client });
    const n: Node = { tag, host, client, pods: [] };
    for (let i = 0; i < pods; i++) await this.addPod(n);
    await waitDadSettled([host, client, ...n.pods.map((p) => p.podNs)]);
    return n;
  }

  bridgeConf(n: Node): Conf {
    return this.e.conf(
      '1.0.0',
      { isGateway: true, isDefaultGateway: true, hairpinMode: true },
      { dataDir: join(this.e.dataDir, n.tag), ranges: [[{ subnet: SUBNET4 }], [{ subnet: SUBNET6 }]] },
    );
  }

  async addPod(n: Node): Promise<Pod> {
    const i = n.pods.length;
    const att: Attachment = { podNs: this.e.ns.add(`${n.tag}p${i}`), containerId: `${this.prefix}-${n.tag}-c${i}`, ifName: 'eth0' };
    const result = ok(await this.e.run(REF_BRIDGE, n.host, 'ADD', att, this.bridgeConf(n)), 'bridge ADD') as BridgeResult;
    const addrs = result.ips.map((x) => x.address.split('/')[0]!);
    const pod: Pod = { ...att, ip4: addrs.find((a) => !a.includes(':'))!, ip6: addrs.find((a) => a.includes(':'))!, result };
    n.pods.push(pod);
    return pod;
  }

  /** The portmap config for a pod: `opts` over the network name, its mappings and the bridge result. */
  portmapConf(pod: Pod, mappings: Mapping[], opts: Conf = {}, version = '1.0.0'): Conf {
    return { cniVersion: version, name: this.netName, type: 'portmap', ...opts, runtimeConfig: { portMappings: mappings }, prevResult: pod.result };
  }

  run(bin: string, n: Node, verb: string, pod: Attachment, conf: Conf, extra: { netnsPath?: string } = {}): Promise<PluginRun> {
    return this.e.run(bin, n.host, verb, pod, conf, extra);
  }

  /** Starts the probe server (TCP + UDP on `port`) in every pod of `n`, each answering with its name, p0, p1... */
  async serve(n: Node, port: number): Promise<void> {
    for (const [i, p] of n.pods.entries()) this.servers.push(await startServer(p.podNs, `p${i}`, port));
  }

  cleanup(): void {
    for (const s of this.servers.splice(0)) s.kill('SIGKILL');
    this.e.cleanup();
  }
}

/** The nat table of one family as iptables-save prints it, without comments and counters (rule order kept). */
export function natTable(ns: string, family: 4 | 6): string[] {
  return nsExec(ns, family === 4 ? 'iptables-save' : 'ip6tables-save', ['-t', 'nat'])
    .split('\n')
    .filter((l) => l.startsWith('-') || l.startsWith(':'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

export function nftRuleset(ns: string): string {
  return nsExec(ns, 'nft', ['list', 'ruleset']);
}

/** The pods' chains ("CNI-DN-...") in both families' nat tables. */
export function podChains(ns: string): string[] {
  return [4, 6].flatMap((f) => natTable(ns, f as 4 | 6).filter((l) => l.includes('CNI-DN-')));
}

export function sysctl(ns: string, key: string): string {
  return nsExec(ns, 'cat', [`/proc/sys/${key}`]).trim();
}

/** Where a node's hostPort is tried from: a client host, the node itself on each address, the pods themselves. */
export async function reachability(n: Node, proto: 'tcp' | 'udp', port: number, withV6 = true): Promise<Record<string, ProbeResult>> {
  const pod0 = n.pods[0]!;
  const tries: Array<[string, string, string]> = [
    ['client -> node uplink', n.client, UPLINK4],
    ['node -> own uplink address', n.host, UPLINK4],
    ['node -> own bridge address', n.host, GATEWAY4],
    ['node -> localhost', n.host, '127.0.0.1'],
    ['pod -> node (hairpin)', pod0.podNs, UPLINK4],
  ];
  if (n.pods[1]) tries.push(['other pod -> node', n.pods[1].podNs, UPLINK4]);
  if (withV6) {
    tries.push(
      ['client -> node uplink (IPv6)', n.client, UPLINK6],
      ['node -> own uplink address (IPv6)', n.host, UPLINK6],
      ['pod -> node (hairpin, IPv6)', pod0.podNs, UPLINK6],
    );
  }
  const out: Record<string, ProbeResult> = {};
  for (const [what, ns, addr] of tries) out[what] = await probe(ns, proto, addr, port);
  return out;
}

/** Asserts every probe reached `podName`'s server. */
export function expectAllReached(r: Record<string, ProbeResult>, podName: string): void {
  const failed = Object.entries(r).filter(([, v]) => !v.ok || v.name !== podName);
  expect(failed, JSON.stringify(r, null, 1)).toEqual([]);
}

/** Runs `iptables`-style tools inside `ns` (test side only). */
export function nsRun(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export { ok };
