import { describe, expect, it } from 'vitest';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { errorOf, useNamespaces } from './env.ts';

interface IpAddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  address?: string;
  prefixlen: number;
  scope: string;
  broadcast?: string;
  nodad?: boolean;
  noprefixroute?: boolean;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  table?: string;
  metrics?: Array<{ mtu?: number; advmss?: number }>;
  flags?: string[];
}

describe('addresses and routes through rtnetlink, checked with ip -j (IPv4 and IPv6)', () => {
  const env = useNamespaces();

  /** A pod with eth0 (up) whose peer veth0 is on the host. */
  async function pod(): Promise<number> {
    await rtnl.newLink(env.host, { name: 'veth0', up: true, info: { kind: 'veth', peer: { name: 'eth0', netns: env.pod, up: true } } });
    return (await rtnl.getLink(env.pod, 'eth0')).index;
  }
  const addrs = (dev = 'eth0'): IpAddrInfo[] =>
    env.ipPod<Array<{ addr_info: IpAddrInfo[] }>>('addr', 'show', 'dev', dev)[0]!.addr_info.filter((a) => a.scope !== 'link');
  const routes = (v: 4 | 6, ...extra: string[]): IpRoute[] => env.ipPod<IpRoute[]>(`-${v}`, 'route', 'show', ...extra).filter((r) => !r.dst.startsWith('fe80'));

  it('adds IPv4 (broadcast computed as the Go plugins do) and IPv6 (nodad) addresses; lists them as ip does', async () => {
    const idx = await pod();
    expect((await rtnl.getLink(env.pod, 'eth0')).up).toBe(true);
    await rtnl.newAddr(env.pod, { link: 'eth0', address: '10.1.0.5/24' });
    await rtnl.newAddr(env.pod, { link: idx, address: 'fd00:1::5/64', nodad: true });
    await rtnl.newAddr(env.pod, { link: idx, address: '10.2.0.5/31' });
    expect(addrs()).toEqual([
      expect.objectContaining({ family: 'inet', local: '10.1.0.5', prefixlen: 24, broadcast: '10.1.0.255', scope: 'global' }),
      expect.objectContaining({ family: 'inet', local: '10.2.0.5', prefixlen: 31, scope: 'global' }),
      expect.objectContaining({ family: 'inet6', local: 'fd00:1::5', prefixlen: 64, nodad: true, scope: 'global' }),
    ]);
    expect(addrs()[1]!.broadcast).toBeUndefined();

    const ours = (await rtnl.listAddrs(env.pod, { link: 'eth0' })).filter((a) => a.scope !== rtnl.Scope.link);
    expect(ours.map((a) => [a.version, a.address, a.broadcast])).toEqual([
      [4, '10.1.0.5/24', '10.1.0.255'],
      [4, '10.2.0.5/31', undefined],
      [6, 'fd00:1::5/64', undefined],
    ]);
    expect((await rtnl.listAddrs(env.pod, { version: 6, link: 'eth0' })).every((a) => a.version === 6)).toBe(true);
    expect(ours[2]!.flags & rtnl.AddrFlag.nodad).toBe(rtnl.AddrFlag.nodad);
  });

  it('noPrefixRoute, replace, delete; deleting a missing address is EADDRNOTAVAIL', async () => {
    await pod();
    await rtnl.newAddr(env.pod, { link: 'eth0', address: '10.3.0.5/24', noPrefixRoute: true });
    expect(addrs()[0]).toMatchObject({ local: '10.3.0.5', noprefixroute: true });
    expect(routes(4)).toEqual([]);
    expect(rtnl.isNetlinkError(await errorOf(() => rtnl.newAddr(env.pod, { link: 'eth0', address: '10.3.0.5/24' })), 'EEXIST')).toBe(true);
    await rtnl.newAddr(env.pod, { link: 'eth0', address: '10.3.0.5/24' }, { replace: true });
    expect(addrs()).toMatchObject([{ local: '10.3.0.5', prefixlen: 24 }]);
    await rtnl.delAddr(env.pod, { link: 'eth0', address: '10.3.0.5/24' });
    expect(addrs()).toEqual([]);
    const e = await errorOf(() => rtnl.delAddr(env.pod, { link: 'eth0', address: '10.3.0.5/24' }));
    expect(e).toMatchObject({ code: 'EADDRNOTAVAIL', op: 'delAddr' });
    await rtnl.newAddr(env.pod, { link: 'eth0', address: 'fd00:3::5/64', nodad: true });
    await rtnl.delAddr(env.pod, { link: 'eth0', address: 'fd00:3::5/64' });
    expect(addrs()).toEqual([]);
  });

  it('adds default and prefix routes with gateway, metrics (mtu, advmss), priority, table; lists as ip does', async () => {
    await pod();
    await rtnl.newAddr(env.pod, { link: 'eth0', address: '10.1.0.5/24' });
    await rtnl.newAddr(env.pod, { link: 'eth0', address: 'fd00:1::5/64', nodad: true });
    await rtnl.newRoute(env.pod, { dst: '0.0.0.0/0', gw: '10.1.0.1' });
    await rtnl.newRoute(env.pod, { dst: 'default', gw: 'fd00:1::1', link: 'eth0' });
    await rtnl.newRoute(env.pod, { dst: '10.20.0.0/16', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 100 });
    await rtnl.newRoute(env.pod, { dst: 'fd00:20::/64', gw: 'fd00:1::1', mtu: 1280 });
    await rtnl.newRoute(env.pod, { dst: '10.30.0.0/16', link: 'eth0' });
    await rtnl.newRoute(env.pod, { dst: '10.40.0.0/16', gw: '10.1.0.1', table: 100 });

    expect(routes(4)).toEqual([
      expect.objectContaining({ dst: 'default', gateway: '10.1.0.1', dev: 'eth0' }),
      expect.objectContaining({ dst: '10.1.0.0/24', protocol: 'kernel' }),
      expect.objectContaining({ dst: '10.20.0.0/16', gateway: '10.1.0.1', metric: 100, metrics: [{ mtu: 1400, advmss: 1360 }] }),
      expect.objectContaining({ dst: '10.30.0.0/16', dev: 'eth0', scope: 'link' }),
    ]);
    expect(routes(4, 'table', '100')).toEqual([expect.objectContaining({ dst: '10.40.0.0/16', gateway: '10.1.0.1' })]);
    expect(routes(6)).toEqual([
      expect.objectContaining({ dst: 'fd00:1::/64', protocol: 'kernel' }),
      expect.objectContaining({ dst: 'fd00:20::/64', gateway: 'fd00:1::1', metrics: [{ mtu: 1280 }] }),
      expect.objectContaining({ dst: 'default', gateway: 'fd00:1::1', dev: 'eth0' }),
    ]);

    const eth0 = (await rtnl.getLink(env.pod, 'eth0')).index;
    const ours4 = await rtnl.listRoutes(env.pod, { version: 4 });
    expect(ours4.map((r) => [r.dst, r.gw, r.oif, r.priority, r.mtu, r.advmss])).toEqual([
      ['0.0.0.0/0', '10.1.0.1', eth0, undefined, undefined, undefined],
      ['10.1.0.0/24', undefined, eth0, undefined, undefined, undefined],
      ['10.20.0.0/16', '10.1.0.1', eth0, 100, 1400, 1360],
      ['10.30.0.0/16', undefined, eth0, undefined, undefined, undefined],
    ]);
    expect((await rtnl.listRoutes(env.pod, { version: 4, table: 100 })).map((r) => r.dst)).toEqual(['10.40.0.0/16']);
    expect((await rtnl.listRoutes(env.pod, { version: 6 })).find((r) => r.dst === '::/0')).toMatchObject({ gw: 'fd00:1::1', oif: eth0 });
    expect((await rtnl.listRoutes(env.pod, { version: 6 })).find((r) => r.dst === 'fd00:20::/64')).toMatchObject({ mtu: 1280 });
  });

  it('replaces and deletes routes; errors are typed', async () => {
    await pod();
    await rtnl.newAddr(env.pod, { link: 'eth0', address: '10.1.0.5/24' });
    await rtnl.newAddr(env.pod, { link: 'eth0', address: 'fd00:1::5/64', nodad: true });
    await rtnl.newRoute(env.pod, { dst: '10.20.0.0/16', gw: '10.1.0.1' });
    expect(rtnl.isNetlinkError(await errorOf(() => rtnl.newRoute(env.pod, { dst: '10.20.0.0/16', gw: '10.1.0.1' })), 'EEXIST')).toBe(true);
    await rtnl.newRoute(env.pod, { dst: '10.20.0.0/16', gw: '10.1.0.2', mtu: 1300 }, { replace: true });
    expect(routes(4).find((r) => r.dst === '10.20.0.0/16')).toMatchObject({ gateway: '10.1.0.2', metrics: [{ mtu: 1300 }] });
    await rtnl.delRoute(env.pod, { dst: '10.20.0.0/16' });
    expect(routes(4).map((r) => r.dst)).toEqual(['10.1.0.0/24']);
    expect(await errorOf(() => rtnl.delRoute(env.pod, { dst: '10.20.0.0/16' }))).toMatchObject({ code: 'ESRCH', op: 'delRoute' });
    await rtnl.newRoute(env.pod, { dst: '::/0', gw: 'fd00:1::1' });
    await rtnl.delRoute(env.pod, { dst: 'default', version: 6 });
    expect(routes(6).map((r) => r.dst)).toEqual(['fd00:1::/64']);

    expect(await errorOf(() => rtnl.newRoute(env.pod, { dst: '10.50.0.0/16', gw: '192.168.99.1' }))).toMatchObject({ code: 'ENETUNREACH', op: 'newRoute' });
    expect(await errorOf(() => rtnl.newRoute(env.pod, { dst: '10.50.0.0/33', gw: '10.1.0.1' }))).toMatchObject({ code: 'EINVAL' });
    expect(await errorOf(() => rtnl.newRoute(env.pod, { dst: '10.50.0.0/16', gw: 'fd00:1::1' }))).toMatchObject({ code: 'EINVAL' });
    expect(await errorOf(() => rtnl.newRoute(env.pod, { dst: 'default' }))).toMatchObject({ code: 'EINVAL' });
    expect(routes(4).map((r) => r.dst)).toEqual(['10.1.0.0/24']);
  });

  it('bad addresses: EINVAL before anything is sent; unknown link: ENODEV', async () => {
    await pod();
    for (const address of ['10.1.0.300/24', '10.1.0.5', '10.1.0.5/33', 'fd00::g/64', 'eth0', '']) {
      const e = await errorOf(() => rtnl.newAddr(env.pod, { link: 'eth0', address }));
      expect(e, address).toMatchObject({ name: 'NetlinkError', code: 'EINVAL', errno: 22, op: 'newAddr' });
    }
    expect(await errorOf(() => rtnl.newAddr(env.pod, { link: 'nosuch0', address: '10.1.0.5/24' }))).toMatchObject({ code: 'ENODEV', op: 'newAddr' });
    expect(await errorOf(() => rtnl.newAddr(env.pod, { link: 9999, address: '10.1.0.5/24' }))).toMatchObject({ code: 'ENODEV' });
    expect(addrs()).toEqual([]);
  });
});
