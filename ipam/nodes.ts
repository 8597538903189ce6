// Node lifecycle: the nodes an IPAM store knows and the release of a node that left the
// cluster (issue #14 item 5). A node that is gone keeps its blocks forever otherwise: in
// an autoscaled cluster the pool runs out (Calico's #2713).
//
// `releaseNode` (strand ipam node release, the agent's automatic path, strand uninstall)
// releases, in every network:
// - with `force`, the node's attachments first (its pods are gone with it; this also
//   resolves releases that were pending on the node when it went away);
// - the node's blocks that hold no address: block and affinity deleted (compare-and-swap
//   on the block's revision: a block that changed meanwhile is kept);
// - the node's record (etcd: `<prefix>/nodes/<node>`) once it holds no block and no
//   attachment any more, so the agents forget its address (FDB and neighbour entries);
//   the other agents' routes to its blocks went with the blocks' affinities.
// A block that still holds addresses (the node's own pods, without `force`, or addresses
// other nodes borrowed from it) is kept and reported, and so is every attachment the node
// still holds. A node whose agent is alive (its liveness key exists) has not left: it is
// refused unless `force`.
import { Allocator } from './allocator.ts';
import { releaseConfig } from './pending.ts';
import { hasNodeDirectory, type Block, type Store, type Versioned } from './store/types.ts';

interface NodeBlock {
  network: string;
  cidr: string;
  /** Addresses allocated in the block (its pods and those borrowed by other nodes). */
  allocated: number;
  /** Of those, addresses borrowed by other nodes. */
  borrowed: number;
}

export interface NodeSummary {
  name: string;
  /** etcd: the agent's record of the node exists (undefined: the store has no node records). */
  record: boolean | undefined;
  /** etcd: the node's liveness key exists, i.e. its agent runs (undefined: the store has no liveness). */
  alive: boolean | undefined;
  addresses: string[];
  blocks: NodeBlock[];
  /** Attachments (pods' interfaces) recorded on the node, in every network. */
  attachments: number;
}

/** Every node the store knows: by record, liveness key, block or attachment. */
export async function listNodes(store: Store): Promise<NodeSummary[]> {
  const out = new Map<string, NodeSummary>();
  const get = (name: string): NodeSummary => {
    let n = out.get(name);
    if (!n) {
      n = { name, record: undefined, alive: undefined, addresses: [], blocks: [], attachments: 0 };
      out.set(name, n);
    }
    return n;
  };
  const dir = hasNodeDirectory(store) ? store : undefined;
  const [records, alive] = dir ? await Promise.all([dir.nodeRecords(), dir.aliveNodes()]) : [undefined, undefined];
  for (const [name, r] of records ?? []) Object.assign(get(name), { addresses: r.addresses });
  for (const name of alive ?? []) get(name);
  for (const b of await store.listBlocks()) {
    const v = b.value;
    const allocations = Object.values(v.allocations);
    get(v.node).blocks.push({
      network: v.network,
      cidr: v.cidr,
      allocated: allocations.length,
      borrowed: allocations.filter((r) => r.node !== undefined && r.node !== v.node).length,
    });
  }
  for (const a of await store.listAttachments()) get(a.value.node).attachments++;
  if (records && alive) {
    for (const n of out.values()) {
      n.record = records.has(n.name);
      n.alive = alive.has(n.name);
    }
  }
  for (const n of out.values()) n.blocks.sort((x, y) => x.network.localeCompare(y.network) || x.cidr.localeCompare(y.cidr));
  return [...out.values()].sort((x, y) => x.name.localeCompare(y.name));
}

export interface ReleaseNodeOptions {
  /** Release the node's attachments too, and release it even when its agent is alive. */
  force?: boolean;
  /** Release it even when its liveness key exists (strand uninstall on the node itself: its agent was just stopped). */
  ignoreAlive?: boolean;
  dryRun?: boolean;
}

export interface NodeReleaseReport {
  node: string;
  /** Why nothing was done (the node's agent is alive), if so. */
  refused?: string;
  /** "network containerID/ifname: ip,ip" released (force). */
  attachmentsReleased: string[];
  /** "network containerID/ifname: ip,ip" the node still holds (kept). */
  attachmentsHeld: string[];
  /** "network cidr" released. */
  blocksReleased: string[];
  /** "network cidr: why" kept. */
  blocksKept: string[];
  /** The node's record was removed (or would be, dry run). */
  recordRemoved: boolean;
}

/** Releases a node that left the cluster; see the module comment. Idempotent. */
export async function releaseNode(store: Store, node: string, opts: ReleaseNodeOptions = {}): Promise<NodeReleaseReport> {
  const out: NodeReleaseReport = { node, attachmentsReleased: [], attachmentsHeld: [], blocksReleased: [], blocksKept: [], recordRemoved: false };
  const dir = hasNodeDirectory(store) ? store : undefined;
  const checkAlive = !opts.force && !opts.ignoreAlive;
  if (dir && checkAlive && (await dir.aliveNodes()).has(node)) {
    out.refused = `the agent of node ${node} is alive (its liveness key exists): the node has not left; --force releases it anyway`;
    return out;
  }
  const networks = await store.listNetworks();
  for (const network of networks) {
    const al = new Allocator({ store, config: releaseConfig(network), node });
    for (const a of await store.listAttachments(network)) {
      if (a.value.node !== node) continue;
      const what = `${network} ${a.value.containerId}/${a.value.ifname}: ${a.value.ips.map((e) => e.ip).join(',')}`;
      if (!opts.force) out.attachmentsHeld.push(what);
      else {
        if (!opts.dryRun) await al.release(a.value.containerId, a.value.ifname, { node });
        out.attachmentsReleased.push(what);
      }
    }
    const released = new Set(out.attachmentsReleased.filter((x) => x.startsWith(`${network} `)).map((x) => x.slice(network.length + 1).split(':')[0]));
    for (const b of await store.listBlocks(network)) {
      if (b.value.node !== node) continue;
      // in a dry run, what the forced releases would have left in the block
      const left = Object.entries(b.value.allocations).filter(([, r]) => !(opts.dryRun && released.has(`${r.containerId}/${r.ifname}`)));
      if (left.length > 0) {
        const borrowed = left.filter(([, r]) => r.node !== undefined && r.node !== node).length;
        const own = left.length - borrowed;
        const why = [own ? `${own} address(es) of its pods` : '', borrowed ? `${borrowed} address(es) borrowed by other nodes` : '']
          .filter(Boolean)
          .join(' and ');
        out.blocksKept.push(`${network} ${b.value.cidr}: holds ${why}`);
        continue;
      }
      if (opts.dryRun || (await deleteBlock(store, b))) out.blocksReleased.push(`${network} ${b.value.cidr}`);
      else out.blocksKept.push(`${network} ${b.value.cidr}: changed while it was being released (kept)`);
    }
  }
  if (dir && out.attachmentsHeld.length === 0 && out.blocksKept.length === 0) {
    const rec = (await dir.nodeRecords()).get(node);
    if (rec) out.recordRemoved = opts.dryRun || (await dir.deleteNodeRecord(node, rec.rev, checkAlive));
  }
  return out;
}

/** Deletes an empty block (and its affinity) unless it changed since it was read. */
async function deleteBlock(store: Store, b: Versioned<Block>): Promise<boolean> {
  const rev = await store.exclusive(b.value.network, () => store.commit([{ op: 'delBlock', network: b.value.network, cidr: b.value.cidr, prevRev: b.rev }]));
  return rev !== undefined;
}
