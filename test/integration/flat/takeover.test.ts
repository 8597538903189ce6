// Flat mode's uplink takeover (agent/flat.ts) on a simulated segment (segment.ts): a node
// namespace whose uplink eth1 carries IPv4 and IPv6 addresses (a secondary, a labelled
// /32), routes in two tables with metrics, source, scope, protocol, multipath, onlink and
// a local (AnyIP) route, permanent neighbours, and things that must stay untouched (a
// dummy link with its own address and route, a blackhole route). `ip -j` is the oracle:
// before and after a restore or a failed takeover the dumps must be equal byte for byte.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureTakeover, readRecord, restore, takeover, TakeoverError } from '../../../agent/flat.ts';
import type { FlatConfig } from '../../../agent/config.ts';
import { Netns } from '../../../lib/netlink/netns.ts';
import { ip, ipJson } from '../../helpers/netns.ts';
import { SimEtcd, STRAND_BIN } from '../agent/cluster.ts';
import { dumps, pingFlood, readJson, Segment, settled, sleep } from './segment.ts';

process.env['STRAND_TEST_PREFIX'] ??= 'fl';

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const NODE_IP = '192.168.60.11';

let seg: Segment | undefined;
let dir: string;
let etcd: SimEtcd | undefined;
const agents: ChildProcess[] = [];

beforeAll(async () => {
  if (!existsSync(STRAND_BIN)) throw new Error(`${STRAND_BIN} missing (scripts/build.sh)`);
  etcd = await SimEtcd.create();
});
afterAll(async () => {
  await etcd?.destroy();
});
afterEach(async () => {
  for (const a of agents.splice(0)) {
    if (a.exitCode === null && a.signalCode === null) {
      a.kill('SIGKILL');
      await new Promise((r) => a.once('exit', r));
    }
  }
  seg?.destroy();
  seg = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The segment, a router (two IPv4 addresses, one IPv6) and node n1 with everything a real node may carry. */
async function richNode(): Promise<{ ns: string; cfg: FlatConfig }> {
  seg = new Segment();
  dir = mkdtempSync(join(tmpdir(), 'fl-flat-'));
  seg.router(['192.168.60.1/24', '192.168.60.2/24', 'fd60::1/64']);
  const ns = seg.node('n1', [], 1400);
  for (const a of [[`${NODE_IP}/24`], ['192.168.60.111/24'], ['10.60.9.9/32', 'label', 'eth1:vip'], ['fd60::11/64'], ['fd60::12/64']]) {
    ip(['addr', 'add', ...(a as string[]), 'dev', 'eth1'], { ns });
  }
  const r = (args: string[]): void => void ip(['route', 'add', ...args], { ns });
  const r6 = (args: string[]): void => void ip(['-6', 'route', 'add', ...args], { ns });
  r(['default', 'via', '192.168.60.1', 'metric', '100', 'src', NODE_IP]);
  r(['10.61.0.0/16', 'via', '192.168.60.1', 'table', '100', 'proto', 'static', 'mtu', '1300', 'advmss', '1200']);
  r(['10.62.0.0/16', 'dev', 'eth1', 'scope', 'link', 'metric', '5']);
  r(['10.63.0.0/16', 'nexthop', 'via', '192.168.60.1', 'weight', '1', 'nexthop', 'via', '192.168.60.2', 'weight', '3']);
  r(['10.64.0.0/16', 'via', '192.168.60.2', 'dev', 'eth1', 'onlink', 'initcwnd', '10', 'hoplimit', '32']);
  r(['local', '10.66.0.0/24', 'dev', 'eth1', 'table', 'local']);
  r(['blackhole', '10.70.0.0/16']);
  r6(['default', 'via', 'fd60::1', 'metric', '1024']);
  r6(['fd61::/64', 'via', 'fd60::1', 'metric', '300', 'pref', 'high']);
  ip(['neigh', 'add', '192.168.60.99', 'lladdr', '02:00:00:00:00:99', 'dev', 'eth1', 'nud', 'permanent'], { ns });
  ip(['neigh', 'add', 'fd60::99', 'lladdr', '02:00:00:00:00:98', 'dev', 'eth1', 'nud', 'permanent', 'router'], { ns });
  // not the uplink's: must not move (this kernel has no dummy links: a veth pair)
  ip(['link', 'add', 'dummy0', 'type', 'veth', 'peer', 'name', 'dummy1'], { ns });
  ip(['addr', 'add', '172.30.0.1/24', 'dev', 'dummy0'], { ns });
  ip(['link', 'set', 'dummy0', 'up'], { ns });
  ip(['link', 'set', 'dummy1', 'up'], { ns });
  r(['172.31.0.0/16', 'via', '172.30.0.254']);
  // per-link settings the bridge must take from the uplink (IPv4 over rtnetlink, IPv6 through /proc/sys)
  for (const [k, v] of Object.entries(UPLINK_SETTINGS)) sysctlW(ns, k.replace('%', 'eth1'), v);
  await settled(ns);
  await settled(seg.rt);
  return { ns, cfg: { uplink: 'eth1', bridge: 'br0', record: join(dir, 'flat.json'), vlans: [] } };
}

/** Values (none of them a fresh link's default) that the takeover copies from the uplink to the bridge. */
const UPLINK_SETTINGS: Record<string, string> = {
  'net.ipv4.conf.%.rp_filter': '2',
  'net.ipv4.conf.%.arp_ignore': '1',
  'net.ipv4.conf.%.arp_announce': '2',
  'net.ipv4.conf.%.route_localnet': '1',
  'net.ipv6.conf.%.hop_limit': '33',
};

function sysctlW(ns: string, key: string, value: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The UPLINK_SETTINGS keys' values on `link`. */
function linkSettings(ns: string, link: string): Record<string, string> {
  const keys = Object.keys(UPLINK_SETTINGS);
  const out = execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', ...keys.map((k) => k.replace('%', link))], { encoding: 'utf8' })
    .trim()
    .split('\n');
  return Object.fromEntries(keys.map((k, i) => [k, out[i] as string]));
}

/** What the takeover must produce: the uplink in br0 with the uplink's MTU and MAC, the configuration on br0. */
function expectTakenOver(ns: string, before: ReturnType<typeof dumps>): void {
  const links = (seg as Segment).links(ns);
  const eth1 = links.get('eth1');
  const br = links.get('br0');
  expect(eth1?.master).toBe('br0');
  expect(br?.mtu).toBe(1400);
  expect(br?.address).toBe(eth1?.address);
  expect(linkSettings(ns, 'br0')).toEqual(UPLINK_SETTINGS);
  const addrs = ipJson<Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number; label?: string; scope: string }> }>>(['addr', 'show'], {
    ns,
  });
  const on = (l: string): string[] =>
    (addrs.find((a) => a.ifname === l)?.addr_info ?? [])
      .filter((a) => a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}${a.label ? ` ${a.label}` : ''}`);
  expect(on('eth1')).toEqual([]);
  expect(on('br0')).toEqual(['192.168.60.11/24 br0', '10.60.9.9/32 br0:vip', '192.168.60.111/24 br0', 'fd60::12/64', 'fd60::11/64']);
  expect(on('dummy0')).toEqual(['172.30.0.1/24 dummy0']);
  // every route of before, with eth1 replaced by br0, is there (IPv6 link-local and multicast routes are per link)
  type R = { dev?: string; dst: string; nexthops?: Array<{ dev?: string }> };
  const toBr = <T extends { dev?: string }>(x: T): T => (x.dev === 'eth1' ? { ...x, dev: 'br0' } : x);
  const norm = (rs: R[]): string[] =>
    rs
      .filter((x) => !x.dst.startsWith('fe80') && !x.dst.startsWith('ff00'))
      .map((x) => JSON.stringify({ ...toBr(x), ...(x.nexthops ? { nexthops: x.nexthops.map(toBr) } : {}) }))
      .sort();
  const after = dumps(ns);
  expect(norm(JSON.parse(after.route4) as R[])).toEqual(norm(JSON.parse(before.route4) as R[]));
  expect(norm(JSON.parse(after.route6) as R[])).toEqual(norm(JSON.parse(before.route6) as R[]));
  expect(after.neigh).toBe(before.neigh.replaceAll('"eth1"', '"br0"'));
}

function agentArgs(cfg: FlatConfig, stateFile: string): string[] {
  const e = etcd as SimEtcd;
  return [
    'agent',
    '--node-name=n1',
    '--mode=flat',
    '--network=flatnet',
    `--uplink=${cfg.uplink}`,
    `--flat-bridge=${cfg.bridge}`,
    `--flat-record=${cfg.record}`,
    `--etcd-endpoints=${e.unixEndpoint}`,
    `--etcd-prefix=/${(seg as Segment).prefix}`,
    `--state-file=${stateFile}`,
    `--pod-mtu-file=${join(dir, 'pod-mtu')}`,
    '--resync=1s',
    '--log-level=debug',
  ];
}

/** The pod MTU file and the bridge's MTU, once both are `mtu` (the agent follows the uplink at its next resync). */
async function podMtuIs(ns: string, mtu: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const file = join(dir, 'pod-mtu');
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '(none)';
    const br = (seg as Segment).links(ns).get('br0')?.mtu;
    if (text === `${mtu}\n` && br === mtu) return;
    if (Date.now() > deadline) throw new Error(`pod MTU file ${JSON.stringify(text)}, br0 mtu ${br}: not ${mtu} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** The agent binary in `ns` (`ip` runs `inNs(argv)`: by default `ip netns exec <ns> argv`). */
function startAgent(ns: string, args: string[], inNs = (argv: string[]): string[] => ['netns', 'exec', ns, ...argv]): ChildProcess {
  const child = spawn('ip', inNs([STRAND_BIN, ...args]), {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
  });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
  Object.defineProperty(child, 'log', { get: () => log });
  agents.push(child);
  return child;
}

interface FlatState {
  pid: number;
  flat?: { takeover: string; ms?: number };
  addresses: string[];
}

async function waitFlat(stateFile: string, child: ChildProcess, timeoutMs = 30_000): Promise<FlatState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = readJson<FlatState>(stateFile);
    if (s?.flat && s.pid === child.pid) return s;
    if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${(child as unknown as { log: string }).log}`);
    if (Date.now() > deadline) throw new Error(`no takeover after ${timeoutMs} ms: ${(child as unknown as { log: string }).log}`);
    await sleep(20);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

describe('flat mode: uplink takeover', () => {
  it('by the agent: a 10 ms ping from the router loses at most a handful; a restart recognises it; --restore gives back ip -j dumps byte for byte', async () => {
    const { ns, cfg } = await richNode();
    const before = dumps(ns);
    const stateFile = join(dir, 'agent.json');

    const ping = pingFlood((seg as Segment).rt, NODE_IP);
    await sleep(300);
    const agent = startAgent(ns, agentArgs(cfg, stateFile));
    const s = await waitFlat(stateFile, agent);
    const loss = await ping.stop();
    console.log(`[flat] takeover in ${s.flat?.ms} ms; router -> node ping every 10 ms: ${loss.transmitted} sent, ${loss.lost} lost`);
    expect(s.flat?.takeover).toBe('taken-over');
    expect(loss.transmitted).toBeGreaterThan(30);
    expect(loss.lost).toBeLessThanOrEqual(5);
    expect(s.addresses).toEqual([NODE_IP, 'fd60::12']);
    await settled(ns);
    expectTakenOver(ns, before);
    expect(readRecord(cfg.record)?.phase).toBe('done');
    // pods get the uplink's MTU (the pod MTU file), and the bridge and the file follow a change
    await podMtuIs(ns, 1400);
    ip(['link', 'set', 'eth1', 'mtu', '1380'], { ns });
    await podMtuIs(ns, 1380);
    ip(['link', 'set', 'eth1', 'mtu', '1400'], { ns });
    await podMtuIs(ns, 1400);

    // SIGTERM leaves the takeover; the next start recognises it and changes nothing
    await stop(agent);
    const takenOver = dumps(ns);
    const again = startAgent(ns, agentArgs(cfg, stateFile));
    expect((await waitFlat(stateFile, again)).flat?.takeover).toBe('recognised');
    await stop(again);
    expect(dumps(ns)).toEqual(takenOver);

    const ping2 = pingFlood((seg as Segment).rt, NODE_IP);
    await sleep(300);
    const r = spawnSync('ip', ['netns', 'exec', ns, STRAND_BIN, 'agent', '--restore', `--flat-record=${cfg.record}`], { encoding: 'utf8' });
    const loss2 = await ping2.stop();
    console.log(`[flat] restore: ${loss2.transmitted} sent, ${loss2.lost} lost`);
    expect(r.status, r.stderr).toBe(0);
    expect(loss2.lost).toBeLessThanOrEqual(5);
    await settled(ns);
    expect(dumps(ns)).toEqual(before);
    expect(existsSync(cfg.record)).toBe(false);
    // a second restore has nothing to do and says so
    const r2 = spawnSync('ip', ['netns', 'exec', ns, STRAND_BIN, 'agent', '--restore', `--flat-record=${cfg.record}`], { encoding: 'utf8' });
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/nothing to restore/);
  });

  it('a takeover that fails at any step leaves the node exactly as it was', async () => {
    const { ns, cfg } = await richNode();
    const before = dumps(ns);
    const handle = Netns.open(`/run/netns/${ns}`);
    try {
      const steps: string[] = [];
      await takeover(handle, cfg, { log: quiet, hooks: { after: (s) => void steps.push(s) } });
      await restore(handle, cfg.record, { log: quiet });
      await settled(ns);
      expect(dumps(ns)).toEqual(before);
      expect(steps.length).toBeGreaterThan(20);
      for (const step of steps) {
        const err = await takeover(handle, cfg, {
          log: quiet,
          hooks: {
            after: (s) => {
              if (s === step) throw new Error(`injected at ${s}`);
            },
          },
        }).catch((e: unknown) => e);
        expect(String(err)).toContain(`injected at ${step}`);
        await settled(ns);
        expect(dumps(ns), `after a failure at ${step}`).toEqual(before);
        expect(existsSync(cfg.record), step).toBe(false);
      }
      console.log(`[flat] injected a failure after each of ${steps.length} steps: ${steps.join(' ')}`);
    } finally {
      handle.close();
    }
  });

  it('a takeover interrupted half-way (the agent killed) is put back and done again at the next start', async () => {
    const { ns, cfg } = await richNode();
    const before = dumps(ns);
    const handle = Netns.open(`/run/netns/${ns}`);
    try {
      for (const step of ['enslave', 'address#2', 'route#3', 'uplink-route#1', 'uplink-address#2']) {
        // a hook that never returns: the takeover stops there, no rollback runs (as after SIGKILL)
        let reached!: () => void;
        const there = new Promise<void>((r) => (reached = r));
        const hang = async (s: string): Promise<void> => {
          if (s !== step) return;
          reached();
          await new Promise<void>(() => {});
        };
        void takeover(handle, cfg, { log: quiet, hooks: { after: hang } });
        await there;
        expect(readRecord(cfg.record)?.phase).toBe('started');
        const o = await ensureTakeover(handle, cfg, { log: quiet });
        expect(o.state).toBe('taken-over');
        await settled(ns);
        expectTakenOver(ns, before);
        await restore(handle, cfg.record, { log: quiet });
        await settled(ns);
        expect(dumps(ns), `after a crash at ${step}`).toEqual(before);
      }
    } finally {
      handle.close();
    }
  });

  it('adopts an existing bridge (a pod port on it) and gives it back its own settings on restore', async () => {
    const { ns, cfg } = await richNode();
    ip(['link', 'add', 'br0', 'type', 'bridge'], { ns });
    // up with a live pod port, as a bridge carrying pods is (what a link's first "up" or
    // first carrier creates, a qdisc or an IPv6 link-local address, stays when it goes down)
    ip(['link', 'set', 'br0', 'mtu', '1500', 'address', '02:00:00:00:0b:01', 'up'], { ns });
    ip(['link', 'add', 'vethpod', 'type', 'veth', 'peer', 'name', 'vethpeer'], { ns });
    ip(['link', 'set', 'vethpod', 'master', 'br0', 'up'], { ns });
    ip(['link', 'set', 'vethpeer', 'up'], { ns });
    // the carrier comes up (and with it the link-local addresses) asynchronously
    const up = (): boolean =>
      ipJson<Array<{ ifname: string; operstate: string; addr_info: Array<{ scope: string }> }>>(['addr', 'show'], { ns })
        .filter((l) => ['br0', 'vethpod', 'vethpeer'].includes(l.ifname))
        .every((l) => l.operstate === 'UP' && l.addr_info.some((a) => a.scope === 'link'));
    for (let i = 0; i < 200 && !up(); i++) await sleep(25);
    expect(up()).toBe(true);
    await settled(ns);
    const before = dumps(ns);
    const settingsBefore = linkSettings(ns, 'br0');
    expect(settingsBefore).not.toEqual(UPLINK_SETTINGS);
    const handle = Netns.open(`/run/netns/${ns}`);
    try {
      const rec = await takeover(handle, cfg, { log: quiet });
      expect(rec.bridge).toMatchObject({ created: false, before: { mtu: 1500, mac: '02:00:00:00:0b:01', up: true } });
      expect(linkSettings(ns, 'br0')).toEqual(UPLINK_SETTINGS);
      expect((seg as Segment).links(ns).get('eth1')?.master).toBe('br0');
      expect(await ensureTakeover(handle, cfg, { log: quiet })).toMatchObject({ state: 'recognised' });
      await restore(handle, cfg.record, { log: quiet });
      await settled(ns);
      expect(dumps(ns)).toEqual(before);
      expect(linkSettings(ns, 'br0')).toEqual(settingsBefore);
    } finally {
      handle.close();
    }
  });

  it("with /proc/sys read-only (the DaemonSet's NET_ADMIN-only agent): IPv4 settings still copied (rtnetlink), IPv6 ones reported, as is accept_ra turned off on the bridge", async () => {
    const { ns, cfg } = await richNode();
    const before = dumps(ns);
    const stateFile = join(dir, 'agent.json');
    // a private mount namespace whose /proc/sys is read-only, as in an unprivileged container
    const readOnly = (argv: string[]): string[] => [
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '/bin/sh',
      '-c',
      'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"',
      'sh',
      ...argv,
    ];
    const probe = spawnSync('ip', readOnly(['/bin/sh', '-c', 'echo 0 > /proc/sys/net/ipv4/conf/eth1/rp_filter']), { encoding: 'utf8' });
    expect(probe.status, 'a sysctl write must fail there').not.toBe(0);
    expect(probe.stderr).toMatch(/read-only/i);

    const child = startAgent(ns, agentArgs(cfg, stateFile), readOnly);
    const log = (): string => (child as unknown as { log: string }).log;
    expect((await waitFlat(stateFile, child)).flat?.takeover).toBe('taken-over');
    const hop = 'net/ipv6/conf/br0/hop_limit';
    const problems = async (want: RegExp): Promise<string[]> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const p = readJson<{ problems: string[] }>(stateFile)?.problems ?? [];
        if (p.some((x) => want.test(x))) return p;
        if (Date.now() > deadline) throw new Error(`no problem matching ${want} in ${JSON.stringify(p)}:\n${log()}`);
        await sleep(100);
      }
    };
    expect((await problems(/hop_limit/)).filter((x) => x.includes(hop))).toHaveLength(1);
    expect(readRecord(cfg.record)?.notCopied).toEqual({ [hop]: '33' });
    const got = linkSettings(ns, 'br0');
    expect(got).toEqual({ ...UPLINK_SETTINGS, 'net.ipv6.conf.%.hop_limit': linkSettings(ns, 'dummy0')['net.ipv6.conf.%.hop_limit'] });
    expect(got['net.ipv6.conf.%.hop_limit']).not.toBe('33');
    // what strand-bridge ADD does to the bridge: the agent may not undo it here, and says so
    // (the bridge has IPv6 addresses of the segment)
    sysctlW(ns, 'net.ipv6.conf.br0.accept_ra', '0');
    await problems(/net\/ipv6\/conf\/br0\/accept_ra is not 1/);
    expect(log()).toMatch(/accept_ra is not 1 \(eth1's\): \/proc\/sys is read-only/);
    await stop(child);

    const r = spawnSync('ip', ['netns', 'exec', ns, STRAND_BIN, 'agent', '--restore', `--flat-record=${cfg.record}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    await settled(ns);
    expect(dumps(ns)).toEqual(before);
  });

  it('strand install --uninstall undoes the takeover before removing the files', async () => {
    const { ns, cfg } = await richNode();
    const before = dumps(ns);
    const handle = Netns.open(`/run/netns/${ns}`);
    try {
      await takeover(handle, cfg, { log: quiet });
    } finally {
      handle.close();
    }
    const bin = join(dir, 'bin');
    const conf = join(dir, 'conf');
    const r = spawnSync('ip', ['netns', 'exec', ns, STRAND_BIN, 'install', '--uninstall', '--bin-dir', bin, '--conf-dir', conf, '--flat-record', cfg.record], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/restored eth1/);
    await settled(ns);
    expect(dumps(ns)).toEqual(before);
    expect(existsSync(cfg.record)).toBe(false);
  });

  it('refuses, changing nothing: uplink in another bridge, bridge name taken by another kind of link, missing uplink, nexthop objects', async () => {
    const { ns, cfg } = await richNode();
    const handle = Netns.open(`/run/netns/${ns}`);
    const refused = async (why: RegExp, c: FlatConfig = cfg): Promise<void> => {
      const before = dumps(ns);
      const e = await takeover(handle, c, { log: quiet }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(TakeoverError);
      expect(String(e)).toMatch(why);
      expect(dumps(ns)).toEqual(before);
      expect(existsSync(c.record)).toBe(false);
    };
    try {
      await refused(/does not exist/, { ...cfg, uplink: 'eth9' });
      ip(['link', 'add', 'br9', 'type', 'veth', 'peer', 'name', 'br9p'], { ns });
      await refused(/br9 exists and is not a bridge/, { ...cfg, bridge: 'br9' });
      ip(['link', 'add', 'other', 'type', 'bridge'], { ns });
      ip(['link', 'set', 'dummy0', 'master', 'other'], { ns });
      await refused(/dummy0 is already a port of other/, { ...cfg, uplink: 'dummy0' });
      ip(['nexthop', 'add', 'id', '7', 'via', '192.168.60.1', 'dev', 'eth1'], { ns });
      ip(['route', 'add', '10.80.0.0/16', 'nhid', '7'], { ns });
      await refused(/nexthop object 7/);
    } finally {
      handle.close();
    }
  });
});
