import { describe, expect, it } from 'vitest';
import { CodecError, formatArpProxyDelaySet, formatInetConfSet, ipv4DevconfOf, IPV4_DEVCONF_PROXY_ARP } from '../../../lib/netlink/codec/index.ts';

// The two requests byte for byte, laid out from the kernel's structs (include/uapi:
// nlmsghdr, ifinfomsg, ndtmsg, nlattr); the integration test shows the kernel takes them.
const hex = (...parts: string[]) => parts.join('').replace(/\s+/g, '');

describe('codec: IPv4 device settings over rtnetlink', () => {
  it('RTM_SETLINK with IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { PROXY_ARP = 1 } } }', () => {
    expect(IPV4_DEVCONF_PROXY_ARP).toBe(3);
    expect(formatInetConfSet(7, new Map([[IPV4_DEVCONF_PROXY_ARP, 1]]), 1).toString('hex')).toBe(
      hex(
        '34000000 1300 0500 01000000 00000000', // nlmsghdr: 52 bytes, RTM_SETLINK, REQUEST|ACK, seq 1
        '00 00 0000 07000000 00000000 00000000', // ifinfomsg: AF_UNSPEC, index 7
        '1400 1a80', // IFLA_AF_SPEC (26), nested, 20 bytes
        '1000 0280', // AF_INET (2), nested
        '0c00 0180', // IFLA_INET_CONF (1), nested
        '0800 0300 01000000', // [IPV4_DEVCONF_PROXY_ARP] = u32 1
      ),
    );
  });

  it('RTM_SETNEIGHTBL for arp_cache: NDTA_PARMS { NDTPA_IFINDEX, NDTPA_PROXY_DELAY (u64 ms) }', () => {
    expect(formatArpProxyDelaySet(7, 0, 2).toString('hex')).toBe(
      hex(
        '3c000000 4300 0500 02000000 00000000', // nlmsghdr: 60 bytes, RTM_SETNEIGHTBL (67), REQUEST|ACK, seq 2
        '02 00 0000', // ndtmsg: AF_INET
        '0e00 0100 6172705f636163686500 0000', // NDTA_NAME "arp_cache\0", padded
        '1800 0680', // NDTA_PARMS (6), nested
        '0800 0100 07000000', // NDTPA_IFINDEX 7
        '0c00 0d00 0000000000000000', // NDTPA_PROXY_DELAY (13) u64 0
      ),
    );
  });

  it('refuses what the kernel would: no link index, values out of range, nothing to set', () => {
    expect(() => formatInetConfSet(0, new Map([[3, 1]]), 1)).toThrow(CodecError);
    expect(() => formatInetConfSet(1, new Map(), 1)).toThrow(/no IPv4 device setting/);
    expect(() => formatInetConfSet(1, new Map([[3, -1]]), 1)).toThrow(/out of range/);
    expect(() => formatInetConfSet(1, new Map([[0, 1]]), 1)).toThrow(/out of range/);
    expect(() => formatArpProxyDelaySet(1, 1.5, 1)).toThrow(/out of range/);
    expect(() => formatArpProxyDelaySet(-3, 0, 1)).toThrow(/out of range/);
  });

  it('IPV4_DEVCONF_* by sysctl name (include/uapi/linux/ip.h), nothing for other names', () => {
    const uapi = { forwarding: 1, proxy_arp: 3, accept_redirects: 4, send_redirects: 6, rp_filter: 8, arp_filter: 13, arp_announce: 18 };
    const more = { arp_ignore: 19, arp_notify: 22, accept_local: 23, route_localnet: 26 };
    for (const [name, id] of Object.entries({ ...uapi, ...more })) expect(ipv4DevconfOf(name), name).toBe(id);
    for (const name of ['accept_ra', 'mc_forwarding', 'toString', '__proto__', '']) expect(ipv4DevconfOf(name), name).toBeUndefined();
  });
});
