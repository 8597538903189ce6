// Per-device IPv4 settings that are usually sysctls, set over rtnetlink instead: a
// process with CAP_NET_ADMIN can send these where /proc/sys is read-only (any
// unprivileged container).
//   proxy_arp    RTM_SETLINK, IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { [IPV4_DEVCONF_PROXY_ARP] u32 } } }
//                (net/ipv4/devinet.c inet_set_link_af: the same value as
//                net.ipv4.conf.<dev>.proxy_arp)
//   proxy_delay  RTM_SETNEIGHTBL for "arp_cache", NDTA_PARMS { NDTPA_IFINDEX, NDTPA_PROXY_DELAY (u64 ms) }
//                (net/core/neighbour.c neightbl_set: net.ipv4.neigh.<dev>.proxy_delay)
// Pure formatting: the operations are in lib/netlink/devconf.ts.
import { CodecError, formatAttr } from './attr.ts';
import { AF_INET, IFLA_AF_SPEC, RTM_SETLINK } from './constants.ts';

import { formatMessage, requestFlagBits } from './message.ts';

const RTM_SETNEIGHTBL = 67;
const IFLA_INET_CONF = 1;
/** include/uapi/linux/ip.h: IPV4_DEVCONF_FORWARDING = 1, MC_FORWARDING, PROXY_ARP */
export const IPV4_DEVCONF_PROXY_ARP = 3;
/**
 * IPV4_DEVCONF_* (include/uapi/linux/ip.h) by the name of the sysctl it is
 * (net.ipv4.conf.<link>.<name>), for the integer settings a link's configuration is
 * copied with (agent/flat.ts).
 */
const IPV4_DEVCONF_BY_SYSCTL: Readonly<Record<string, number>> = {
  forwarding: 1, // IPV4_DEVCONF_FORWARDING
  proxy_arp: IPV4_DEVCONF_PROXY_ARP,
  accept_redirects: 4, // IPV4_DEVCONF_ACCEPT_REDIRECTS
  send_redirects: 6, // IPV4_DEVCONF_SEND_REDIRECTS
  rp_filter: 8, // IPV4_DEVCONF_RP_FILTER
  arp_filter: 13, // IPV4_DEVCONF_ARPFILTER
  arp_announce: 18, // IPV4_DEVCONF_ARP_ANNOUNCE
  arp_ignore: 19, // IPV4_DEVCONF_ARP_IGNORE
  arp_notify: 22, // IPV4_DEVCONF_ARP_NOTIFY
  accept_local: 23, // IPV4_DEVCONF_ACCEPT_LOCAL
  route_localnet: 26, // IPV4_DEVCONF_ROUTE_LOCALNET
};

/** The IPV4_DEVCONF_* number of sysctl net.ipv4.conf.<link>.`name`, or undefined when there is none here. */
export function ipv4DevconfOf(name: string): number | undefined {
  return Object.hasOwn(IPV4_DEVCONF_BY_SYSCTL, name) ? IPV4_DEVCONF_BY_SYSCTL[name] : undefined;
}
const NDTA_NAME = 1;
const NDTA_PARMS = 6;
const NDTPA_IFINDEX = 1;
const NDTPA_PROXY_DELAY = 13;

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index <= 0 || index > 0x7fffffff) throw new CodecError(`link index ${index} out of range`);
}

/** struct ifinfomsg for AF_UNSPEC and one link index, no flags. */
function ifinfomsg(index: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(0, 0); // AF_UNSPEC
  b.writeInt32LE(index, 4);
  return b;
}

/**
 * RTM_SETLINK setting IPv4 device settings (IPV4_DEVCONF_* -> value) of link `index`,
 * with NLM_F_ACK.
 */
export function formatInetConfSet(index: number, conf: ReadonlyMap<number, number>, seq: number, pid = 0): Buffer {
  checkIndex(index);
  if (conf.size === 0) throw new CodecError('no IPv4 device setting to set');
  const values: Buffer[] = [];
  for (const [id, v] of conf) {
    if (!Number.isInteger(id) || id <= 0 || id > 0xffff) throw new CodecError(`IPv4 device setting ${id} out of range`);
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CodecError(`IPv4 device setting value ${v} out of range`);
    values.push(formatAttr(id, u32(v)));
  }
  const spec = formatAttr(IFLA_AF_SPEC, [formatAttr(AF_INET, [formatAttr(IFLA_INET_CONF, values)])]);
  return formatMessage({ type: RTM_SETLINK, flags: requestFlagBits({ ack: true }), seq, pid }, Buffer.concat([ifinfomsg(index), spec]));
}

/** RTM_SETNEIGHTBL setting the ARP table's proxy_delay (milliseconds) of link `index`, with NLM_F_ACK. */
export function formatArpProxyDelaySet(index: number, ms: number, seq: number, pid = 0): Buffer {
  checkIndex(index);
  if (!Number.isInteger(ms) || ms < 0 || ms > 0xffffffff) throw new CodecError(`proxy_delay ${ms} ms out of range`);
  const ndtmsg = Buffer.alloc(4);
  ndtmsg.writeUInt8(AF_INET, 0);
  const name = formatAttr(NDTA_NAME, Buffer.from('arp_cache\0', 'ascii'));
  const delay = Buffer.alloc(8);
  delay.writeBigUInt64LE(BigInt(ms));
  const parms = formatAttr(NDTA_PARMS, [formatAttr(NDTPA_IFINDEX, u32(index)), formatAttr(NDTPA_PROXY_DELAY, delay)]);
  return formatMessage({ type: RTM_SETNEIGHTBL, flags: requestFlagBits({ ack: true }), seq, pid }, Buffer.concat([ndtmsg, name, parms]));
}
