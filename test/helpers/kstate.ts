import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

// Kernel-state snapshots for differential tests: what the reference plugin and strand
// left behind in a "host" namespace and a "pod" namespace, read through `ip -j`,
// `bridge -j`, /proc/sys and iptables-save/nft (the independent oracle), reduced to the
// fields that a plugin decides (not counters or timers), and normalised so that two runs
// can be compared with deep equality: random veth names, MACs, link-local addresses and
// interface indexes are replaced by stable tokens.

export interface LinkState {
  name: string;
  kind: string;
  mtu: number;
  flags: string[];
  operstate: string;
  master?: string;
  mac: string;
  promiscuity: number;
  txqlen: number;
  numTxQueues?: number;
  bridge?: Record<string, unknown>;
  port?: Record<string, unknown>;
  addrGenMode?: string;
}

export interface AddrState {
  dev: string;
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
  flags: string[];
  broadcast?: string;
}

export interface RouteState {
  dst: string;
  table: string;
  type: string;
  dev?: string;
  gateway?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  pref?: string;
  mtu?: number;
  advmss?: number;
}

export interface NsState {
  links: LinkState[];
  addrs: AddrState[];
  routes: RouteState[];
  sysctls: Record<string, string>;
  /** `bridge -j vlan show` entries (only when asked for: needs vlan support). */
  vlans?: Array<{ dev: string; vlans: Array<{ vlan: number; vlanEnd?: number; flags: string[] }> }>;
  /** nat table rules from iptables-save and ip6tables-save (chains and -A lines). */
  nat: { v4: string[]; v6: string[] };
  /** `nft list ruleset`, tables other than the ones iptables-nft made, handles dropped. */
  nft: string[];
}

export interface Snapshot {
  host: NsState;
  pod?: NsState;
}

export interface SnapshotOptions {
  hostNs: string;
  podNs?: string;
  /** The pod interface name; its per-interface sysctls are read. */
  ifName?: string;
  /** Read `bridge -j vlan show` too. */
  vlans?: boolean;
  /** Read the nftables ruleset (masquerade with the nftables backend, macspoofchk). */
  nft?: boolean;
}

function run(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function ipj<T>(ns: string, args: string[]): T {
  const out = execFileSync('ip', ['-n', ns, '-j', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
  return (out ? JSON.parse(out) : []) as T;
}

interface IpLink {
  ifname: string;
  flags: string[];
  mtu: number;
  operstate: string;
  master?: string;
  address?: string;
  promiscuity?: number;
  txqlen?: number;
  num_tx_queues?: number;
  inet6_addr_gen_mode?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_kind?: string;
    info_slave_data?: Record<string, unknown>;
  };
}

// Bridge attributes a plugin sets or a user would notice; port attributes likewise.
const BRIDGE_KEYS = ['vlan_filtering', 'vlan_default_pvid', 'stp_state', 'mcast_snooping', 'nf_call_iptables'];
const PORT_KEYS = ['state', 'hairpin', 'isolated', 'learning', 'flood', 'mcast_flood', 'bcast_flood', 'proxy_arp', 'neigh_suppress', 'guard', 'root_block'];

function pick(src: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!src) return out;
  for (const k of keys) if (k in src) out[k] = src[k];
  return out;
}

function readLinks(ns: string): LinkState[] {
  const links = ipj<IpLink[]>(ns, ['-d', 'link', 'show']);
  return links.map((l) => {
    const s: LinkState = {
      name: l.ifname,
      kind: l.linkinfo?.info_kind ?? (l.ifname === 'lo' ? 'loopback' : 'unknown'),
      mtu: l.mtu,
      flags: [...l.flags].sort(),
      operstate: l.operstate,
      mac: l.address ?? '',
      promiscuity: l.promiscuity ?? 0,
      txqlen: l.txqlen ?? 0,
    };
    if (l.master !== undefined) s.master = l.master;
    if (l.num_tx_queues !== undefined) s.numTxQueues = l.num_tx_queues;
    if (l.inet6_addr_gen_mode !== undefined) s.addrGenMode = l.inet6_addr_gen_mode;
    if (l.linkinfo?.info_kind === 'bridge') s.bridge = pick(l.linkinfo.info_data, BRIDGE_KEYS);
    if (l.linkinfo?.info_slave_kind === 'bridge') s.port = pick(l.linkinfo.info_slave_data, PORT_KEYS);
    return s;
  });
}

interface IpAddrLink {
  ifname: string;
  addr_info: Array<Record<string, unknown> & { family: string; local: string; prefixlen: number; scope: string }>;
}

// addr_info keys that are flags (boolean true when set); timing-dependent ones
// (tentative, optimistic) are left out on purpose.
const ADDR_FLAG_KEYS = ['nodad', 'noprefixroute', 'dadfailed', 'deprecated', 'secondary', 'permanent', 'mngtmpaddr', 'home'];

function readAddrs(ns: string): AddrState[] {
  const links = ipj<IpAddrLink[]>(ns, ['addr', 'show']);
  const out: AddrState[] = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      const s: AddrState = {
        dev: l.ifname,
        family: a.family,
        local: a.local,
        prefixlen: a.prefixlen,
        scope: a.scope,
        flags: ADDR_FLAG_KEYS.filter((k) => a[k] === true),
      };
      if (typeof a['broadcast'] === 'string') s.broadcast = a['broadcast'];
      out.push(s);
    }
  }
  return out;
}

interface IpRoute {
  dst: string;
  type?: string;
  table?: string;
  dev?: string;
  gateway?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  pref?: string;
  metrics?: Array<Record<string, number>>;
}

function readRoutes(ns: string): RouteState[] {
  const out: RouteState[] = [];
  for (const fam of ['-4', '-6']) {
    for (const r of ipj<IpRoute[]>(ns, [fam, 'route', 'show', 'table', 'all'])) {
      const s: RouteState = { dst: r.dst, table: r.table ?? 'main', type: r.type ?? 'unicast' };
      if (r.dev !== undefined) s.dev = r.dev;
      if (r.gateway !== undefined) s.gateway = r.gateway;
      if (r.protocol !== undefined) s.protocol = r.protocol;
      if (r.scope !== undefined) s.scope = r.scope;
      if (r.prefsrc !== undefined) s.prefsrc = r.prefsrc;
      if (r.metric !== undefined) s.metric = r.metric;
      if (r.pref !== undefined) s.pref = r.pref;
      for (const m of r.metrics ?? []) {
        if (m['mtu'] !== undefined) s.mtu = m['mtu'];
        if (m['advmss'] !== undefined) s.advmss = m['advmss'];
      }
      out.push(s);
    }
  }
  return out;
}

/** Namespace-wide and per-interface sysctls a bridge-style plugin touches. */
function sysctlPaths(links: string[], hostSide: boolean): string[] {
  const paths = hostSide
    ? ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding', 'net/ipv4/conf/all/forwarding']
    : ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding'];
  for (const l of links) {
    paths.push(
      `net/ipv4/conf/${l}/arp_notify`,
      `net/ipv4/conf/${l}/forwarding`,
      `net/ipv6/conf/${l}/accept_ra`,
      `net/ipv6/conf/${l}/accept_dad`,
      `net/ipv6/conf/${l}/enhanced_dad`,
      `net/ipv6/conf/${l}/disable_ipv6`,
      `net/ipv6/conf/${l}/keep_addr_on_down`,
      `net/ipv6/conf/${l}/forwarding`,
      `net/ipv6/conf/${l}/ndisc_notify`,
    );
  }
  return paths;
}

function readSysctls(ns: string, paths: string[]): Record<string, string> {
  // grep -H prints "path:value" for each readable file and skips (with -s) missing ones.
  const files = paths.map((p) => `/proc/sys/${p}`);
  const r = spawnSync('ip', ['netns', 'exec', ns, 'grep', '-s', '-H', '', ...files], { encoding: 'utf8' });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    out[line.slice('/proc/sys/'.length, i)] = line.slice(i + 1).trim();
  }
  return out;
}

function readNat(ns: string, cmd: 'iptables-save' | 'ip6tables-save'): string[] {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, '-t', 'nat'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} in ${ns} failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('-A ') || l.startsWith(':'))
    .map((l) => (l.startsWith(':') ? l.replace(/ \[\d+:\d+\]$/, '') : l))
    .sort();
}

function readNft(ns: string): string[] {
  const out = run(ns, 'nft', ['list', 'ruleset']);
  return out
    .split('\n')
    .map((l) => l.replace(/ # handle \d+$/, '').trimEnd())
    .filter((l) => l.trim() !== '');
}

function readVlans(ns: string): NonNullable<NsState['vlans']> {
  const raw = ipjBridge(ns);
  return raw.map((e) => ({
    dev: e.ifname,
    vlans: e.vlans.map((v) => ({ vlan: v.vlan, ...(v.vlanEnd !== undefined ? { vlanEnd: v.vlanEnd } : {}), flags: [...(v.flags ?? [])].sort() })),
  }));
}

function ipjBridge(ns: string): Array<{ ifname: string; vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }> }> {
  const out = run(ns, 'bridge', ['-j', 'vlan', 'show']).trim();
  return out ? JSON.parse(out) : [];
}

export function snapshotNs(ns: string, opts: { host: boolean; vlans?: boolean; nft?: boolean }): NsState {
  const links = readLinks(ns);
  const names = links.map((l) => l.name).filter((n) => n !== 'lo');
  const st: NsState = {
    links,
    addrs: readAddrs(ns),
    routes: readRoutes(ns),
    sysctls: readSysctls(ns, sysctlPaths(opts.host ? names : ['lo', ...names], opts.host)),
    nat: opts.host ? { v4: readNat(ns, 'iptables-save'), v6: readNat(ns, 'ip6tables-save') } : { v4: [], v6: [] },
    nft: opts.nft ? readNft(ns) : [],
  };
  if (opts.vlans) st.vlans = readVlans(ns);
  return st;
}

/** Reads the host namespace and (when given) the pod namespace. */
export function snapshot(opts: SnapshotOptions): Snapshot {
  const nsOpts = { vlans: opts.vlans ?? false, nft: opts.nft ?? false };
  const snap: Snapshot = { host: snapshotNs(opts.hostNs, { host: true, ...nsOpts }) };
  if (opts.podNs !== undefined) snap.pod = snapshotNs(opts.podNs, { host: false, ...nsOpts, vlans: false });
  return snap;
}

/**
 * Waits until no IPv6 address in the namespaces is tentative: local routes and anycast
 * routes of an address appear when its duplicate address detection ends (about a second
 * with accept_dad=1), so snapshots taken before that differ by timing alone. Also waits
 * (at most `linkLocalMs`) until every link with carrier has its link-local address.
 */
export async function waitDadSettled(namespaces: string[], timeoutMs = 5000, linkLocalMs = 2000): Promise<void> {
  const start = Date.now();
  const deadline = start + timeoutMs;
  for (;;) {
    const links = namespaces.flatMap((ns) => ipj<Array<IpAddrLink & { flags?: string[] }>>(ns, ['addr', 'show']));
    const busy = links.some((l) => (l.addr_info ?? []).some((a) => a['tentative'] === true));
    // The kernel adds an up link's IPv6 link-local address when linkwatch reports its
    // carrier, which can lag the plugin's return: wait for it too (bounded; a link that
    // never gets one, e.g. IPv6 disabled, is then compared as it is).
    const noLinkLocal = links.some(
      (l) =>
        (l.flags ?? []).includes('LOWER_UP') &&
        !(l.flags ?? []).includes('LOOPBACK') &&
        !(l.addr_info ?? []).some((a) => a.family === 'inet6' && a.scope === 'link'),
    );
    if (!busy && (!noLinkLocal || Date.now() - start > linkLocalMs)) return;
    if (Date.now() > deadline) throw new Error(`IPv6 addresses still tentative after ${timeoutMs} ms in ${namespaces.join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------------------------
// Normalisation

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const VETH_RE = /^veth[0-9a-f]{8}$/;

/** The EUI-64 link-local address the kernel derives from a MAC (addrgenmode eui64). */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const e = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(((e[i]! << 8) | e[i + 1]!).toString(16));
  return `fe80::${groups.join(':')}`;
}

export interface NormaliseOptions {
  /** Extra exact-string replacements applied everywhere (e.g. the netns path -> "<pod>"). */
  replace?: Record<string, string>;
  /** Drop these LinkState keys before comparing (e.g. txqlen, see the differential test). */
  dropLinkKeys?: Array<keyof LinkState>;
  /** Drop routes and addresses of these families' link-local bits (default keep). */
}

/**
 * Replaces random names and addresses with stable tokens: host veth names `vethXXXXXXXX`
 * become `veth*` (numbered in link order when there are several), each MAC becomes
 * `mac(<link>)` after the (normalised) link that owns it, each EUI-64 link-local address
 * `ll(<link>)`. The same mapping applies to `extra` (e.g. the plugin's result JSON), so
 * a result's MAC must equal the kernel's to normalise to the same token. Sorted for
 * order-independent comparison.
 */
export function normalise<T = unknown>(snap: Snapshot, extra?: T, opts: NormaliseOptions = {}): { snap: Snapshot; extra: T | undefined } {
  const map = new Map<string, string>(Object.entries(opts.replace ?? {}));
  const nsList: Array<[string, NsState]> = [['host', snap.host]];
  if (snap.pod) nsList.push(['pod', snap.pod]);
  let vethN = 0;
  const vethCount = snap.host.links.filter((l) => VETH_RE.test(l.name)).length;
  // A bridge whose MAC was never set explicitly takes the lowest MAC of its ports, which
  // port that is being random: such a bridge MAC becomes "mac(lowest port)" (wherever an
  // object names the bridge), and the port keeps its own token. Ports are registered
  // before bridges for that reason.
  const followers = new Map<string, string>();
  for (const l of snap.host.links) {
    if (l.kind === 'bridge' && snap.host.links.some((p) => p.master === l.name && p.mac === l.mac)) followers.set(l.name, l.mac);
  }
  for (const [, st] of nsList) {
    for (const l of st.links) {
      if (VETH_RE.test(l.name) && !map.has(l.name)) {
        map.set(l.name, vethCount > 1 ? `veth*${vethN++}` : 'veth*');
      }
    }
  }
  for (const [where, st] of nsList) {
    for (const l of [...st.links].sort((a, b) => Number(a.kind === 'bridge') - Number(b.kind === 'bridge'))) {
      const linkTok = map.get(l.name) ?? l.name;
      if (MAC_RE.test(l.mac) && l.mac !== '00:00:00:00:00:00' && !map.has(l.mac)) {
        map.set(l.mac, `mac(${where}:${linkTok})`);
        map.set(linkLocalFromMac(l.mac), `ll(${where}:${linkTok})`);
      }
    }
  }
  const sub = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const direct = map.get(v);
      if (direct !== undefined) return direct;
      // A link-local address or MAC no current link explains (a bridge keeps the
      // link-local address of the MAC it had before a port's MAC replaced it).
      if (/^fe80::[0-9a-f:]+$/.test(v)) return 'll(?)';
      if (MAC_RE.test(v) && v !== '00:00:00:00:00:00') return 'mac(?)';
      // "8000.aa:bb:..." bridge ids, "-s fe80::..." inside rules, CIDR forms
      let s = v;
      for (const [k, r] of map) if (k.length >= 6 && s.includes(k)) s = s.split(k).join(r);
      return s;
    }
    if (Array.isArray(v)) return v.map(sub);
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) o[k] = sub(x);
      const src = v as { name?: unknown; mac?: unknown };
      if (typeof src.name === 'string' && followers.get(src.name) === src.mac) o['mac'] = 'mac(lowest port)';
      return o;
    }
    return v;
  };
  const fixNs = (st: NsState): NsState => {
    const s = sub(st) as NsState;
    const drop = opts.dropLinkKeys ?? [];
    s.links = s.links
      .map((l) => {
        const c = { ...l } as Record<string, unknown>;
        for (const k of drop) delete c[k];
        return c as unknown as LinkState;
      })
      .sort((a, b) => a.name.localeCompare(b.name));
    // A bridge's carrier and operstate follow its ports through the kernel's linkwatch,
    // which may lag by up to a second: not something a plugin decides.
    for (const l of s.links) {
      if (l.kind !== 'bridge') continue;
      l.flags = l.flags.filter((f) => f !== 'NO-CARRIER' && f !== 'LOWER_UP');
      l.operstate = '*';
    }
    // Link-local addresses of a MAC a bridge no longer has (see sub()) come and go with
    // the same timing: drop them.
    // So does a bridge's own IPv6 link-local address (added by addrconf when the carrier
    // first comes up): drop those and their routes as well.
    const bridges = new Set(s.links.filter((l) => l.kind === 'bridge').map((l) => l.name));
    const bridgeLl = (dev: string | undefined, v: string): boolean => dev !== undefined && bridges.has(dev) && (v.startsWith('ll(') || v === 'fe80::/64');
    s.addrs = s.addrs.filter((a) => a.local !== 'll(?)' && !bridgeLl(a.dev, a.local));
    s.routes = s.routes.filter((r) => r.dst !== 'll(?)' && !bridgeLl(r.dev, r.dst));
    s.addrs.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    s.routes.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    const sys: Record<string, string> = {};
    for (const k of Object.keys(s.sysctls).sort()) sys[k] = s.sysctls[k]!;
    s.sysctls = sys;
    return s;
  };
  // Sysctl keys carry link names: rewrite keys too.
  const renameKeys = (st: NsState): NsState => {
    const sys: Record<string, string> = {};
    for (const [k, v] of Object.entries(st.sysctls)) {
      let key = k;
      for (const [from, to] of map) if (VETH_RE.test(from) && key.includes(`/${from}/`)) key = key.replace(`/${from}/`, `/${to}/`);
      sys[key] = v;
    }
    return { ...st, sysctls: sys };
  };
  const out: Snapshot = { host: fixNs(renameKeys(snap.host)) };
  if (snap.pod) out.pod = fixNs(renameKeys(snap.pod));
  return { snap: out, extra: extra === undefined ? undefined : (sub(extra) as T) };
}

// ---------------------------------------------------------------------------------
// Files (IPAM stores): a listing with contents, for "nothing leaked" checks.

export function listFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      if (statSync(p).isDirectory()) walk(p, r);
      else out[r] = readFileSync(p, 'utf8');
    }
  };
  walk(dir, '');
  return out;
}
