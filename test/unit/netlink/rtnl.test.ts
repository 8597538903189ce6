// rtnl operations without a kernel: a stub socket records the requests each operation
// builds, which are compared with what iproute2 sends for the same command (captured
// fixtures), and feeds replies (dump retries on NLM_F_DUMP_INTR, errors).

import { describe, expect, it } from 'vitest';
import { parseMessages, type RequestFlags, type RtnlMessage, type RtnlRequest } from '../../../lib/netlink/codec/index.ts';
import { requestFlagBits } from '../../../lib/netlink/codec/message.ts';
import { NetlinkError } from '../../../lib/netlink/errors.ts';
import type { Netns } from '../../../lib/netlink/netns.ts';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import type { DataMessage, DumpResult } from '../../../lib/netlink/socket.ts';
import { hex, requestFixture } from './fixtures.ts';

interface Sent {
  req: RtnlRequest;
  flags: RequestFlags;
  op: string;
}

/** A Netns whose socket records requests; `links` answers getLink by name. */
function stubNs(opts: { links?: Record<string, number>; dumps?: DumpResult[]; nsFd?: number } = {}): { ns: Netns; sent: Sent[] } {
  const sent: Sent[] = [];
  const dumps = [...(opts.dumps ?? [])];
  const header = { len: 0, type: 16, flags: 0, seq: 1, pid: 0 };
  const sock = {
    async request(req: RtnlRequest, flags: RequestFlags, op: string): Promise<DataMessage[]> {
      sent.push({ req, flags: { ...flags, ack: true }, op });
      if (req.kind === 'link' && req.action === 'get') {
        const name = req.link.name;
        const index = name === undefined ? req.link.index : opts.links?.[name];
        if (index === undefined) throw new NetlinkError(op, 19);
        return [{ kind: 'link', action: 'new', header, link: { index, name: name ?? `if${index}`, flags: 0 } }];
      }
      return [];
    },
    async dump(req: RtnlRequest, op: string): Promise<DumpResult> {
      sent.push({ req, flags: { dump: true }, op });
      return dumps.shift() ?? { messages: [], interrupted: false };
    },
  };
  const ns = { path: '/run/netns/stub', rtnl: () => sock, fd: () => opts.nsFd ?? 42 } as unknown as Netns;
  return { ns, sent };
}

const changes = (sent: Sent[]): Sent[] => sent.filter((s) => s.req.action !== 'get');

/** The last non-lookup request iproute2 sent for a captured command. */
function ipSent(name: string): Extract<RtnlMessage, { action: unknown }> {
  const r = requestFixture('host').requests[name]!;
  const msgs = r.sent.flatMap((h) => parseMessages(hex(h))).filter((m): m is Extract<RtnlMessage, { action: unknown }> => 'action' in m && m.action !== 'get');
  return msgs[msgs.length - 1]!;
}

describe('rtnl builds the requests iproute2 builds', () => {
  it('newLink veth with the peer in another netns: one message, flags create|excl', async () => {
    const { ns, sent } = stubNs({ nsFd: 7 });
    const pod = stubNs({ nsFd: 9 }).ns;
    await rtnl.newLink(ns, { name: 'vethA', mtu: 1400, info: { kind: 'veth', peer: { name: 'vethB', netns: pod } } });
    const ours = changes(sent);
    expect(ours).toHaveLength(1);
    const ip = ipSent('vethPeerNetns');
    expect(requestFlagBits(ours[0]!.flags)).toBe(ip.header.flags);
    const req = ours[0]!.req;
    expect(req).toMatchObject({ kind: 'link', action: 'new', link: { name: 'vethA', mtu: 1400, info: { kind: 'veth', peer: { name: 'vethB', netnsFd: 9 } } } });
    if (ip.kind === 'link') expect(ip.link).toMatchObject({ name: 'vethA', mtu: 1400, info: { kind: 'veth', peer: { name: 'vethB' } } });
  });

  it('a peer brought up at creation takes a second request in the peer netns', async () => {
    const host = stubNs();
    const pod = stubNs();
    await rtnl.newLink(host.ns, { name: 'veth0', up: true, info: { kind: 'veth', peer: { name: 'eth0', netns: pod.ns, up: true } } });
    expect(changes(host.sent)[0]!.req).toMatchObject({ link: { flags: 1, change: 1, info: { peer: { name: 'eth0' } } } });
    const peer = (changes(host.sent)[0]!.req as Extract<RtnlRequest, { kind: 'link' }>).link.info;
    expect(peer?.kind === 'veth' && peer.peer?.flags).toBeFalsy();
    expect(changes(pod.sent)).toMatchObject([{ req: { kind: 'link', action: 'new', link: { name: 'eth0', flags: 1, change: 1 } }, op: 'setLink' }]);
  });

  it('macvlan and vxlan resolve their parent/dev names to indexes', async () => {
    const { ns, sent } = stubNs({ links: { vethM: 3, vethA: 4 } });
    await rtnl.newLink(ns, { name: 'mvX', parent: 'vethM', info: { kind: 'macvlan', mode: 'bridge' } });
    await rtnl.newLink(ns, { name: 'vxX', info: { kind: 'vxlan', id: 7, port: 4789, local: '10.0.0.1', remote: '10.0.0.2', dev: 'vethA' } });
    const [mv, vx] = changes(sent);
    expect(mv!.req).toMatchObject({ link: { name: 'mvX', parent: 3, info: { kind: 'macvlan', mode: 'bridge' } } });
    const ipMv = ipSent('macvlan');
    if (ipMv.kind === 'link') expect(ipMv.link.info).toEqual((mv!.req as Extract<RtnlRequest, { kind: 'link' }>).link.info);
    expect(vx!.req).toMatchObject({ link: { info: { kind: 'vxlan', id: 7, port: 4789, local: '10.0.0.1', remote: '10.0.0.2', dev: 4 } } });
  });

  it('setLink: master + up in one message; nomaster; bridge port settings as AF_BRIDGE protinfo', async () => {
    const { ns, sent } = stubNs({ links: { vethA: 5, brX: 2 } });
    await rtnl.setLink(ns, 'vethA', { master: 'brX', up: true });
    await rtnl.setLink(ns, 'vethA', { master: null });
    await rtnl.setLink(ns, 'vethA', { bridgePort: { hairpin: false } });
    const [master, nomaster, port] = changes(sent);
    expect(master!.req).toMatchObject({ link: { name: 'vethA', master: 2, flags: 1, change: 1 } });
    expect(requestFlagBits(master!.flags)).toBe(ipSent('setMaster').header.flags);
    expect(nomaster!.req).toMatchObject({ link: { master: 0 } });
    const ipHairpin = ipSent('bridgeLinkHairpin');
    expect(port!.req).toMatchObject({ kind: 'link', action: 'set', link: { family: 7, index: 5, protinfo: { hairpin: false } } });
    if (ipHairpin.kind === 'link') expect(ipHairpin.link).toMatchObject({ family: 7, protinfo: { hairpin: false } });
  });

  it('bridge VLANs: add with pvid/untagged, delete a range', async () => {
    const { ns, sent } = stubNs({ links: { vethA: 5 } });
    await rtnl.newBridgeVlan(ns, 'vethA', { vid: 10, pvid: true, untagged: true });
    await rtnl.delBridgeVlan(ns, 'vethA', { vid: 20, vidEnd: 22 });
    const [add, del] = changes(sent);
    const ipAdd = ipSent('bridgeVlanAdd');
    const ipDel = ipSent('bridgeVlanDelRange');
    if (ipAdd.kind === 'link' && ipDel.kind === 'link' && add!.req.kind === 'link' && del!.req.kind === 'link') {
      expect(add!.req.link.bridge).toEqual(ipAdd.link.bridge);
      expect(del!.req.link.bridge).toEqual(ipDel.link.bridge);
      expect(add!.req.action).toBe(ipAdd.action);
      expect(del!.req.action).toBe(ipDel.action);
    } else throw new Error('not link messages');
  });

  it('newAddr: IPv4 with the broadcast `brd +` computes, IPv6 nodad; same flags as ip', async () => {
    const { ns, sent } = stubNs({ links: { vethA: 5 } });
    await rtnl.newAddr(ns, { link: 'vethA', address: '10.5.0.5/24' });
    await rtnl.newAddr(ns, { link: 'vethA', address: 'fd00::5/64', nodad: true });
    const [a4, a6] = changes(sent);
    const ip4 = ipSent('addr4');
    const ip6 = ipSent('addr6Nodad');
    expect(requestFlagBits(a4!.flags)).toBe(ip4.header.flags);
    if (ip4.kind === 'addr' && ip6.kind === 'addr' && a4!.req.kind === 'addr' && a6!.req.kind === 'addr') {
      const { flags: _f, scope: _s, index: _i, ...want } = ip4.addr;
      expect(a4!.req.addr).toEqual({ ...want, index: 5 });
      expect(a4!.req.addr).toMatchObject({ version: 4, prefixLen: 24, local: '10.5.0.5', address: '10.5.0.5', broadcast: ip4.addr.broadcast });
      expect(a6!.req.addr).toMatchObject({ version: 6, prefixLen: 64, address: ip6.addr.address, flags: ip6.addr.flags });
    } else throw new Error('not addr messages');
  });

  it('newRoute with metrics/priority/table and replace; delRoute matches any scope', async () => {
    const { ns, sent } = stubNs({ links: { vethA: 5 } });
    await rtnl.newRoute(ns, { dst: '10.6.0.0/16', gw: '10.5.0.1', mtu: 1400, advmss: 1360, priority: 7, table: 100 });
    await rtnl.newRoute(ns, { dst: 'default', gw: 'fd00::1', link: 'vethA' }, { replace: true });
    await rtnl.newRoute(ns, { dst: '10.30.0.0/16', link: 'vethA' });
    await rtnl.delRoute(ns, { dst: '10.6.0.0/16', table: 100 });
    const [r4, r6, link, del] = changes(sent);
    const ip4 = ipSent('route4Metrics');
    const ip6 = ipSent('route6Replace');
    expect(requestFlagBits(r4!.flags)).toBe(ip4.header.flags);
    expect(requestFlagBits(r6!.flags)).toBe(ip6.header.flags);
    if (ip4.kind === 'route' && r4!.req.kind === 'route') {
      const { tos: _t, srcLen: _s, flags: _f, ...want } = ip4.route;
      expect(r4!.req.route).toEqual(want);
    } else throw new Error('not route messages');
    expect(r6!.req).toMatchObject({ route: { version: 6, dstLen: 0, gateway: 'fd00::1', oif: 5, scope: rtnl.Scope.universe } });
    expect(link!.req).toMatchObject({ route: { scope: rtnl.Scope.link, oif: 5, dst: '10.30.0.0', dstLen: 16 } });
    expect(del!.req).toMatchObject({ kind: 'route', action: 'del', route: { scope: rtnl.Scope.nowhere, table: 100 } });
  });

  it('FDB append for a vxlan flood entry', async () => {
    const { ns, sent } = stubNs({ links: { vxX: 6 } });
    await rtnl.newNeigh(ns, { link: 'vxX', fdb: true, mac: '00:00:00:00:00:00', ip: '10.0.0.3' }, { append: true });
    const ip = ipSent('fdbAppend');
    const [fdb] = changes(sent);
    expect(requestFlagBits(fdb!.flags)).toBe(ip.header.flags);
    if (ip.kind === 'neigh' && fdb!.req.kind === 'neigh') {
      expect(fdb!.req.neigh).toMatchObject({ family: 'bridge', index: 6, lladdr: ip.neigh.lladdr, dst: ip.neigh.dst, flags: ip.neigh.flags });
    } else throw new Error('not neigh messages');
  });
});

describe('rtnl dumps and errors', () => {
  const link = (index: number): DataMessage => ({
    kind: 'link',
    action: 'new',
    header: { len: 0, type: 16, flags: 0, seq: 1, pid: 0 },
    link: { index, name: `l${index}`, flags: 1 },
  });

  it('retries a dump the kernel flags as interrupted, and uses the consistent one', async () => {
    const { ns, sent } = stubNs({
      dumps: [
        { messages: [link(1)], interrupted: true },
        { messages: [link(1), link(2)], interrupted: false },
      ],
    });
    expect((await rtnl.listLinks(ns)).map((l) => l.name)).toEqual(['l1', 'l2']);
    expect(sent).toHaveLength(2);
  });

  it('gives up after a bound with a typed EINTR', async () => {
    const { ns, sent } = stubNs({ dumps: Array.from({ length: 10 }, () => ({ messages: [], interrupted: true })) });
    const e = await rtnl.listAddrs(ns).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toMatchObject({ name: 'NetlinkError', code: 'EINTR', op: 'listAddrs' });
    expect(sent).toHaveLength(5);
  });

  it('rejects bad arguments before sending anything', async () => {
    const { ns, sent } = stubNs({ links: { eth0: 2 } });
    const bad: Array<() => unknown> = [
      () => rtnl.newLink(ns, { name: 'this-name-is-16b', info: { kind: 'bridge' } }),
      () => rtnl.newLink(ns, { name: 'a/b', info: { kind: 'bridge' } }),
      () => rtnl.newLink(ns, { name: 'ok', mac: '02:00', info: { kind: 'bridge' } }),
      () => rtnl.newAddr(ns, { link: 'eth0', address: '10.0.0.1' }),
      () => rtnl.newAddr(ns, { link: 'eth0', address: '10.0.0.1/24', peer: 'x' }),
      () => rtnl.newRoute(ns, { dst: '10.0.0.0/8', gw: 'fd00::1' }),
      () => rtnl.newRoute(ns, { dst: '10.0.0.0/8', type: 'bogus' as 'unicast' }),
      () => rtnl.newNeigh(ns, { link: 'eth0', mac: '02:00:00:00:00:01' }),
      () => rtnl.sysctlSet(ns, '../etc/passwd', 1),
    ];
    for (const f of bad) {
      const e = await Promise.resolve()
        .then(f)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(e).toBeInstanceOf(NetlinkError);
      expect(e).toMatchObject({ code: 'EINVAL', errno: 22 });
    }
    expect(changes(sent)).toEqual([]);
  });
});
