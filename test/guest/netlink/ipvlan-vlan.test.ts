// Netlink operations that need kernel features this host lacks: ipvlan links and bridge
// VLAN filtering. They run in the qemu guest (scripts/vm/run-guest-tests.sh) and fail,
// never skip, on a kernel without them.

import { describe, expect, it } from 'vitest';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { nsExec } from '../../helpers/netns.ts';
import { whereAmI } from '../../helpers/vm.ts';
import { errorOf, useNamespaces } from '../../integration/netlink/env.ts';

interface IpLink {
  ifname: string;
  link?: string;
  mtu: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, any> };
}

describe(`ipvlan through rtnetlink (${whereAmI()})`, () => {
  const env = useNamespaces();

  it('creates ipvlan l2, l3 and l3s links (bridge/private/vepa) directly in the pod netns', async () => {
    const cases = [
      { mode: 'l2', flag: 'bridge' },
      { mode: 'l3', flag: 'private' },
      { mode: 'l3s', flag: 'vepa' },
    ] as const;
    for (const [i, c] of cases.entries()) {
      // The mode belongs to the master: one master per mode.
      await rtnl.newLink(env.host, { name: `m${i}`, info: { kind: 'veth', peer: { name: `m${i}p` } } });
      await rtnl.newLink(env.host, { name: `iv${i}`, parent: `m${i}`, netns: env.pod, mtu: 1400, info: { kind: 'ipvlan', mode: c.mode, flag: c.flag } });
      const l = env.ipPod<IpLink[]>('-d', 'link', 'show', 'dev', `iv${i}`)[0]!;
      expect(l.linkinfo?.info_kind).toBe('ipvlan');
      expect(l.linkinfo?.info_data?.['mode']).toBe(c.mode);
      expect(Boolean(l.linkinfo?.info_data?.['private'])).toBe(c.flag === 'private');
      expect(Boolean(l.linkinfo?.info_data?.['vepa'])).toBe(c.flag === 'vepa');
      expect(l.mtu).toBe(1400);
      expect((await rtnl.getLink(env.pod, `iv${i}`)).info).toEqual({ kind: 'ipvlan', mode: c.mode, flag: c.flag });
    }
    await rtnl.delLink(env.pod, 'iv0');
    expect(env.linkNames(env.podName)).toEqual(['iv1', 'iv2', 'lo']);
  });

  it('an unknown master is ENODEV and creates nothing', async () => {
    const e = await errorOf(() => rtnl.newLink(env.host, { name: 'iv0', parent: 'nosuch0', netns: env.pod, info: { kind: 'ipvlan', mode: 'l2' } }));
    expect(e).toMatchObject({ code: 'ENODEV', op: 'newLink' });
    expect(env.linkNames(env.podName)).toEqual(['lo']);
  });
});

describe(`bridge VLAN filtering through rtnetlink (${whereAmI()})`, () => {
  const env = useNamespaces();
  const bridgeVlans = (): Array<{ ifname: string; vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }> }> =>
    JSON.parse(nsExec(env.hostName, 'bridge', ['-j', 'vlan', 'show']));

  it('creates a vlan-filtering bridge with a default pvid, and switches filtering on an existing one', async () => {
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge', vlanFiltering: true, defaultPvid: 5 } });
    const d = env.ipHost<IpLink[]>('-d', 'link', 'show', 'dev', 'br0')[0]!.linkinfo!.info_data!;
    expect(d).toMatchObject({ vlan_filtering: 1, vlan_default_pvid: 5 });
    expect((await rtnl.getLink(env.host, 'br0')).info).toMatchObject({ kind: 'bridge', vlanFiltering: true, defaultPvid: 5 });

    await rtnl.newLink(env.host, { name: 'br1', info: { kind: 'bridge' } });
    await rtnl.setLink(env.host, 'br1', { info: { kind: 'bridge', vlanFiltering: true } });
    expect(env.ipHost<IpLink[]>('-d', 'link', 'show', 'dev', 'br1')[0]!.linkinfo!.info_data!['vlan_filtering']).toBe(1);
  });

  it('adds and deletes port and bridge VLANs (pvid, untagged, ranges, self) as bridge -j vlan shows them', async () => {
    await rtnl.newLink(env.host, { name: 'br0', up: true, info: { kind: 'bridge', vlanFiltering: true, defaultPvid: 0 } });
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod } } });
    await rtnl.setLink(env.host, 'veth0', { master: 'br0', up: true });
    await rtnl.newBridgeVlan(env.host, 'veth0', { vid: 10, pvid: true, untagged: true });
    await rtnl.newBridgeVlan(env.host, 'veth0', { vid: 20, vidEnd: 22 });
    await rtnl.newBridgeVlan(env.host, 'br0', { vid: 10, self: true });
    const view = bridgeVlans();
    expect(view.find((x) => x.ifname === 'veth0')?.vlans).toEqual([{ vlan: 10, flags: ['PVID', 'Egress Untagged'] }, { vlan: 20 }, { vlan: 21 }, { vlan: 22 }]);
    expect(view.find((x) => x.ifname === 'br0')?.vlans).toEqual([{ vlan: 10 }]);

    const ours = await rtnl.listBridgeVlans(env.host);
    const veth0 = (await rtnl.getLink(env.host, 'veth0')).index;
    expect(ours.get(veth0)).toEqual([
      { vid: 10, pvid: true, untagged: true },
      { vid: 20, vidEnd: 22 },
    ]);

    await rtnl.delBridgeVlan(env.host, 'veth0', { vid: 21 });
    await rtnl.delBridgeVlan(env.host, 'veth0', { vid: 10 });
    expect(bridgeVlans().find((x) => x.ifname === 'veth0')?.vlans).toEqual([{ vlan: 20 }, { vlan: 22 }]);
  });

  it('bad VLAN ids are refused before sending; a non-port is refused by the kernel', async () => {
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge', vlanFiltering: true } });
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'veth1' } } });
    await rtnl.setLink(env.host, 'veth0', { master: 'br0' });
    for (const vid of [0, 4095, 5000]) {
      expect(await errorOf(() => rtnl.newBridgeVlan(env.host, 'veth0', { vid }))).toMatchObject({ name: 'NetlinkError', code: 'EINVAL', op: 'newBridgeVlan' });
    }
    const e = await errorOf(() => rtnl.newBridgeVlan(env.host, 'veth1', { vid: 10 }));
    expect(e).toMatchObject({ name: 'NetlinkError', op: 'newBridgeVlan' });
    expect((await rtnl.listBridgeVlans(env.host)).get((await rtnl.getLink(env.host, 'veth1')).index)).toBeUndefined();
  });
});
