// Our encoders against the requests iproute2 itself sends (captured with strace by
// test/fixtures/netlink/capture.ts): we must read each of them as the command meant, and
// re-encode it to a request that reads back identically.

import { describe, expect, it } from 'vitest';
import { formatBody, formatMessage, parseMessage, parseMessages, splitMessages, type RtnlMessage } from '../../../lib/netlink/codec/index.ts';
import { requestFlagBits } from '../../../lib/netlink/codec/message.ts';
import { hex, requestFixture, WHERE } from './fixtures.ts';

type Data = Extract<RtnlMessage, { action: unknown }>;

describe.each(WHERE)('iproute2 requests captured on the %s kernel', (where) => {
  const fx = requestFixture(where);
  /** The last request of a command that is not a lookup (ip resolves names first). */
  const main = (name: string): Data => {
    const r = fx.requests[name];
    if (!r) throw new Error(`fixture lacks ${name}`);
    const msgs = r.sent.flatMap((h) => parseMessages(hex(h))).filter((m): m is Data => 'action' in m && m.action !== 'get');
    const last = msgs[msgs.length - 1];
    if (!last) throw new Error(`${name}: no request captured`);
    return last;
  };

  it('every captured request re-encodes to the same message', () => {
    for (const [name, r] of Object.entries(fx.requests)) {
      for (const h of r.sent) {
        const raw = splitMessages(hex(h))[0]!;
        const m = parseMessage(raw);
        if (!('action' in m)) continue;
        const again = parseMessages(formatMessage(raw.header, formatBody(m)))[0]!;
        expect({ ...again, header: undefined }, name).toEqual({ ...m, header: undefined });
      }
    }
  });

  it('veth with the peer created in another netns: one RTM_NEWLINK, peer info with IFLA_NET_NS_FD', () => {
    const m = main('vethPeerNetns');
    expect(m.header.flags).toBe(requestFlagBits({ ack: true, create: true, excl: true }));
    expect(m).toMatchObject({ kind: 'link', action: 'new', link: { name: 'vethA', mtu: 1400, info: { kind: 'veth', peer: { name: 'vethB' } } } });
    if (m.kind === 'link' && m.link.info?.kind === 'veth') expect(typeof m.link.info.peer?.netnsFd).toBe('number');
  });

  it('bridge with vlan_filtering and a default pvid', () => {
    expect(main('bridgeVlanFiltering')).toMatchObject({ kind: 'link', link: { name: 'brY', info: { kind: 'bridge', vlanFiltering: true, defaultPvid: 5 } } });
  });

  it('macvlan, ipvlan and vxlan link data', () => {
    const mv = main('macvlan');
    expect(mv).toMatchObject({ kind: 'link', link: { name: 'mvX', info: { kind: 'macvlan', mode: 'bridge' } } });
    if (mv.kind === 'link') expect(mv.link.parent).toBeGreaterThan(0);
    expect(main('ipvlan')).toMatchObject({ kind: 'link', link: { name: 'ivX', info: { kind: 'ipvlan', mode: 'l3s', flag: 'private' } } });
    expect(main('vxlan')).toMatchObject({
      kind: 'link',
      link: { name: 'vxX', info: { kind: 'vxlan', id: 7, port: 4789, local: '10.0.0.1', remote: '10.0.0.2' } },
    });
  });

  it('set master + up, nomaster, bridge_slave data, bridge link (AF_BRIDGE protinfo)', () => {
    const setMaster = main('setMaster');
    expect(setMaster.header.flags).toBe(requestFlagBits({ ack: true }));
    expect(setMaster).toMatchObject({ kind: 'link', action: 'new', link: { flags: 1, change: 1 } });
    if (setMaster.kind === 'link') expect(setMaster.link.master).toBeGreaterThan(0);
    expect(main('setNomaster')).toMatchObject({ kind: 'link', link: { master: 0 } });
    expect(main('bridgeSlave')).toMatchObject({ kind: 'link', link: { slave: { kind: 'bridge', port: { hairpin: true, isolated: true, learning: false } } } });
    expect(main('bridgeLinkHairpin')).toMatchObject({ kind: 'link', action: 'set', link: { family: 7, protinfo: { hairpin: false } } });
  });

  it('bridge vlan add / del (AF_BRIDGE IFLA_AF_SPEC, ranges)', () => {
    expect(main('bridgeVlanAdd')).toMatchObject({
      kind: 'link',
      action: 'set',
      link: { family: 7, bridge: { vlans: [{ vid: 10, pvid: true, untagged: true }] } },
    });
    expect(main('bridgeVlanDelRange')).toMatchObject({ kind: 'link', action: 'del', link: { family: 7, bridge: { vlans: [{ vid: 20, vidEnd: 22 }] } } });
  });

  it('addresses: IPv4 with broadcast, IPv6 with nodad', () => {
    const a4 = main('addr4');
    expect(a4.header.flags).toBe(requestFlagBits({ ack: true, create: true, excl: true }));
    expect(a4).toMatchObject({
      kind: 'addr',
      action: 'new',
      addr: { version: 4, prefixLen: 24, local: '10.5.0.5', address: '10.5.0.5', broadcast: '10.5.0.255' },
    });
    expect(main('addr6Nodad')).toMatchObject({ kind: 'addr', addr: { version: 6, prefixLen: 64, address: 'fd00::5', flags: 2 } });
  });

  it('routes: metrics, priority, table; replace flags', () => {
    expect(main('route4Metrics')).toMatchObject({
      kind: 'route',
      action: 'new',
      route: {
        version: 4,
        dst: '10.6.0.0',
        dstLen: 16,
        gateway: '10.5.0.1',
        priority: 7,
        table: 100,
        protocol: 3,
        scope: 0,
        type: 1,
        metrics: { mtu: 1400, advmss: 1360 },
      },
    });
    const r6 = main('route6Replace');
    expect(r6.header.flags).toBe(requestFlagBits({ ack: true, create: true, replace: true }));
    expect(r6).toMatchObject({ kind: 'route', route: { version: 6, dstLen: 0, gateway: 'fd00::1' } });
  });

  it('neighbour and FDB append', () => {
    expect(main('neigh4')).toMatchObject({ kind: 'neigh', action: 'new', neigh: { family: 4, dst: '10.5.0.9', lladdr: '02:00:00:00:00:09', state: 0x80 } });
    const fdb = main('fdbAppend');
    expect(fdb.header.flags).toBe(requestFlagBits({ ack: true, create: true, append: true }));
    expect(fdb).toMatchObject({ kind: 'neigh', neigh: { family: 'bridge', lladdr: '00:00:00:00:00:00', dst: '10.0.0.3', flags: 2 } });
  });

  it('delete link', () => {
    expect(main('delLink')).toMatchObject({ kind: 'link', action: 'del' });
  });
});
