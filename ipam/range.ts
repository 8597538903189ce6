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
import { readFileSync } from 'node:fs';
import { loadCniArgs } from '../lib/cni/args.ts';
import { clip, CniError, Code } from '../lib/cni/errors.ts';
import type { DNS, NetConf, Route } from '../lib/cni/types.ts';
import {
  bitsOf,
  formatCidr,
  formatIP,
  network as networkOf,
  tryParseCidr,
  tryParseIP,
  type Cidr,
  type Family,
  type IPAddr,
} from '../lib/ip/cidr.ts';

export interface Range {
  family: Family;
  /** The subnet, host bits zero. */
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway: bigint;
  /** Config path of this range, for messages: "ipam.ranges[0][1]". */
  field: string;
}

export interface RangeSet {
  family: Family;
  ranges: Range[];
  field: string;
}

/**
 * How a plugin process talks to etcd: `http`, etcd's v3 JSON gateway over node:http(s)
 * (loads in ~5 ms: the default for the short-lived plugin process), or `grpc`, the etcd3
 * client (~200 ms of CPU to load gRPC and protobufjs per process). The agent always uses
 * etcd3 (it lives long and watches), as does `strand ipam --etcd-endpoints`; `strand
 * ipam --conf` follows the config.
 */
export const ETCD_TRANSPORTS = ['http', 'grpc'] as const;
export type EtcdTransport = (typeof ETCD_TRANSPORTS)[number];

export interface EtcdConfig {
  endpoints: string[];
  prefix: string;
  transport: EtcdTransport;
  dialTimeoutMs: number;
  requestTimeoutMs: number;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  username?: string;
  password?: string;
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
  /** Block prefix length per family (clamped to each subnet's own prefix). */
  blockSize: Record<Family, number>;
  strictAffinity: boolean;
  nodeName?: string;
  requested: RequestedIP[];
}

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
export const DEFAULT_ETCD_PREFIX = '/strand/ipam';
export const DEFAULT_BLOCK_SIZE: Record<Family, number> = { 4: 26, 6: 122 };

function bad(field: string, what: string): CniError {
  return new CniError(Code.InvalidNetworkConfig, `${field}: ${what}`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optString(o: Record<string, unknown>, key: string, field: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw bad(`${field}.${key}`, 'must be a string');
  return v;
}

function ipValue(s: string, family: Family, field: string): bigint {
  const ip = tryParseIP(s);
  if (!ip) throw bad(field, `invalid IP address ${JSON.stringify(s)}`);
  if (ip.family !== family) throw bad(field, `${s} is not an IPv${family} address`);
  return ip.value;
}

const ip = (family: Family, value: bigint): string => formatIP({ family, value });

export function inSubnet(r: { subnet: Cidr }, v: bigint): boolean {
  const hostBits = BigInt(bitsOf(r.subnet.family) - r.subnet.prefix);
  return v >> hostBits === r.subnet.ip >> hostBits;
}

function subnetLast(c: Cidr): bigint {
  return c.ip + (1n << BigInt(bitsOf(c.family) - c.prefix)) - 1n;
}

/** Parses one `{subnet, rangeStart, rangeEnd, gateway}` and applies host-local's defaults. */
export function parseRange(raw: unknown, field: string): Range {
  if (!isObj(raw)) throw bad(field, 'must be an object with a subnet');
  const s = optString(raw, 'subnet', field);
  if (s === undefined) throw bad(`${field}.subnet`, 'is required');
  const c = tryParseCidr(s);
  if (!c) throw bad(`${field}.subnet`, `invalid CIDR ${JSON.stringify(s)}`);
  const net = networkOf(c);
  if (net.ip !== c.ip) {
    throw bad(`${field}.subnet`, `${s} has host bits set (the network is ${formatCidr(net)})`);
  }
  if (c.prefix > bitsOf(c.family) - 2) throw bad(`${field}.subnet`, `network ${s} too small to allocate from`);
  const fam = c.family;
  const last = subnetLast(c);
  const r: Range = { family: fam, subnet: c, start: c.ip + 1n, end: fam === 4 ? last - 1n : last, gateway: c.ip + 1n, field };
  const gw = optString(raw, 'gateway', field);
  if (gw !== undefined) {
    r.gateway = ipValue(gw, fam, `${field}.gateway`);
    if (!inSubnet(r, r.gateway)) throw bad(`${field}.gateway`, `${gw} is not in subnet ${s}`);
  }
  const rs = optString(raw, 'rangeStart', field);
  if (rs !== undefined) {
    r.start = ipValue(rs, fam, `${field}.rangeStart`);
    if (!inSubnet(r, r.start)) throw bad(`${field}.rangeStart`, `${rs} is not in subnet ${s}`);
  }
  const re = optString(raw, 'rangeEnd', field);
  if (re !== undefined) {
    r.end = ipValue(re, fam, `${field}.rangeEnd`);
    if (!inSubnet(r, r.end)) throw bad(`${field}.rangeEnd`, `${re} is not in subnet ${s}`);
  }
  if (r.start > r.end) throw bad(`${field}.rangeStart`, `${ip(fam, r.start)} is after rangeEnd ${ip(fam, r.end)}`);
  return r;
}

export function rangeText(r: Range): string {
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
  return a.family === b.family && a.subnet.ip <= subnetLast(b.subnet) && b.subnet.ip <= subnetLast(a.subnet);
}

export function parseRangeSet(raw: unknown, field: string): RangeSet {
  if (!Array.isArray(raw) || raw.length === 0) throw bad(field, 'must be a non-empty list of ranges');
  const ranges = raw.map((r, i) => parseRange(r, `${field}[${i}]`));
  const first = ranges[0] as Range;
  for (const r of ranges) {
    if (r.family !== first.family) throw bad(r.field, 'mixes address families within one range set');
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const a = ranges[i] as Range;
      const b = ranges[j] as Range;
      if (rangesOverlap(a, b)) throw bad(b.field, `range ${rangeText(b)} overlaps ${a.field} (${rangeText(a)})`);
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
  if (r.family === 4 && v === subnetLast(r.subnet)) return false;
  return true;
}

export function usableInSet(rs: RangeSet, v: bigint): Range | undefined {
  return rs.ranges.find((r) => usableIn(r, v));
}

// ---------------------------------------------------------------------------------

function parseDuration(v: unknown, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number' && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v);
    if (m) return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : m[2] === 's' ? 1000 : 1);
  }
  throw bad(field, `invalid duration ${JSON.stringify(v)} (milliseconds or "5s")`);
}

function readSecretFile(path: unknown, field: string): Buffer | undefined {
  if (path === undefined || path === '') return undefined;
  if (typeof path !== 'string') throw bad(field, 'must be a file path');
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw bad(field, `cannot read ${path} (${code})`);
  }
}

const CREDENTIALS_IN_URL = 'must not carry credentials (user:password@): use username and password';

/**
 * Why an etcd endpoint cannot be used, or undefined: "http(s)://host[:port]",
 * "host[:port]" (the scheme then follows from TLS), or a gRPC unix socket target
 * ("unix:/path", "unix:///path"); nothing else (no path, query, whitespace). Checked here
 * so that a typo is a config error (7) naming the entry, not an unreachable store (11)
 * that the runtime retries forever.
 */
export function endpointProblem(ep: string): string | undefined {
  if (/[\s]/.test(ep)) return 'is not an endpoint URL (it contains whitespace)';
  if (/^unixs?:/i.test(ep)) return /^unixs?:(\/\/)?[^/]*\/?./i.test(ep) && !ep.includes('@') ? undefined : 'is not a unix socket target (unix:/path)';
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(ep);
  let u: URL;
  try {
    u = new URL(hasScheme ? ep : `http://${ep}`);
  } catch {
    return 'is not an endpoint URL (http://host:port, https://host:port or host:port)';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `has scheme ${JSON.stringify(u.protocol.slice(0, -1))}; only http and https`;
  if (!u.hostname) return 'has no host';
  if (u.username || u.password) return CREDENTIALS_IN_URL;
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return 'must be scheme://host:port, without a path, query or fragment';
  return undefined;
}

export function parseEtcdConfig(raw: unknown, field = 'ipam.etcd'): EtcdConfig {
  if (!isObj(raw)) throw bad(field, 'must be an object');
  const eps = typeof raw['endpoints'] === 'string' ? (raw['endpoints'] as string).split(',') : raw['endpoints'];
  if (!Array.isArray(eps) || eps.length === 0 || !eps.every((e) => typeof e === 'string' && e.length > 0)) {
    throw bad(`${field}.endpoints`, 'must be a non-empty list of URLs');
  }
  // Credentials in a URL would be echoed by the etcd client's errors and logs.
  const withUserinfo = (eps as string[]).findIndex((e) => /^[a-z][a-z0-9+.-]*:\/\/[^/@]*@/i.test(e));
  if (withUserinfo >= 0) {
    throw bad(`${field}.endpoints[${withUserinfo}]`, CREDENTIALS_IN_URL);
  }
  (eps as string[]).forEach((e, i) => {
    const why = endpointProblem(e);
    // The value is echoed unless it may hold a credential.
    if (why) throw bad(`${field}.endpoints[${i}]`, why === CREDENTIALS_IN_URL || e.includes('@') ? why : `${JSON.stringify(clip(e, 100))} ${why}`);
  });
  let prefix = optString(raw, 'prefix', field) ?? DEFAULT_ETCD_PREFIX;
  if (!prefix.startsWith('/')) prefix = `/${prefix}`;
  prefix = prefix.replace(/\/+$/, '');
  const transport = raw['transport'] ?? 'http';
  if (!(ETCD_TRANSPORTS as readonly unknown[]).includes(transport)) {
    throw bad(`${field}.transport`, `must be one of ${ETCD_TRANSPORTS.map((t) => JSON.stringify(t)).join(', ')}`);
  }
  const out: EtcdConfig = {
    endpoints: eps as string[],
    prefix,
    transport: transport as EtcdTransport,
    dialTimeoutMs: parseDuration(raw['dialTimeout'], `${field}.dialTimeout`, 5000),
    requestTimeoutMs: parseDuration(raw['requestTimeout'], `${field}.requestTimeout`, 5000),
  };
  const tls = raw['tls'];
  if (tls !== undefined && tls !== null) {
    if (!isObj(tls)) throw bad(`${field}.tls`, 'must be an object');
    const t: NonNullable<EtcdConfig['tls']> = {};
    const ca = readSecretFile(tls['ca'], `${field}.tls.ca`);
    const cert = readSecretFile(tls['cert'], `${field}.tls.cert`);
    const key = readSecretFile(tls['key'], `${field}.tls.key`);
    if (ca) t.ca = ca;
    if (cert) t.cert = cert;
    if (key) t.key = key;
    if (!!cert !== !!key) throw bad(`${field}.tls.${cert ? 'key' : 'cert'}`, 'cert and key go together');
    out.tls = t;
  }
  const user = optString(raw, 'username', field);
  const pass = optString(raw, 'password', field);
  if (user !== undefined) out.username = user;
  if (pass !== undefined) out.password = pass;
  if ((user === undefined) !== (pass === undefined)) throw bad(`${field}.${user ? 'password' : 'username'}`, 'username and password go together');
  return out;
}

function parseBlockSize(raw: unknown, fam: Family, field: string): number {
  if (raw === undefined) return DEFAULT_BLOCK_SIZE[fam];
  const bits = bitsOf(fam);
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > bits) {
    throw bad(field, `must be a prefix length between 1 and ${bits}`);
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
    if (k === 'nameserver' && rest[0]) (dns.nameservers ??= []).push(rest[0]);
    else if (k === 'domain' && rest[0]) dns.domain = rest[0];
    else if (k === 'search') dns.search = rest;
    else if (k === 'options') (dns.options ??= []).push(...rest);
  }
  return dns;
}

function parseRoutes(raw: unknown, field: string): Route[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw bad(field, 'must be a list of routes');
  return raw.map((r, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(r)) throw bad(f, 'must be an object');
    const dst = optString(r, 'dst', f);
    if (dst === undefined || !tryParseCidr(dst)) throw bad(`${f}.dst`, `invalid CIDR ${JSON.stringify(r['dst'])}`);
    const out: Route = { ...(r as unknown as Route), dst };
    const gw = optString(r, 'gw', f);
    if (gw !== undefined && !tryParseIP(gw)) throw bad(`${f}.gw`, `invalid IP address ${JSON.stringify(gw)}`);
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
  throw bad(field, `invalid IP address ${JSON.stringify(s)}`);
}

/** Requested addresses from args.cni.ips, runtimeConfig.ips, else CNI_ARGS IP= (comma list). */
function collectRequested(conf: NetConf, envArgs: Map<string, string>): Array<{ ip: IPAddr; field: string }> {
  const out: Array<{ ip: IPAddr; field: string }> = [];
  const argIps = conf.args?.cni?.['ips'];
  if (argIps !== undefined && !Array.isArray(argIps)) throw bad('args.cni.ips', 'must be a list of IP addresses');
  const rtIps = conf.runtimeConfig?.['ips'];
  if (rtIps !== undefined && !Array.isArray(rtIps)) throw bad('runtimeConfig.ips', 'must be a list of IP addresses');
  if (!argIps?.length) {
    const envIp = envArgs.get('IP');
    if (envIp) envIp.split(',').forEach((s, i) => out.push({ ip: parseRequestedIP(s.trim(), `CNI_ARGS IP[${i}]`), field: 'CNI_ARGS IP' }));
  }
  (argIps ?? []).forEach((s, i) => out.push({ ip: parseRequestedIP(s, `args.cni.ips[${i}]`), field: `args.cni.ips[${i}]` }));
  (rtIps ?? []).forEach((s, i) => out.push({ ip: parseRequestedIP(s, `runtimeConfig.ips[${i}]`), field: `runtimeConfig.ips[${i}]` }));
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
  if (!isObj(ipam)) throw bad('ipam', 'IPAM config missing "ipam" key');
  // CNI_ARGS as host-local reads it (libcni's LoadArgs): every segment a K=V pair,
  // IgnoreUnknown a boolean, keys other than IP refused unless IgnoreUnknown (CniError 4
  // naming CNI_ARGS, as every strand plugin answers). Checked on every verb, as host-local.
  const envArgs = loadCniArgs(opts.cniArgs, ['IP']);
  const sets: RangeSet[] = [];
  const rtRanges = conf.runtimeConfig?.['ipRanges'];
  if (rtRanges !== undefined) {
    if (!Array.isArray(rtRanges)) throw bad('runtimeConfig.ipRanges', 'must be a list of range sets');
    rtRanges.forEach((rs, i) => sets.push(parseRangeSet(rs, `runtimeConfig.ipRanges[${i}]`)));
  }
  if (ipam['subnet'] !== undefined && ipam['subnet'] !== '') {
    const legacy = { subnet: ipam['subnet'], rangeStart: ipam['rangeStart'], rangeEnd: ipam['rangeEnd'], gateway: ipam['gateway'] };
    const r = parseRange(legacy, 'ipam');
    sets.push({ family: r.family, ranges: [r], field: 'ipam' });
  }
  if (ipam['ranges'] !== undefined) {
    if (!Array.isArray(ipam['ranges'])) throw bad('ipam.ranges', 'must be a list of range sets');
    ipam['ranges'].forEach((rs, i) => sets.push(parseRangeSet(rs, `ipam.ranges[${i}]`)));
  }
  if (sets.length === 0) throw bad('ipam.ranges', 'no IP ranges specified');
  for (let i = 0; i < sets.length; i++) {
    for (let j = i + 1; j < sets.length; j++) {
      for (const a of (sets[i] as RangeSet).ranges) {
        for (const b of (sets[j] as RangeSet).ranges) {
          if (subnetsOverlap(a, b)) {
            throw bad(b.field, `subnet ${formatCidr(b.subnet)} overlaps ${a.field} (${formatCidr(a.subnet)}); range sets must not overlap`);
          }
        }
      }
    }
  }

  // Requested addresses: each goes to the first range set holding it that has none yet.
  const requested: RequestedIP[] = [];
  for (const r of opts.ignoreRequested ? [] : collectRequested(conf, envArgs)) {
    const txt = formatIP(r.ip);
    const holders = sets.map((rs, i) => ({ rs, i })).filter(({ rs }) => rangeFor(rs, r.ip));
    if (holders.length === 0) throw bad(r.field, `requested IP ${txt} is not in any configured range`);
    const free = holders.find(({ i }) => !requested.some((q) => q.set === i));
    if (!free) throw bad(r.field, `requested IP ${txt}: its range set already has a requested IP (one address per range set)`);
    const rg = rangeFor(free.rs, r.ip) as Range;
    if (r.ip.value === rg.gateway) throw bad(r.field, `requested IP ${txt} is the gateway of ${rg.field}`);
    if (!usableIn(rg, r.ip.value)) throw bad(r.field, `requested IP ${txt} is the network or broadcast address of ${rg.field}`);
    requested.push({ ip: r.ip, set: free.i, field: r.field });
  }

  const readFiles = opts.readFiles ?? true;
  const cfg: IpamConfig = {
    network: conf.name,
    rangeSets: sets,
    routes: parseRoutes(ipam['routes'], 'ipam.routes'),
    dataDir: optString(ipam, 'dataDir', 'ipam') ?? DEFAULT_DATA_DIR,
    blockSize: {
      4: parseBlockSize(ipam['blockSize'], 4, 'ipam.blockSize'),
      6: parseBlockSize(ipam['blockSizeV6'], 6, 'ipam.blockSizeV6'),
    },
    strictAffinity: false,
    requested,
  };
  if (ipam['strictAffinity'] !== undefined) {
    if (typeof ipam['strictAffinity'] !== 'boolean') throw bad('ipam.strictAffinity', 'must be a boolean');
    cfg.strictAffinity = ipam['strictAffinity'];
  }
  const node = optString(ipam, 'nodeName', 'ipam');
  if (node !== undefined) cfg.nodeName = node;
  const resolv = optString(ipam, 'resolvConf', 'ipam');
  if (resolv !== undefined && readFiles) {
    let text: string;
    try {
      text = readFileSync(resolv, 'utf8');
    } catch (e) {
      throw bad('ipam.resolvConf', `cannot read ${resolv} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    cfg.dns = parseResolvConf(text);
  }
  if (ipam['etcd'] !== undefined && ipam['etcd'] !== null) {
    cfg.etcd = readFiles ? parseEtcdConfig(ipam['etcd']) : parseEtcdConfig({ ...(ipam['etcd'] as object), tls: undefined });
  }
  return cfg;
}
