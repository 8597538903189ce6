// Pure reconcile logic: from the cluster view and this node's facts, the routes, VXLAN
// FDB and neighbour entries the node should have (`desiredState`); from the desired and
// the actual state, the operations that close the gap (`plan`). No I/O here: the
// dataplane (agent/dataplane.ts) reads the actual state and applies the plan.
//
// Routes per mode, for a block B owned by peer P (not this node):
//   host-gw  B via <P's address of B's family>                       (P on the same L2)
//   vxlan    B via <nexthop> dev <vxlan dev> onlink [src <own IPv4>]
//            neigh <nexthop> lladdr <P's VTEP MAC> dev <vxlan dev> permanent
//            fdb   <P's VTEP MAC> dev <vxlan dev> dst <P's underlay address> self permanent
//   where <nexthop> is P's underlay IPv4 address for IPv4 blocks and the link-local
//   address derived from P's VTEP MAC (EUI-64) for IPv6 blocks.
// A borrowed address A (allocated by node N inside someone's block) gets A/32 (/128)
// towards N; when N is this node, A/32 dev <the pod link holding A's subnet>.
//
// Routes follow block ownership, not agent liveness: a peer whose agent is away (its
// liveness key expired: crash loop, OOM kill, slow image pull) keeps its routes as long
// as it owns the blocks, since its pods still run. They go when the block is released or
// moves, or when the node's record is removed (the node left the cluster).
import { bitsOf, canonicalIP, contains, containsCidr, formatCidr, ipFamily, network, parseCidr, tryParseCidr, type Family } from '../lib/addr/cidr.ts';
import { aliveNames, nodesByName, type BlockOwner, type BorrowedIP, type ClusterView, type Mode, type NodeRecord } from './model.ts';

export interface PodLink {
  name: string;
  /** Addresses with prefix, e.g. "10.244.0.1/16" (the bridge's gateway address). */
  addresses: string[];
}

/** Facts about this node that the desired state depends on. */
export interface LocalFacts {
  node: string;
  mode: Mode;
  /** etcd key prefix (for matching node records to their keys). */
  prefix: string;
  /** Own underlay addresses (first of each family used). */
  addresses: string[];
  /** VXLAN device name (vxlan mode). */
  vxlanDevice?: string;
  /** Links with addresses (candidates for pod links); the vxlan device is excluded. */
  links: PodLink[];
  /** Only these IPAM networks; empty: every network. */
  networks: readonly string[];
}

export interface DesiredRoute {
  /** Destination, network form: "10.244.0.64/26", "10.244.0.70/32". */
  dst: string;
  gw?: string;
  dev?: string;
  onlink?: boolean;
  src?: string;
  /** 'link' for a route to a local pod link (no gateway). */
  scope?: 'link';
  /** The node this route leads to. */
  node: string;
  why: 'block' | 'borrowed' | 'local-borrowed';
}

export interface FdbEntry {
  mac: string;
  /** Remote VTEP (underlay) address. */
  dst: string;
  node: string;
}

export interface NeighEntry {
  ip: string;
  mac: string;
  node: string;
}

export interface PeerSummary {
  name: string;
  /** Its agent is running (liveness key present); routes do not depend on it. */
  alive: boolean;
  addresses: string[];
  vtepMac?: string;
  blocks: string[];
  borrowed: string[];
}

export interface Desired {
  routes: DesiredRoute[];
  fdb: FdbEntry[];
  neighs: NeighEntry[];
  /** Links that carry pod gateways: proxy ARP on them answers for remote pods. */
  podLinks: string[];
  peers: PeerSummary[];
  /** Blocks whose owner has no node record (never registered, or removed): no route. */
  orphanBlocks: BlockRef[];
  /** Things that keep a route from being built (missing address, MAC...). */
  problems: string[];
}

export interface BlockRef {
  network: string;
  cidr: string;
  node: string;
}

/** The network form of a CIDR ("10.1.0.5/24" -> "10.1.0.0/24"). */
function netCidr(s: string): string {
  return formatCidr(network(parseCidr(s)));
}

/** The host route of an address: "10.1.0.5" -> "10.1.0.5/32". */
export function hostCidr(ip: string): string {
  const f = ipFamily(ip);
  if (!f) throw new Error(`not an IP address: ${ip}`);
  return `${canonicalIP(ip)}/${bitsOf(f)}`;
}

/** The IPv6 link-local address a device with this MAC gets (modified EUI-64). */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  if (b.length !== 6 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`invalid MAC ${mac}`);
  const e = [(b[0] as number) ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]] as number[];
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push((((e[i] as number) << 8) | (e[i + 1] as number)).toString(16));
  return canonicalIP(`fe80::${groups.join(':')}`);
}

function firstOfFamily(addrs: readonly string[], f: Family): string | undefined {
  return addrs.find((a) => ipFamily(a) === f);
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface Nexthop {
  route: Omit<DesiredRoute, 'dst' | 'why'>;
  fdb?: FdbEntry;
  neigh?: NeighEntry;
}

/** How to reach `peer` for destinations of family `f`, or a problem text. */
function nexthopTo(peer: NodeRecord, f: Family, local: LocalFacts): Nexthop | string {
  if (local.mode === 'host-gw') {
    const gw = firstOfFamily(peer.addresses, f);
    if (!gw) return `node ${peer.name} has no IPv${f} address for host-gw routes`;
    return { route: { gw, node: peer.name } };
  }
  const dev = local.vxlanDevice;
  if (!dev) return 'vxlan mode without a vxlan device';
  if (!peer.vtepMac) return `node ${peer.name} has no VTEP MAC (its agent is not in vxlan mode)`;
  const ownUnderlay = local.addresses[0];
  const underFamily = ownUnderlay ? ipFamily(ownUnderlay) : undefined;
  const remote = underFamily ? firstOfFamily(peer.addresses, underFamily) : undefined;
  if (!remote) return `node ${peer.name} has no IPv${underFamily ?? 4} underlay address`;
  let gw: string | undefined;
  if (f === 6) gw = linkLocalFromMac(peer.vtepMac);
  else gw = firstOfFamily(peer.addresses, 4);
  if (!gw) return `node ${peer.name} has no IPv4 address to use as the VXLAN next hop`;
  const route: Nexthop['route'] = { gw, dev, onlink: true, node: peer.name };
  const src = f === 4 ? firstOfFamily(local.addresses, 4) : undefined;
  if (src) route.src = src;
  return {
    route,
    fdb: { mac: peer.vtepMac, dst: remote, node: peer.name },
    neigh: { ip: gw, mac: peer.vtepMac, node: peer.name },
  };
}

/** The pod link whose subnet holds `ip` (the bridge with the gateway address). */
function podLinkFor(links: readonly PodLink[], ip: string): string | undefined {
  for (const l of links) {
    for (const a of l.addresses) {
      const c = tryParseCidr(a);
      if (c && c.prefix < bitsOf(c.family) && contains(c, ip)) return l.name;
    }
  }
  return undefined;
}

/** Links having an address whose subnet covers some managed block: they carry pods. */
function podLinks(links: readonly PodLink[], blocks: readonly string[]): string[] {
  const out: string[] = [];
  for (const l of links) {
    const hit = l.addresses.some((a) => {
      const c = tryParseCidr(a);
      if (!c || c.prefix >= bitsOf(c.family)) return false;
      const net = network(c);
      return blocks.some((b) => {
        const bc = tryParseCidr(b);
        return bc !== undefined && containsCidr(net, bc);
      });
    });
    if (hit) out.push(l.name);
  }
  return out.sort(cmp);
}

/** The routes, FDB and neighbour entries being planned, and the conflicts found on the way. */
class Plan {
  readonly problems = new Set<string>();
  readonly routes = new Map<string, DesiredRoute>();
  readonly fdb = new Map<string, FdbEntry>();
  readonly neighs = new Map<string, NeighEntry>();

  /** The FDB and neighbour entries a next hop needs (a VTEP MAC of two nodes is a problem). */
  addEntries(hop: Nexthop): void {
    if (hop.fdb) {
      const f = this.fdb.get(hop.fdb.mac);
      if (f && f.dst !== hop.fdb.dst) this.problems.add(`VTEP MAC ${hop.fdb.mac} is used by nodes ${f.node} and ${hop.fdb.node}`);
      else this.fdb.set(hop.fdb.mac, hop.fdb);
    }
    if (hop.neigh && !this.neighs.has(hop.neigh.ip)) this.neighs.set(hop.neigh.ip, hop.neigh);
  }

  /** A route (the first claim of a destination wins; a second is a problem) and its next hop's entries. */
  addRoute(r: DesiredRoute, hop?: Nexthop): void {
    const prev = this.routes.get(r.dst);
    if (prev) {
      if (prev.node !== r.node) this.problems.add(`${r.dst} is claimed by nodes ${prev.node} and ${r.node}; routing to ${prev.node}`);
      return;
    }
    this.routes.set(r.dst, r);
    if (hop) this.addEntries(hop);
  }

  /** The route to `dst` through `peer`, or the problem that prevents it. */
  addRouteVia(peer: NodeRecord, dst: string, why: DesiredRoute['why'], local: LocalFacts): void {
    const hop = nexthopTo(peer, parseCidr(dst).family, local);
    if (typeof hop === 'string') this.problems.add(hop);
    else this.addRoute({ dst, ...hop.route, why }, hop);
  }
}

/** The other nodes as /status reports them, before their blocks and borrowed addresses are added. */
function peerSummaries(nodes: ReadonlyMap<string, NodeRecord>, alive: ReadonlySet<string>, self: string): Map<string, PeerSummary> {
  const peers = new Map<string, PeerSummary>();
  for (const [name, rec] of nodes) {
    if (name === self) continue;
    const p: PeerSummary = { name, alive: alive.has(name), addresses: rec.addresses, blocks: [], borrowed: [] };
    if (rec.vtepMac) p.vtepMac = rec.vtepMac;
    peers.set(name, p);
  }
  return peers;
}

/**
 * The blocks and borrowed addresses of the networks this agent routes, in a stable
 * order; none in flat mode, where pods live on the node's own segment (docs/flat.md).
 */
function routedRecords(view: ClusterView, local: LocalFacts): { blocks: BlockOwner[]; borrowed: BorrowedIP[] } {
  if (local.mode === 'flat') return { blocks: [], borrowed: [] };
  const wanted = (network: string): boolean => local.networks.length === 0 || local.networks.includes(network);
  const blocks = [...view.affinities.values()].filter((a) => wanted(a.network)).sort((a, b) => cmp(a.network, b.network) || cmp(a.cidr, b.cidr));
  const borrowed = [...view.borrowed.values()]
    .flat()
    .filter((x) => wanted(x.network))
    .sort((a, b) => cmp(a.network, b.network) || cmp(a.ip, b.ip));
  return { blocks, borrowed };
}

/**
 * vxlan: every peer that is alive or has pods here (blocks, borrowed addresses) gets its
 * FDB and (IPv4 next hop) neighbour entry up front, so the first route to a new block
 * needs nothing else.
 */
function planVxlanPeers(plan: Plan, nodes: ReadonlyMap<string, NodeRecord>, alive: ReadonlySet<string>, holders: ReadonlySet<string>, local: LocalFacts): void {
  for (const [name, rec] of [...nodes].sort((a, b) => cmp(a[0], b[0]))) {
    if (name === local.node || !rec.vtepMac || !(alive.has(name) || holders.has(name))) continue;
    const hop = nexthopTo(rec, 4, local);
    if (typeof hop !== 'string') plan.addEntries(hop);
  }
}

/** A route to every other node's block; returns the blocks whose node has no record. */
function planBlocks(
  plan: Plan,
  blocks: readonly BlockOwner[],
  nodes: ReadonlyMap<string, NodeRecord>,
  peers: Map<string, PeerSummary>,
  local: LocalFacts,
): BlockRef[] {
  const orphans: BlockRef[] = [];
  for (const b of blocks) {
    if (b.node === local.node) continue;
    const peer = nodes.get(b.node);
    if (!peer) {
      orphans.push({ network: b.network, cidr: b.cidr, node: b.node });
      continue;
    }
    peers.get(peer.name)?.blocks.push(b.cidr);
    plan.addRouteVia(peer, netCidr(b.cidr), 'block', local);
  }
  return orphans;
}

/**
 * A host route to every borrowed address: through its borrower's node, or, when this node
 * borrowed it, onto the local link that holds its subnet.
 */
function planBorrowed(
  plan: Plan,
  borrowed: readonly BorrowedIP[],
  nodes: ReadonlyMap<string, NodeRecord>,
  peers: Map<string, PeerSummary>,
  local: LocalFacts,
): void {
  for (const x of borrowed) {
    const dst = hostCidr(x.ip);
    if (x.borrower === local.node) {
      const dev = podLinkFor(local.links, x.ip);
      if (dev) plan.addRoute({ dst, dev, scope: 'link', node: local.node, why: 'local-borrowed' });
      else plan.problems.add(`borrowed address ${x.ip} is on this node but no link holds its subnet`);
      continue;
    }
    const peer = nodes.get(x.borrower);
    if (!peer) continue; // borrower's record removed: its address goes the way of the block
    peers.get(peer.name)?.borrowed.push(x.ip);
    plan.addRouteVia(peer, dst, 'borrowed', local);
  }
}

/** Everything this node should have, from the cluster view. */
export function desiredState(view: ClusterView, local: LocalFacts): Desired {
  const nodes = nodesByName(view, local.prefix);
  const alive = aliveNames(view, local.prefix);
  const peers = peerSummaries(nodes, alive, local.node);
  const { blocks, borrowed } = routedRecords(view, local);
  const plan = new Plan();
  if (local.mode === 'vxlan') {
    const holders = new Set([...blocks.map((b) => b.node), ...borrowed.map((x) => x.borrower)]);
    planVxlanPeers(plan, nodes, alive, holders, local);
  }
  const orphanBlocks = planBlocks(plan, blocks, nodes, peers, local);
  planBorrowed(plan, borrowed, nodes, peers, local);
  const candidates = local.links.filter((l) => l.name !== local.vxlanDevice);
  return {
    routes: [...plan.routes.values()].sort((a, b) => cmp(a.dst, b.dst)),
    fdb: [...plan.fdb.values()].sort((a, b) => cmp(a.mac, b.mac)),
    neighs: [...plan.neighs.values()].sort((a, b) => cmp(a.ip, b.ip)),
    podLinks: podLinks(
      candidates,
      blocks.map((b) => b.cidr),
    ),
    peers: [...peers.values()].sort((a, b) => cmp(a.name, b.name)),
    orphanBlocks,
    problems: [...plan.problems].sort(cmp),
  };
}

// ==================================================================== diff / plan ====

/** A route of ours as read from the kernel (only routes with our protocol number). */
export interface ActualRoute {
  dst: string;
  gw?: string;
  dev?: string;
  onlink: boolean;
  src?: string;
}

export interface ActualFdb {
  mac: string;
  dst?: string;
  permanent: boolean;
}

export interface ActualNeigh {
  ip: string;
  mac?: string;
  permanent: boolean;
}

export interface Actual {
  routes: ActualRoute[];
  fdb: ActualFdb[];
  neighs: ActualNeigh[];
}

export type Op =
  | { op: 'fdb'; action: 'add' | 'replace'; entry: FdbEntry }
  | { op: 'fdb'; action: 'del'; entry: ActualFdb }
  | { op: 'neigh'; action: 'add' | 'replace'; entry: NeighEntry }
  | { op: 'neigh'; action: 'del'; entry: ActualNeigh }
  | { op: 'route'; action: 'add' | 'replace'; route: DesiredRoute }
  | { op: 'route'; action: 'del'; route: ActualRoute };

const ZERO_MAC = '00:00:00:00:00:00';

function sameIP(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return canonicalIP(a) === canonicalIP(b);
}

/** Whether the kernel's route already is the desired one. */
export function routeMatches(want: DesiredRoute, have: ActualRoute): boolean {
  if (!sameIP(want.gw, have.gw)) return false;
  if (want.dev !== undefined && want.dev !== have.dev) return false;
  if (!!want.onlink !== have.onlink) return false;
  if (want.src !== undefined && !sameIP(want.src, have.src)) return false;
  return true;
}

/**
 * The operations that turn `actual` into `desired`, in a safe order: FDB and neighbour
 * entries before the routes that use them; stale routes before the entries they used.
 * Only our own routes are in `actual`, so nothing else is ever deleted or replaced.
 */
export function plan(desired: Pick<Desired, 'routes' | 'fdb' | 'neighs'>, actual: Actual): Op[] {
  const ops: Op[] = [];
  const haveFdb = new Map<string, ActualFdb>();
  for (const f of actual.fdb) if (f.permanent && f.mac !== ZERO_MAC && f.dst !== undefined) haveFdb.set(f.mac, f);
  const wantFdb = new Set<string>();
  for (const f of desired.fdb) {
    wantFdb.add(f.mac);
    const h = haveFdb.get(f.mac);
    if (!h) ops.push({ op: 'fdb', action: 'add', entry: f });
    else if (!sameIP(h.dst, f.dst)) ops.push({ op: 'fdb', action: 'replace', entry: f });
  }
  const haveNeigh = new Map<string, ActualNeigh>();
  for (const n of actual.neighs) haveNeigh.set(canonicalIP(n.ip), n);
  const wantNeigh = new Set<string>();
  for (const n of desired.neighs) {
    const ip = canonicalIP(n.ip);
    wantNeigh.add(ip);
    const h = haveNeigh.get(ip);
    if (!h) ops.push({ op: 'neigh', action: 'add', entry: n });
    else if (!h.permanent || h.mac?.toLowerCase() !== n.mac) ops.push({ op: 'neigh', action: 'replace', entry: n });
  }
  const haveRoute = new Map<string, ActualRoute>();
  for (const r of actual.routes) haveRoute.set(netCidr(r.dst), r);
  const wantRoute = new Set<string>();
  for (const r of desired.routes) {
    wantRoute.add(r.dst);
    const h = haveRoute.get(r.dst);
    if (!h) ops.push({ op: 'route', action: 'add', route: r });
    else if (!routeMatches(r, h)) ops.push({ op: 'route', action: 'replace', route: r });
  }
  for (const [dst, r] of haveRoute) if (!wantRoute.has(dst)) ops.push({ op: 'route', action: 'del', route: r });
  for (const [ip, n] of haveNeigh) if (n.permanent && !wantNeigh.has(ip)) ops.push({ op: 'neigh', action: 'del', entry: n });
  for (const [mac, f] of haveFdb) if (!wantFdb.has(mac)) ops.push({ op: 'fdb', action: 'del', entry: f });
  return ops;
}

/** One line per operation, for logs. */
export function describeOp(o: Op): string {
  if (o.op === 'route') {
    const r = o.route;
    const via = r.gw ? ` via ${r.gw}` : '';
    const dev = r.dev ? ` dev ${r.dev}` : '';
    return `route ${o.action} ${r.dst}${via}${dev}${r.onlink ? ' onlink' : ''}`;
  }
  if (o.op === 'fdb') return `fdb ${o.action} ${o.entry.mac}${o.entry.dst ? ` dst ${o.entry.dst}` : ''}`;
  return `neigh ${o.action} ${o.entry.ip}${o.entry.mac ? ` lladdr ${o.entry.mac}` : ''}`;
}
