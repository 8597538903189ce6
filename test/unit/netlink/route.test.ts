import { describe, expect, it } from 'vitest';
import {
  formatRouteMessage,
  parseAttrs,
  parseRouteMessage,
  Protocol,
  RouteFlag,
  RouteType,
  type RouteMessage,
  Scope,
  Table,
} from '../../../lib/netlink/codec/index.ts';
import { dataOf, indexByName, kernelFixture, WHERE } from './fixtures.ts';

interface IpRoute {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  prefsrc?: string;
  metrics?: Array<{ mtu?: number; advmss?: number }>;
}

const TABLES: Record<string, number> = { main: Table.main, local: Table.local, default: Table.default };
const PROTOCOLS: Record<string, number> = { kernel: Protocol.kernel, boot: Protocol.boot, static: Protocol.static, redirect: Protocol.redirect };
const SCOPES: Record<string, number> = { global: Scope.universe, link: Scope.link, host: Scope.host };
const roundTrip = (m: RouteMessage): RouteMessage => parseRouteMessage(formatRouteMessage(m)).value;

function dstOf(r: IpRoute, v: 4 | 6): string {
  if (r.dst === 'default') return v === 4 ? '0.0.0.0/0' : '::/0';
  return r.dst.includes('/') ? r.dst : `${r.dst}/${v === 4 ? 32 : 128}`;
}

describe.each(WHERE)('rtmsg against the %s kernel', (where) => {
  const fx = kernelFixture(where);
  const idx = indexByName(fx.ip['linksB']);

  for (const v of [4, 6] as const) {
    it(`IPv${v}: every route of ip -j route show table all, with gateway, oif, table, protocol, scope, metric, metrics`, () => {
      const ours = dataOf(fx.dumps[`routes${v}B`], 'route').map((m) => m.route);
      const ipRoutes = fx.ip[`routes${v}B`] as IpRoute[];
      expect(ours).toHaveLength(ipRoutes.length);
      for (const r of ipRoutes) {
        const dst = dstOf(r, v);
        const table = r.table === undefined ? Table.main : (TABLES[r.table] ?? Number(r.table));
        const o = ours.find(
          (x) =>
            `${x.dst ?? (v === 4 ? '0.0.0.0' : '::')}/${x.dstLen}` === dst &&
            x.table === table &&
            x.type === RouteType[(r.type ?? 'unicast') as keyof typeof RouteType],
        );
        expect(o, `${dst} table ${table}`).toBeDefined();
        if (!o) continue;
        expect(o.version).toBe(v);
        expect(o.gateway).toBe(r.gateway);
        expect(o.oif).toBe(r.dev === undefined ? undefined : idx.get(r.dev));
        expect(o.protocol).toBe(PROTOCOLS[r.protocol ?? 'boot']);
        if (v === 4) expect(o.scope).toBe(SCOPES[r.scope ?? 'global']);
        expect(o.priority).toBe(r.metric === 0 && v === 6 ? 0 : r.metric);
        expect(o.prefsrc).toBe(r.prefsrc);
        expect(o.metrics?.mtu).toBe(r.metrics?.[0]?.mtu);
        expect(o.metrics?.advmss).toBe(r.metrics?.[0]?.advmss);
      }
      for (const o of ours) expect(roundTrip(o)).toEqual(o);
    });
  }

  it('reads metrics (mtu, advmss), a priority and a table above the main table', () => {
    const ours = dataOf(fx.dumps.routes4B, 'route').map((m) => m.route);
    expect(ours.find((r) => r.dst === '10.20.0.0')).toMatchObject({ dstLen: 16, gateway: '10.10.0.1', priority: 100, metrics: { mtu: 1400, advmss: 1360 } });
    expect(ours.find((r) => r.dst === '10.30.0.0')).toMatchObject({ table: 100, protocol: Protocol.static, scope: Scope.link });
  });
});

describe('rtmsg requests', () => {
  it('puts tables above 255 only in RTA_TABLE', () => {
    const m: RouteMessage = { version: 4, dstLen: 16, dst: '10.1.0.0', table: 1000, gateway: '10.0.0.1' };
    const buf = formatRouteMessage(m);
    expect(buf.readUInt8(4)).toBe(0);
    expect(roundTrip(m).table).toBe(1000);
  });

  it('round-trips an IPv6 route with metrics', () => {
    const m: RouteMessage = {
      version: 6,
      dstLen: 0,
      table: 254,
      protocol: 3,
      scope: 0,
      type: 1,
      flags: 0,
      tos: 0,
      srcLen: 0,
      gateway: 'fd00::1',
      oif: 4,
      priority: 1024,
      metrics: { mtu: 1280, advmss: 1220 },
    };
    expect(roundTrip(m)).toEqual(m);
  });

  it('refuses a gateway of the other family', () => {
    expect(() => formatRouteMessage({ version: 6, gateway: '10.0.0.1' })).toThrow(/not IPv6/);
  });
});

describe('rtmsg: every attribute a route can carry survives parse and format', () => {
  it('multipath next hops (gateway, flags, weight, unnamed attributes) round-trip', () => {
    const m: RouteMessage = {
      version: 4,
      dstLen: 24,
      dst: '10.9.0.0',
      srcLen: 0,
      tos: 0,
      table: 254,
      protocol: 4,
      scope: 0,
      type: 1,
      flags: 0,
      multipath: [
        { oif: 3, flags: 0, hops: 0, gateway: '192.168.1.1' },
        {
          oif: 7,
          flags: RouteFlag.onlink,
          hops: 4,
          gateway: '192.168.2.1',
          flow: 5,
          extra: [{ type: 18, nested: false, value: Buffer.from([2, 0, 10, 0, 0, 1]) }],
        },
      ],
    };
    const back = roundTrip(m);
    expect(back).toEqual(m);
    // the rtnexthop header: length, flags, hops, ifindex
    const mp = parseAttrs(formatRouteMessage(m).subarray(12)).find((a) => a.type === 9)?.value;
    expect(mp && [mp.readUInt16LE(0), mp.readUInt8(2), mp.readUInt8(3), mp.readInt32LE(4)]).toEqual([16, 0, 0, 3]);
    expect(mp && [mp.readUInt8(16 + 2), mp.readUInt8(16 + 3), mp.readInt32LE(16 + 4)]).toEqual([RouteFlag.onlink, 4, 7]);
  });

  it('every numeric metric and the congestion control name', () => {
    const metrics = {
      lock: 2,
      mtu: 1400,
      window: 3,
      rtt: 4,
      rttvar: 5,
      ssthresh: 6,
      cwnd: 7,
      advmss: 1360,
      reordering: 9,
      hoplimit: 10,
      initcwnd: 11,
      features: 1,
      rtoMin: 13,
      initrwnd: 14,
      quickack: 1,
      ccAlgo: 'cubic',
      fastopenNoCookie: 1,
    };
    expect(roundTrip({ version: 6, dstLen: 0, table: 254, metrics }).metrics).toEqual(metrics);
  });

  it('keeps unnamed attributes verbatim, and reads the cache info, expiry, realms and nexthop id', () => {
    const m: RouteMessage = {
      version: 6,
      dstLen: 64,
      dst: 'fd00:1::',
      srcLen: 0,
      tos: 0,
      table: 254,
      protocol: 4,
      scope: 0,
      type: 1,
      flags: 0,
      nhId: 12,
      flow: 3,
      expires: 600,
      cacheinfo: { clntref: 0, lastuse: 0, expires: 29_900, error: 0, used: 0, id: 0, ts: 0, tsage: 0 },
      extra: [
        { type: 16, nested: false, value: Buffer.from([1, 0, 0, 0]) },
        { type: 22, nested: true, value: Buffer.from([8, 0, 1, 0, 1, 2, 3, 4]) },
      ],
    };
    expect(roundTrip(m)).toEqual(m);
  });
});
