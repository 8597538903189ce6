// A simulated physical L2 segment for flat mode's tests and benchmark: a "switch"
// namespace with a bridge, a "router" namespace on it, and "node" namespaces whose uplink
// (eth1) is a veth into the switch. Everything is named with one run prefix and removed
// by destroy(), even after a failure. IPv6 duplicate address detection is made quicker
// (one probe without a random start delay; on the segment's veths 100 ms instead of 1 s).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ip, ipJson } from '../../helpers/netns.ts';
import { runPrefix } from '../../helpers/prefix.ts';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function sysctl(ns: string, key: string, value: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The namespace's links, addresses, routes of every table and permanent neighbours, as `ip -j` prints them. */
export function dumps(ns: string): Record<'link' | 'addr' | 'route4' | 'route6' | 'neigh', string> {
  const j = (args: string[]): string => ip(['-j', ...args], { ns }).trim();
  return {
    link: j(['link', 'show']),
    addr: j(['addr', 'show']),
    route4: j(['-4', 'route', 'show', 'table', 'all']),
    route6: j(['-6', 'route', 'show', 'table', 'all']),
    neigh: j(['neigh', 'show', 'nud', 'permanent']),
  };
}

/**
 * Waits until the namespace's addresses are settled: no IPv6 address tentative (DAD
 * done) and `ip -j addr` the same twice 100 ms apart (carrier and the link-local
 * addresses it brings arrive asynchronously after a link is set up).
 */
export async function settled(ns: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let prev = '';
  for (;;) {
    const now = ip(['-j', 'addr', 'show'], { ns });
    if (now === prev && !now.includes('"tentative"')) return;
    if (Date.now() > deadline) throw new Error(`addresses in ${ns} still changing (or tentative) after ${timeoutMs} ms`);
    prev = now;
    await sleep(100);
  }
}

export interface PingReport {
  transmitted: number;
  received: number;
  lost: number;
}

/** `ping -i 0.01` from a namespace until stop(); the loss counts replies that never came. */
export function pingFlood(ns: string, target: string): { stop(): Promise<PingReport> } {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, 'ping', '-n', '-i', '0.01', '-W', '1', target], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    stop: async () => {
      // replies to the last requests may still be on their way
      await sleep(300);
      child.kill('SIGINT');
      await Promise.race([exited, sleep(5000)]);
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      if (!m) throw new Error(`no ping statistics:\n${out}`);
      const transmitted = Number(m[1]);
      const received = Number(m[2]);
      return { transmitted, received, lost: transmitted - received };
    },
  };
}

export class Segment {
  readonly prefix = runPrefix();
  readonly sw: string;
  readonly rt: string;
  private readonly namespaces: string[] = [];
  private seq = 0;

  constructor() {
    try {
      this.sw = this.addNs('sw');
      this.rt = this.addNs('rt');
      ip(['link', 'add', 'br0', 'type', 'bridge'], { ns: this.sw });
      ip(['link', 'set', 'br0', 'up'], { ns: this.sw });
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** A namespace `<prefix>-<short>` with loopback up and quick IPv6 DAD. */
  addNs(short: string): string {
    const name = `${this.prefix}-${short}`;
    ip(['netns', 'add', name]);
    this.namespaces.push(name);
    ip(['link', 'set', 'lo', 'up'], { ns: name });
    for (const k of ['default', 'all']) {
      sysctl(name, `net.ipv6.conf.${k}.dad_transmits`, '1');
      sysctl(name, `net.ipv6.conf.${k}.router_solicitation_delay`, '0');
    }
    return name;
  }

  /** A veth from namespace `ns` (named `ifname` there) into the switch; up on both ends. */
  plug(ns: string, ifname: string, mtu?: number): void {
    const port = `p${++this.seq}`;
    ip(['link', 'add', ifname, 'type', 'veth', 'peer', 'name', port, 'netns', this.sw], { ns });
    if (mtu) {
      ip(['link', 'set', ifname, 'mtu', String(mtu)], { ns });
      ip(['link', 'set', port, 'mtu', String(mtu)], { ns: this.sw });
    }
    sysctl(ns, `net.ipv6.neigh.${ifname}.retrans_time_ms`, '100');
    ip(['link', 'set', port, 'master', 'br0', 'up'], { ns: this.sw });
    ip(['link', 'set', ifname, 'up'], { ns });
  }

  /** The router: `addrs` on its eth0 on the segment; forwarding on. */
  router(addrs: readonly string[]): void {
    this.plug(this.rt, 'eth0');
    for (const a of addrs) ip(['addr', 'add', a, 'dev', 'eth0', ...(a.includes(':') ? ['nodad'] : [])], { ns: this.rt });
    sysctl(this.rt, 'net.ipv4.ip_forward', '1');
  }

  /** A node: uplink eth1 on the segment (MTU `mtu`), addresses added in order. */
  node(short: string, addrs: readonly string[], mtu?: number): string {
    const ns = this.addNs(short);
    this.plug(ns, 'eth1', mtu);
    for (const a of addrs) ip(['addr', 'add', a, 'dev', 'eth1'], { ns });
    return ns;
  }

  /** Links of the namespace by name (`ip -j link`). */
  links(ns: string): Map<string, { ifname: string; master?: string; mtu: number; address: string; flags: string[] }> {
    const ls = ipJson<Array<{ ifname: string; master?: string; mtu: number; address: string; flags: string[] }>>(['link', 'show'], { ns });
    return new Map(ls.map((l) => [l.ifname, l]));
  }

  destroy(): void {
    for (const n of this.namespaces.splice(0).reverse()) {
      try {
        ip(['netns', 'del', n]);
      } catch {
        // already gone
      }
    }
  }
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}
