import { describe, expect, it } from 'vitest';
import { formatLinkMessage, type LinkMessage, LinkFlag, parseLinkMessage } from '../../../lib/netlink/codec/index.ts';
import { dataOf, indexByName, kernelFixture, WHERE } from './fixtures.ts';

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate: string;
  address?: string;
  master?: string;
  link?: string | null;
  link_netnsid?: number;
  txqlen?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, any>; info_slave_kind?: string; info_slave_data?: Record<string, any> };
}

const roundTrip = (m: LinkMessage): LinkMessage => parseLinkMessage(formatLinkMessage(m)).value;

describe.each(WHERE)('ifinfomsg against the %s kernel', (where) => {
  const fx = kernelFixture(where);
  const guest = where === 'guest';

  for (const ns of ['A', 'B'] as const) {
    const ipLinks = fx.ip[`links${ns}`] as IpLink[];
    const idx = indexByName(ipLinks);
    const ours = dataOf(fx.dumps[`links${ns}`], 'link').map((m) => m.link);

    it(`netns ${ns}: the same links as ip -j link, with name, mtu, mac, flags, operstate, master`, () => {
      expect(ours.map((l) => l.index).sort()).toEqual(ipLinks.map((l) => l.ifindex).sort());
      for (const ipl of ipLinks) {
        const l = ours.find((x) => x.index === ipl.ifindex)!;
        expect(l.name).toBe(ipl.ifname);
        expect(l.mtu).toBe(ipl.mtu);
        expect(l.mac).toBe(ipl.address);
        expect(l.operstate).toBe(ipl.operstate.toLowerCase());
        expect(((l.flags ?? 0) & LinkFlag.up) !== 0).toBe(ipl.flags.includes('UP'));
        expect(((l.flags ?? 0) & LinkFlag.lowerUp) !== 0).toBe(ipl.flags.includes('LOWER_UP'));
        expect(l.master).toBe(ipl.master === undefined ? undefined : idx.get(ipl.master));
        expect(l.linkNetnsId).toBe(ipl.link_netnsid);
        if (typeof ipl.link === 'string') expect(l.parent).toBe(idx.get(ipl.link));
        expect(l.txqlen).toBe(ipl.txqlen);
        const kind = ipl.linkinfo?.info_kind;
        if (kind === undefined) expect(l.info).toBeUndefined();
        else expect(l.info?.kind === 'other' ? l.info.name : l.info?.kind).toBe(kind);
      }
    });

    it(`netns ${ns}: every link survives format -> parse unchanged`, () => {
      for (const l of ours) expect(roundTrip(l)).toEqual(l);
    });
  }

  const ipA = fx.ip['linksA'] as IpLink[];
  const idxA = indexByName(ipA);
  const linksA = dataOf(fx.dumps.linksA, 'link').map((m) => m.link);
  const byName = (n: string): LinkMessage => {
    const l = linksA.find((x) => x.name === n);
    if (!l) throw new Error(`no ${n} in fixture`);
    return l;
  };
  const ipData = (n: string): Record<string, any> => ipA.find((l) => l.ifname === n)!.linkinfo!.info_data!;

  it('bridge: vlan_filtering, default pvid, stp, forward delay, ageing, snooping', () => {
    const d = ipData('br0');
    expect(byName('br0').info).toEqual({
      kind: 'bridge',
      forwardDelay: d['forward_delay'],
      ageingTime: d['ageing_time'],
      stpState: d['stp_state'],
      vlanFiltering: d['vlan_filtering'] === 1,
      defaultPvid: d['vlan_default_pvid'],
      mcastSnooping: d['mcast_snooping'] === 1,
    });
    expect(d['vlan_filtering']).toBe(guest ? 1 : 0);
  });

  it('bridge port (slave data): hairpin, isolated, learning as ip reports them', () => {
    const veth0 = byName('veth0');
    const s = ipA.find((l) => l.ifname === 'veth0')!.linkinfo!.info_slave_data!;
    expect(veth0.slave?.kind).toBe('bridge');
    if (veth0.slave?.kind !== 'bridge') return;
    expect(veth0.slave.port).toMatchObject({
      hairpin: s['hairpin'],
      isolated: s['isolated'],
      learning: s['learning'],
      unicastFlood: s['flood'],
      priority: s['priority'],
      cost: s['cost'],
    });
    expect(veth0.slave.port).toMatchObject({ hairpin: true, isolated: true, learning: false, state: 3 });
  });

  it('veth: kind and the peer living in another namespace', () => {
    const veth0 = byName('veth0');
    expect(veth0.info).toEqual({ kind: 'veth' });
    expect(veth0.linkNetnsId).toBe(0);
    expect(byName('veth1').parent).toBe(idxA.get('veth1p'));
  });

  it('vxlan: id, port, local, remote / group, dev, ttl, learning for IPv4 and IPv6', () => {
    const vx4 = ipData('vx4');
    expect(byName('vx4').info).toEqual({
      kind: 'vxlan',
      id: vx4['id'],
      port: vx4['port'],
      local: vx4['local'],
      remote: vx4['remote'],
      ttl: vx4['ttl'],
      learning: vx4['learning'],
    });
    const vx6 = ipData('vx6');
    expect(byName('vx6').info).toEqual({
      kind: 'vxlan',
      id: 43,
      port: 8472,
      local: vx6['local6'],
      group: vx6['group6'],
      dev: idxA.get(vx6['link']),
      ttl: 0,
      learning: true,
    });
    const vxg = ipData('vxg');
    expect(byName('vxg').info).toMatchObject({ kind: 'vxlan', id: 44, group: vxg['group'], dev: idxA.get('br0'), port: 4789 });
  });

  it('macvlan: mode and lower device', () => {
    expect(byName('mv0').info).toEqual({ kind: 'macvlan', mode: ipData('mv0')['mode'] });
    expect(byName('mv1').info).toEqual({ kind: 'macvlan', mode: 'vepa' });
    expect(byName('mv0').parent).toBe(idxA.get('veth1'));
  });

  // ipvlan and bridge VLAN filtering exist only in the guest kernel's fixture.
  if (guest)
    it('ipvlan: mode and flags', () => {
      const d = ipData('iv0');
      expect(byName('iv0').info).toEqual({ kind: 'ipvlan', mode: d['mode'], flag: d['private'] ? 'private' : 'bridge' });
      expect(byName('iv0').parent).toBe(idxA.get('veth1p'));
    });

  it('AF_BRIDGE view: port settings in IFLA_PROTINFO', () => {
    const msgs = dataOf(fx.dumps.bridgeA, 'link').map((m) => m.link);
    const port = msgs.find((l) => l.name === 'veth0')!;
    expect(port.family).toBe(7);
    expect(port.master).toBe(idxA.get('br0'));
    expect(port.protinfo).toMatchObject({ hairpin: true, isolated: true, learning: false, state: 3 });
    for (const l of msgs) expect(roundTrip(l)).toEqual(l);
  });

  if (guest)
    it('AF_BRIDGE view: VLAN entries (pvid, untagged, ranges) as bridge -j vlan shows them', () => {
      const msgs = dataOf(fx.dumps.bridgeA, 'link').map((m) => m.link);
      const ipVlans = fx.ip['vlansA'] as Array<{ ifname: string; vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }> }>;
      expect(ipVlans.length).toBeGreaterThan(0);
      for (const entry of ipVlans) {
        const ours = msgs.find((l) => l.name === entry.ifname)!.bridge?.vlans ?? [];
        const expanded = ours.flatMap((v) => {
          const out = [];
          for (let vid = v.vid; vid <= (v.vidEnd ?? v.vid); vid++) {
            const flags = [...(v.pvid ? ['PVID'] : []), ...(v.untagged ? ['Egress Untagged'] : [])];
            out.push(flags.length ? { vlan: vid, flags } : { vlan: vid });
          }
          return out;
        });
        expect(expanded).toEqual(entry.vlans);
      }
      expect(msgs.find((l) => l.name === 'veth0')!.bridge?.vlans).toContainEqual({ vid: 20, vidEnd: 22 });
    });
});

describe('ifinfomsg requests', () => {
  it('nests a veth peer (its own ifinfomsg + attributes) inside IFLA_INFO_DATA', () => {
    const m: LinkMessage = { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0', netnsFd: 9, mtu: 1400, flags: 1, change: 1 } } };
    expect(roundTrip(m)).toEqual({
      family: 0,
      type: 0,
      index: 0,
      flags: 0,
      change: 0,
      name: 'veth0',
      info: { kind: 'veth', peer: { family: 0, type: 0, index: 0, flags: 1, change: 1, name: 'eth0', netnsFd: 9, mtu: 1400 } },
    });
  });

  it('splits a VLAN range into RANGE_BEGIN/RANGE_END entries', () => {
    const m: LinkMessage = {
      family: 7,
      index: 3,
      bridge: {
        self: true,
        vlans: [
          { vid: 20, vidEnd: 22, untagged: true },
          { vid: 5, pvid: true },
        ],
      },
    };
    expect(roundTrip(m).bridge).toEqual({
      self: true,
      vlans: [
        { vid: 20, vidEnd: 22, untagged: true },
        { vid: 5, pvid: true },
      ],
    });
    expect(() => formatLinkMessage({ family: 7, bridge: { vlans: [{ vid: 4095 }] } })).toThrow(/invalid VLAN id/);
  });

  it('rejects vxlan with both group and remote, unknown modes and empty names', () => {
    expect(() => formatLinkMessage({ info: { kind: 'vxlan', group: '239.1.1.1', remote: '10.0.0.1' } })).toThrow(/group or remote/);
    expect(() => formatLinkMessage({ info: { kind: 'macvlan', mode: 'nope' as 'bridge' } })).toThrow(/macvlan mode/);
    expect(() => formatLinkMessage({ name: '' })).toThrow(/empty/);
  });
});
