// Pure IPv4/IPv6 address and CIDR maths. Addresses are bigints tagged with their family,
// so IPv4 and IPv6 share one code path. No I/O here.

export type Family = 4 | 6;

export interface IPAddr {
  readonly family: Family;
  /** The address as an unsigned integer: 32 bits for IPv4, 128 bits for IPv6. */
  readonly value: bigint;
}

/** An address with a prefix length. `ip` may have host bits set ("10.1.0.5/24"). */
export interface Cidr {
  readonly family: Family;
  readonly ip: bigint;
  readonly prefix: number;
}

/** A string that is not a valid address, CIDR or mask. `input` is what was given. */
export class AddressError extends Error {
  override readonly name = 'AddressError';
  readonly input: string;
  constructor(input: string, what: string) {
    super(`invalid ${what}: ${JSON.stringify(input)}`);
    this.input = input;
  }
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

function maxValue(family: Family): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

// ---------------------------------------------------------------------------------
// Parsing

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseV4(s: string): bigint | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    // Leading zeros are rejected, as Go's net.ParseIP does (they are octal to some tools).
    if (!DEC_OCTET.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseGroups(s: string): bigint[] | undefined {
  if (s === '') return [];
  const out: bigint[] = [];
  const parts = s.split(':');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? '';
    if (i === parts.length - 1 && p.includes('.')) {
      const v4 = parseV4(p);
      if (v4 === undefined) return undefined;
      out.push(v4 >> 16n, v4 & 0xffffn);
      continue;
    }
    if (!HEX_GROUP.test(p)) return undefined;
    out.push(BigInt(parseInt(p, 16)));
  }
  return out;
}

function parseV6(s: string): bigint | undefined {
  if (s.length < 2 || s.length > 45) return undefined;
  const dbl = s.indexOf('::');
  let groups: bigint[];
  if (dbl === -1) {
    const g = parseGroups(s);
    if (g === undefined || g.length !== 8) return undefined;
    groups = g;
  } else {
    if (s.indexOf('::', dbl + 1) !== -1) return undefined;
    const head = parseGroups(s.slice(0, dbl));
    const tail = parseGroups(s.slice(dbl + 2));
    if (head === undefined || tail === undefined) return undefined;
    // An embedded IPv4 address may only end the address.
    if (s.slice(0, dbl).includes('.')) return undefined;
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<bigint>(missing).fill(0n), ...tail];
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | g;
  return v;
}

/** Parses an address, or returns undefined. IPv6 zones (`%eth0`) are not accepted. */
export function tryParseIP(s: string): IPAddr | undefined {
  if (typeof s !== 'string') return undefined;
  if (s.includes(':')) {
    const v = parseV6(s);
    return v === undefined ? undefined : { family: 6, value: v };
  }
  const v = parseV4(s);
  return v === undefined ? undefined : { family: 4, value: v };
}

export function parseIP(s: string): IPAddr {
  const ip = tryParseIP(s);
  if (!ip) throw new AddressError(s, 'IP address');
  return ip;
}

export function ipFamily(s: string): Family | undefined {
  return tryParseIP(s)?.family;
}

/** Parses "addr/prefix". With `strict`, host bits must be zero (a network, not an address). */
export function tryParseCidr(s: string, opts: { strict?: boolean } = {}): Cidr | undefined {
  if (typeof s !== 'string') return undefined;
  const slash = s.indexOf('/');
  if (slash === -1) return undefined;
  const ip = tryParseIP(s.slice(0, slash));
  const ps = s.slice(slash + 1);
  if (!ip || !/^(?:0|[1-9][0-9]{0,2})$/.test(ps)) return undefined;
  const prefix = Number(ps);
  if (prefix > bitsOf(ip.family)) return undefined;
  const c: Cidr = { family: ip.family, ip: ip.value, prefix };
  if (opts.strict && c.ip !== networkValue(c)) return undefined;
  return c;
}

export function parseCidr(s: string, opts: { strict?: boolean } = {}): Cidr {
  const c = tryParseCidr(s, opts);
  if (!c) {
    const plain = tryParseCidr(s);
    throw new AddressError(s, plain && opts.strict ? 'network (host bits set)' : 'CIDR');
  }
  return c;
}

// ---------------------------------------------------------------------------------
// Formatting

function formatV4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((sh) => String((v >> sh) & 0xffn)).join('.');
}

/** RFC 5952: lower case, no leading zeros, longest run (>= 2) of zero groups as "::"
 * (the first one on a tie), IPv4-mapped addresses in mixed notation. */
function formatV6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  if (v >> 32n === 0xffffn) return `::ffff:${formatV4(v & 0xffffffffn)}`;
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestLen < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

export function formatIP(ip: IPAddr): string {
  return ip.family === 4 ? formatV4(ip.value) : formatV6(ip.value);
}

/** Re-formats an address string canonically ("2001:DB8:0::1" -> "2001:db8::1"). */
export function canonicalIP(s: string): string {
  return formatIP(parseIP(s));
}

export function formatCidr(c: Cidr): string {
  return `${formatIP({ family: c.family, value: c.ip })}/${c.prefix}`;
}

/** Re-formats a CIDR string canonically, keeping host bits. */
export function canonicalCidr(s: string): string {
  return formatCidr(parseCidr(s));
}

// ---------------------------------------------------------------------------------
// Masks

export function prefixToMask(prefix: number, family: Family): bigint {
  const bits = bitsOf(family);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw new AddressError(String(prefix), `IPv${family} prefix length`);
  }
  return maxValue(family) ^ ((1n << BigInt(bits - prefix)) - 1n);
}

/** The prefix length of a contiguous mask, or undefined for a non-contiguous one. */
export function maskToPrefix(mask: bigint, family: Family): number | undefined {
  const bits = bitsOf(family);
  for (let p = 0; p <= bits; p++) if (prefixToMask(p, family) === mask) return p;
  return undefined;
}

/** "255.255.255.0" -> 24. Throws on a malformed or non-contiguous mask. */
export function parseMask(s: string): number {
  const ip = tryParseIP(s);
  const p = ip ? maskToPrefix(ip.value, ip.family) : undefined;
  if (p === undefined || !ip) throw new AddressError(s, 'netmask');
  return p;
}

export function formatMask(prefix: number, family: Family): string {
  return formatIP({ family, value: prefixToMask(prefix, family) });
}

// ---------------------------------------------------------------------------------
// CIDR maths

function networkValue(c: Cidr): bigint {
  return c.ip & prefixToMask(c.prefix, c.family);
}

function lastValue(c: Cidr): bigint {
  return networkValue(c) | (maxValue(c.family) ^ prefixToMask(c.prefix, c.family));
}

/** The network itself: host bits cleared ("10.1.0.5/24" -> "10.1.0.0/24"). */
export function network(c: Cidr): Cidr {
  return { family: c.family, ip: networkValue(c), prefix: c.prefix };
}

/** The address part of a CIDR. */
export function addrOf(c: Cidr): IPAddr {
  return { family: c.family, value: c.ip };
}

/** First address of the network (the network address). */
export function firstIP(c: Cidr): IPAddr {
  return { family: c.family, value: networkValue(c) };
}

/** Last address of the network (the IPv4 broadcast address). */
export function lastIP(c: Cidr): IPAddr {
  return { family: c.family, value: lastValue(c) };
}

/** The values of the network's first and last address ("10.1.0.5/24": 10.1.0.0 and 10.1.0.255). */
export function bounds(c: Cidr): { lo: bigint; hi: bigint } {
  return { lo: networkValue(c), hi: lastValue(c) };
}

/** Number of addresses in the prefix. */
export function size(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefix);
}

function toAddr(ip: IPAddr | string): IPAddr {
  return typeof ip === 'string' ? parseIP(ip) : ip;
}

function toCidr(c: Cidr | string): Cidr {
  return typeof c === 'string' ? parseCidr(c) : c;
}

export function contains(c: Cidr | string, ip: IPAddr | string): boolean {
  const n = toCidr(c);
  const a = toAddr(ip);
  return a.family === n.family && (a.value & prefixToMask(n.prefix, n.family)) === networkValue(n);
}

/** Whether `inner` lies entirely within `outer`. */
export function containsCidr(outer: Cidr | string, inner: Cidr | string): boolean {
  const o = toCidr(outer);
  const i = toCidr(inner);
  return o.family === i.family && i.prefix >= o.prefix && contains(o, firstIP(i));
}

/** Whether two prefixes share at least one address. */
export function overlaps(a: Cidr | string, b: Cidr | string): boolean {
  const x = toCidr(a);
  const y = toCidr(b);
  if (x.family !== y.family) return false;
  return networkValue(x) <= lastValue(y) && networkValue(y) <= lastValue(x);
}

/** Index of the first pair of overlapping prefixes in a list, or undefined. */
export function findOverlap(list: ReadonlyArray<Cidr | string>): [number, number] | undefined {
  const cs = list.map(toCidr);
  for (let i = 0; i < cs.length; i++) {
    for (let j = i + 1; j < cs.length; j++) {
      if (overlaps(cs[i] as Cidr, cs[j] as Cidr)) return [i, j];
    }
  }
  return undefined;
}

function compareIP(a: IPAddr, b: IPAddr): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function ipEqual(a: IPAddr | string, b: IPAddr | string): boolean {
  return compareIP(toAddr(a), toAddr(b)) === 0;
}

/** `ip + n`, or undefined when it leaves the family's address space. */
function addIP(ip: IPAddr, n: bigint | number): IPAddr | undefined {
  const v = ip.value + BigInt(n);
  if (v < 0n || v > maxValue(ip.family)) return undefined;
  return { family: ip.family, value: v };
}

export function nextIP(ip: IPAddr): IPAddr | undefined {
  return addIP(ip, 1n);
}

export function prevIP(ip: IPAddr): IPAddr | undefined {
  return addIP(ip, -1n);
}

/** The n-th address of the prefix (0 = network address), or undefined if outside it. */
export function nthIP(c: Cidr, n: bigint | number): IPAddr | undefined {
  const b = BigInt(n);
  if (b < 0n || b >= size(c)) return undefined;
  return { family: c.family, value: networkValue(c) + b };
}

/** Splits `c` into sub-prefixes of length `prefix`, lazily, in address order. */
export function* subnets(c: Cidr, prefix: number): Generator<Cidr> {
  if (prefix < c.prefix || prefix > bitsOf(c.family)) {
    throw new AddressError(String(prefix), `sub-prefix length of /${c.prefix}`);
  }
  const step = 1n << BigInt(bitsOf(c.family) - prefix);
  const end = lastValue(c);
  for (let v = networkValue(c); v <= end; v += step) yield { family: c.family, ip: v, prefix };
}

// ---------------------------------------------------------------------------------
// Bytes (network order), for netlink and sockets

export function ipToBytes(ip: IPAddr): Buffer {
  const n = bitsOf(ip.family) / 8;
  const out = Buffer.alloc(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function ipFromBytes(buf: Uint8Array): IPAddr {
  if (buf.length !== 4 && buf.length !== 16) {
    throw new AddressError(Buffer.from(buf).toString('hex'), 'address length');
  }
  let v = 0n;
  for (const b of buf) v = (v << 8n) | BigInt(b);
  return { family: buf.length === 4 ? 4 : 6, value: v };
}

/** IPv4-mapped IPv6 ("::ffff:1.2.3.4") to IPv4; other addresses unchanged. */
export function unmap(ip: IPAddr): IPAddr {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}
