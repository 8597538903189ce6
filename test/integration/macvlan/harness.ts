import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalise, snapshot, type Snapshot } from '../../helpers/kstate.ts';
import { ip, ipJson, NetnsSet } from '../../helpers/netns.ts';
import { binDir, refBinDir, runPlugin, type PluginEnv, type PluginRun } from '../../helpers/run-plugin.ts';

// Shared by the macvlan integration tests (this host) and the ipvlan guest tests: an L2
// segment made of a veth pair, one end ("master") in a "host" namespace where the plugin
// runs, the other end in an "external" namespace standing for the rest of the network.

export const SPEC_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SPEC_VERSIONS)[number];
/** Debian's reference plugins (v1.1.1) stop at 1.0.0. */
export const REF_MAX_VERSION = '1.0.0';

export function atLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

export interface Segment {
  set: NetnsSet;
  /** Namespace where the plugin runs and the master lives. */
  host: string;
  /** Namespace on the other end of the master's veth. */
  ext: string;
  /** The master link in `host`. */
  master: string;
  /** The peer in `ext` (or the bridge holding it when `hairpin` is set). */
  extIf: string;
  /** ext's IPv4 address (no prefix) on the segment. */
  extAddr: string;
  /** ext's IPv6 address (no prefix) on the segment. */
  extAddr6: string;
  subnet: string;
  subnet6: string;
  /** Temp dir for IPAM data and wrapper scripts; removed by cleanup(). */
  tmp: string;
  cleanup(): void;
}

export interface SegmentOptions {
  /** Third octet of 10.88.X.0/24 and fd00:88:X::/64 (default 0). */
  net?: number;
  /** Put ext's end in a bridge with hairpin on, so a VEPA switch reflects frames back. */
  hairpin?: boolean;
  masterMtu?: number;
}

export function makeSegment(opts: SegmentOptions = {}): Segment {
  const set = new NetnsSet();
  const tmp = mkdtempSync(join(tmpdir(), `${set.prefix}-`));
  const n = opts.net ?? 0;
  const seg: Segment = {
    set,
    host: '',
    ext: '',
    master: 'm0',
    extIf: 'e0',
    extAddr: `10.88.${n}.254`,
    extAddr6: `fd00:88:${n}::fe`,
    subnet: `10.88.${n}.0/24`,
    subnet6: `fd00:88:${n}::/64`,
    tmp,
    cleanup() {
      set.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
  try {
    seg.host = set.add('h');
    seg.ext = set.add('x');
    ip(['link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'e0', 'netns', seg.ext], { ns: seg.host });
    if (opts.masterMtu !== undefined) {
      ip(['link', 'set', 'm0', 'mtu', String(opts.masterMtu)], { ns: seg.host });
      ip(['link', 'set', 'e0', 'mtu', String(opts.masterMtu)], { ns: seg.ext });
    }
    ip(['link', 'set', 'm0', 'up'], { ns: seg.host });
    if (opts.hairpin) {
      ip(['link', 'add', 'br0', 'type', 'bridge'], { ns: seg.ext });
      ip(['link', 'set', 'e0', 'master', 'br0'], { ns: seg.ext });
      ip(['link', 'set', 'dev', 'e0', 'type', 'bridge_slave', 'hairpin', 'on'], { ns: seg.ext });
      ip(['link', 'set', 'br0', 'up'], { ns: seg.ext });
      seg.extIf = 'br0';
    }
    ip(['link', 'set', 'e0', 'up'], { ns: seg.ext });
    nsSysctl(seg.ext, `net/ipv6/conf/${seg.extIf}/accept_dad`, '0');
    ip(['addr', 'add', `${seg.extAddr}/24`, 'dev', seg.extIf], { ns: seg.ext });
    ip(['addr', 'add', `${seg.extAddr6}/64`, 'dev', seg.extIf, 'nodad'], { ns: seg.ext });
    return seg;
  } catch (e) {
    seg.cleanup();
    throw e;
  }
}

export function nsSysctl(ns: string, key: string, value?: string): string {
  const args = value === undefined ? ['-n', key.replaceAll('/', '.')] : ['-q', '-w', `${key.replaceAll('/', '.')}=${value}`];
  return execFileSync('ip', ['netns', 'exec', ns, 'sysctl', ...args], { encoding: 'utf8' }).trim();
}

/**
 * A wrapper executable that runs `exe` inside namespace `ns` (`ip netns exec`), so the
 * shared runPlugin helper can drive a plugin whose "host" is a test namespace.
 */
export function inNs(seg: Segment, ns: string, exe: string): string {
  const name = `${ns}-${exe.split('/').pop()}`;
  const path = join(seg.tmp, name);
  writeFileSync(path, `#!/bin/sh\nexec ip netns exec '${ns}' '${exe}'\n`);
  chmodSync(path, 0o755);
  return path;
}

export const strandBin = (name: string): string => join(binDir, name);
export const refBin = (name: string): string => join(refBinDir, name);

export interface Pod {
  ns: string;
  path: string;
  containerId: string;
  ifName: string;
}

export function addPod(seg: Segment, short: string, ifName = 'eth0'): Pod {
  const ns = seg.set.add(short);
  return { ns, path: seg.set.path(ns), containerId: `${seg.set.prefix}-${short}-cid`, ifName };
}

/** Runs `exe` in the segment's host namespace as a runtime would for `pod`. */
export function cni(seg: Segment, exe: string, command: PluginEnv['command'], pod: Pod, conf: object, extra: Partial<PluginEnv> = {}): Promise<PluginRun> {
  return runPlugin(inNs(seg, seg.host, exe), { command, containerId: pod.containerId, netns: pod.path, ifName: pod.ifName, ...extra }, conf);
}

/** Runs a verb that names no container (STATUS, GC) in the host namespace. */
export function cniNoContainer(seg: Segment, exe: string, command: 'STATUS' | 'GC', conf: object): Promise<PluginRun> {
  return runPlugin(inNs(seg, seg.host, exe), { command }, conf);
}

/** Asserts a zero exit status, with the plugin's own words when it is not. */
export function ok(r: PluginRun): PluginRun {
  if (r.code !== 0) throw new Error(`plugin failed (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  return r;
}

export function ping(fromNs: string, to: string): boolean {
  const args = to.includes(':') ? ['-6'] : [];
  const r = spawnSync('ip', ['netns', 'exec', fromNs, 'ping', ...args, '-c', '1', '-W', '2', '-q', to], {
    stdio: 'ignore',
  });
  return r.status === 0;
}

/** Pings until one reply arrives or `tries` pings went unanswered (IPv6 DAD, ARP). */
export function pingEventually(fromNs: string, to: string, tries = 3): boolean {
  for (let i = 0; i < tries; i++) if (ping(fromNs, to)) return true;
  return false;
}

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  /** Parent in another namespace (index there) ... */
  link_index?: number;
  /** ... or in the same namespace (its name). */
  link?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

export function links(ns: string): LinkInfo[] {
  return ipJson<LinkInfo[]>(['-d', 'link', 'show'], { ns });
}

export function link(ns: string, name: string): LinkInfo | undefined {
  return links(ns).find((l) => l.ifname === name);
}

export function linkNames(ns: string): string[] {
  return links(ns)
    .map((l) => l.ifname)
    .sort();
}

export function addrs(ns: string, dev: string): string[] {
  const out = ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>>(['addr', 'show', 'dev', dev], { ns });
  return out.flatMap((l) => l.addr_info.filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`));
}

/** Every file under `dir` whose content mentions `needle` (an IPAM reservation). */
export function filesMentioning(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (readFileSync(p, 'utf8').includes(needle)) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}

/** host-local IPAM over the segment's subnet, data in the segment's temp dir. */
export function hostLocal(seg: Segment, opts: { dataDir?: string; dual?: boolean; routes?: boolean } = {}): object {
  const ranges: Array<Array<Record<string, string>>> = [[{ subnet: seg.subnet }]];
  if (opts.dual) ranges.push([{ subnet: seg.subnet6 }]);
  const routes = opts.routes === false ? [] : [{ dst: '0.0.0.0/0' }, ...(opts.dual ? [{ dst: '::/0' }] : [])];
  return {
    type: 'host-local',
    dataDir: opts.dataDir ?? join(seg.tmp, 'ipam'),
    ranges,
    routes,
  };
}

/** strand-ipam with its local store (host-local compatible config). */
export function strandIpam(seg: Segment, opts: { dataDir?: string; dual?: boolean } = {}): object {
  return { ...hostLocal(seg, opts), type: 'strand-ipam' };
}

/**
 * IPAM for a spec version: host-local (Debian's, up to 1.0.0) for the versions it speaks,
 * strand-ipam for 1.1.0.
 */
export function ipamFor(seg: Segment, version: string, opts: { dataDir?: string; dual?: boolean } = {}): object {
  return atLeast(version, '1.1.0') ? strandIpam(seg, opts) : hostLocal(seg, opts);
}

/** The first IPv4 address a result of any version reports. */
export function resultIPv4(version: string, result: any): string {
  if (!atLeast(version, '0.3.0')) return String(result?.ip4?.ip ?? '');
  const ipc = (result?.ips ?? []).find((i: { address: string }) => !i.address.includes(':'));
  return String(ipc?.address ?? '');
}

/** Waits (up to 5 s) until no IPv6 address in `ns` is tentative. */
export async function settled(ns: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (ip(['-6', 'addr', 'show', 'tentative'], { ns }).trim() === '') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`IPv6 addresses in ${ns} still tentative after 5 s`);
}

export interface DiffRun {
  snap: Snapshot;
  result: unknown;
}

/**
 * For differential tests: ADD `conf` through `exe` in `pod`, snapshot the host and pod
 * namespaces, normalise (MACs, link-local addresses, the netns path), DEL, and check the
 * pod is empty again. Go prints `"dns": {}` for an empty DNS section; an absent one
 * means the same to every runtime, so it is dropped from the result.
 */
export async function diffRun(s: Segment, pod: Pod, exe: string, conf: Record<string, unknown>): Promise<DiffRun> {
  const r = ok(await cni(s, exe, 'ADD', pod, conf));
  // Compare settled states: the kernel adds the local route of a link-local address only
  // once its DAD is over, a second or so after the link came up (in the pod, and for the
  // master in the host namespace on the first run).
  await settled(pod.ns);
  await settled(s.host);
  const raw = snapshot({ hostNs: s.host, podNs: pod.ns, ifName: pod.ifName });
  const { snap, extra } = normalise(raw, r.json, { replace: { [pod.path]: '<pod>' } });
  ok(await cni(s, exe, 'DEL', pod, conf));
  const left = linkNames(pod.ns);
  if (left.join() !== 'lo') throw new Error(`${String(conf['type'])} DEL left links in the pod: ${left.join(' ')}`);
  const result = { ...(extra as Record<string, unknown>) };
  if (JSON.stringify(result['dns']) === '{}') delete result['dns'];
  return { snap, result };
}

/**
 * The reference (v1.1.1) kernel state with the differences strand means to have:
 *  - ndisc_notify is set to 1 on the pod interface next to arp_notify (upstream sets both
 *    since v1.2; 1.1.1 sets only arp_notify);
 *  - keep_addr_on_down is set to 1 on the pod interface when an IPv6 address is added
 *    (upstream since v1.5);
 *  - the link keeps the kernel's default txqlen (1000, what `ip link add` gives); the Go
 *    netlink library of 1.1.1 sends 0. Both are unused: macvlan and ipvlan links have no
 *    qdisc (noqueue), and a qdisc attached later (pfifo) takes its limit from txqlen,
 *    where 0 would be the surprising value.
 */
export function expectedFromRef(ref: Snapshot, ifName: string, ipv6: boolean): Snapshot {
  const pod = structuredClone(ref.pod!);
  const ndisc = `net/ipv6/conf/${ifName}/ndisc_notify`;
  if (pod.sysctls[ndisc] !== undefined && pod.addrs.some((a) => a.dev === ifName && a.scope === 'global')) {
    pod.sysctls[ndisc] = '1';
  }
  const keep = `net/ipv6/conf/${ifName}/keep_addr_on_down`;
  if (ipv6 && pod.sysctls[keep] !== undefined) pod.sysctls[keep] = '1';
  for (const l of pod.links) if (l.name === ifName) l.txqlen = 1000;
  return { host: ref.host, pod };
}
