// IPv4 device settings over rtnetlink, for a process that has CAP_NET_ADMIN but a
// read-only /proc/sys (an unprivileged container): the agent's proxy ARP on pod bridges,
// flat mode's copy of the uplink's IPv4 settings to its bridge. Reading stays with
// sysctlGet (reads of /proc/sys work there). IPv6 has no such request (the kernel sets
// no IFLA_INET6_CONF): its per-link settings need a writable /proc/sys.
//
//   await setProxyArp(host, bridge.index, true); await setArpProxyDelay(host, bridge.index, 0)
//   await setIpv4Conf(host, bridge.index, 'rp_filter', 2)
import { formatArpProxyDelaySet, formatInetConfSet, ipv4DevconfOf, IPV4_DEVCONF_PROXY_ARP } from './codec/index.ts';
import { invalidArgument } from './errors.ts';
import type { Netns } from './netns.ts';

/** Whether net.ipv4.conf.<link>.`name` can be set with setIpv4Conf. */
export function isIpv4Conf(name: string): boolean {
  return ipv4DevconfOf(name) !== undefined;
}

/** net.ipv4.conf.<link>.`name` (one of isIpv4Conf's) = `value`, set through RTM_SETLINK (IFLA_INET_CONF). */
export async function setIpv4Conf(ns: Netns, index: number, name: string, value: number): Promise<void> {
  const id = ipv4DevconfOf(name);
  if (id === undefined) throw invalidArgument('setIpv4Conf', `net.ipv4.conf.*.${name} cannot be set over rtnetlink here`);
  await ns.rtnl().exchange((seq) => formatInetConfSet(index, new Map([[id, value]]), seq), 'setIpv4Conf');
}

/** net.ipv4.conf.<link>.proxy_arp, set through RTM_SETLINK (IFLA_INET_CONF). */
export async function setProxyArp(ns: Netns, index: number, on: boolean): Promise<void> {
  await ns.rtnl().exchange((seq) => formatInetConfSet(index, new Map([[IPV4_DEVCONF_PROXY_ARP, on ? 1 : 0]]), seq), 'setProxyArp');
}

/** net.ipv4.neigh.<link>.proxy_delay, in milliseconds, set through RTM_SETNEIGHTBL. */
export async function setArpProxyDelay(ns: Netns, index: number, ms: number): Promise<void> {
  await ns.rtnl().exchange((seq) => formatArpProxyDelaySet(index, ms, seq), 'setArpProxyDelay');
}
