// The pure parts of flat mode's takeover (agent/flat.ts): which addresses and routes
// move, and the requests that put a recorded address or route on another link.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addrOn, movableAddr, movableRoute, readRecord, relabel, routesVia, type TakeoverRecord, TakeoverError, writeRecord } from '../../../agent/flat.ts';
import { AddrFlag, Protocol, RouteFlag, type AddrMessage, type RouteMessage } from '../../../lib/netlink/codec/index.ts';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('flat takeover: what moves', () => {
  it('every IPv4 address; IPv6 but link-local and temporary (the kernel makes those per link)', () => {
    expect(movableAddr({ version: 4, scope: 0, local: '10.0.0.5' })).toBe(true);
    expect(movableAddr({ version: 4, scope: 253, local: '169.254.1.1' })).toBe(true);
    expect(movableAddr({ version: 6, scope: 0, address: 'fd00::5' })).toBe(true);
    expect(movableAddr({ version: 6, scope: 253, address: 'fe80::1' })).toBe(false);
    expect(movableAddr({ version: 6, scope: 0, address: 'fd00::6', flags: AddrFlag.secondary })).toBe(false);
  });

  it('routes through the uplink (also as one multipath next hop) that the kernel did not derive from an address', () => {
    expect(movableRoute({ oif: 2, protocol: Protocol.boot }, 2)).toBe(true);
    expect(movableRoute({ oif: 2, protocol: Protocol.kernel }, 2)).toBe(false);
    expect(movableRoute({ oif: 3, protocol: Protocol.boot }, 2)).toBe(false);
    expect(
      movableRoute(
        {
          protocol: Protocol.static,
          multipath: [
            { oif: 3, flags: 0, hops: 0 },
            { oif: 2, flags: 0, hops: 0 },
          ],
        },
        2,
      ),
    ).toBe(true);
  });
});

describe('flat takeover: requests', () => {
  it('relabels IPv4 labels that start with the link name, within 15 bytes', () => {
    expect(relabel('eth0', 'eth0', 'br0')).toBe('br0');
    expect(relabel('eth0:vip', 'eth0', 'br0')).toBe('br0:vip');
    expect(relabel('other', 'eth0', 'br0')).toBe('other');
    expect(relabel('e:0123456789a', 'e', 'brflatlong')).toBe('brflatlong');
  });

  it('an address keeps flags a request may set, label, metric, protocol and the lifetimes left', () => {
    const a: AddrMessage = {
      version: 6,
      prefixLen: 64,
      flags: AddrFlag.permanent | AddrFlag.noPrefixRoute | AddrFlag.tentative,
      scope: 0,
      index: 2,
      address: 'fd00::5',
      rtPriority: 50,
      proto: 3,
      cacheinfo: { preferred: 100, valid: 200, created: 1, updated: 2 },
    };
    expect(addrOn(a, 7, 'eth0', 'br0', 30)).toEqual({
      version: 6,
      prefixLen: 64,
      flags: AddrFlag.noPrefixRoute,
      scope: 0,
      index: 7,
      address: 'fd00::5',
      rtPriority: 50,
      proto: 3,
      cacheinfo: { preferred: 70, valid: 170, created: 0, updated: 0 },
    });
    const forever = addrOn({ ...a, cacheinfo: { preferred: 0xffffffff, valid: 0xffffffff, created: 1, updated: 1 } }, 7, 'eth0', 'br0', 30);
    expect(forever.cacheinfo).toBeUndefined();
    const v4 = addrOn(
      {
        version: 4,
        prefixLen: 24,
        scope: 0,
        index: 2,
        local: '10.0.0.5',
        address: '10.0.0.5',
        broadcast: '10.0.0.255',
        label: 'eth0:1',
        flags: AddrFlag.secondary | AddrFlag.permanent,
      },
      7,
      'eth0',
      'br0',
      0,
    );
    expect(v4).toEqual({
      version: 4,
      prefixLen: 24,
      scope: 0,
      index: 7,
      local: '10.0.0.5',
      address: '10.0.0.5',
      broadcast: '10.0.0.255',
      label: 'br0:1',
      flags: 0,
    });
  });

  it('a route changes link, keeps every attribute, drops what the kernel only reports, turns an IPv6 expiry into RTA_EXPIRES', () => {
    const r: RouteMessage = {
      version: 6,
      dstLen: 0,
      table: 254,
      protocol: 9,
      scope: 0,
      type: 1,
      flags: RouteFlag.onlink | 0x10,
      oif: 2,
      gateway: 'fe80::1',
      priority: 1024,
      pref: 1,
      metrics: { mtu: 1400, hoplimit: 64 },
      cacheinfo: { clntref: 0, lastuse: 0, expires: 179_950, error: 0, used: 0, id: 0, ts: 0, tsage: 0 },
      extra: [
        { type: 25, nested: false, value: Buffer.alloc(4) },
        { type: 22, nested: true, value: Buffer.from([8, 0, 1, 0, 1, 2, 3, 4]) },
      ],
    };
    const [m, ...more] = routesVia(r, 2, 7, 10);
    expect(more).toEqual([]);
    expect(m).toEqual({
      version: 6,
      dstLen: 0,
      table: 254,
      protocol: 9,
      scope: 0,
      type: 1,
      flags: RouteFlag.onlink,
      oif: 7,
      gateway: 'fe80::1',
      priority: 1024,
      pref: 1,
      metrics: { mtu: 1400, hoplimit: 64 },
      expires: 1790,
      extra: [{ type: 22, nested: true, value: Buffer.from([8, 0, 1, 0, 1, 2, 3, 4]) }],
    });
  });

  it('IPv4 multipath: one route, the uplink hops changed; IPv6 multipath: one request per uplink hop', () => {
    const hops = [
      { oif: 2, flags: 0x10, hops: 0, gateway: '10.0.0.1' },
      { oif: 3, flags: 0, hops: 2, gateway: '10.1.0.1' },
    ];
    const v4 = routesVia({ version: 4, dstLen: 16, dst: '10.9.0.0', table: 254, multipath: hops }, 2, 7, 0);
    expect(v4).toEqual([
      {
        version: 4,
        dstLen: 16,
        dst: '10.9.0.0',
        table: 254,
        flags: 0,
        multipath: [
          { oif: 7, flags: 0, hops: 0, gateway: '10.0.0.1' },
          { oif: 3, flags: 0, hops: 2, gateway: '10.1.0.1' },
        ],
      },
    ]);
    const v6 = routesVia({ version: 6, dstLen: 0, table: 254, priority: 1024, multipath: hops.map((h, i) => ({ ...h, gateway: `fd00::${i + 1}` })) }, 2, 7, 0);
    expect(v6).toEqual([{ version: 6, dstLen: 0, table: 254, priority: 1024, flags: 0, oif: 7, gateway: 'fd00::1' }]);
  });
});

describe('flat takeover: the record', () => {
  it('round-trips through its file, attributes kept verbatim included; a damaged one is an error', () => {
    dir = mkdtempSync(join(tmpdir(), 'fl-unit-'));
    const file = join(dir, 'sub', 'flat.json');
    expect(readRecord(file)).toBeUndefined();
    const rec: TakeoverRecord = {
      version: 1,
      phase: 'done',
      started: new Date().toISOString(),
      uplink: { name: 'eth0', index: 2, mtu: 1500, mac: '02:00:00:00:00:01' },
      bridge: { name: 'br0', created: true },
      sysctls: {},
      addrs: [{ version: 4, prefixLen: 24, local: '10.0.0.5' }],
      routes: [{ version: 4, dstLen: 0, oif: 2, extra: [{ type: 22, nested: true, value: Buffer.from([1, 2, 3, 4]) }] }],
      neighs: [{ ip: '10.0.0.9', mac: '02:00:00:00:00:09', flags: 0 }],
    };
    writeRecord(file, rec);
    expect(readRecord(file)).toEqual(rec);
    writeFileSync(file, '{"version": 1}');
    expect(() => readRecord(file)).toThrow(TakeoverError);
    writeFileSync(file, 'not json');
    expect(() => readRecord(file)).toThrow(/not JSON/);
  });
});
