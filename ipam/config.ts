// strand-ipam configuration: host-local compatible ranges and range sets, requested
// addresses, routes, DNS, plus strand's own store/block options. Pure except for reading
// `resolvConf` and the etcd TLS files named in the config (both errors name the field).
//
// Semantics follow the reference host-local:
// - `ranges` is a list of range sets; each range set yields one address per ADD; legacy
//   top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway` form one more set, prepended;
//   the `ipRanges` capability (runtimeConfig.ipRanges) is prepended before those.
// - subnet must be a network (no host bits) with at least 2 host bits.
// - gateway defaults to the subnet's first address; rangeStart to subnet+1; rangeEnd to
//   the last address (the one before broadcast for IPv4).
// - the network address, IPv4 broadcast and the gateway are never handed out.
// - `exclude` (Whereabouts' name and meaning): a list of CIDRs (or single addresses) never
//   handed out, on a range (`ranges[i][j].exclude`) or for every range of the matching
//   family (`ipam.exclude`); a requested address inside one is refused (code 7).
import { readFileSync } from 'node:fs';
import { loadCniArgs } from '../lib/cni/args.ts';
import { clip } from '../lib/cni/errors.ts';
import { fieldError, goFieldKeys, optString } from '../lib/cni/validate.ts';
import type { DNS, NetConf, Route } from '../lib/cni/types.ts';
import { parseEtcdConfig, type EtcdConfig } from './store/etcd-config.ts';
import { bitsOf, bounds, formatCidr, formatIP, network as networkOf, tryParseCidr, tryParseIP, type Cidr, type Family, type IPAddr } from '../lib/addr/cidr.ts';
import { isObject } from '../lib/cni/json.ts';

/** Addresses lo..hi (inclusive) that are never handed out, and where they come from. */
export interface Interval {
  lo: bigint;
  hi: bigint;
  /** "ipam.exclude[0] (10.1.0.0/30)", or a reservation's description. */
  source: string;
  /** A request naming an address inside it explicitly may take it (store reservations only). */
  allowRequested?: boolean;
  /** Set on store reservations (a range's exclusions have its family). */
  family?: Family;
}

export interface Range {
  family: Family;
  /** The subnet, host bits zero. */
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway: bigint;
  /** Config path of this range, for messages: "ipam.ranges[0][1]". */
  field: string;
  /** `exclude` of this range and of the ipam section, inside the subnet, sorted by lo. */
  exclude: Interval[];
}

export interface RangeSet {
  family: Family;
  ranges: Range[];
  field: string;
}

export interface RequestedIP {
  ip: IPAddr;
  /** The range set it belongs to. */
  set: number;
  field: string;
}

export interface IpamConfig {
  network: string;
  rangeSets: RangeSet[];
  routes: Route[];
  dns?: DNS;
  dataDir: string;
  etcd?: EtcdConfig;
  /**
   * Block prefix length per family (clamped to each subnet's own prefix); 0: the whole
   * range is one block (the local store's default: one node uses it, and host-local
   * hands out addresses in range order).
   */
  blockSize: Record<Family, number>;
  strictAffinity: boolean;
  /**
   * false: blocks belong to no node (flat mode, docs/flat.md): every node allocates
   * anywhere in the range, compare-and-swap keeps addresses unique cluster-wide.
   */
  blockAffinity: boolean;
  nodeName?: string;
  requested: RequestedIP[];
  /** CNI GC never releases an attachment created less than this long before it started. */
  gcGraceMs: number;
  /** CNI GC keeps an attachment whose recorded network namespace still exists and holds one of its addresses. */
  gcKeepLiveNetns: boolean;
}

const DEFAULT_GC_GRACE_MS = 10_000;

/** The fields of one range (host-local's names). */
const RANGE_FIELDS = ['subnet', 'rangeStart', 'rangeEnd', 'gateway', 'exclude'] as const;

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
/** Blocks of the etcd store by default (nodes claim blocks); the local store's default is 0: see IpamConfig.blockSize. */
const DEFAULT_BLOCK_SIZE: Record<Family, number> = { 4: 26, 6: 122 };

function ipValue(s: string, family: Family, field: string): bigint {
  const ip = tryParseIP(s);
  if (!ip) throw fieldError(field, `invalid IP address ${JSON.stringify(s)}`);
  if (ip.family !== family) throw fieldError(field, `${s} is not an IPv${family} address`);
  return ip.value;
}

const ip = (family: Family, value: bigint): string => formatIP({ family, value });

function inSubnet(r: { subnet: Cidr }, v: bigint): boolean {
  const hostBits = BigInt(bitsOf(r.subnet.family) - r.subnet.prefix);
  return v >> hostBits === r.subnet.ip >> hostBits;
}

/** Parses one `{subnet, rangeStart, rangeEnd, gateway}` and applies host-local's defaults. */
function parseRange(raw: unknown, field: string): Range {
  if (!isObject(raw)) throw fieldError(field, 'must be an object with a subnet');
  const s = optString(raw, 'subnet', field);
  if (s === undefined) throw fieldError(`${field}.subnet`, 'is required');
  const c = tryParseCidr(s);
  if (!c) throw fieldError(`${field}.subnet`, `invalid CIDR ${JSON.stringify(s)}`);
  const net = networkOf(c);
  if (net.ip !== c.ip) {
    throw fieldError(`${field}.subnet`, `${s} has host bits set (the network is ${formatCidr(net)})`);
  }
  if (c.prefix > bitsOf(c.family) - 2) throw fieldError(`${field}.subnet`, `network ${s} too small to allocate from`);
  const fam = c.family;
  const last = bounds(c).hi;
  const r: Range = { family: fam, subnet: c, start: c.ip + 1n, end: fam === 4 ? last - 1n : last, gateway: c.ip + 1n, field, exclude: [] };
  const gw = optString(raw, 'gateway', field);
  if (gw !== undefined) {
    r.gateway = ipValue(gw, fam, `${field}.gateway`);
    if (!inSubnet(r, r.gateway)) throw fieldError(`${field}.gateway`, `${gw} is not in subnet ${s}`);
  }
  const rs = optString(raw, 'rangeStart', field);
  if (rs !== undefined) {
    r.start = ipValue(rs, fam, `${field}.rangeStart`);
    if (!inSubnet(r, r.start)) throw fieldError(`${field}.rangeStart`, `${rs} is not in subnet ${s}`);
  }
  const re = optString(raw, 'rangeEnd', field);
  if (re !== undefined) {
    r.end = ipValue(re, fam, `${field}.rangeEnd`);
    if (!inSubnet(r, r.end)) throw fieldError(`${field}.rangeEnd`, `${re} is not in subnet ${s}`);
  }
  if (r.start > r.end) throw fieldError(`${field}.rangeStart`, `${ip(fam, r.start)} is after rangeEnd ${ip(fam, r.end)}`);
  if (raw['exclude'] !== undefined && raw['exclude'] !== null) {
    for (const x of parseExclude(raw['exclude'], `${field}.exclude`)) {
      if (x.family !== fam) throw fieldError(x.field, `${x.text} is not an IPv${fam} CIDR`);
      addExclusion(r, x);
    }
  }
  return r;
}

interface ExcludeEntry {
  family: Family;
  lo: bigint;
  hi: bigint;
  text: string;
  field: string;
}

/** A list of CIDRs or addresses ("10.1.0.0/30", "10.1.0.7"), each naming its field. */
function parseExclude(raw: unknown, field: string): ExcludeEntry[] {
  if (!Array.isArray(raw)) throw fieldError(field, 'must be a list of CIDRs');
  return raw.map((x, i) => {
    const f = `${field}[${i}]`;
    const c =
      typeof x === 'string' ? (tryParseCidr(x) ?? (tryParseIP(x) ? tryParseCidr(`${x}/${bitsOf((tryParseIP(x) as IPAddr).family)}`) : undefined)) : undefined;
    if (!c) throw fieldError(f, `invalid CIDR ${JSON.stringify(typeof x === 'string' ? clip(x, 64) : x)}`);
    return { family: c.family, ...bounds(c), text: formatCidr(networkOf(c)), field: f };
  });
}

/** Adds the part of `x` inside the range's subnet to its exclusions (sorted by lo). */
function addExclusion(r: Range, x: ExcludeEntry): void {
  const first = r.subnet.ip;
  const last = bounds(r.subnet).hi;
  const lo = maxBig(x.lo, first);
  const hi = minBig(x.hi, last);
  if (lo > hi) return;
  r.exclude.push({ lo, hi, source: `${x.field} (${x.text})` });
  r.exclude.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
}

/** Math.max/min for bigints (which Math cannot take). */
export function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

export function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** The exclusion of `list` (sorted by lo) holding `v`, if any. */
export function excludedBy(list: readonly Interval[], v: bigint): Interval | undefined {
  for (const x of list) {
    if (x.lo > v) return undefined;
    if (v <= x.hi) return x;
  }
  return undefined;
}

function rangeText(r: Range): string {
  return `${ip(r.family, r.start)}-${ip(r.family, r.end)}`;
}

/** "10.1.0.1-10.1.0.254,10.2.0.1-10.2.0.254", as host-local names a range set. */
export function rangeSetText(rs: RangeSet): string {
  return rs.ranges.map(rangeText).join(',');
}

function rangesOverlap(a: Range, b: Range): boolean {
  return a.family === b.family && a.start <= b.end && b.start <= a.end;
}

function subnetsOverlap(a: Range, b: Range): boolean {
  return a.family === b.family && a.subnet.ip <= bounds(b.subnet).hi && b.subnet.ip <= bounds(a.subnet).hi;
}

function parseRangeSet(raw: unknown, field: string): RangeSet {
  if (!Array.isArray(raw) || raw.length === 0) throw fieldError(field, 'must be a non-empty list of ranges');
  const ranges = raw.map((r, i) => parseRange(r, `${field}[${i}]`));
  const first = ranges[0] as Range;
  for (const r of ranges) {
    if (r.family !== first.family) throw fieldError(r.field, 'mixes address families within one range set');
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const a = ranges[i] as Range;
      const b = ranges[j] as Range;
      if (rangesOverlap(a, b)) throw fieldError(b.field, `range ${rangeText(b)} overlaps ${a.field} (${rangeText(a)})`);
    }
  }
  return { family: first.family, ranges, field };
}

/** The range of `rs` that can hold `v` (inside subnet and [rangeStart, rangeEnd]). */
export function rangeFor(rs: RangeSet, v: IPAddr): Range | undefined {
  if (v.family !== rs.family) return undefined;
  return rs.ranges.find((r) => v.value >= r.start && v.value <= r.end && inSubnet(r, v.value));
}

/** Whether `v` may be handed out from `r`: in range, not network, broadcast or gateway. */
export function usableIn(r: Range, v: bigint): boolean {
  if (v < r.start || v > r.end || !inSubnet(r, v)) return false;
  if (v === r.subnet.ip || v === r.gateway) return false;
  if (r.family === 4 && v === bounds(r.subnet).hi) return false;
  return true;
}

// ---------------------------------------------------------------------------------

/** A duration of zero or more: milliseconds as a number, or "10s", "500ms", "1m". */
function parseGrace(v: unknown, field: string): number {
  if (v === undefined || v === null) return DEFAULT_GC_GRACE_MS;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v);
    if (m) return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
  }
  throw fieldError(field, 'must be a duration (milliseconds, or "10s", "500ms", "1m")');
}

function parseBlockSize(raw: unknown, fam: Family, field: string, etcd: boolean): number {
  if (raw === undefined) return etcd ? DEFAULT_BLOCK_SIZE[fam] : 0;
  const bits = bitsOf(fam);
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > bits) {
    throw fieldError(field, `must be a prefix length between 1 and ${bits}`);
  }
  return raw;
}

/** "nameserver/domain/search/options" lines of a resolv.conf, as host-local reads them. */
export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const [k, ...rest] = f;
    if (!k || k.startsWith('#') || k.startsWith(';')) continue;
    if (k === 'nameserver' && rest[0]) dns.nameservers = [...(dns.nameservers ?? []), rest[0]];
    else if (k === 'domain' && rest[0]) dns.domain = rest[0];
    else if (k === 'search') dns.search = rest;
    else if (k === 'options') dns.options = [...(dns.options ?? []), ...rest];
  }
  return dns;
}

function parseRoutes(raw: unknown, field: string): Route[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw fieldError(field, 'must be a list of routes');
  return raw.map((r, i) => {
    const f = `${field}[${i}]`;
    if (!isObject(r)) throw fieldError(f, 'must be an object');
    const dst = optString(r, 'dst', f);
    if (dst === undefined || !tryParseCidr(dst)) throw fieldError(`${f}.dst`, `invalid CIDR ${JSON.stringify(r['dst'])}`);
    const out: Route = { ...(r as unknown as Route), dst };
    const gw = optString(r, 'gw', f);
    if (gw !== undefined && !tryParseIP(gw)) throw fieldError(`${f}.gw`, `invalid IP address ${JSON.stringify(gw)}`);
    return out;
  });
}

/** "10.1.0.5" or "10.1.0.5/24" (host-local accepts both); returns the address. */
function parseRequestedIP(s: unknown, field: string): IPAddr {
  if (typeof s === 'string') {
    const c = tryParseCidr(s);
    if (c) return { family: c.family, value: c.ip };
    const a = tryParseIP(s);
    if (a) return a;
  }
  throw fieldError(field, `invalid IP address ${JSON.stringify(s)}`);
}

/** Requested addresses from args.cni.ips, runtimeConfig.ips, else CNI_ARGS IP= (comma list). */
function collectRequested(conf: NetConf, envArgs: Map<string, string>): Array<{ ip: IPAddr; field: string }> {
  const out: Array<{ ip: IPAddr; field: string }> = [];
  const argIps = conf.args?.cni?.['ips'];
  if (argIps !== undefined && !Array.isArray(argIps)) throw fieldError('args.cni.ips', 'must be a list of IP addresses');
  const rtIps = conf.runtimeConfig?.['ips'];
  if (rtIps !== undefined && !Array.isArray(rtIps)) throw fieldError('runtimeConfig.ips', 'must be a list of IP addresses');
  if (!argIps?.length) {
    const envIp = envArgs.get('IP');
    if (envIp) for (const [i, s] of envIp.split(',').entries()) out.push({ ip: parseRequestedIP(s.trim(), `CNI_ARGS IP[${i}]`), field: 'CNI_ARGS IP' });
  }
  for (const [i, s] of (argIps ?? []).entries()) out.push({ ip: parseRequestedIP(s, `args.cni.ips[${i}]`), field: `args.cni.ips[${i}]` });
  for (const [i, s] of (rtIps ?? []).entries()) out.push({ ip: parseRequestedIP(s, `runtimeConfig.ips[${i}]`), field: `runtimeConfig.ips[${i}]` });
  return out;
}

export interface ParseOptions {
  /** Raw CNI_ARGS. */
  cniArgs?: string;
  /** Read resolvConf and TLS files (default true). */
  readFiles?: boolean;
  /** Leave requested addresses out (DEL, CHECK, GC, STATUS do not use them). */
  ignoreRequested?: boolean;
}

/**
 * Validates and narrows the IPAM part of a network config. Every error is CniError 7
 * naming the field ("ipam.ranges[0][0].subnet: invalid CIDR ...").
 */
export function parseIpamConfig(conf: NetConf, opts: ParseOptions = {}): IpamConfig {
  const ipam = conf.ipam as unknown;
  if (!isObject(ipam)) throw fieldError('ipam', 'IPAM config missing "ipam" key');
  // CNI_ARGS as host-local reads it (libcni's LoadArgs): every segment a K=V pair,
  // IgnoreUnknown a boolean, keys other than IP refused unless IgnoreUnknown (CniError 4
  // naming CNI_ARGS, as every strand plugin answers). Checked on every verb, as host-local.
  const envArgs = loadCniArgs(opts.cniArgs, ['IP']);
  const sets = rangeSetsOf(conf, ipam);
  if (ipam['exclude'] !== undefined && ipam['exclude'] !== null) {
    for (const x of parseExclude(ipam['exclude'], 'ipam.exclude')) {
      for (const rs of sets) for (const r of rs.ranges) if (r.family === x.family) addExclusion(r, x);
    }
  }
  checkNoOverlap(sets);
  const requested = opts.ignoreRequested ? [] : assignRequested(sets, collectRequested(conf, envArgs));

  const readFiles = opts.readFiles ?? true;
  const hasEtcd = ipam['etcd'] !== undefined && ipam['etcd'] !== null;
  const cfg: IpamConfig = {
    network: conf.name,
    rangeSets: sets,
    routes: parseRoutes(ipam['routes'], 'ipam.routes'),
    dataDir: optString(ipam, 'dataDir', 'ipam') ?? DEFAULT_DATA_DIR,
    blockSize: {
      4: parseBlockSize(ipam['blockSize'], 4, 'ipam.blockSize', hasEtcd),
      6: parseBlockSize(ipam['blockSizeV6'], 6, 'ipam.blockSizeV6', hasEtcd),
    },
    requested,
    gcGraceMs: parseGrace(ipam['gcGracePeriod'], 'ipam.gcGracePeriod'),
    // in this order: the first bad field is the one reported
    gcKeepLiveNetns: optBool(ipam, 'gcKeepLiveNetns') ?? true,
    strictAffinity: optBool(ipam, 'strictAffinity') ?? false,
    blockAffinity: optBool(ipam, 'blockAffinity') ?? true,
  };
  if (!cfg.blockAffinity && cfg.strictAffinity) throw fieldError('ipam.blockAffinity', 'false (blocks of no node) contradicts strictAffinity true');
  const node = optString(ipam, 'nodeName', 'ipam');
  if (node !== undefined) cfg.nodeName = node;
  const resolv = optString(ipam, 'resolvConf', 'ipam');
  if (resolv !== undefined && readFiles) cfg.dns = readResolvConf(resolv);
  if (ipam['etcd'] !== undefined && ipam['etcd'] !== null) {
    cfg.etcd = readFiles ? parseEtcdConfig(ipam['etcd']) : parseEtcdConfig({ ...(ipam['etcd'] as object), tls: undefined });
  }
  return cfg;
}

/** `ipam.<key>` as a boolean when set. */
function optBool(ipam: Record<string, unknown>, key: string): boolean | undefined {
  const v = ipam[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw fieldError(`ipam.${key}`, 'must be a boolean');
  return v;
}

/** The range sets: runtimeConfig.ipRanges, then the legacy single range, then ipam.ranges; at least one. */
function rangeSetsOf(conf: NetConf, ipam: Record<string, unknown>): RangeSet[] {
  const sets: RangeSet[] = [];
  const rtRanges = conf.runtimeConfig?.['ipRanges'];
  if (rtRanges !== undefined) {
    if (!Array.isArray(rtRanges)) throw fieldError('runtimeConfig.ipRanges', 'must be a list of range sets');
    for (const [i, rs] of rtRanges.entries()) {
      // go-cni's WithCapabilityIPRanges sends a flat list of its IPRanges structs, which
      // the reference host-local cannot decode either (a range set is a list)
      if (!Array.isArray(rs))
        throw fieldError(`runtimeConfig.ipRanges[${i}]`, 'must be a range set, a list of ranges ([[{"subnet": "10.1.0.0/24"}]]), not a single range');
      // keys matched as Go's encoding/json does: a runtime's Go struct without JSON tags
      // sends {"Subnet": ..., "RangeStart": "", ...}; the reference accepts it
      sets.push(
        parseRangeSet(
          rs.map((r) => goFieldKeys(r, RANGE_FIELDS)),
          `runtimeConfig.ipRanges[${i}]`,
        ),
      );
    }
  }
  if (ipam['subnet'] !== undefined && ipam['subnet'] !== '') {
    const legacy = { subnet: ipam['subnet'], rangeStart: ipam['rangeStart'], rangeEnd: ipam['rangeEnd'], gateway: ipam['gateway'] };
    const r = parseRange(legacy, 'ipam');
    sets.push({ family: r.family, ranges: [r], field: 'ipam' });
  }
  if (ipam['ranges'] !== undefined) {
    if (!Array.isArray(ipam['ranges'])) throw fieldError('ipam.ranges', 'must be a list of range sets');
    for (const [i, rs] of ipam['ranges'].entries()) sets.push(parseRangeSet(rs, `ipam.ranges[${i}]`));
  }
  if (sets.length === 0) throw fieldError('ipam.ranges', 'no IP ranges specified');
  return sets;
}

/** No range of one set overlaps a range of another. */
function checkNoOverlap(sets: RangeSet[]): void {
  for (let i = 0; i < sets.length; i++) {
    for (let j = i + 1; j < sets.length; j++) {
      for (const a of (sets[i] as RangeSet).ranges) {
        for (const b of (sets[j] as RangeSet).ranges) {
          if (subnetsOverlap(a, b)) {
            throw fieldError(b.field, `subnet ${formatCidr(b.subnet)} overlaps ${a.field} (${formatCidr(a.subnet)}); range sets must not overlap`);
          }
        }
      }
    }
  }
}

/** Requested addresses: each goes to the first range set holding it that has none yet, and must be usable there. */
function assignRequested(sets: RangeSet[], wanted: ReturnType<typeof collectRequested>): RequestedIP[] {
  const requested: RequestedIP[] = [];
  for (const r of wanted) {
    const txt = formatIP(r.ip);
    const holders = sets.map((rs, i) => ({ rs, i })).filter(({ rs }) => rangeFor(rs, r.ip));
    if (holders.length === 0) throw fieldError(r.field, `requested IP ${txt} is not in any configured range`);
    const free = holders.find(({ i }) => !requested.some((q) => q.set === i));
    if (!free) throw fieldError(r.field, `requested IP ${txt}: its range set already has a requested IP (one address per range set)`);
    const rg = rangeFor(free.rs, r.ip) as Range;
    if (r.ip.value === rg.gateway) throw fieldError(r.field, `requested IP ${txt} is the gateway of ${rg.field}`);
    if (!usableIn(rg, r.ip.value)) throw fieldError(r.field, `requested IP ${txt} is the network or broadcast address of ${rg.field}`);
    const ex = excludedBy(rg.exclude, r.ip.value);
    if (ex) throw fieldError(r.field, `requested IP ${txt} is excluded by ${ex.source}`);
    requested.push({ ip: r.ip, set: free.i, field: r.field });
  }
  return requested;
}

function readResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw fieldError('ipam.resolvConf', `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseResolvConf(text);
}
