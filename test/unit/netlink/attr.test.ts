import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ipFamily } from '../../../lib/addr/cidr.ts';
import {
  attrBe16,
  attrIp,
  attrStr,
  attrU16,
  attrU32,
  attrU8,
  bytesToIp,
  bytesToMac,
  CodecError,
  formatAttr,
  macToBytes,
  parseAttr,
  parseAttrs,
  str,
} from '../../../lib/netlink/codec/attr.ts';

describe('netlink attributes', () => {
  it('pads every attribute to 4 bytes and keeps the unpadded length in the header', () => {
    const a = attrStr(3, 'eth0'); // 4 + 5 bytes -> 12
    expect(a.length).toBe(12);
    expect(a.readUInt16LE(0)).toBe(9);
    expect(a.readUInt16LE(2)).toBe(3);
    const { value, consumed } = parseAttr(a);
    expect(consumed).toBe(12);
    expect(value.type).toBe(3);
    expect(str(value.value)).toBe('eth0');
  });

  it('encodes scalars little-endian and ports big-endian', () => {
    expect(attrU8(1, 0xab).toString('hex')).toBe('05000100ab000000');
    expect(attrU16(1, 0x1234).toString('hex')).toBe('0600010034120000');
    expect(attrU32(1, 0xdeadbeef).toString('hex')).toBe('08000100efbeadde');
    expect(attrBe16(15, 4789).toString('hex')).toBe('06000f0012b50000');
  });

  it('marks nested attributes with NLA_F_NESTED and parses them back', () => {
    const nested = formatAttr(18, [attrStr(1, 'veth'), attrU32(2, 7)]);
    expect(nested.readUInt16LE(2)).toBe(18 | 0x8000);
    const { value } = parseAttr(nested);
    expect(value.nested).toBe(true);
    expect(value.type).toBe(18);
    const inner = parseAttrs(value.value);
    expect(inner.map((a) => a.type)).toEqual([1, 2]);
    expect(str(inner[0]!.value)).toBe('veth');
  });

  it('rejects truncated or overlong attributes', () => {
    expect(() => parseAttr(Buffer.from([8, 0, 1]))).toThrow(CodecError);
    expect(() => parseAttr(Buffer.from([16, 0, 1, 0, 0, 0, 0, 0]))).toThrow(/out of range/);
    expect(() => parseAttr(Buffer.from([2, 0, 1, 0]))).toThrow(/out of range/);
  });

  it('round-trips any run of attributes', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ type: fc.integer({ min: 0, max: 0x3fff }), data: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 12 }), (attrs) => {
        const buf = Buffer.concat(attrs.map((a) => formatAttr(a.type, Buffer.from(a.data))));
        const back = parseAttrs(buf);
        expect(back.map((a) => [a.type, [...a.value]])).toEqual(attrs.map((a) => [a.type, [...a.data]]));
      }),
    );
  });
});

describe('addresses', () => {
  /** The payload of an address attribute made from text (the codec's only text -> bytes path). */
  const ipToBytes = (ip: string): Buffer => parseAttr(attrIp(1, ip, ip.includes(':') ? 6 : 4)).value.value;

  it.each([
    ['10.1.0.5', '0a010005'],
    ['255.255.255.255', 'ffffffff'],
    ['::', '00000000000000000000000000000000'],
    ['fd00::5', 'fd000000000000000000000000000005'],
    ['2001:db8:0:1:0:0:0:1', '20010db8000000010000000000000001'],
    ['::ffff:10.1.2.3', '00000000000000000000ffff0a010203'],
  ])('%s <-> bytes', (ip, h) => {
    expect(ipToBytes(ip).toString('hex')).toBe(h);
    expect(ipToBytes(bytesToIp(Buffer.from(h, 'hex'))).toString('hex')).toBe(h);
  });

  it('prints IPv6 in the RFC 5952 form ip uses', () => {
    expect(bytesToIp(ipToBytes('2001:db8:0:1:0:0:0:1'))).toBe('2001:db8:0:1::1');
    expect(bytesToIp(ipToBytes('2001:0db8:0000:0000:0001:0000:0000:0001'))).toBe('2001:db8::1:0:0:1');
    expect(bytesToIp(ipToBytes('fe80::1:0'))).toBe('fe80::1:0');
    expect(bytesToIp(ipToBytes('1:0:2:3:4:5:6:7'))).toBe('1:0:2:3:4:5:6:7');
    expect(bytesToIp(ipToBytes('::1'))).toBe('::1');
    expect(bytesToIp(ipToBytes('::'))).toBe('::');
  });

  it('round-trips random IPv4 and IPv6 addresses', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        const buf = Buffer.from(b);
        expect(ipToBytes(bytesToIp(buf))).toEqual(buf);
      }),
    );
  });

  it.each(['10.1.0.300', '10.1.0', '10.01.0.1', '1.2.3.4.5', 'fd00:::1', '1:2:3:4:5:6:7:8:9', 'fd00::g', '', 'eth0', '1::2::3', 'fe80::1%eth0'])(
    'rejects %j',
    (bad) => {
      expect(() => attrIp(1, bad, 4)).toThrow(CodecError);
      expect(() => attrIp(1, bad, 6)).toThrow(CodecError);
      expect(ipFamily(bad)).toBeUndefined();
    },
  );

  it('refuses an address of the other family, and payloads of a wrong size', () => {
    expect(() => attrIp(1, '10.0.0.1', 6)).toThrow(/not IPv6/);
    expect(() => attrIp(1, 'fd00::1', 4)).toThrow(/not IPv4/);
    expect(() => bytesToIp(Buffer.alloc(5))).toThrow(CodecError);
  });

  it('converts MAC addresses', () => {
    expect(macToBytes('02:00:0A:ff:00:01').toString('hex')).toBe('02000aff0001');
    expect(bytesToMac(Buffer.from('02000aff0001', 'hex'))).toBe('02:00:0a:ff:00:01');
    expect(() => macToBytes('02:00:0a:ff:00:zz')).toThrow(CodecError);
  });
});
