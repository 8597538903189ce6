// The agent's data plane: reads and changes the node's routes, VXLAN device, FDB and
// neighbour entries and proxy-ARP settings through rtnetlink (lib/netlink/rtnl.ts,
// lib/netlink/devconf.ts: CAP_NET_ADMIN is all it needs), in
// the namespace handle it is given. Routes are marked with the agent's own protocol
// number and only such routes are ever listed as "ours", replaced or deleted.
import { createHash } from 'node:crypto';
import { canonicalIP, ipFamily } from '../lib/addr/cidr.ts';
import { setArpProxyDelay, setProxyArp } from '../lib/netlink/devconf.ts';
import * as rtnl from '../lib/netlink/rtnl.ts';
import type { Link, Netns, VxlanInfo } from '../lib/netlink/rtnl.ts';
import type { VxlanConfig } from './config.ts';
import type { Mode } from './model.ts';
import { describeOp, type Actual, type Op, type PodLink } from './reconcile.ts';

/** IPv4 / IPv6 underlay encapsulation overhead of VXLAN (outer IP + UDP + VXLAN + Ethernet). */
const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;

/** The VXLAN device's MTU: the configured one, else the underlay's less the overhead of the tunnel's family (its local address). */
export function vxlanMtu(underlayMtu: number, local: string, configured?: number): number {
  return configured ?? underlayMtu - VXLAN_OVERHEAD[ipFamily(local) ?? 4];
}

/** A stable, locally administered unicast MAC for a node's VTEP (same after restarts). */
export function vtepMacFor(node: string): string {
  const h = createHash('sha256').update(`strand-vtep:${node}`).digest();
  const b = [...h.subarray(0, 6)];
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

class DataplaneError extends Error {
  override readonly name = 'DataplaneError';
}

export interface Underlay {
  /** Node addresses, first of each family (the first one is the VTEP address). */
  addresses: string[];
  link: Link;
}

export interface Vtep {
  device: string;
  index: number;
  mac: string;
  mtu: number;
  vni: number;
  port: number;
}

export interface ApplyReport {
  applied: number;
  errors: string[];
  /** The operations that failed (each has its line in `errors`). */
  failed: Op[];
}

function isGlobal(a: rtnl.Addr): boolean {
  return a.scope === rtnl.Scope.universe && !(a.version === 6 && a.ip.toLowerCase().startsWith('fe80:'));
}

export class Dataplane {
  readonly ns: Netns;
  readonly protocol: number;
  readonly mode: Mode;
  private vtep: Vtep | undefined;

  constructor(ns: Netns, opts: { protocol: number; mode: Mode }) {
    this.ns = ns;
    this.protocol = opts.protocol;
    this.mode = opts.mode;
  }

  /**
   * The node's underlay addresses and the link holding them: the configured addresses,
   * else those of `iface`, else those of the interface of the IPv4 default route.
   */
  async underlay(nodeIPs: readonly string[], iface?: string): Promise<Underlay> {
    const addrs = (await rtnl.listAddrs(this.ns)).filter(isGlobal);
    if (nodeIPs.length) {
      const first = nodeIPs[0] as string;
      const a = addrs.find((x) => canonicalIP(x.ip) === first);
      if (!a) throw new DataplaneError(`node IP ${first} is not an address of any interface here`);
      return { addresses: [...nodeIPs], link: await rtnl.getLink(this.ns, a.index) };
    }
    let link: Link;
    if (iface !== undefined) {
      const l = await rtnl.findLink(this.ns, iface);
      if (!l) throw new DataplaneError(`node interface ${iface} does not exist`);
      link = l;
    } else {
      const def = (await rtnl.listRoutes(this.ns, { version: 4 })).find((r) => r.dst === '0.0.0.0/0' && r.oif !== undefined);
      if (def?.oif === undefined) throw new DataplaneError('no node IP configured and no IPv4 default route to find one (use --node-ip or --node-interface)');
      link = await rtnl.getLink(this.ns, def.oif);
    }
    const mine = addrs.filter((a) => a.index === link.index);
    const out: string[] = [];
    for (const v of [4, 6] as const) {
      const a = mine.find((x) => x.version === v);
      if (a) out.push(canonicalIP(a.ip));
    }
    if (!out.length) throw new DataplaneError(`interface ${link.name} has no global address`);
    return { addresses: out, link };
  }

  /** Creates (or checks and repairs) the VXLAN device; returns its settings. */
  async ensureVxlan(cfg: VxlanConfig, underlay: Underlay, node: string): Promise<Vtep> {
    const local = underlay.addresses[0] as string;
    const mtu = vxlanMtu(underlay.link.mtu, local, cfg.mtu);
    const want: VxlanInfo = { kind: 'vxlan', id: cfg.vni, port: cfg.port, local, dev: underlay.link.index, learning: false };
    let link = await rtnl.findLink(this.ns, cfg.device);
    if (link && link.kind !== 'vxlan') throw new DataplaneError(`${cfg.device} exists and is not a vxlan device; not touching it`);
    if (link) {
      const info = link.info as VxlanInfo | undefined;
      const same =
        info !== undefined &&
        info.id === want.id &&
        info.port === want.port &&
        info.local !== undefined &&
        canonicalIP(info.local) === local &&
        info.dev === want.dev &&
        info.learning === false;
      if (!same) {
        await rtnl.delLink(this.ns, link.index);
        link = undefined;
      }
    }
    if (!link) {
      await rtnl.newLink(this.ns, { name: cfg.device, info: want, mtu, mac: vtepMacFor(node), up: true });
      link = await rtnl.getLink(this.ns, cfg.device);
    } else if (!link.up || link.mtu !== mtu) {
      await rtnl.setLink(this.ns, link.index, { up: true, mtu });
      link = await rtnl.getLink(this.ns, link.index);
    }
    if (!link.mac) throw new DataplaneError(`${cfg.device} has no MAC address`);
    this.vtep = { device: cfg.device, index: link.index, mac: link.mac, mtu: link.mtu, vni: cfg.vni, port: cfg.port };
    return this.vtep;
  }

  /** The current MTU of a link (the underlay's may change after start). */
  async linkMtu(index: number): Promise<number> {
    return (await rtnl.getLink(this.ns, index)).mtu;
  }

  /** Every link with global addresses (candidates for pod links), loopback left out. */
  async links(): Promise<PodLink[]> {
    const links = (await rtnl.listLinks(this.ns)).filter((l) => l.type !== 772);
    const addrs = (await rtnl.listAddrs(this.ns)).filter(isGlobal);
    return links
      .map((l) => ({ name: l.name, addresses: addrs.filter((a) => a.index === l.index).map((a) => `${canonicalIP(a.ip)}/${a.prefixLen}`) }))
      .filter((l) => l.addresses.length > 0);
  }

  /** Our routes (main table, our protocol) and the VXLAN device's FDB and neighbour entries. */
  async actual(): Promise<Actual> {
    const names = new Map((await rtnl.listLinks(this.ns)).map((l) => [l.index, l.name]));
    const routes = (await rtnl.listRoutes(this.ns, { table: rtnl.Table.main }))
      .filter((r) => r.protocol === this.protocol)
      .map((r) => {
        const a: Actual['routes'][number] = { dst: r.dst, onlink: (r.flags & rtnl.RouteFlag.onlink) !== 0 };
        if (r.gw !== undefined) a.gw = r.gw;
        if (r.oif !== undefined) {
          const n = names.get(r.oif);
          if (n !== undefined) a.dev = n;
        }
        if (r.src !== undefined) a.src = r.src;
        return a;
      });
    const out: Actual = { routes, fdb: [], neighs: [] };
    const dev = this.vtep ? await rtnl.findLink(this.ns, this.vtep.device) : undefined;
    if (dev) {
      for (const n of await rtnl.listNeighs(this.ns, { link: dev.index, family: 'bridge' })) {
        if (n.mac === undefined) continue;
        const f: Actual['fdb'][number] = { mac: n.mac.toLowerCase(), permanent: (n.state & rtnl.NeighState.permanent) !== 0 };
        if (n.ip !== undefined) f.dst = n.ip;
        out.fdb.push(f);
      }
      for (const family of [4, 6] as const) {
        for (const n of await rtnl.listNeighs(this.ns, { link: dev.index, family })) {
          if (n.ip === undefined) continue;
          const e: Actual['neighs'][number] = { ip: n.ip, permanent: (n.state & rtnl.NeighState.permanent) !== 0 };
          if (n.mac !== undefined) e.mac = n.mac.toLowerCase();
          out.neighs.push(e);
        }
      }
    }
    return out;
  }

  /** Applies the plan; each failure is reported and the rest still applied. */
  async apply(ops: readonly Op[]): Promise<ApplyReport> {
    const report: ApplyReport = { applied: 0, errors: [], failed: [] };
    for (const o of ops) {
      try {
        await this.applyOne(o);
        report.applied++;
      } catch (e) {
        report.errors.push(`${describeOp(o)}: ${explain(o, e)}`);
        report.failed.push(o);
      }
    }
    return report;
  }

  private vxlanDevice(): string {
    if (!this.vtep) throw new DataplaneError('no vxlan device');
    return this.vtep.device;
  }

  private async applyOne(o: Op): Promise<void> {
    const ns = this.ns;
    if (o.op === 'fdb') {
      const link = this.vxlanDevice();
      const spec = { link, fdb: true, mac: o.entry.mac, ...(o.entry.dst !== undefined ? { ip: o.entry.dst } : {}) };
      if (o.action === 'del') return await ignore(() => rtnl.delNeigh(ns, spec), 'ENOENT');
      return await rtnl.newNeigh(
        ns,
        { ...spec, state: rtnl.NeighState.permanent, flags: rtnl.NeighFlag.self },
        o.action === 'replace' ? { replace: true } : {},
      );
    }
    if (o.op === 'neigh') {
      const link = this.vxlanDevice();
      if (o.action === 'del') return await ignore(() => rtnl.delNeigh(ns, { link, ip: o.entry.ip }), 'ENOENT');
      // replace also for "add": the kernel may hold an incomplete entry for the address
      return await rtnl.newNeigh(ns, { link, ip: o.entry.ip, mac: o.entry.mac, state: rtnl.NeighState.permanent }, { replace: true });
    }
    const r = o.route;
    if (o.action === 'del') return await ignore(() => rtnl.delRoute(ns, { dst: r.dst, protocol: this.protocol, table: rtnl.Table.main }), 'ESRCH');
    const spec: rtnl.RouteSpec = { dst: o.route.dst, protocol: this.protocol, table: rtnl.Table.main };
    const w = o.route;
    if (w.gw !== undefined) spec.gw = w.gw;
    if (w.dev !== undefined) spec.link = w.dev;
    if (w.onlink) spec.onlink = true;
    if (w.src !== undefined) spec.src = w.src;
    if (w.scope === 'link') spec.scope = rtnl.Scope.link;
    await rtnl.newRoute(ns, spec, o.action === 'replace' ? { replace: true } : {});
  }

  /**
   * Proxy ARP (answered at once) on the links that carry pod gateways. Read through
   * /proc/sys, set through rtnetlink: CAP_NET_ADMIN is enough, /proc/sys may be read-only
   * (the agent's container is not privileged).
   */
  async ensureProxyArp(links: readonly string[]): Promise<string[]> {
    const errors: string[] = [];
    for (const l of links) {
      for (const [path, value, set] of [
        [`net/ipv4/conf/${l}/proxy_arp`, '1', (index: number) => setProxyArp(this.ns, index, true)],
        [`net/ipv4/neigh/${l}/proxy_delay`, '0', (index: number) => setArpProxyDelay(this.ns, index, 0)],
      ] as const) {
        try {
          if ((await rtnl.sysctlGet(this.ns, path)) !== value) await set(await rtnl.linkIndex(this.ns, l));
        } catch (e) {
          errors.push(`sysctl ${path}=${value}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
    return errors;
  }
}

async function ignore(fn: () => Promise<void>, code: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!rtnl.isNetlinkError(e, code)) throw e;
  }
}

function explain(o: Op, e: unknown): string {
  if (o.op === 'route' && o.action === 'add' && rtnl.isNetlinkError(e, 'EEXIST')) {
    return 'a route to this destination that strand does not own exists; leaving it alone';
  }
  if (o.op === 'route' && rtnl.isNetlinkError(e, 'ENETUNREACH')) {
    return `gateway ${o.route.gw ?? '?'} is not on a directly connected network (host-gw needs nodes on one L2 segment; use mode vxlan)`;
  }
  return e instanceof Error ? e.message : String(e);
}
