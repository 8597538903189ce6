import { describe, expect, it } from 'vitest';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { nsExec } from '../../helpers/netns.ts';
import { errorOf, nsExecSysctl, useNamespaces } from './env.ts';

describe('neighbours, FDB entries and sysctls', () => {
  const env = useNamespaces();

  it('adds, lists and deletes IPv4 and IPv6 neighbours as ip -j neigh shows them', async () => {
    await rtnl.newLink(env.pod, { name: 'veth0', up: true, info: { kind: 'veth', peer: { name: 'veth1', up: true } } });
    await rtnl.newNeigh(env.pod, { link: 'veth0', ip: '10.1.0.9', mac: '02:00:00:00:00:09' });
    await rtnl.newNeigh(env.pod, { link: 'veth0', ip: 'fd00::9', mac: '02:00:00:00:00:0a' });
    const ipView = env.ipPod<Array<{ dst: string; lladdr: string; dev: string; state: string[] }>>('neigh', 'show', 'dev', 'veth0');
    expect(ipView).toEqual([
      expect.objectContaining({ dst: '10.1.0.9', lladdr: '02:00:00:00:00:09', state: ['PERMANENT'] }),
      expect.objectContaining({ dst: 'fd00::9', lladdr: '02:00:00:00:00:0a', state: ['PERMANENT'] }),
    ]);
    const ours = (await rtnl.listNeighs(env.pod, { link: 'veth0' })).filter((n) => n.state === rtnl.NeighState.permanent);
    expect(ours.map((n) => [n.family, n.ip, n.mac])).toEqual([
      [4, '10.1.0.9', '02:00:00:00:00:09'],
      [6, 'fd00::9', '02:00:00:00:00:0a'],
    ]);
    expect(rtnl.isNetlinkError(await errorOf(() => rtnl.newNeigh(env.pod, { link: 'veth0', ip: '10.1.0.9', mac: '02:00:00:00:00:01' })), 'EEXIST')).toBe(true);
    await rtnl.newNeigh(env.pod, { link: 'veth0', ip: '10.1.0.9', mac: '02:00:00:00:00:01' }, { replace: true });
    expect(env.ipPod<Array<{ lladdr: string }>>('-4', 'neigh', 'show', 'dev', 'veth0')[0]!.lladdr).toBe('02:00:00:00:00:01');
    await rtnl.delNeigh(env.pod, { link: 'veth0', ip: '10.1.0.9' });
    await rtnl.delNeigh(env.pod, { link: 'veth0', ip: 'fd00::9' });
    expect(env.ipPod('neigh', 'show', 'dev', 'veth0')).toEqual([]);
    expect(await errorOf(() => rtnl.delNeigh(env.pod, { link: 'veth0', ip: '10.1.0.9' }))).toMatchObject({ code: 'ENOENT', op: 'delNeigh' });
    expect(await errorOf(() => rtnl.newNeigh(env.pod, { link: 'veth0', ip: '10.1.0.999', mac: '02:00:00:00:00:01' }))).toMatchObject({ code: 'EINVAL' });
  });

  it('vxlan FDB entries: flood list to several VTEPs (append) and a static MAC, as bridge -j fdb shows them', async () => {
    await rtnl.newLink(env.host, { name: 'vx0', info: { kind: 'vxlan', id: 7, port: 4789, local: '192.0.2.1', learning: false } });
    await rtnl.newNeigh(env.host, { link: 'vx0', fdb: true, mac: '00:00:00:00:00:00', ip: '192.0.2.2' }, { append: true });
    await rtnl.newNeigh(env.host, { link: 'vx0', fdb: true, mac: '00:00:00:00:00:00', ip: '192.0.2.3' }, { append: true });
    await rtnl.newNeigh(env.host, { link: 'vx0', fdb: true, mac: '02:00:00:00:00:05', ip: '192.0.2.3' });
    const view = bridgeFdb(env.hostName, 'vx0');
    expect(view.map((f) => [f.mac, f.dst, f.flags]).sort()).toEqual([
      ['00:00:00:00:00:00', '192.0.2.2', ['self']],
      ['00:00:00:00:00:00', '192.0.2.3', ['self']],
      ['02:00:00:00:00:05', '192.0.2.3', ['self']],
    ]);
    const ours = await rtnl.listNeighs(env.host, { family: 'bridge', link: 'vx0' });
    expect(ours.map((n) => [n.mac, n.ip]).sort()).toEqual(view.map((f) => [f.mac, f.dst]).sort());
    await rtnl.delNeigh(env.host, { link: 'vx0', fdb: true, mac: '00:00:00:00:00:00', ip: '192.0.2.2' });
    expect(bridgeFdb(env.hostName, 'vx0')).toHaveLength(2);
  });

  it('reads and writes sysctls inside the namespace only', async () => {
    await rtnl.newLink(env.pod, { name: 'veth0', info: { kind: 'veth', peer: { name: 'veth1' } } });
    const hostFwd = nsExecSysctl(env.hostName, 'net.ipv4.ip_forward');
    const other = hostFwd === '1' ? '0' : '1';
    expect(await rtnl.sysctlGet(env.pod, 'net.ipv4.ip_forward')).toBe(nsExecSysctl(env.podName, 'net.ipv4.ip_forward'));
    await rtnl.sysctlSet(env.pod, 'net.ipv4.ip_forward', Number(other));
    await rtnl.sysctlSet(env.pod, 'net.ipv4.conf.veth0.arp_notify', '1');
    await rtnl.sysctlSet(env.pod, 'net/ipv6/conf/veth0/accept_ra', '0');
    expect(nsExecSysctl(env.podName, 'net.ipv4.ip_forward')).toBe(other);
    expect(nsExecSysctl(env.podName, 'net.ipv4.conf.veth0.arp_notify')).toBe('1');
    expect(nsExecSysctl(env.podName, 'net.ipv6.conf.veth0.accept_ra')).toBe('0');
    expect(await rtnl.sysctlGet(env.pod, 'net.ipv4.conf.veth0.arp_notify')).toBe('1');
    expect(await rtnl.sysctlGet(env.pod, 'net.ipv4.ip_forward')).toBe(other);
    expect(nsExecSysctl(env.hostName, 'net.ipv4.ip_forward')).toBe(hostFwd);
    expect(await rtnl.sysctlGet(env.host, 'net.ipv4.ip_forward')).toBe(hostFwd);
    expect(await errorOf(() => rtnl.sysctlGet(env.host, 'net.ipv4.conf.veth0.arp_notify'))).toMatchObject({ code: 'ENOENT', op: 'sysctlGet' });
    expect(await errorOf(() => rtnl.sysctlSet(env.pod, 'net.ipv4.ip_forward', 'x'))).toMatchObject({ code: 'EINVAL', op: 'sysctlSet' });
    expect(await errorOf(() => rtnl.sysctlGet(env.pod, 'net/../../etc/passwd'))).toMatchObject({ code: 'EINVAL' });
  });
});

/** `bridge -j fdb show dev <dev>` in a namespace: the entries with a remote destination. */
function bridgeFdb(ns: string, dev: string): Array<{ mac: string; dst?: string; flags: string[] }> {
  const all = JSON.parse(nsExec(ns, 'bridge', ['-j', 'fdb', 'show', 'dev', dev])) as Array<{ mac: string; dst?: string; flags: string[] }>;
  return all.filter((f) => f.dst !== undefined);
}
