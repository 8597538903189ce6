import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AddressError,
  bounds,
  canonicalCidr,
  canonicalIP,
  contains,
  containsCidr,
  findOverlap,
  firstIP,
  formatCidr,
  formatIP,
  formatMask,
  ipEqual,
  ipFromBytes,
  ipToBytes,
  lastIP,
  maskToPrefix,
  network,
  nextIP,
  nthIP,
  overlaps,
  parseCidr,
  parseIP,
  parseMask,
  prefixToMask,
  prevIP,
  size,
  subnets,
  tryParseCidr,
  tryParseIP,
  unmap,
} from '../../../lib/addr/cidr.ts';

describe('IPv4 parse/format', () => {
  it('parses dotted quads', () => {
    expect(parseIP('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseIP('0.0.0.0').value).toBe(0n);
    expect(parseIP('255.255.255.255').value).toBe(0xffffffffn);
    expect(formatIP(parseIP('192.168.0.1'))).toBe('192.168.0.1');
  });
  it.each(['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', '1.2.3.4 ', 'a.b.c.d', '1..2.3', '1.2.3.4/'])('rejects %j', (s) => {
    expect(tryParseIP(s)).toBeUndefined();
    expect(() => parseIP(s)).toThrow(AddressError);
  });
});

describe('IPv6 parse/format (RFC 5952)', () => {
  it.each([
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'], // first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not "::"
    ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'], // longest run wins
    ['fe80::0001', 'fe80::1'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['::ffff:a01:203', '::ffff:10.1.2.3'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ])('%s -> %s', (input, want) => {
    expect(canonicalIP(input)).toBe(want);
  });
  it.each([
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '12345::',
    'g::',
    '::1.2.3',
    '1.2.3.4::',
    'fe80::1%eth0',
    ':1::',
    '1:2:3:4:5:6:7::8',
  ])('rejects %j', (s) => {
    expect(tryParseIP(s)).toBeUndefined();
  });
  it('round-trips random addresses', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (v) => {
        const s = formatIP({ family: 6, value: v });
        expect(parseIP(s)).toEqual({ family: 6, value: v });
        expect(s).toBe(s.toLowerCase());
      }),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0xffffffffn }), (v) => {
        expect(parseIP(formatIP({ family: 4, value: v }))).toEqual({ family: 4, value: v });
      }),
    );
  });
  it('agrees with node:net on what is an address', async () => {
    const net = await import('node:net');
    fc.assert(
      fc.property(fc.ipV6(), (s) => {
        expect(tryParseIP(s)?.family).toBe(net.isIPv6(s) ? 6 : undefined);
      }),
    );
  });
});

describe('CIDR', () => {
  it('parses and keeps host bits', () => {
    const c = parseCidr('10.1.0.5/24');
    expect(c).toEqual({ family: 4, ip: 0x0a010005n, prefix: 24 });
    expect(formatCidr(c)).toBe('10.1.0.5/24');
    expect(formatCidr(network(c))).toBe('10.1.0.0/24');
    expect(canonicalCidr('2001:DB8::1/64')).toBe('2001:db8::1/64');
  });
  it('strict mode rejects host bits', () => {
    expect(tryParseCidr('10.1.0.5/24', { strict: true })).toBeUndefined();
    expect(tryParseCidr('10.1.0.0/24', { strict: true })).toBeDefined();
    expect(() => parseCidr('10.1.0.5/24', { strict: true })).toThrow(/host bits/);
  });
  it.each(['10.1.0.0', '10.1.0.0/33', '10.1.0.0/-1', '10.1.0.0/024', '::/129', '/24', '10.1.0.0/', 'x/8', '10.1.0.0/8/8'])('rejects %j', (s) =>
    expect(tryParseCidr(s)).toBeUndefined(),
  );
  it('first, last, size', () => {
    const c = parseCidr('10.1.0.77/26');
    expect(formatIP(firstIP(c))).toBe('10.1.0.64');
    expect(formatIP(lastIP(c))).toBe('10.1.0.127');
    expect(size(c)).toBe(64n);
    const v6 = parseCidr('fd00:1::/122');
    expect(formatIP(lastIP(v6))).toBe('fd00:1::3f');
    expect(size(parseCidr('::/0'))).toBe(1n << 128n);
    expect(formatIP(lastIP(parseCidr('0.0.0.0/0')))).toBe('255.255.255.255');
    expect(formatIP(lastIP(parseCidr('10.0.0.1/32')))).toBe('10.0.0.1');
  });
  it('bounds: the first and last address of a subnet, the one rule for subnet ends', () => {
    const v = (s: string): bigint => parseIP(s).value;
    expect(bounds(parseCidr('10.1.0.77/26'))).toEqual({ lo: v('10.1.0.64'), hi: v('10.1.0.127') });
    expect(bounds(parseCidr('10.0.0.1/32'))).toEqual({ lo: v('10.0.0.1'), hi: v('10.0.0.1') });
    expect(bounds(parseCidr('10.0.0.0/31'))).toEqual({ lo: v('10.0.0.0'), hi: v('10.0.0.1') });
    expect(bounds(parseCidr('0.0.0.0/0'))).toEqual({ lo: 0n, hi: 0xffffffffn });
    expect(bounds(parseCidr('::/0'))).toEqual({ lo: 0n, hi: (1n << 128n) - 1n });
    expect(bounds(parseCidr('fd00:1::5/122'))).toEqual({ lo: v('fd00:1::'), hi: v('fd00:1::3f') });
    expect(bounds(parseCidr('fd00::1/128'))).toEqual({ lo: v('fd00::1'), hi: v('fd00::1') });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (ip, prefix) => {
        const c = { family: 4 as const, ip: BigInt(ip), prefix };
        const { lo, hi } = bounds(c);
        return lo === firstIP(c).value && hi === lastIP(c).value && hi - lo + 1n === size(c) && lo <= c.ip && c.ip <= hi;
      }),
    );
  });
  it('contains', () => {
    expect(contains('10.1.0.0/24', '10.1.0.255')).toBe(true);
    expect(contains('10.1.0.0/24', '10.1.1.0')).toBe(false);
    expect(contains('10.1.0.0/24', '::ffff:10.1.0.1')).toBe(false); // families differ
    expect(contains('fd00::/8', 'fdff::1')).toBe(true);
    expect(contains('0.0.0.0/0', '1.2.3.4')).toBe(true);
    expect(containsCidr('10.0.0.0/8', '10.1.0.0/24')).toBe(true);
    expect(containsCidr('10.1.0.0/24', '10.0.0.0/8')).toBe(false);
    expect(containsCidr('10.1.0.0/24', '10.1.0.0/24')).toBe(true);
  });
  it('overlaps', () => {
    expect(overlaps('10.0.0.0/8', '10.200.0.0/16')).toBe(true);
    expect(overlaps('10.0.0.0/24', '10.0.1.0/24')).toBe(false);
    expect(overlaps('10.0.0.0/23', '10.0.1.0/24')).toBe(true);
    expect(overlaps('fd00::/64', '10.0.0.0/8')).toBe(false);
    expect(findOverlap(['10.0.0.0/24', 'fd00::/64', '10.0.1.0/24', '10.0.0.128/25'])).toEqual([0, 3]);
    expect(findOverlap(['10.0.0.0/24', '10.0.1.0/24'])).toBeUndefined();
  });
  it('next, prev, nth and bounds', () => {
    expect(formatIP(nextIP(parseIP('10.0.0.255'))!)).toBe('10.0.1.0');
    expect(formatIP(prevIP(parseIP('10.0.1.0'))!)).toBe('10.0.0.255');
    expect(nextIP(parseIP('255.255.255.255'))).toBeUndefined();
    expect(prevIP(parseIP('0.0.0.0'))).toBeUndefined();
    expect(nextIP(parseIP('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))).toBeUndefined();
    expect(formatIP(nextIP(parseIP('fd00::ffff'))!)).toBe('fd00::1:0');
    const c = parseCidr('10.1.0.0/30');
    expect(formatIP(nthIP(c, 3)!)).toBe('10.1.0.3');
    expect(nthIP(c, 4)).toBeUndefined();
  });
  it('subnets', () => {
    const s = [...subnets(parseCidr('10.1.0.0/24'), 26)].map(formatCidr);
    expect(s).toEqual(['10.1.0.0/26', '10.1.0.64/26', '10.1.0.128/26', '10.1.0.192/26']);
    expect(() => [...subnets(parseCidr('10.1.0.0/24'), 16)]).toThrow(AddressError);
  });
});

describe('masks', () => {
  it('prefix <-> mask', () => {
    expect(formatMask(24, 4)).toBe('255.255.255.0');
    expect(formatMask(0, 4)).toBe('0.0.0.0');
    expect(formatMask(64, 6)).toBe('ffff:ffff:ffff:ffff::');
    expect(prefixToMask(32, 4)).toBe(0xffffffffn);
    expect(maskToPrefix(0xffffff00n, 4)).toBe(24);
    expect(maskToPrefix(0xff00ff00n, 4)).toBeUndefined();
    expect(parseMask('255.255.240.0')).toBe(20);
    expect(() => parseMask('255.0.255.0')).toThrow(AddressError);
    expect(() => prefixToMask(33, 4)).toThrow(AddressError);
  });
});

describe('bytes', () => {
  it('round-trips', () => {
    expect(ipToBytes(parseIP('10.1.2.3'))).toEqual(Buffer.from([10, 1, 2, 3]));
    expect(formatIP(ipFromBytes(ipToBytes(parseIP('2001:db8::1'))))).toBe('2001:db8::1');
    expect(() => ipFromBytes(new Uint8Array(5))).toThrow(AddressError);
    expect(formatIP(unmap(parseIP('::ffff:1.2.3.4')))).toBe('1.2.3.4');
    expect(ipEqual('2001:db8::1', '2001:DB8:0::1')).toBe(true);
  });
});
