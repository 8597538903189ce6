// Result conversion between spec versions: a registry keyed by version, each entry able to
// parse its wire form into the 1.1.0 `Result` and format a `Result` into its wire form.
// Any version converts to any other through the 1.1.0 form. Lossy steps follow libcni:
//  - to 0.1.0/0.2.0: only the first IPv4 and the first IPv6 address survive (as `ip4` and
//    `ip6`), routes are attached to the address of their family (dst and gw only),
//    interfaces are dropped, and a result without any address cannot be converted;
//  - to 0.3.x/0.4.0: `ips[].version` is derived from the address, interfaces keep only
//    name/mac/sandbox;
//  - below 1.1.0: the 1.1.0 additions (interface mtu/socketPath/pciID, route
//    mtu/advmss/priority/table/scope) are left out.
// Addresses are re-formatted canonically (RFC 5952 for IPv6), as libcni's re-marshalling does.
import { addrOf, canonicalCidr, canonicalIP, parseCidr, tryParseCidr, tryParseIP, unmap } from '../addr/cidr.ts';
import { CniError, Code } from './errors.ts';
import { checkSupported } from './version.ts';
import { CURRENT_VERSION, type DNS, type Interface, type IPConfig, type Result, type Route, type SpecVersion } from './types.ts';
import { isObject } from './json.ts';

/** A result (or prevResult) whose shape is wrong. `field` is a dotted path ("ips[0].address"). */
export class ResultFormatError extends Error {
  override readonly name = 'ResultFormatError';
  readonly field: string;
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.field = field;
    this.reason = reason;
  }
}

export function isResultFormatError(e: unknown): e is ResultFormatError {
  return e instanceof ResultFormatError;
}

// ---------------------------------------------------------------------------------
// Wire shapes of the older versions

export interface Route020 {
  dst: string;
  gw?: string;
}
export interface IPConfig020 {
  ip: string;
  gateway?: string;
  routes?: Route020[];
}
/** 0.1.0 and 0.2.0. */
export interface Result020 {
  cniVersion: string;
  ip4?: IPConfig020;
  ip6?: IPConfig020;
  dns?: DNS;
}
export interface Interface040 {
  name: string;
  mac?: string;
  sandbox?: string;
}
export interface IPConfig040 {
  version: '4' | '6';
  interface?: number;
  address: string;
  gateway?: string;
}
/** 0.3.0, 0.3.1 and 0.4.0. */
export interface Result040 {
  cniVersion: string;
  interfaces?: Interface040[];
  ips?: IPConfig040[];
  routes?: Route020[];
  dns?: DNS;
}
/** 1.0.0: the 0.4.0 shape without `ips[].version`. */
export interface Result100 {
  cniVersion: string;
  interfaces?: Interface040[];
  ips?: Array<Omit<IPConfig040, 'version'>>;
  routes?: Route020[];
  dns?: DNS;
}
export type WireResult = Result020 | Result040 | Result100 | Result;

// ---------------------------------------------------------------------------------
// Field readers (parse side)

type Obj = Record<string, unknown>;

function obj(v: unknown, path: string): Obj {
  if (!isObject(v)) throw new ResultFormatError(path, 'must be an object');
  return v;
}

function optArray(o: Obj, key: string, path: string): unknown[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ResultFormatError(join(path, key), 'must be an array');
  return v;
}

function optString(o: Obj, key: string, path: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ResultFormatError(join(path, key), 'must be a string');
  return v;
}

function reqString(o: Obj, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ResultFormatError(join(path, key), 'must be a string');
  return v;
}

function optUint(o: Obj, key: string, path: string): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new ResultFormatError(join(path, key), 'must be a non-negative integer');
  }
  return v;
}

function cidrField(o: Obj, key: string, path: string): string {
  const v = reqString(o, key, path);
  const c = tryParseCidr(v);
  if (!c) throw new ResultFormatError(join(path, key), `${JSON.stringify(v)} is not an address in CIDR notation`);
  return canonicalCidr(v);
}

function optIPField(o: Obj, key: string, path: string): string | undefined {
  const v = optString(o, key, path);
  if (v === undefined) return undefined;
  if (!tryParseIP(v)) throw new ResultFormatError(join(path, key), `${JSON.stringify(v)} is not an IP address`);
  return canonicalIP(v);
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

function optStrings(o: Obj, key: string, path: string): string[] | undefined {
  const list = optArray(o, key, path);
  if (list.length === 0) return undefined;
  return list.map((v, i) => {
    if (typeof v !== 'string') throw new ResultFormatError(join(join(path, key), i), 'must be a string');
    return v;
  });
}

function parseDns(v: unknown, path: string): DNS | undefined {
  if (v === undefined || v === null) return undefined;
  const o = obj(v, path);
  const d: DNS = {};
  const ns = optStrings(o, 'nameservers', path);
  if (ns) d.nameservers = ns;
  const domain = optString(o, 'domain', path);
  if (domain) d.domain = domain;
  const search = optStrings(o, 'search', path);
  if (search) d.search = search;
  const options = optStrings(o, 'options', path);
  if (options) d.options = options;
  return Object.keys(d).length ? d : undefined;
}

/** Routes of any version; the 1.1.0 fields are read whatever the version (libcni does too). */
function parseRoute(v: unknown, path: string): Route {
  const o = obj(v, path);
  const r: Route = { dst: cidrField(o, 'dst', path) };
  const gw = optIPField(o, 'gw', path);
  if (gw) r.gw = gw;
  for (const k of ['mtu', 'advmss', 'priority'] as const) {
    const n = optUint(o, k, path);
    if (n) r[k] = n; // zero means unset, as in libcni
  }
  for (const k of ['table', 'scope'] as const) {
    const n = optUint(o, k, path);
    if (n !== undefined) r[k] = n;
  }
  return r;
}

function parseInterface(v: unknown, path: string): Interface {
  const o = obj(v, path);
  const i: Interface = { name: reqString(o, 'name', path) };
  const mac = optString(o, 'mac', path);
  if (mac) i.mac = mac;
  const mtu = optUint(o, 'mtu', path);
  if (mtu) i.mtu = mtu;
  for (const k of ['sandbox', 'socketPath', 'pciID'] as const) {
    const s = optString(o, k, path);
    if (s) i[k] = s;
  }
  return i;
}

function parseIPConfig(v: unknown, path: string, withVersion: boolean): IPConfig {
  const o = obj(v, path);
  if (withVersion) {
    const ver = o['version'];
    if (ver !== undefined && ver !== '4' && ver !== '6') {
      throw new ResultFormatError(join(path, 'version'), 'must be "4" or "6"');
    }
  }
  const ip: IPConfig = { address: cidrField(o, 'address', path) };
  const gw = optIPField(o, 'gateway', path);
  if (gw) ip.gateway = gw;
  const idx = optUint(o, 'interface', path);
  if (idx !== undefined) ip.interface = idx;
  return ip;
}

function withDns(r: Result, raw: Obj): Result {
  const dns = parseDns(raw['dns'], 'dns');
  if (dns) r.dns = dns;
  return r;
}

function nonEmpty<T>(r: Result, key: 'interfaces' | 'ips' | 'routes', list: T[]): void {
  if (list.length) (r as unknown as Record<string, T[]>)[key] = list;
}

// ---------------------------------------------------------------------------------
// Formatting helpers

/** IPv4 (including IPv4-mapped IPv6, as Go's To4) or IPv6. */
function familyOfCidr(cidr: string): '4' | '6' {
  return unmap(addrOf(parseCidr(cidr))).family === 4 ? '4' : '6';
}

function fmtDns(d: DNS | undefined): DNS | undefined {
  if (!d) return undefined;
  const out: DNS = {};
  if (d.nameservers?.length) out.nameservers = [...d.nameservers];
  if (d.domain) out.domain = d.domain;
  if (d.search?.length) out.search = [...d.search];
  if (d.options?.length) out.options = [...d.options];
  return Object.keys(out).length ? out : undefined;
}

function fmtRouteBasic(r: Route): Route020 {
  const out: Route020 = { dst: canonicalCidr(r.dst) };
  if (r.gw) out.gw = canonicalIP(r.gw);
  return out;
}

function fmtRouteFull(r: Route): Route {
  const out: Route = fmtRouteBasic(r);
  if (r.mtu) out.mtu = r.mtu;
  if (r.advmss) out.advmss = r.advmss;
  if (r.priority) out.priority = r.priority;
  if (r.table !== undefined) out.table = r.table;
  if (r.scope !== undefined) out.scope = r.scope;
  return out;
}

function fmtInterfaceBasic(i: Interface): Interface040 {
  const out: Interface040 = { name: i.name };
  if (i.mac) out.mac = i.mac;
  if (i.sandbox) out.sandbox = i.sandbox;
  return out;
}

function fmtInterfaceFull(i: Interface): Interface {
  const out: Interface = { name: i.name };
  if (i.mac) out.mac = i.mac;
  if (i.mtu) out.mtu = i.mtu;
  if (i.sandbox) out.sandbox = i.sandbox;
  if (i.socketPath) out.socketPath = i.socketPath;
  if (i.pciID) out.pciID = i.pciID;
  return out;
}

function fmtIP(ip: IPConfig): { interface?: number; address: string; gateway?: string } {
  // key order as libcni prints it: interface, address, gateway
  const out: { interface?: number; address: string; gateway?: string } =
    ip.interface !== undefined ? { interface: ip.interface, address: canonicalCidr(ip.address) } : { address: canonicalCidr(ip.address) };
  if (ip.gateway) out.gateway = canonicalIP(ip.gateway);
  return out;
}

function assign<T extends object>(target: T, key: string, list: unknown[] | undefined): void {
  if (list?.length) (target as Record<string, unknown>)[key] = list;
}

// ---------------------------------------------------------------------------------
// The registry

interface Codec {
  /** Wire form of this version -> 1.1.0 `Result` (cniVersion set to CURRENT_VERSION). */
  parse(raw: Obj): Result;
  /** 1.1.0 `Result` -> wire form of `version` (one of this codec's versions). */
  format(r: Result, version: string): WireResult;
}

const legacy: Codec = {
  parse(raw) {
    const r: Result = { cniVersion: CURRENT_VERSION };
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const key of ['ip4', 'ip6'] as const) {
      const v = raw[key];
      if (v === undefined || v === null) continue;
      const o = obj(v, key);
      const ip: IPConfig = { address: cidrField(o, 'ip', key) };
      const gw = optIPField(o, 'gateway', key);
      if (gw) ip.gateway = gw;
      ips.push(ip);
      for (const [i, rt] of optArray(o, 'routes', key).entries()) routes.push(parseRoute(rt, `${key}.routes[${i}]`));
    }
    nonEmpty(r, 'ips', ips);
    nonEmpty(r, 'routes', routes);
    return withDns(r, raw);
  },
  format(r, version) {
    const out: Result020 = { cniVersion: version };
    for (const ip of r.ips ?? []) {
      const key = familyOfCidr(ip.address) === '4' ? 'ip4' : 'ip6';
      if (out[key]) continue;
      const c: IPConfig020 = { ip: canonicalCidr(ip.address) };
      if (ip.gateway) c.gateway = canonicalIP(ip.gateway);
      out[key] = c;
    }
    if (!out.ip4 && !out.ip6) {
      throw new CniError(
        Code.IncompatibleVersion,
        `cannot convert result to version ${version}`,
        'versions 0.1.0 and 0.2.0 need at least one IP address in the result',
      );
    }
    for (const rt of r.routes ?? []) {
      const target = familyOfCidr(rt.dst) === '4' ? out.ip4 : out.ip6;
      if (!target) continue;
      target.routes ??= [];
      target.routes.push(fmtRouteBasic(rt));
    }
    // key order as libcni prints it
    const ordered: Result020 = { cniVersion: version };
    if (out.ip4) ordered.ip4 = out.ip4;
    if (out.ip6) ordered.ip6 = out.ip6;
    const dns = fmtDns(r.dns);
    if (dns) ordered.dns = dns;
    return ordered;
  },
};

function parseModern(raw: Obj, withVersion: boolean): Result {
  const r: Result = { cniVersion: CURRENT_VERSION };
  nonEmpty(
    r,
    'interfaces',
    optArray(raw, 'interfaces', '').map((v, i) => parseInterface(v, `interfaces[${i}]`)),
  );
  nonEmpty(
    r,
    'ips',
    optArray(raw, 'ips', '').map((v, i) => parseIPConfig(v, `ips[${i}]`, withVersion)),
  );
  nonEmpty(
    r,
    'routes',
    optArray(raw, 'routes', '').map((v, i) => parseRoute(v, `routes[${i}]`)),
  );
  return withDns(r, raw);
}

const v04: Codec = {
  parse: (raw) => parseModern(raw, true),
  format(r, version) {
    const out: Result040 = { cniVersion: version };
    assign(out, 'interfaces', r.interfaces?.map(fmtInterfaceBasic));
    assign(
      out,
      'ips',
      r.ips?.map((ip) => ({ version: familyOfCidr(ip.address), ...fmtIP(ip) })),
    );
    assign(out, 'routes', r.routes?.map(fmtRouteBasic));
    const dns = fmtDns(r.dns);
    if (dns) out.dns = dns;
    return out;
  },
};

const v100: Codec = {
  parse: (raw) => parseModern(raw, false),
  format(r, version) {
    const out: Result100 = { cniVersion: version };
    assign(out, 'interfaces', r.interfaces?.map(fmtInterfaceBasic));
    assign(out, 'ips', r.ips?.map(fmtIP));
    assign(out, 'routes', r.routes?.map(fmtRouteBasic));
    const dns = fmtDns(r.dns);
    if (dns) out.dns = dns;
    return out;
  },
};

const v110: Codec = {
  parse: (raw) => parseModern(raw, false),
  format(r, version) {
    const out: Result = { cniVersion: version };
    assign(out, 'interfaces', r.interfaces?.map(fmtInterfaceFull));
    assign(out, 'ips', r.ips?.map(fmtIP));
    assign(out, 'routes', r.routes?.map(fmtRouteFull));
    const dns = fmtDns(r.dns);
    if (dns) out.dns = dns;
    return out;
  },
};

/** One codec per supported version. */
export const RESULT_CODECS: Readonly<Record<SpecVersion, Codec>> = {
  '0.1.0': legacy,
  '0.2.0': legacy,
  '0.3.0': v04,
  '0.3.1': v04,
  '0.4.0': v04,
  '1.0.0': v100,
  '1.1.0': v110,
};

// ---------------------------------------------------------------------------------
// Public API

/**
 * Parses a result of any supported version into the 1.1.0 form. The version is the
 * result's own `cniVersion`, else `fallbackVersion` (libcni uses the config's version for a
 * result without one), else 0.1.0 (libcni's meaning of an empty version). Throws CniError 1 for an unsupported version, ResultFormatError for
 * a malformed result.
 */
export function parseResult(raw: unknown, fallbackVersion?: string): Result {
  const o = obj(raw, '');
  const declared = o['cniVersion'];
  if (declared !== undefined && typeof declared !== 'string') {
    throw new ResultFormatError('cniVersion', 'must be a string');
  }
  // libcni: a result without a version has the config's; with neither it is 0.1.0.
  const version = declared || fallbackVersion || '0.1.0';
  checkSupported(version);
  return RESULT_CODECS[version].parse(o);
}

/** Formats a 1.1.0 `Result` for `toVersion` (throws CniError 1 when that is impossible). */
export function convertResult(result: Result, toVersion: string): WireResult {
  checkSupported(toVersion);
  return RESULT_CODECS[toVersion].format(result, toVersion);
}

/** Converts a wire result of one version into another (through the 1.1.0 form). */
export function convertWire(raw: unknown, toVersion: string, fallbackVersion?: string): WireResult {
  return convertResult(parseResult(raw, fallbackVersion), toVersion);
}

/** The JSON text printed for a result: libcni-style 4-space indentation. */
export function formatResultJson(result: Result, toVersion: string): string {
  return JSON.stringify(convertResult(result, toVersion), null, 4);
}
