import { describe, expect, it } from 'vitest';
import { AddrFlag, type AddrMessage, formatAddrMessage, parseAddrMessage, Scope } from '../../../lib/netlink/codec/index.ts';
import { dataOf, kernelFixture, WHERE } from './fixtures.ts';

interface IpAddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  address?: string;
  prefixlen: number;
  scope: string;
  broadcast?: string;
  label?: string;
  nodad?: boolean;
  valid_life_time: number;
  preferred_life_time: number;
}

const SCOPES: Record<string, number> = { global: Scope.universe, link: Scope.link, host: Scope.host, site: Scope.site };
const roundTrip = (m: AddrMessage): AddrMessage => parseAddrMessage(formatAddrMessage(m)).value;

describe.each(WHERE)('ifaddrmsg against the %s kernel', (where) => {
  const fx = kernelFixture(where);

  for (const ns of ['A', 'B'] as const) {
    it(`netns ${ns}: every address of ip -j addr, IPv4 and IPv6, with scope, flags, label, broadcast, peer`, () => {
      const ours = dataOf(fx.dumps[`addrs${ns}`], 'addr').map((m) => m.addr);
      const ipAddrs = (fx.ip[`addrs${ns}`] as Array<{ ifindex: number; addr_info: IpAddrInfo[] }>).flatMap((l) =>
        l.addr_info.map((a) => ({ ...a, ifindex: l.ifindex })),
      );
      expect(ours).toHaveLength(ipAddrs.length);
      expect(ours.some((a) => a.version === 4) && ours.some((a) => a.version === 6)).toBe(true);
      for (const ipa of ipAddrs) {
        const a = ours.find((x) => x.index === ipa.ifindex && (x.local ?? x.address) === ipa.local && x.prefixLen === ipa.prefixlen);
        expect(a, `${ipa.local}/${ipa.prefixlen}`).toBeDefined();
        if (!a) continue;
        expect(a.version).toBe(ipa.family === 'inet' ? 4 : 6);
        expect(a.scope).toBe(SCOPES[ipa.scope]);
        expect(a.broadcast).toBe(ipa.broadcast);
        if (ipa.family === 'inet') expect(a.label).toBe(ipa.label);
        if (ipa.address !== undefined) expect(a.address).toBe(ipa.address); // point-to-point peer
        expect(((a.flags ?? 0) & AddrFlag.nodad) !== 0).toBe(ipa.nodad === true);
        expect(a.cacheinfo?.valid).toBe(ipa.valid_life_time);
        expect(a.cacheinfo?.preferred).toBe(ipa.preferred_life_time);
      }
      for (const a of ours) expect(roundTrip(a)).toEqual(a);
    });
  }

  it('reads the nodad flag of the IPv6 address added with nodad', () => {
    const ours = dataOf(fx.dumps.addrsB, 'addr').map((m) => m.addr);
    const v6 = ours.find((a) => a.address === 'fd10::5')!;
    expect(v6.flags! & AddrFlag.nodad).toBe(AddrFlag.nodad);
    expect(v6.flags! & AddrFlag.permanent).toBe(AddrFlag.permanent);
  });
});

describe('ifaddrmsg requests', () => {
  it('carries flags above 8 bits in IFA_FLAGS', () => {
    const m: AddrMessage = { version: 6, prefixLen: 64, index: 2, address: 'fd00::5', flags: AddrFlag.nodad | AddrFlag.noPrefixRoute };
    const buf = formatAddrMessage(m);
    expect(buf.readUInt8(2)).toBe(AddrFlag.nodad);
    expect(roundTrip(m)).toEqual({ ...m, scope: 0 });
  });

  it('refuses an address of the other family', () => {
    expect(() => formatAddrMessage({ version: 4, prefixLen: 24, index: 1, local: 'fd00::1' })).toThrow(/not IPv4/);
    expect(() => formatAddrMessage({ prefixLen: 24, index: 1, local: '10.0.0.1' })).toThrow(/needs a version/);
  });
});

describe('ifaddrmsg: prefix-route metric, protocol and unnamed attributes', () => {
  it('round-trip', () => {
    const m: AddrMessage = {
      version: 6,
      prefixLen: 64,
      flags: AddrFlag.noPrefixRoute,
      scope: 0,
      index: 4,
      address: 'fd00:1::5',
      rtPriority: 300,
      proto: 3,
      extra: [{ type: 10, nested: false, value: Buffer.from([1, 0, 0, 0]) }],
    };
    expect(parseAddrMessage(formatAddrMessage(m)).value).toEqual(m);
  });
});
