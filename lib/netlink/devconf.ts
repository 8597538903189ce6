// IPv4 device settings over rtnetlink, for a process that has CAP_NET_ADMIN but a
// read-only /proc/sys (an unprivileged container): the agent's proxy ARP on pod bridges.
// Reading stays with sysctlGet (reads of /proc/sys work there).
//
//   await setProxyArp(host, bridge.index, true); await setArpProxyDelay(host, bridge.index, 0)
import { formatArpProxyDelaySet, formatInetConfSet, IPV4_DEVCONF_PROXY_ARP } from './codec/index.ts';
import type { Netns } from './netns.ts';

/** net.ipv4.conf.<link>.proxy_arp, set through RTM_SETLINK (IFLA_INET_CONF). */
export async function setProxyArp(ns: Netns, index: number, on: boolean): Promise<void> {
  await ns.rtnl().exchange((seq) => formatInetConfSet(index, new Map([[IPV4_DEVCONF_PROXY_ARP, on ? 1 : 0]]), seq), 'setProxyArp');
}

/** net.ipv4.neigh.<link>.proxy_delay, in milliseconds, set through RTM_SETNEIGHTBL. */
export async function setArpProxyDelay(ns: Netns, index: number, ms: number): Promise<void> {
  await ns.rtnl().exchange((seq) => formatArpProxyDelaySet(index, ms, seq), 'setArpProxyDelay');
}
