// The agent's view of the cluster, built from etcd and updated by watch events. Pure:
// no I/O, so the reconcile logic can be tested with plain objects.
//
// etcd keys the agent reads (<prefix> is the IPAM's, default /strand/ipam; see
// ipam/store/etcd.ts for the IPAM's own records):
//
//   <prefix>/nodes/<node>                    NodeRecord: how to reach the node (no lease: it
//                                             outlives the agent, so routes to the node's
//                                             blocks do too)
//   <prefix>/alive/<node>                    {"name","started"} on the agent's lease: the
//                                             agent is running (liveness, for status only)
//   <prefix>/affinity/<network>/<block>      {"network","cidr","node"}: block ownership
//   <prefix>/blocks/<network>/<block>        the block with its allocations; an allocation
//                                             with "node" set is borrowed by that node
//
// The view is a map per record kind keyed by the etcd key, so a delete event (which
// carries no value) removes exactly what the matching put added.
import { canonicalCidr, canonicalIP, tryParseCidr, tryParseIP } from '../lib/addr/cidr.ts';
import { canonicalMac, isMac } from '../lib/addr/mac.ts';
import { isObject } from '../lib/cni/json.ts';

const MODES = ['host-gw', 'vxlan', 'flat'] as const;
export type Mode = (typeof MODES)[number];

export function isMode(v: unknown): v is Mode {
  return typeof v === 'string' && (MODES as readonly string[]).includes(v);
}

/** What an agent registers about its node (JSON at <prefix>/nodes/<name>). */
export interface NodeRecord {
  name: string;
  /** Underlay addresses of the node, at most one per family is used. */
  addresses: string[];
  mode: Mode;
  /** The MAC of the node's VXLAN device (vxlan mode). */
  vtepMac?: string;
  vni?: number;
  port?: number;
  /** ISO time the agent started (older agents put it here; now in the liveness key). */
  started?: string;
}

/** The liveness key of a running agent (JSON at <prefix>/alive/<name>, on its lease). */
export interface AliveRecord {
  name: string;
  /** ISO time the agent started. */
  started?: string;
}

export interface BlockOwner {
  network: string;
  cidr: string;
  node: string;
}

/** An address allocated in one node's block by another node. */
export interface BorrowedIP {
  network: string;
  ip: string;
  block: string;
  owner: string;
  borrower: string;
}

/** How full one block is (for the metrics; routing does not depend on it). */
export interface BlockFill {
  network: string;
  cidr: string;
  /** The owner. */
  node: string;
  allocated: number;
}

export interface ClusterView {
  nodes: Map<string, NodeRecord>;
  /** Liveness keys of running agents, by key. */
  alive: Map<string, AliveRecord>;
  affinities: Map<string, BlockOwner>;
  /** Per block key: the borrowed addresses inside it (blocks without any are absent). */
  borrowed: Map<string, BorrowedIP[]>;
  /** Per block key: its owner and allocation count. */
  fill: Map<string, BlockFill>;
}

export function emptyView(): ClusterView {
  return { nodes: new Map(), alive: new Map(), affinities: new Map(), borrowed: new Map(), fill: new Map() };
}

export type KeyKind = 'node' | 'alive' | 'affinity' | 'block';

/** Which record kind a key under `<prefix>/` is, or undefined for keys the agent ignores. */
function keyKind(prefix: string, key: string): KeyKind | undefined {
  if (!key.startsWith(`${prefix}/`)) return undefined;
  const rest = key.slice(prefix.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const kind = rest.slice(0, slash);
  if (kind === 'nodes') return 'node';
  if (kind === 'alive') return 'alive';
  if (kind === 'affinity') return 'affinity';
  if (kind === 'blocks') return 'block';
  return undefined;
}

/** Validates and normalises a node record; undefined when it is not one. */
function parseNodeRecord(v: unknown): NodeRecord | undefined {
  if (!isObject(v) || typeof v['name'] !== 'string' || !v['name'] || !isMode(v['mode'])) return undefined;
  const addrs = v['addresses'];
  if (!Array.isArray(addrs)) return undefined;
  const addresses: string[] = [];
  for (const a of addrs) {
    if (typeof a !== 'string' || !tryParseIP(a)) return undefined;
    addresses.push(canonicalIP(a));
  }
  const rec: NodeRecord = { name: v['name'], addresses, mode: v['mode'] };
  if (typeof v['vtepMac'] === 'string') {
    if (!isMac(v['vtepMac'])) return undefined;
    rec.vtepMac = canonicalMac(v['vtepMac']);
  }
  if (typeof v['vni'] === 'number') rec.vni = v['vni'];
  if (typeof v['port'] === 'number') rec.port = v['port'];
  if (typeof v['started'] === 'string') rec.started = v['started'];
  return rec;
}

function parseAlive(v: unknown): AliveRecord | undefined {
  if (!isObject(v) || typeof v['name'] !== 'string' || !v['name']) return undefined;
  return typeof v['started'] === 'string' ? { name: v['name'], started: v['started'] } : { name: v['name'] };
}

function parseAffinity(v: unknown): BlockOwner | undefined {
  if (!isObject(v)) return undefined;
  const { network, cidr, node } = v;
  if (typeof network !== 'string' || typeof cidr !== 'string' || typeof node !== 'string' || !node) return undefined;
  if (!tryParseCidr(cidr)) return undefined;
  return { network, cidr: canonicalCidr(cidr), node };
}

/** The borrowed addresses of a block record (allocations whose `node` is not the owner). */
function borrowedIn(v: unknown): BorrowedIP[] | undefined {
  if (!isObject(v)) return undefined;
  const { network, cidr, node, allocations } = v;
  if (typeof network !== 'string' || typeof cidr !== 'string' || typeof node !== 'string' || !tryParseCidr(cidr)) return undefined;
  const out: BorrowedIP[] = [];
  if (isObject(allocations)) {
    for (const [ip, ref] of Object.entries(allocations)) {
      if (!isObject(ref) || typeof ref['node'] !== 'string' || !ref['node'] || ref['node'] === node) continue;
      if (!tryParseIP(ip)) continue;
      out.push({ network, ip: canonicalIP(ip), block: canonicalCidr(cidr), owner: node, borrower: ref['node'] });
    }
  }
  return out;
}

function fillOf(v: unknown): BlockFill | undefined {
  if (!isObject(v)) return undefined;
  const { network, cidr, node, allocations } = v;
  if (typeof network !== 'string' || typeof cidr !== 'string' || typeof node !== 'string' || !tryParseCidr(cidr)) return undefined;
  return { network, cidr: canonicalCidr(cidr), node, allocated: isObject(allocations) ? Object.keys(allocations).length : 0 };
}

export type ApplyResult = 'changed' | 'unchanged' | 'ignored' | 'invalid';

/**
 * Applies one etcd event to the view. `value` is the raw JSON of a put (undefined for
 * a delete). Returns whether the view changed; a malformed record is 'invalid' and
 * removes whatever the key held before (it cannot be trusted any more).
 */
export function applyEvent(view: ClusterView, prefix: string, type: 'put' | 'delete', key: string, value?: string): ApplyResult {
  const kind = keyKind(prefix, key);
  if (!kind) return 'ignored';
  const map: Map<string, unknown> = kind === 'node' ? view.nodes : kind === 'alive' ? view.alive : kind === 'affinity' ? view.affinities : view.borrowed;
  const before = map.get(key);
  if (kind === 'block') view.fill.delete(key);
  if (type === 'delete' || value === undefined) {
    return map.delete(key) ? 'changed' : 'unchanged';
  }
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    raw = undefined;
  }
  let parsed: unknown;
  if (kind === 'node') parsed = parseNodeRecord(raw);
  else if (kind === 'alive') parsed = parseAlive(raw);
  else if (kind === 'affinity') parsed = parseAffinity(raw);
  else {
    const f = fillOf(raw);
    if (f) view.fill.set(key, f);
    const b = borrowedIn(raw);
    if (b && b.length === 0) {
      // the common case: a block without borrowed addresses is not kept at all
      return map.delete(key) ? 'changed' : 'unchanged';
    }
    parsed = b;
  }
  if (parsed === undefined) {
    map.delete(key);
    return 'invalid';
  }
  if (before !== undefined && JSON.stringify(before) === JSON.stringify(parsed)) return 'unchanged';
  map.set(key, parsed);
  return 'changed';
}

/** A view built from a full listing (key, raw value) at one revision. */
export function viewFromListing(prefix: string, kvs: Iterable<[string, string]>): { view: ClusterView; invalid: string[] } {
  const view = emptyView();
  const invalid: string[] = [];
  for (const [k, v] of kvs) {
    if (applyEvent(view, prefix, 'put', k, v) === 'invalid') invalid.push(k);
  }
  return { view, invalid };
}

/** Node records by name (a record's name must match its key; others are ignored). */
export function nodesByName(view: ClusterView, prefix: string): Map<string, NodeRecord> {
  const out = new Map<string, NodeRecord>();
  for (const [key, rec] of view.nodes) {
    if (key === `${prefix}/nodes/${rec.name}`) out.set(rec.name, rec);
  }
  return out;
}

/** Names of the nodes whose agent is running (a liveness key matching its own key). */
export function aliveNames(view: ClusterView, prefix: string): Set<string> {
  const out = new Set<string>();
  for (const [key, rec] of view.alive) {
    if (key === `${prefix}/alive/${rec.name}`) out.add(rec.name);
  }
  return out;
}

export interface Usage {
  network: string;
  blocks: number;
  /** Addresses in the blocks. */
  addresses: number;
  allocated: number;
}

/**
 * Block usage per network: of the blocks `node` owns, and of all blocks (the pool as far
 * as it is claimed). Only `networks` when not empty.
 */
export function blockUsage(view: ClusterView, node: string, networks: readonly string[]): { node: Usage[]; pool: Usage[] } {
  const mine = new Map<string, Usage>();
  const pool = new Map<string, Usage>();
  const add = (m: Map<string, Usage>, f: BlockFill, size: number): void => {
    const u = m.get(f.network) ?? { network: f.network, blocks: 0, addresses: 0, allocated: 0 };
    u.blocks++;
    u.addresses += size;
    u.allocated += f.allocated;
    m.set(f.network, u);
  };
  for (const f of view.fill.values()) {
    if (networks.length && !networks.includes(f.network)) continue;
    const c = tryParseCidr(f.cidr);
    if (!c) continue;
    const size = 2 ** ((c.family === 4 ? 32 : 128) - c.prefix);
    add(pool, f, size);
    if (f.node === node) add(mine, f, size);
  }
  const sorted = (m: Map<string, Usage>): Usage[] => [...m.values()].sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
  return { node: sorted(mine), pool: sorted(pool) };
}
