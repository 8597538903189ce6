import { describe, expect, it } from 'vitest';
import { convertResult, convertWire, formatResultJson, isResultFormatError, parseResult, RESULT_CODECS } from '../../../lib/cni/convert.ts';
import { CniError } from '../../../lib/cni/errors.ts';
import { SPEC_VERSIONS, type Result, type SpecVersion } from '../../../lib/cni/types.ts';

// One logical result, shaped like the spec's bridge example but dual-stack, with two
// addresses per family and every 1.1.0 field, written out in each version's wire form.
const DNS = { nameservers: ['10.1.0.1'], domain: 'example.com', search: ['example.com'], options: ['ndots:2'] };

const W110: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'cni0', mac: '00:11:22:33:44:55', mtu: 1500 },
    { name: 'veth3243', mac: '55:44:33:22:11:11' },
    { name: 'eth0', mac: '99:88:77:66:55:44', mtu: 1450, sandbox: '/var/run/netns/blue', socketPath: '/run/vhost.sock', pciID: '0000:00:04.0' },
  ],
  ips: [
    { interface: 2, address: '10.1.0.5/16', gateway: '10.1.0.1' },
    { interface: 2, address: '2001:db8::5/64', gateway: '2001:db8::1' },
    { interface: 2, address: '10.2.0.5/16' },
    { interface: 2, address: '2001:db8:1::5/64' },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 },
    { dst: '::/0' },
    { dst: '192.168.0.0/16', gw: '10.2.0.1' },
  ],
  dns: DNS,
};

const IFACES_BASIC = [
  { name: 'cni0', mac: '00:11:22:33:44:55' },
  { name: 'veth3243', mac: '55:44:33:22:11:11' },
  { name: 'eth0', mac: '99:88:77:66:55:44', sandbox: '/var/run/netns/blue' },
];
const ROUTES_BASIC = [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '::/0' }, { dst: '192.168.0.0/16', gw: '10.2.0.1' }];

const W100 = {
  cniVersion: '1.0.0',
  interfaces: IFACES_BASIC,
  ips: [
    { interface: 2, address: '10.1.0.5/16', gateway: '10.1.0.1' },
    { interface: 2, address: '2001:db8::5/64', gateway: '2001:db8::1' },
    { interface: 2, address: '10.2.0.5/16' },
    { interface: 2, address: '2001:db8:1::5/64' },
  ],
  routes: ROUTES_BASIC,
  dns: DNS,
};

const W040 = {
  cniVersion: '0.4.0',
  interfaces: IFACES_BASIC,
  ips: [
    { version: '4', interface: 2, address: '10.1.0.5/16', gateway: '10.1.0.1' },
    { version: '6', interface: 2, address: '2001:db8::5/64', gateway: '2001:db8::1' },
    { version: '4', interface: 2, address: '10.2.0.5/16' },
    { version: '6', interface: 2, address: '2001:db8:1::5/64' },
  ],
  routes: ROUTES_BASIC,
  dns: DNS,
};

// 0.2.0 keeps the first address of each family; routes go with their family.
const W020 = {
  cniVersion: '0.2.0',
  ip4: {
    ip: '10.1.0.5/16',
    gateway: '10.1.0.1',
    routes: [
      { dst: '0.0.0.0/0', gw: '10.1.0.1' },
      { dst: '192.168.0.0/16', gw: '10.2.0.1' },
    ],
  },
  ip6: { ip: '2001:db8::5/64', gateway: '2001:db8::1', routes: [{ dst: '::/0' }] },
  dns: DNS,
};

// What the 0.2.0 content looks like after conversion up.
const UP_FROM_020_040 = {
  ips: [
    { version: '4', address: '10.1.0.5/16', gateway: '10.1.0.1' },
    { version: '6', address: '2001:db8::5/64', gateway: '2001:db8::1' },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '192.168.0.0/16', gw: '10.2.0.1' }, { dst: '::/0' }],
  dns: DNS,
};
const UP_FROM_020_100 = {
  ips: [
    { address: '10.1.0.5/16', gateway: '10.1.0.1' },
    { address: '2001:db8::5/64', gateway: '2001:db8::1' },
  ],
  routes: UP_FROM_020_040.routes,
  dns: DNS,
};

const TIER: Record<SpecVersion, number> = {
  '0.1.0': 0,
  '0.2.0': 0,
  '0.3.0': 1,
  '0.3.1': 1,
  '0.4.0': 1,
  '1.0.0': 2,
  '1.1.0': 3,
};
const BY_TIER = [W020, W040, W100, W110] as const;

function wire(v: SpecVersion): object {
  return { ...BY_TIER[TIER[v]], cniVersion: v };
}

function expected(from: SpecVersion, to: SpecVersion): object {
  const tf = TIER[from];
  const tt = TIER[to];
  if (tf >= tt) return wire(to); // down (or same tier): the target's own full form
  if (tf === 0) return { cniVersion: to, ...(tt === 1 ? UP_FROM_020_040 : UP_FROM_020_100) };
  return { ...W100, cniVersion: to }; // 0.4.0 -> 1.x and 1.0.0 -> 1.1.0 carry the 1.0.0 content
}

describe('conversion between every pair of versions', () => {
  for (const from of SPEC_VERSIONS) {
    for (const to of SPEC_VERSIONS) {
      it(`${from} -> ${to}`, () => {
        expect(convertWire(wire(from), to)).toEqual(expected(from, to));
      });
    }
  }
  it('has one codec per version', () => {
    expect(Object.keys(RESULT_CODECS).sort()).toEqual([...SPEC_VERSIONS].sort());
  });
  it('round-trips the full 1.1.0 result unchanged', () => {
    expect(convertResult(parseResult(W110), '1.1.0')).toEqual(W110);
  });
});

describe('spec examples', () => {
  it('parses the bridge example result (no cniVersion: the config version is used)', () => {
    const r = parseResult(
      {
        ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }],
        routes: [{ dst: '0.0.0.0/0' }],
        interfaces: IFACES_BASIC,
        dns: { nameservers: ['10.1.0.1'] },
      },
      '1.1.0',
    );
    expect(r.ips).toEqual([{ address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }]);
    expect(r.interfaces?.[2]?.sandbox).toBe('/var/run/netns/blue');
    expect(convertResult(r, '0.3.1')).toEqual({
      cniVersion: '0.3.1',
      interfaces: IFACES_BASIC,
      ips: [{ version: '4', interface: 2, address: '10.1.0.5/16', gateway: '10.1.0.1' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.1.0.1'] },
    });
  });
  it('parses a host-local IPAM result (no interfaces) of 0.2.0 with no version field (0.1.0)', () => {
    const r = parseResult({ ip4: { ip: '10.1.0.5/16', gateway: '10.1.0.1', routes: [{ dst: '0.0.0.0/0' }] } });
    expect(r).toEqual({
      cniVersion: '1.1.0',
      ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }],
      routes: [{ dst: '0.0.0.0/0' }],
    });
  });
});

describe('lossy steps and canonical form', () => {
  it('refuses to make a 0.1.0/0.2.0 result without an address', () => {
    const l2only: Result = { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/x' }] };
    for (const v of ['0.1.0', '0.2.0']) {
      expect(() => convertResult(l2only, v)).toThrow(CniError);
      try {
        convertResult(l2only, v);
      } catch (e) {
        expect((e as CniError).code).toBe(1);
      }
    }
    expect(convertResult(l2only, '0.4.0')).toEqual({ cniVersion: '0.4.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/x' }] });
  });
  it('drops routes whose family has no address in 0.2.0', () => {
    const v4only: Result = { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }], routes: [{ dst: '::/0' }, { dst: '0.0.0.0/0' }] };
    expect(convertResult(v4only, '0.2.0')).toEqual({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24', routes: [{ dst: '0.0.0.0/0' }] } });
  });
  it('formats addresses canonically and keeps host bits', () => {
    const r = parseResult({
      cniVersion: '1.0.0',
      ips: [{ address: '2001:DB8:0:0::0005/64', gateway: '2001:db8:0::1' }],
      routes: [{ dst: 'FD00::1/8' }],
    });
    expect(r.ips).toEqual([{ address: '2001:db8::5/64', gateway: '2001:db8::1' }]);
    expect(r.routes).toEqual([{ dst: 'fd00::1/8' }]);
  });
  it('omits empty lists, empty DNS and zero route metrics like libcni', () => {
    const r = parseResult({ cniVersion: '1.1.0', interfaces: [], ips: [], routes: [{ dst: '10.0.0.0/8', mtu: 0 }], dns: { nameservers: [] } });
    expect(convertResult(r, '1.1.0')).toEqual({ cniVersion: '1.1.0', routes: [{ dst: '10.0.0.0/8' }] });
  });
  it('keeps table 0 and scope 0 (set, not unset) in 1.1.0', () => {
    const r = parseResult({ cniVersion: '1.1.0', routes: [{ dst: '10.0.0.0/8', table: 0, scope: 253 }] });
    expect(convertResult(r, '1.1.0')).toEqual({ cniVersion: '1.1.0', routes: [{ dst: '10.0.0.0/8', table: 0, scope: 253 }] });
  });
  it('prints 4-space JSON like libcni', () => {
    expect(formatResultJson({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] }, '1.0.0')).toBe(
      '{\n    "cniVersion": "1.0.0",\n    "ips": [\n        {\n            "address": "10.0.0.2/24"\n        }\n    ]\n}',
    );
  });
});

describe('bad results', () => {
  const cases: Array<[string, unknown, string]> = [
    ['not an object', [], ''],
    ['address not CIDR', { cniVersion: '1.0.0', ips: [{ address: '10.0.0.1' }] }, 'ips[0].address'],
    ['gateway not an IP', { cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/24', gateway: 'x' }] }, 'ips[0].gateway'],
    ['bad version field', { cniVersion: '0.4.0', ips: [{ version: '5', address: '10.0.0.1/24' }] }, 'ips[0].version'],
    ['negative interface index', { cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/24', interface: -1 }] }, 'ips[0].interface'],
    ['route without dst', { cniVersion: '1.1.0', routes: [{ gw: '10.0.0.1' }] }, 'routes[0].dst'],
    ['route mtu not a number', { cniVersion: '1.1.0', routes: [{ dst: '0.0.0.0/0', mtu: '1500' }] }, 'routes[0].mtu'],
    ['interface without name', { cniVersion: '1.1.0', interfaces: [{ mac: '00:11:22:33:44:55' }] }, 'interfaces[0].name'],
    ['ip4 without ip', { cniVersion: '0.2.0', ip4: { gateway: '10.0.0.1' } }, 'ip4.ip'],
    ['ips not a list', { cniVersion: '1.0.0', ips: {} }, 'ips'],
    ['dns nameserver not a string', { cniVersion: '1.0.0', dns: { nameservers: [1] } }, 'dns.nameservers[0]'],
  ];
  it.each(cases)('%s names %j', (_name, raw, field) => {
    try {
      parseResult(raw);
      expect.unreachable();
    } catch (e) {
      expect(isResultFormatError(e)).toBe(true);
      if (isResultFormatError(e)) expect(e.field).toBe(field);
    }
  });
  it('rejects an unsupported or missing version with code 1', () => {
    for (const raw of [{ cniVersion: '0.5.0' }, { cniVersion: '2.0.0' }]) {
      expect(() => parseResult(raw)).toThrow(expect.objectContaining({ code: 1 }));
    }
    // no version and no fallback: 0.1.0, as libcni reads it (so `ips` means nothing)
    expect(parseResult({ ips: [{ address: '10.0.0.1/24' }] })).toEqual({ cniVersion: '1.1.0' });
    expect(() => convertResult(W110, '0.9.9')).toThrow(expect.objectContaining({ code: 1 }));
  });
});
