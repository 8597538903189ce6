import { describe, expect, it } from 'vitest';
import { Netns } from '../../../lib/netlink/netns.ts';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { errorOf, ip, useNamespaces } from './env.ts';

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  master?: string;
  link_netnsid?: number;
  operstate: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, any>; info_slave_data?: Record<string, any> };
}

describe('links through rtnetlink, checked with ip -j', () => {
  const env = useNamespaces();
  const hostLink = (name: string): IpLink => env.ipHost<IpLink[]>('-d', 'link', 'show', 'dev', name)[0]!;
  const podLink = (name: string): IpLink => env.ipPod<IpLink[]>('-d', 'link', 'show', 'dev', name)[0]!;

  it('creates a veth whose peer is born inside the pod netns, with mtu and macs', async () => {
    await rtnl.newLink(env.host, {
      name: 'veth0',
      mtu: 1400,
      mac: '02:00:00:00:00:01',
      info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod, mtu: 1400, mac: '02:00:00:00:00:02' } },
    });
    const h = hostLink('veth0');
    const p = podLink('eth0');
    expect(h).toMatchObject({ mtu: 1400, address: '02:00:00:00:00:01', linkinfo: { info_kind: 'veth' } });
    expect(p).toMatchObject({ mtu: 1400, address: '02:00:00:00:00:02', linkinfo: { info_kind: 'veth' } });
    expect(h.link_netnsid).toBeTypeOf('number');
    expect(env.linkNames(env.hostName)).toEqual(['lo', 'veth0']);
    expect(env.linkNames(env.podName)).toEqual(['eth0', 'lo']);

    const ours = await rtnl.getLink(env.pod, 'eth0');
    expect(ours).toMatchObject({ index: p.ifindex, name: 'eth0', mtu: 1400, mac: p.address, kind: 'veth', up: false });
    expect((await rtnl.getLink(env.pod, p.ifindex)).name).toBe('eth0');
  });

  it('lists the same links as ip -j link', async () => {
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'veth1' } } });
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge' } });
    const ipLinks = env.ipHost<IpLink[]>('link', 'show');
    const ours = await rtnl.listLinks(env.host);
    expect(ours.map((l) => [l.index, l.name, l.mtu, l.mac, l.operstate.toUpperCase()]).sort()).toEqual(
      ipLinks.map((l) => [l.ifindex, l.ifname, l.mtu, l.address, l.operstate]).sort(),
    );
  });

  it('brings links up and down, sets mtu, mac, promisc, renames', async () => {
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod } } });
    await rtnl.setLink(env.host, 'veth0', { up: true });
    await rtnl.setLink(env.pod, 'eth0', { up: true });
    expect(hostLink('veth0').flags).toContain('UP');
    expect(podLink('eth0').flags).toContain('UP');
    expect(await rtnl.getLink(env.pod, 'eth0')).toMatchObject({ up: true });

    await rtnl.setLink(env.host, 'veth0', { mtu: 9000, mac: '02:aa:00:00:00:01', promisc: true });
    expect(hostLink('veth0')).toMatchObject({ mtu: 9000, address: '02:aa:00:00:00:01' });
    expect(hostLink('veth0').flags).toContain('PROMISC');
    await rtnl.setLink(env.host, 'veth0', { promisc: false, up: false });
    expect(hostLink('veth0').flags).not.toContain('PROMISC');
    expect(hostLink('veth0').flags).not.toContain('UP');

    await rtnl.setLink(env.host, 'veth0', { name: 'vethx' });
    expect(env.linkNames(env.hostName)).toEqual(['lo', 'vethx']);
  });

  it('creates a link inside another namespace and moves links between namespaces', async () => {
    await rtnl.newLink(env.host, { name: 'br9', netns: env.pod, info: { kind: 'bridge' } });
    expect(env.linkNames(env.podName)).toEqual(['br9', 'lo']);
    expect(env.linkNames(env.hostName)).toEqual(['lo']);

    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'veth1' } } });
    await rtnl.setLink(env.host, 'veth1', { netns: env.pod });
    expect(env.linkNames(env.podName)).toEqual(['br9', 'lo', 'veth1']);
    expect(env.linkNames(env.hostName)).toEqual(['lo', 'veth0']);
  });

  it('bridge: create, enslave with hairpin/isolated/learning, detach', async () => {
    await rtnl.newLink(env.host, { name: 'br0', mtu: 1450, up: true, info: { kind: 'bridge' } });
    await rtnl.newLink(env.host, { name: 'veth0', mtu: 1450, info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod } } });
    await rtnl.setLink(env.host, 'veth0', { master: 'br0', up: true, bridgePort: { hairpin: true, isolated: true, learning: false } });
    const h = hostLink('veth0');
    expect(h.master).toBe('br0');
    expect(h.linkinfo?.info_slave_data).toMatchObject({ hairpin: true, isolated: true, learning: false });
    expect(hostLink('br0')).toMatchObject({ mtu: 1450, linkinfo: { info_kind: 'bridge' } });
    const ours = await rtnl.getLink(env.host, 'veth0');
    expect(ours.master).toBe(hostLink('br0').ifindex);
    expect(ours.bridgePort).toMatchObject({ hairpin: true, isolated: true, learning: false });
    expect((await rtnl.listBridgePorts(env.host)).get(ours.index)).toMatchObject({ hairpin: true, master: ours.master });

    await rtnl.setLink(env.host, 'veth0', { bridgePort: { hairpin: false, isolated: false, learning: true } });
    expect(hostLink('veth0').linkinfo?.info_slave_data).toMatchObject({ hairpin: false, isolated: false, learning: true });
    await rtnl.setLink(env.host, 'veth0', { master: null });
    expect(hostLink('veth0').master).toBeUndefined();
  });

  it('bridge settings: stp, forward delay, ageing (vlan_filtering needs the guest kernel)', async () => {
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge', stpState: 0, forwardDelay: 400, ageingTime: 1000 } });
    const d = hostLink('br0').linkinfo!.info_data!;
    expect(d).toMatchObject({ stp_state: 0, forward_delay: 400, ageing_time: 1000 });
    expect((await rtnl.getLink(env.host, 'br0')).info).toMatchObject({ kind: 'bridge', forwardDelay: 400, ageingTime: 1000, vlanFiltering: false });
  });

  it('vxlan over IPv4 and IPv6: id, port, local, remote/group, dev', async () => {
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge' } });
    await rtnl.newLink(env.host, { name: 'vx4', info: { kind: 'vxlan', id: 42, port: 4789, local: '192.0.2.1', remote: '192.0.2.2', learning: false } });
    await rtnl.newLink(env.host, { name: 'vx6', info: { kind: 'vxlan', id: 43, port: 8472, local: 'fd00::1', group: 'ff05::100', dev: 'br0' } });
    expect(hostLink('vx4').linkinfo?.info_data).toMatchObject({ id: 42, port: 4789, local: '192.0.2.1', remote: '192.0.2.2', learning: false });
    expect(hostLink('vx6').linkinfo?.info_data).toMatchObject({ id: 43, port: 8472, local6: 'fd00::1', group6: 'ff05::100', link: 'br0' });
    expect((await rtnl.getLink(env.host, 'vx6')).info).toMatchObject({ kind: 'vxlan', id: 43, port: 8472, local: 'fd00::1', group: 'ff05::100' });
  });

  it('macvlan in every mode, created directly in the pod netns on a host parent', async () => {
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'veth1' } } });
    for (const mode of ['bridge', 'private', 'vepa'] as const) {
      await rtnl.newLink(env.host, { name: `mv-${mode}`, parent: 'veth0', netns: env.pod, mtu: 1400, info: { kind: 'macvlan', mode } });
      const l = podLink(`mv-${mode}`);
      expect(l.linkinfo).toMatchObject({ info_kind: 'macvlan', info_data: { mode } });
      expect(l.mtu).toBe(1400);
      expect((await rtnl.getLink(env.pod, `mv-${mode}`)).info).toEqual({ kind: 'macvlan', mode });
    }
    expect(env.linkNames(env.hostName)).toEqual(['lo', 'veth0', 'veth1']);
  });

  it('deletes a link (a veth takes its peer along); deleting again is ENODEV', async () => {
    await rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod } } });
    await rtnl.delLink(env.pod, 'eth0');
    expect(env.linkNames(env.hostName)).toEqual(['lo']);
    expect(env.linkNames(env.podName)).toEqual(['lo']);
    const e = await errorOf(() => rtnl.delLink(env.pod, 'eth0'));
    expect(rtnl.isNetlinkError(e, 'ENODEV')).toBe(true);
    expect(e).toMatchObject({ name: 'NetlinkError', errno: 19, op: 'delLink' });
    expect(await rtnl.findLink(env.pod, 'eth0')).toBeUndefined();
  });
});

describe('link errors: typed, with errno, nothing half-created', () => {
  const env = useNamespaces();
  const snapshot = (): string[][] => [env.linkNames(env.hostName), env.linkNames(env.podName)];

  it('a name longer than 15 bytes: EINVAL, no link on either side', async () => {
    const before = snapshot();
    const e1 = await errorOf(() => rtnl.newLink(env.host, { name: 'a-very-long-name-0', info: { kind: 'bridge' } }));
    expect(e1).toMatchObject({ name: 'NetlinkError', code: 'EINVAL', errno: 22, op: 'newLink' });
    const e2 = await errorOf(() => rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0-is-far-too-long', netns: env.pod } } }));
    expect(e2).toMatchObject({ code: 'EINVAL', op: 'newLink' });
    expect(snapshot()).toEqual(before);
  });

  it('the kernel itself refuses a bad veth (peer name taken in the pod): nothing left on the host', async () => {
    await rtnl.newLink(env.pod, { name: 'eth0', info: { kind: 'bridge' } });
    const before = snapshot();
    const e = await errorOf(() => rtnl.newLink(env.host, { name: 'veth0', info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod } } }));
    expect(e).toMatchObject({ name: 'NetlinkError', code: 'EEXIST', errno: 17, op: 'newLink' });
    expect(snapshot()).toEqual(before);
  });

  it('an existing name: EEXIST, the existing link untouched', async () => {
    await rtnl.newLink(env.host, { name: 'br0', mtu: 1300, info: { kind: 'bridge' } });
    const e = await errorOf(() => rtnl.newLink(env.host, { name: 'br0', mtu: 1500, info: { kind: 'bridge' } }));
    expect(rtnl.isNetlinkError(e, 'EEXIST')).toBe(true);
    expect((await rtnl.getLink(env.host, 'br0')).mtu).toBe(1300);
  });

  it('an unknown link: ENODEV from get, set, del and from a name given as master/parent', async () => {
    for (const f of [
      () => rtnl.getLink(env.host, 'nosuch0'),
      () => rtnl.getLink(env.host, 9999),
      () => rtnl.setLink(env.host, 'nosuch0', { up: true }),
      () => rtnl.setLink(env.host, 9999, { mtu: 1400 }),
      () => rtnl.delLink(env.host, 'nosuch0'),
      () => rtnl.newLink(env.host, { name: 'mv0', parent: 'nosuch0', info: { kind: 'macvlan', mode: 'bridge' } }),
    ]) {
      const e = await errorOf(f);
      expect(e.code, String(f)).toBe('ENODEV');
      expect(e.errno).toBe(19);
    }
    expect(env.linkNames(env.hostName)).toEqual(['lo']);
  });

  it('an mtu the kernel refuses: EINVAL carrying the kernel message', async () => {
    await rtnl.newLink(env.host, { name: 'br0', info: { kind: 'bridge' } });
    const e = await errorOf(() => rtnl.setLink(env.host, 'br0', { mtu: 20 }));
    expect(e).toMatchObject({ code: 'EINVAL', op: 'setLink' });
    expect(e.detail).toMatch(/mtu/i);
    expect(await errorOf(() => rtnl.setLink(env.host, 'br0', { mac: 'zz:00' }))).toMatchObject({ code: 'EINVAL' });
  });

  it('values the codec cannot encode are EINVAL too, and nothing is created', async () => {
    const e = await errorOf(() => rtnl.newLink(env.host, { name: 'vx0', info: { kind: 'vxlan', id: 1, group: '239.1.1.1', remote: '10.0.0.1' } }));
    expect(e).toMatchObject({ name: 'NetlinkError', code: 'EINVAL', op: 'newLink' });
    expect(await errorOf(() => rtnl.newLink(env.host, { name: 'vx0', info: { kind: 'vxlan', id: 1, local: '10.0.0.300' } }))).toMatchObject({ code: 'EINVAL' });
    expect(env.linkNames(env.hostName)).toEqual(['lo']);
  });

  it('a namespace path that is not a netns: EINVAL; a missing one: ENOENT', async () => {
    expect(await errorOf(() => Netns.open('/etc/hostname'))).toMatchObject({ name: 'NetlinkError', code: 'EINVAL', op: 'netns.open' });
    expect(await errorOf(() => Netns.open('/run'))).toMatchObject({ code: 'EINVAL' });
    expect(await errorOf(() => Netns.open('/proc/self/ns/mnt'))).toMatchObject({ code: 'EINVAL' });
    expect(await errorOf(() => Netns.open(`/run/netns/${env.set.prefix}-missing`))).toMatchObject({ code: 'ENOENT', errno: 2 });
    expect(Netns.exists(env.set.path(env.podName))).toBe(true);
    expect(Netns.exists('/etc/hostname')).toBe(false);
  });

  it('a namespace deleted under an open handle: the next request fails, typed', async () => {
    const name = env.set.add('gone');
    const ns = Netns.open(env.set.path(name));
    ip(['netns', 'del', name]);
    const e = await errorOf(() => rtnl.listLinks(ns));
    expect(e).toMatchObject({ name: 'NetlinkError', code: 'ENOENT', op: 'netlink.open' });
    ns.close();
  });
});
