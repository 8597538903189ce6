import { describe, expect, it } from 'vitest';
import { isIpv4Conf, setArpProxyDelay, setIpv4Conf, setProxyArp } from '../../../lib/netlink/devconf.ts';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { nsExec } from '../../helpers/netns.ts';
import { errorOf, useNamespaces } from './env.ts';

// IPv4 device settings over rtnetlink (what the agent uses where /proc/sys is read-only):
// the kernel's view is read back from /proc/sys, the sysctls they stand for.

describe('IPv4 device settings and proxy_delay over rtnetlink', () => {
  const env = useNamespaces();
  const sysctl = (path: string) => nsExec(env.hostName, 'cat', [`/proc/sys/${path}`]).trim();

  it('sets net.ipv4.conf.<link>.proxy_arp and net.ipv4.neigh.<link>.proxy_delay of one link, and clears them again', async () => {
    await rtnl.newLink(env.host, { name: 'br0', up: true, info: { kind: 'bridge' } });
    await rtnl.newLink(env.host, { name: 'br1', up: true, info: { kind: 'bridge' } });
    const index = (await rtnl.getLink(env.host, 'br0')).index;
    expect(sysctl('net/ipv4/conf/br0/proxy_arp')).toBe('0');
    const defaultDelay = sysctl('net/ipv4/neigh/br0/proxy_delay');
    expect(defaultDelay).not.toBe('0');

    await setProxyArp(env.host, index, true);
    await setArpProxyDelay(env.host, index, 0);
    expect(sysctl('net/ipv4/conf/br0/proxy_arp')).toBe('1');
    expect(sysctl('net/ipv4/neigh/br0/proxy_delay')).toBe('0');
    // only that link
    expect(sysctl('net/ipv4/conf/br1/proxy_arp')).toBe('0');
    expect(sysctl('net/ipv4/neigh/br1/proxy_delay')).toBe(defaultDelay);
    expect(sysctl('net/ipv4/conf/all/proxy_arp')).toBe('0');

    // idempotent, and reversible (proxy_delay in ms: 800 ms reads as 80 jiffies of USER_HZ 100)
    await setProxyArp(env.host, index, true);
    await setProxyArp(env.host, index, false);
    await setArpProxyDelay(env.host, index, 800);
    expect(sysctl('net/ipv4/conf/br0/proxy_arp')).toBe('0');
    expect(sysctl('net/ipv4/neigh/br0/proxy_delay')).toBe('80');
  });

  it('a link that does not exist, or a bad index: a typed error naming the operation', async () => {
    expect(await errorOf(() => setProxyArp(env.host, 99999, true))).toMatchObject({ code: 'ENODEV', op: 'setProxyArp' });
    expect(await errorOf(() => setArpProxyDelay(env.host, 99999, 0))).toMatchObject({ op: 'setArpProxyDelay' });
    expect(await errorOf(() => setProxyArp(env.host, 0, true))).toMatchObject({ code: 'EINVAL', op: 'setProxyArp' });
    expect(await errorOf(() => setArpProxyDelay(env.host, 1, -1))).toMatchObject({ code: 'EINVAL', op: 'setArpProxyDelay' });
  });

  it('setIpv4Conf: each IPv4 setting flat mode copies lands in its own sysctl, of that link only', async () => {
    await rtnl.newLink(env.host, { name: 'br0', up: true, info: { kind: 'bridge' } });
    await rtnl.newLink(env.host, { name: 'br1', up: true, info: { kind: 'bridge' } });
    const index = (await rtnl.getLink(env.host, 'br0')).index;
    const values: Record<string, number> = {
      forwarding: 1,
      proxy_arp: 1,
      accept_redirects: 0,
      send_redirects: 0,
      rp_filter: 2,
      arp_filter: 1,
      arp_announce: 2,
      arp_ignore: 1,
      arp_notify: 1,
      accept_local: 1,
      route_localnet: 1,
    };
    const read = (link: string) => Object.fromEntries(Object.keys(values).map((k) => [k, Number(sysctl(`net/ipv4/conf/${link}/${k}`))]));
    const others = read('br1');
    expect(read('br0')).not.toEqual(values);
    for (const [k, v] of Object.entries(values)) {
      expect(isIpv4Conf(k), k).toBe(true);
      await setIpv4Conf(env.host, index, k, v);
    }
    expect(read('br0')).toEqual(values);
    expect(read('br1')).toEqual(others);
    expect(isIpv4Conf('accept_ra')).toBe(false);
    expect(await errorOf(() => setIpv4Conf(env.host, index, 'accept_ra', 0))).toMatchObject({ code: 'EINVAL', op: 'setIpv4Conf' });
  });
});
