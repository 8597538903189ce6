// strand's Prometheus metrics, for the long-lived processes (the node agent, the daemon):
// every series strand exports is defined here, with its recording API, in a registry of
// its own (no prom-client global state). docs/metrics.md lists them all.
//
// prom-client is loaded only through this module, and this module only by long-lived
// processes (agent/main.ts, the daemon), through dynamic imports: a plugin process never
// evaluates it, and neither does the single executable's start-up snapshot.
//
// Who records what:
// - plugin requests (strand_cni_*) and IPAM operations (strand_ipam_operations_total):
//   the process that runs the plugin code, through the RequestObserver interface of
//   lib/cni/skel.ts (the daemon passes a StrandMetrics as PluginIO.observer). A plugin
//   run as its own process has no observer and records nothing; in the agent these
//   series exist (HELP and TYPE) but stay empty.
// - etcd requests (strand_etcd_*): whoever talks to etcd, through etcdRequest().
// - IPAM pool and block usage and everything strand_agent_*: the agent, from its view of
//   etcd and its reconcile passes.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestObserver } from '../cni/skel.ts';
import { timed } from './timed.ts';

/** Latency buckets (seconds) of plugin requests: 1 ms (in-process DEL) to 30 s (a slow etcd). */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** etcd round trips: sub-millisecond on loopback to the request timeout. */
const ETCD_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Reconcile passes: a few netlink round trips, up to a full table on a big cluster. */
const RECONCILE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

export interface MetricsOptions {
  /** Process and Node.js runtime metrics (open fds, RSS, CPU, event loop lag, GC, heap); default true. */
  defaultMetrics?: boolean;
}

/** Usage of the address blocks one node owns in one IPAM network. */
export interface NodeBlockUsage {
  network: string;
  /** Blocks the node owns. */
  blocks: number;
  /** Addresses in those blocks. */
  addresses: number;
  /** Addresses allocated in them (to the node's pods or lent to other nodes). */
  allocated: number;
}

/** Usage of one IPAM network (pool) over all nodes. */
export interface PoolUsage {
  network: string;
  blocks: number;
  addresses: number;
  allocated: number;
}

export type RouteKind = 'block' | 'borrowed' | 'local-borrowed';

export class StrandMetrics implements RequestObserver {
  readonly registry: Registry;

  private readonly cniRequests: Counter<'plugin' | 'verb' | 'result'>;
  private readonly cniErrors: Counter<'plugin' | 'verb' | 'code'>;
  private readonly cniDuration: Histogram<'plugin' | 'verb' | 'result'>;
  private readonly ipamOps: Counter<'network' | 'op' | 'result'>;
  private readonly ipamOpAddresses: Counter<'network' | 'op'>;
  private readonly daemonConnections: Counter<'outcome'>;
  private readonly daemonInFlight: Gauge;
  private readonly etcdDuration: Histogram<'op'>;
  private readonly etcdErrors: Counter<'op'>;

  private readonly nodeBlocks: Gauge<'network' | 'node'>;
  private readonly nodeAddresses: Gauge<'network' | 'node'>;
  private readonly nodeAllocated: Gauge<'network' | 'node'>;
  private readonly poolBlocks: Gauge<'network'>;
  private readonly poolAddresses: Gauge<'network'>;
  private readonly poolAllocated: Gauge<'network'>;

  private readonly routes: Gauge<'kind'>;
  private readonly fdbEntries: Gauge;
  private readonly neighEntries: Gauge;
  private readonly changes: Counter<'object' | 'action'>;
  private readonly applyErrors: Counter<'object'>;
  private readonly reconcileDuration: Histogram<'reason'>;
  private readonly reconcileFailures: Counter;
  private readonly reconcileLastSuccess: Gauge;
  private readonly synced: Gauge;
  private readonly peers: Gauge<'state'>;
  private readonly orphanBlocks: Gauge;
  private readonly podMtu: Gauge;
  private readonly pending: Gauge;
  private readonly pendingCompleted: Counter;
  private readonly goneNodeAttachments: Gauge<'node'>;
  private readonly nodeReleases: Counter<'result'>;

  constructor(opts: MetricsOptions = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    // Long on purpose: one declaration per series, the list docs/metrics.md documents.
    this.cniRequests = new Counter({
      name: 'strand_cni_requests_total',
      help: 'CNI plugin calls served in this process, by plugin, verb and result (success or error).',
      labelNames: ['plugin', 'verb', 'result'],
      registers,
    });
    this.cniErrors = new Counter({
      name: 'strand_cni_request_errors_total',
      help: 'CNI plugin calls that failed, by plugin, verb and CNI error code.',
      labelNames: ['plugin', 'verb', 'code'],
      registers,
    });
    this.cniDuration = new Histogram({
      name: 'strand_cni_request_duration_seconds',
      help: 'Wall time of CNI plugin calls served in this process, by plugin, verb and result.',
      labelNames: ['plugin', 'verb', 'result'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.ipamOps = new Counter({
      name: 'strand_ipam_operations_total',
      help: 'strand-ipam allocations (ADD) and releases (DEL) run in this process, by network, op and result (success or failure).',
      labelNames: ['network', 'op', 'result'],
      registers,
    });
    this.ipamOpAddresses = new Counter({
      name: 'strand_ipam_addresses_total',
      help: 'Addresses allocated or released by the successful strand-ipam operations of this process, by network and op.',
      labelNames: ['network', 'op'],
      registers,
    });
    this.daemonConnections = new Counter({
      name: 'strand_daemon_connections_total',
      help: 'Shim connections to strand daemon, by outcome (done, timeout, crashed, lost: run; busy, unsupported, rejected, cancelled, unauthorized: not run, the shim falls back or fails).',
      labelNames: ['outcome'],
      registers,
    });
    this.daemonInFlight = new Gauge({
      name: 'strand_daemon_requests_in_flight',
      help: 'Requests strand daemon runs now (timed-out ones included until their work settles).',
      registers,
    });
    this.etcdDuration = new Histogram({
      name: 'strand_etcd_request_duration_seconds',
      help: 'Latency of the etcd requests of this process, by operation.',
      labelNames: ['op'],
      buckets: ETCD_BUCKETS,
      registers,
    });
    this.etcdErrors = new Counter({
      name: 'strand_etcd_request_errors_total',
      help: 'etcd requests of this process that failed (unreachable, timed out, refused), by operation.',
      labelNames: ['op'],
      registers,
    });
    this.nodeBlocks = new Gauge({
      name: 'strand_ipam_node_blocks',
      help: 'Address blocks this node owns, by network.',
      labelNames: ['network', 'node'],
      registers,
    });
    this.nodeAddresses = new Gauge({
      name: 'strand_ipam_node_block_addresses',
      help: 'Addresses in the blocks this node owns, by network.',
      labelNames: ['network', 'node'],
      registers,
    });
    this.nodeAllocated = new Gauge({
      name: 'strand_ipam_node_allocated_addresses',
      help: "Addresses allocated in the blocks this node owns (its pods' and those lent to other nodes), by network.",
      labelNames: ['network', 'node'],
      registers,
    });
    this.poolBlocks = new Gauge({
      name: 'strand_ipam_pool_blocks',
      help: 'Address blocks claimed by all nodes, by network (the same on every agent).',
      labelNames: ['network'],
      registers,
    });
    this.poolAddresses = new Gauge({
      name: 'strand_ipam_pool_block_addresses',
      help: 'Addresses in the blocks claimed by all nodes, by network (the same on every agent).',
      labelNames: ['network'],
      registers,
    });
    this.poolAllocated = new Gauge({
      name: 'strand_ipam_pool_allocated_addresses',
      help: 'Addresses allocated in all blocks, by network (the same on every agent).',
      labelNames: ['network'],
      registers,
    });
    this.routes = new Gauge({
      name: 'strand_agent_routes',
      help: "Routes the agent has programmed, by kind: block (another node's block), borrowed (an address borrowed by another node), local-borrowed.",
      labelNames: ['kind'],
      registers,
    });
    this.fdbEntries = new Gauge({ name: 'strand_agent_vxlan_fdb_entries', help: 'Static FDB entries programmed on the VXLAN device (vxlan mode).', registers });
    this.neighEntries = new Gauge({
      name: 'strand_agent_vxlan_neighbour_entries',
      help: 'Permanent neighbour entries programmed on the VXLAN device (vxlan mode).',
      registers,
    });
    this.changes = new Counter({
      name: 'strand_agent_dataplane_changes_total',
      help: 'Changes the agent applied to the kernel, by object (route, fdb, neigh) and action (add, replace, del).',
      labelNames: ['object', 'action'],
      registers,
    });
    this.applyErrors = new Counter({
      name: 'strand_agent_dataplane_errors_total',
      help: 'Changes to the kernel that failed, by object (route, fdb, neigh, sysctl).',
      labelNames: ['object'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'strand_agent_reconcile_duration_seconds',
      help: 'Duration of reconcile passes, by what started them (list, watch, resync, links).',
      labelNames: ['reason'],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    this.reconcileFailures = new Counter({ name: 'strand_agent_reconcile_failures_total', help: 'Reconcile passes that failed as a whole.', registers });
    this.reconcileLastSuccess = new Gauge({
      name: 'strand_agent_reconcile_last_success_timestamp_seconds',
      help: 'Unix time of the end of the last successful reconcile pass.',
      registers,
    });
    this.synced = new Gauge({ name: 'strand_agent_synced', help: '1 when the agent has listed etcd and its watch runs (ready), else 0.', registers });
    this.peers = new Gauge({
      name: 'strand_agent_peers',
      help: 'Other nodes with a record, by state: alive (agent running) or away (routes kept).',
      labelNames: ['state'],
      registers,
    });
    this.orphanBlocks = new Gauge({ name: 'strand_agent_orphan_blocks', help: 'Blocks owned by a node without a record (not routed).', registers });
    this.podMtu = new Gauge({ name: 'strand_agent_pod_mtu', help: 'The pod MTU the agent wrote for the plugins (0 before it is known).', registers });
    this.pending = new Gauge({
      name: 'strand_ipam_pending_releases',
      help: "This node's releases that DEL recorded while the IPAM store was unavailable and that are not completed yet (after the agent's last pass).",
      registers,
    });
    this.pendingCompleted = new Counter({
      name: 'strand_ipam_pending_releases_completed_total',
      help: 'Pending releases of this node the agent completed.',
      registers,
    });
    this.goneNodeAttachments = new Gauge({
      name: 'strand_agent_gone_node_attachments',
      help: 'Attachments still held by a node whose agent has been gone longer than nodeReleaseAfter: its blocks are kept until they are released (strand ipam node release --force).',
      labelNames: ['node'],
      registers,
    });
    this.nodeReleases = new Counter({
      name: 'strand_agent_node_releases_total',
      help: 'Gone nodes whose empty blocks and record this agent released (result released), or found holding attachments (held) or failed to release (failed).',
      labelNames: ['result'],
      registers,
    });
    this.synced.set(0);
    this.pending.set(0);
    this.podMtu.set(0);
    this.fdbEntries.set(0);
    this.neighEntries.set(0);
    this.orphanBlocks.set(0);
    for (const k of ['block', 'borrowed', 'local-borrowed'] as const) this.routes.set({ kind: k }, 0);
    for (const s of ['alive', 'away'] as const) this.peers.set({ state: s }, 0);
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  // ------------------------------------------------------------ RequestObserver ----

  /** One finished plugin call: `code` 0 for success, else the CNI error code. */
  request(plugin: string, verb: string, code: number, seconds: number): void {
    const result = code === 0 ? 'success' : 'error';
    this.cniRequests.inc({ plugin, verb, result });
    this.cniDuration.observe({ plugin, verb, result }, seconds);
    if (code !== 0) this.cniErrors.inc({ plugin, verb, code: String(code) });
  }

  /** One strand-ipam allocation (ADD) or release (DEL); `addresses` counts the successful ones. */
  ipam(network: string, op: 'allocate' | 'release', ok: boolean, addresses: number): void {
    this.ipamOps.inc({ network, op, result: ok ? 'success' : 'failure' });
    if (ok && addresses > 0) this.ipamOpAddresses.inc({ network, op }, addresses);
  }

  // ----------------------------------------------------------------- daemon ----

  /** One shim connection's outcome (daemon/server.ts Outcome), and the requests running after it. */
  daemonConnection(outcome: string, inFlight: number): void {
    this.daemonConnections.inc({ outcome });
    this.daemonInFlight.set(inFlight);
  }

  // ------------------------------------------------------------------- etcd ----

  /** One etcd request: its operation name, latency and whether it failed. */
  etcdRequest(op: string, seconds: number, ok: boolean): void {
    this.etcdDuration.observe({ op }, seconds);
    if (!ok) this.etcdErrors.inc({ op });
  }

  /** Times `fn` as the etcd request `op`. */
  timeEtcd<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return timed((o, s, ok) => this.etcdRequest(o, s, ok), op, fn);
  }

  // ------------------------------------------------------------------- agent ----

  /** This node's block usage per network (gauges of networks no longer present are removed). */
  setNodeUsage(node: string, usage: readonly NodeBlockUsage[]): void {
    for (const g of [this.nodeBlocks, this.nodeAddresses, this.nodeAllocated]) g.reset();
    for (const u of usage) {
      const l = { network: u.network, node };
      this.nodeBlocks.set(l, u.blocks);
      this.nodeAddresses.set(l, u.addresses);
      this.nodeAllocated.set(l, u.allocated);
    }
  }

  setPoolUsage(usage: readonly PoolUsage[]): void {
    for (const g of [this.poolBlocks, this.poolAddresses, this.poolAllocated]) g.reset();
    for (const u of usage) {
      const l = { network: u.network };
      this.poolBlocks.set(l, u.blocks);
      this.poolAddresses.set(l, u.addresses);
      this.poolAllocated.set(l, u.allocated);
    }
  }

  /** The outcome of one reconcile pass. */
  reconciled(r: {
    reason: string;
    seconds: number;
    routes: Readonly<Record<RouteKind, number>>;
    fdb: number;
    neighs: number;
    changes: ReadonlyArray<{ object: string; action: string }>;
    errors: ReadonlyArray<{ object: string }>;
    peers: { alive: number; away: number };
    orphanBlocks: number;
  }): void {
    this.reconcileDuration.observe({ reason: r.reason }, r.seconds);
    this.reconcileLastSuccess.set(Date.now() / 1000);
    for (const [kind, n] of Object.entries(r.routes)) this.routes.set({ kind }, n);
    this.fdbEntries.set(r.fdb);
    this.neighEntries.set(r.neighs);
    for (const c of r.changes) this.changes.inc({ object: c.object, action: c.action });
    for (const e of r.errors) this.applyErrors.inc({ object: e.object });
    this.peers.set({ state: 'alive' }, r.peers.alive);
    this.peers.set({ state: 'away' }, r.peers.away);
    this.orphanBlocks.set(r.orphanBlocks);
  }

  /** A reconcile pass that failed as a whole (nothing applied). */
  reconcileFailed(reason: string, seconds: number): void {
    this.reconcileDuration.observe({ reason }, seconds);
    this.reconcileFailures.inc();
  }

  setSynced(synced: boolean): void {
    this.synced.set(synced ? 1 : 0);
  }

  setPodMtu(mtu: number): void {
    this.podMtu.set(mtu);
  }

  /** A pass over this node's pending releases: how many it completed, how many are left. */
  pendingReleases(completed: number, left: number): void {
    if (completed > 0) this.pendingCompleted.inc(completed);
    this.pending.set(left);
  }

  /** The attachments each gone node past the grace period still holds (nodes not listed: none). */
  setGoneNodeAttachments(byNode: ReadonlyMap<string, number>): void {
    this.goneNodeAttachments.reset();
    for (const [node, n] of byNode) this.goneNodeAttachments.set({ node }, n);
  }

  nodeReleased(result: 'released' | 'held' | 'failed'): void {
    this.nodeReleases.inc({ result });
  }

  /** The Prometheus text exposition of every series. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
