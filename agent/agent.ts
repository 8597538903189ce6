// The long-running node agent: registers this node, mirrors etcd into a ClusterView
// (list, then watch; list again whenever the watch breaks), and reconciles the data
// plane after every change and every resync interval.
//
// Reconcile passes never overlap: a request while one runs queues one more pass. A pass
// may wait on the kernel (netlink); a pass that never ends is what the liveness check
// (/healthz, lib/observe) reports.
//
// Failure rules:
// - nothing is changed in the kernel before the first successful listing;
// - etcd unreachable: routes stay as they are (the last known view), the agent retries
//   with exponential backoff and is "not synced" until it has listed again;
// - stop() (SIGTERM) leaves routes, FDB and neighbour entries in place and does not
//   revoke the lease; peers keep their routes to this node's blocks anyway (routes
//   follow block ownership, not the liveness key), however long the agent is away.
import { readFileSync } from 'node:fs';
import type { Logger } from '../lib/cni/log.ts';
import { formatPodMtu, parsePodMtu } from '../lib/plugin/mtu.ts';
import type { Netns } from '../lib/netlink/rtnl.ts';
import type { AgentConfig, FlatConfig } from './config.ts';
import { Dataplane, type Underlay, type Vtep } from './dataplane.ts';
import type { StrandMetrics } from '../lib/observe/metrics.ts';
import { LoopWatch } from '../lib/observe/health.ts';
import type { ObserveSources } from '../lib/observe/server.ts';
import { aliveNames, applyEvent, blockUsage, nodesByName, viewFromListing, type AliveRecord, type ClusterView, type NodeRecord } from './model.ts';
import { desiredState, describeOp, plan, type Desired, type Op } from './reconcile.ts';
import { Registry, type WatchEvent, type WatchHandle } from './registry.ts';
import { STATE_VERSION, writeFileAtomic, writeState, type AgentState } from './status.ts';
import { completePending, PendingJournal, pendingDirOf } from '../ipam/pending.ts';
import { releaseNode } from '../ipam/nodes.ts';
import { SHARED_BLOCK_OWNER } from '../ipam/allocator.ts';

const BACKOFF_MIN_MS = 200;
/**
 * How often the node's links and addresses are checked for a change (a bridge getting
 * its gateway address after the first pod's ADD) that needs proxy ARP or a local route.
 */
const LINK_POLL_MS = 250;
const BACKOFF_MAX_MS = 10_000;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

class Backoff {
  private ms = BACKOFF_MIN_MS;
  next(): number {
    const d = this.ms;
    this.ms = Math.min(BACKOFF_MAX_MS, this.ms * 2);
    return d * (0.8 + Math.random() * 0.4);
  }
  reset(): void {
    this.ms = BACKOFF_MIN_MS;
  }
}

export interface AgentDeps {
  ns: Netns;
  log: Logger;
  /** Defaults to Registry.open(cfg.etcd). */
  registry?: Registry;
  /** Where to record metrics (lib/observe/metrics.ts); none: nothing is recorded. */
  metrics?: StrandMetrics;
  /** Defaults to a Dataplane in `ns` (a test substitutes one that hangs). */
  dataplane?: Dataplane;
}

export class Agent {
  private readonly cfg: AgentConfig;
  private readonly log: Logger;
  private readonly dp: Dataplane;
  private registry: Registry | undefined;
  private stopped = false;
  private readonly stopWaiters: Array<() => void> = [];
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private linkTimer: NodeJS.Timeout | undefined;
  private linkSignature = '';
  private watch: WatchHandle | undefined;
  private underlay: Underlay | undefined;
  private vtep: Vtep | undefined;
  private view: ClusterView | undefined;
  private reconcilePending = false;
  /** The running chain of reconcile passes, and the reason for one more pass after it. */
  private reconciling: Promise<void> | undefined;
  private reconcileAgain: string | undefined;
  private readonly metrics: StrandMetrics | undefined;
  /** Liveness of the reconcile loop (/healthz). */
  readonly reconcileWatch: LoopWatch;
  private reregister: ((why: string) => void) | undefined;
  private lastErrors = '';
  private lastProblems = '';
  /** Flat mode: node addresses that pods hold (reported with every reconcile). */
  private flatProblems: string[] = [];
  /** Flat mode: the next reconcile pass first puts the bridge's settings back (every resync). */
  private flatReassertDue = false;
  /** Flat mode: the uplink's MTU, read at setup and every pass (the pods' MTU). */
  private flatMtu: number | undefined;
  /** Flat mode: sysctls the takeover could not copy to the bridge (key -> the uplink's value). */
  private flatNotCopied: Record<string, string> = {};
  /** Flat mode: bridge settings that are wrong and cannot be put back (reported with every reconcile). */
  private flatSettingProblems: string[] = [];
  private loops: Array<Promise<void>> = [];
  /** The housekeeping pass running now (pending releases, gone nodes), if any: passes never overlap. */
  private housekeeping: Promise<void> | undefined;
  /**
   * Other nodes without a liveness key, and since when (this process's monotonic clock)
   * this agent has seen them so: a node is "gone" by this agent's own measure, never by
   * comparing clocks of two machines; an agent that restarts starts measuring again
   * (later, never earlier).
   */
  private readonly goneSince = new Map<string, number>();
  /** Gone nodes past nodeReleaseAfter that still hold attachments: how many, and when to look again. */
  private readonly goneHolding = new Map<string, { attachments: number; nextCheck: number }>();
  readonly state: AgentState;

  constructor(cfg: AgentConfig, deps: AgentDeps) {
    this.cfg = cfg;
    this.log = deps.log;
    this.registry = deps.registry;
    this.metrics = deps.metrics;
    this.dp = deps.dataplane ?? new Dataplane(deps.ns, { protocol: cfg.routeProtocol, mode: cfg.mode });
    // resync runs a pass every resyncMs once synced: three missed ones mean it is wedged
    this.reconcileWatch = new LoopWatch('reconcile loop', { maxPassMs: cfg.reconcileStuckMs, maxIdleMs: 3 * cfg.resyncMs + cfg.reconcileStuckMs });
    const now = new Date().toISOString();
    this.state = {
      version: STATE_VERSION,
      pid: process.pid,
      node: cfg.nodeName,
      mode: cfg.mode,
      addresses: [],
      started: now,
      updated: now,
      staleAfterMs: Math.max(3 * cfg.resyncMs, 30_000),
      synced: false,
      registered: false,
      etcd: { connected: false },
      routeProtocol: cfg.routeProtocol,
      peers: [],
      routes: [],
      orphanBlocks: [],
      podLinks: [],
      problems: [],
    };
  }

  /** Starts the loops; resolves once the node's own data plane is set up. */
  async start(): Promise<void> {
    this.writeStatus();
    await this.setupNode();
    if (this.stopped) return;
    this.registry ??= await Registry.open(this.cfg.etcd);
    const metrics = this.metrics;
    if (metrics) this.registry.onRequest = (op, seconds, ok) => metrics.etcdRequest(op, seconds, ok);
    this.loops = [this.registerLoop(), this.syncLoop()];
    if (this.cfg.flat) this.loops.push(this.reserveLoop(this.cfg.flat));
    this.resyncTimer = setInterval(() => {
      // flat: the bridge's settings are put back in the next pass, with or without etcd
      if (this.cfg.flat && this.state.flat) this.flatReassertDue = true;
      if (this.view || this.flatReassertDue) void this.requestReconcile('resync');
      if (!this.view) this.writeStatus();
      else this.writeStatus();
      if (this.state.synced) this.startHousekeeping();
    }, this.cfg.resyncMs);
    this.linkTimer = setInterval(() => void this.checkLinks(), LINK_POLL_MS);
  }

  /** Reconciles when the node's addressed links changed since the last reconcile. */
  private async checkLinks(): Promise<void> {
    if (!this.view || this.reconcilePending || this.reconciling) return;
    try {
      if (JSON.stringify(await this.dp.links()) !== this.linkSignature) void this.requestReconcile('links');
    } catch (e) {
      this.log.debug(`link check: ${errorText(e)}`);
    }
  }

  /** What the /metrics, /healthz and /readyz listener serves for this agent. */
  observeSources(): ObserveSources {
    return { ...(this.metrics ? { metrics: this.metrics } : {}), liveness: [this.reconcileWatch], readiness: () => this.readiness() };
  }

  /** Why the agent is not ready (undefined: ready): it must have listed etcd and be watching. */
  readiness(): string | undefined {
    if (this.stopped) return 'stopping';
    if (!this.underlay) return this.state.problems[0] ?? 'setting up the node';
    if (!this.state.synced) return this.state.etcd.lastError ? `not synced with etcd: ${this.state.etcd.lastError}` : 'not synced with etcd yet';
    return undefined;
  }

  /** Stops the loops and closes etcd; routes and the lease are left alone. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.linkTimer) clearInterval(this.linkTimer);
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.resolve();
    }
    for (const w of this.stopWaiters.splice(0)) w();
    await this.watch?.cancel().catch(() => undefined);
    await Promise.race([Promise.allSettled([...this.loops, this.reconciling, this.housekeeping]), this.sleep(3000, true)]);
    await this.registry?.close();
    this.state.synced = false;
    this.metrics?.setSynced(false);
    this.writeStatus();
  }

  /** A promise that settles when stop() is called. */
  private whenStopped(): Promise<void> {
    return this.stopped ? Promise.resolve() : new Promise((r) => this.stopWaiters.push(r));
  }

  private sleep(ms: number, evenIfStopped = false): Promise<void> {
    if (this.stopped && !evenIfStopped) return Promise.resolve();
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          this.sleeps.delete(s);
          resolve();
        }, ms),
        resolve,
      };
      this.sleeps.add(s);
    });
  }

  /** Node addresses and (vxlan) the VTEP device; retried until it works or stop(). */
  private async setupNode(): Promise<void> {
    const backoff = new Backoff();
    while (!this.stopped) {
      try {
        if (this.cfg.flat && !this.state.flat) await this.takeOverUplink(this.cfg.flat);
        this.underlay = await this.dp.underlay(this.cfg.nodeIPs, this.cfg.nodeInterface);
        this.state.addresses = this.underlay.addresses;
        if (this.cfg.mode === 'vxlan') {
          this.vtep = await this.dp.ensureVxlan(this.cfg.vxlan, this.underlay, this.cfg.nodeName);
          this.state.vtep = { device: this.vtep.device, mac: this.vtep.mac, mtu: this.vtep.mtu, vni: this.vtep.vni, port: this.vtep.port };
        }
        this.log.info(
          `node ${this.cfg.nodeName}: ${this.underlay.addresses.join(', ')} on ${this.underlay.link.name}, mode ${this.cfg.mode}${this.vtep ? ` (${this.vtep.device} ${this.vtep.mac} mtu ${this.vtep.mtu})` : ''}`,
        );
        this.publishPodMtu();
        return;
      } catch (e) {
        this.state.problems = [`node setup: ${errorText(e)}`];
        this.writeStatus();
        this.log.warn(`node setup failed, retrying: ${errorText(e)}`);
        await this.sleep(backoff.next());
      }
    }
  }

  /** Flat mode: the bridge takes over the uplink (agent/flat.ts) before the node's addresses are read. */
  private async takeOverUplink(flat: FlatConfig): Promise<void> {
    const { ensureTakeover } = await import('./flat.ts');
    const o = await ensureTakeover(this.dp.ns, flat, { log: this.log });
    this.state.flat = { uplink: flat.uplink, bridge: flat.bridge, takeover: o.state };
    if (o.state !== 'adopted') this.state.flat.since = o.record.completed ?? o.record.started;
    if (o.state === 'taken-over') this.state.flat.ms = Math.round(o.ms);
    this.flatNotCopied = o.state === 'adopted' ? {} : (o.record.notCopied ?? {});
    this.flatMtu = await this.uplinkMtu(flat);
    await this.reassertFlat(flat);
  }

  /** Flat mode: the MTU of the uplink (pods are on its segment, whichever link holds the node IP). */
  private async uplinkMtu(flat: FlatConfig): Promise<number> {
    const { uplinkMtu } = await import('./flat.ts');
    return await uplinkMtu(this.dp.ns, flat);
  }

  /**
   * Flat mode: the node's own addresses (those on the bridge) are reserved in every IPAM
   * network, so no pod gets one of them; retried until etcd takes it. Reservations outlive
   * the agent (`strand ipam unreserve` removes one).
   */
  private async reserveLoop(flat: FlatConfig): Promise<void> {
    const { nodeAddresses } = await import('./flat.ts');
    const backoff = new Backoff();
    const reg = this.registry as Registry;
    while (!this.stopped) {
      try {
        const addrs = await nodeAddresses(this.dp.ns, flat);
        const problems: string[] = [];
        for (const network of this.cfg.networks) {
          for (const a of addrs) {
            const holders = await reg.reserve(network, a, `node ${this.cfg.nodeName} (strand agent, flat mode)`);
            for (const h of holders)
              problems.push(`${a} of this node is held by ${h.containerId}/${h.ifname} on ${h.node} in network ${network}: the segment sees it twice`);
          }
        }
        if (this.state.flat) this.state.flat.reserved = addrs;
        for (const p of problems) this.log.error(`flat: ${p}`);
        this.flatProblems = problems;
        this.log.info(`flat: reserved ${addrs.join(', ')} in IPAM network(s) ${this.cfg.networks.join(', ')}`);
        this.writeStatus();
        return;
      } catch (e) {
        this.log.warn(`flat: reserving the node's addresses failed, retrying: ${errorText(e)}`);
        await this.sleep(backoff.next());
      }
    }
  }

  /**
   * Flat mode, every resync: the bridge keeps the uplink's MTU and accept_ra, the uplink
   * its pod VLANs; what cannot be put back is a problem (logged when it changes).
   */
  private async reassertFlat(flat: FlatConfig): Promise<void> {
    const { reassertBridge } = await import('./flat.ts');
    let problems: string[];
    try {
      const r = await reassertBridge(this.dp.ns, flat, this.flatNotCopied);
      for (const f of r.fixed) this.log.warn(`flat: ${f}`);
      problems = r.problems.map((p) => `flat: ${p}`);
    } catch (e) {
      problems = [`flat: ${errorText(e)}`];
    }
    if (problems.join('\n') !== this.flatSettingProblems.join('\n')) for (const p of problems) this.log.warn(p);
    this.flatSettingProblems = problems;
  }

  /**
   * The MTU pods on this node should have: the tunnel's in vxlan mode (the uplink's minus
   * the encapsulation, or vxlan.mtu), in flat mode the flat uplink's, the uplink's
   * otherwise. Written to the pod MTU file when the file does not hold it already; a
   * failed write is retried at the next reconcile.
   */
  private publishPodMtu(): void {
    const mtu = this.vtep ? this.vtep.mtu : (this.flatMtu ?? this.underlay?.link.mtu);
    if (mtu === undefined) return;
    const file = this.cfg.podMtuFile;
    let current: number | undefined;
    try {
      current = parsePodMtu(readFileSync(file, 'utf8'));
    } catch {
      current = undefined;
    }
    if (current === mtu) {
      this.state.podMtu = mtu;
      this.metrics?.setPodMtu(mtu);
      return;
    }
    try {
      writeFileAtomic(file, formatPodMtu(mtu));
      this.state.podMtu = mtu;
      this.metrics?.setPodMtu(mtu);
      this.log.info(`pod MTU ${mtu} written to ${file}${current !== undefined ? ` (was ${current})` : ''}`);
    } catch (e) {
      this.log.warn(`cannot write the pod MTU to ${file}: ${errorText(e)}`);
    }
  }

  private record(): NodeRecord {
    const r: NodeRecord = { name: this.cfg.nodeName, addresses: this.underlay?.addresses ?? [], mode: this.cfg.mode };
    if (this.vtep) {
      r.vtepMac = this.vtep.mac;
      r.vni = this.vtep.vni;
      r.port = this.vtep.port;
    }
    return r;
  }

  /** Keeps the node record current and the liveness key on a live lease; re-registers when the lease is lost. */
  private async registerLoop(): Promise<void> {
    const backoff = new Backoff();
    const reg = this.registry as Registry;
    while (!this.stopped) {
      try {
        const alive: AliveRecord = { name: this.cfg.nodeName, started: this.state.started };
        const r = await reg.register(this.cfg.nodeName, this.record(), alive, this.cfg.leaseTTLSeconds);
        if (this.stopped) {
          r.lease.release();
          return;
        }
        this.state.registered = true;
        this.writeStatus();
        this.log.info(`registered ${reg.nodeKey(this.cfg.nodeName)}, alive on a lease (ttl ${this.cfg.leaseTTLSeconds}s)`);
        backoff.reset();
        const again = new Promise<string>((resolve) => (this.reregister = (why) => resolve(why)));
        const why = await Promise.race([r.lost.then((e) => `lease lost: ${errorText(e)}`), again, this.whenStopped().then(() => 'stop')]);
        this.reregister = undefined;
        r.lease.release();
        if (why === 'stop') return;
        this.state.registered = false;
        this.writeStatus();
        this.log.warn(`re-registering: ${why}`);
      } catch (e) {
        this.state.registered = false;
        this.writeStatus();
        this.log.warn(`registration failed: ${errorText(e)}`);
        await this.sleep(backoff.next());
      }
    }
  }

  /** List, reconcile, watch; on any failure back off and list again. */
  private async syncLoop(): Promise<void> {
    const backoff = new Backoff();
    const reg = this.registry as Registry;
    while (!this.stopped) {
      let broken: string;
      try {
        const listing = await reg.list();
        if (this.stopped) return;
        const { view, invalid } = viewFromListing(reg.prefix, listing.kvs);
        for (const k of invalid) this.log.warn(`ignoring malformed record ${k}`);
        this.view = view;
        this.state.etcd = { connected: true, revision: listing.revision };
        const brokenP = new Promise<string>((resolve) => {
          reg
            .watch(listing.revision, (evs) => this.onEvents(evs), resolve)
            .then(
              (h) => (this.watch = h),
              (e: unknown) => resolve(errorText(e)),
            );
        });
        await this.requestReconcile('list');
        if (this.stopped) return;
        this.state.synced = true;
        this.metrics?.setSynced(true);
        this.state.syncedAt = new Date().toISOString();
        this.writeStatus();
        this.log.info(`synced at revision ${listing.revision}: ${view.nodes.size} node(s), ${view.affinities.size} block(s)`);
        // etcd answers again: what DEL could not release meanwhile is released now
        this.startHousekeeping();
        const start = Date.now();
        broken = await Promise.race([brokenP, this.whenStopped().then(() => 'stop')]);
        if (broken === 'stop') return;
        if (Date.now() - start > 5000) backoff.reset();
      } catch (e) {
        broken = errorText(e);
      }
      this.watch = undefined;
      this.state.synced = false;
      this.metrics?.setSynced(false);
      this.state.etcd.connected = false;
      this.state.etcd.lastError = broken;
      this.writeStatus();
      this.log.warn(`etcd: ${broken}; keeping routes, retrying`);
      await this.sleep(backoff.next());
    }
  }

  private onEvents(evs: WatchEvent[]): void {
    const view = this.view;
    const reg = this.registry;
    if (!view || !reg) return;
    let changed = false;
    for (const e of evs) {
      const r = applyEvent(view, reg.prefix, e.type, e.key, e.value);
      if (r === 'invalid') this.log.warn(`ignoring malformed record ${e.key}`);
      if (r === 'changed' || r === 'invalid') changed = true;
      if (e.type === 'delete' && e.key === reg.nodeKey(this.cfg.nodeName)) this.reregister?.('node record deleted');
      if (e.type === 'delete' && e.key === reg.aliveKey(this.cfg.nodeName)) this.reregister?.('liveness key deleted');
    }
    if (changed) this.scheduleReconcile();
  }

  /** Starts a housekeeping pass unless one runs. Never rejects. */
  private startHousekeeping(): void {
    if (this.housekeeping || this.stopped || !this.registry) return;
    this.housekeeping = this.housekeep()
      .catch((e: unknown) => this.log.warn(`housekeeping: ${errorText(e)}`))
      .finally(() => {
        this.housekeeping = undefined;
      });
  }

  /**
   * Completes this node's pending releases (ipam/pending.ts: DELs that ran while etcd was
   * unreachable), then releases the nodes gone longer than nodeReleaseAfter.
   */
  private async housekeep(): Promise<void> {
    const reg = this.registry as Registry;
    const journal = new PendingJournal(pendingDirOf(this.cfg.ipamDataDir));
    if (await journal.any()) {
      const r = await completePending(
        journal,
        reg.ipamStore,
        { kind: 'etcd', prefix: reg.prefix, etcd: {} },
        {
          log: this.log,
          deadline: Date.now() + 2 * this.cfg.etcd.requestTimeoutMs,
        },
      );
      this.metrics?.pendingReleases(r.completed.length, r.failed.length + r.left);
    } else this.metrics?.pendingReleases(0, 0);
    if (this.cfg.nodeReleaseAfterMs !== undefined && this.view) await this.releaseGoneNodes(reg, this.view, this.cfg.nodeReleaseAfterMs);
  }

  /**
   * Nodes with a record or a block but no liveness key for `afterMs` (as this agent saw
   * it) are released (ipam/nodes.ts): their empty blocks and, once they hold nothing,
   * their records; the routes to them go with the blocks' affinities. One that still
   * holds attachments is reported (log and metric) and looked at again every ten resync
   * intervals.
   */
  private async releaseGoneNodes(reg: Registry, view: ClusterView, afterMs: number): Promise<void> {
    const now = performance.now();
    const alive = aliveNames(view, reg.prefix);
    const known = new Set([...nodesByName(view, reg.prefix).keys(), ...[...view.affinities.values()].map((a) => a.node)]);
    known.delete(this.cfg.nodeName);
    known.delete(SHARED_BLOCK_OWNER); // flat mode's blocks belong to no node
    for (const n of [...this.goneSince.keys()]) {
      if (known.has(n) && !alive.has(n)) continue;
      this.goneSince.delete(n);
      this.goneHolding.delete(n);
    }
    for (const n of known) if (!alive.has(n) && !this.goneSince.has(n)) this.goneSince.set(n, now);
    for (const [n, since] of this.goneSince) {
      if (this.stopped || now - since < afterMs || (this.goneHolding.get(n)?.nextCheck ?? 0) > now) continue;
      const gone = `node ${n} (no agent for ${Math.round((now - since) / 1000)} s)`;
      let r: Awaited<ReturnType<typeof releaseNode>>;
      try {
        r = await releaseNode(reg.ipamStore, n);
      } catch (e) {
        this.metrics?.nodeReleased('failed');
        this.log.warn(`${gone}: release failed, retrying later: ${errorText(e)}`);
        continue;
      }
      if (r.refused) {
        this.goneSince.delete(n); // its agent is back
        continue;
      }
      for (const b of r.blocksReleased) this.log.info(`${gone}: released its empty block ${b}`);
      if (r.recordRemoved) {
        this.log.info(`${gone}: released; its record ${reg.nodeKey(n)} removed`);
        this.metrics?.nodeReleased('released');
        this.goneSince.delete(n);
        this.goneHolding.delete(n);
        continue;
      }
      const before = this.goneHolding.get(n)?.attachments;
      this.goneHolding.set(n, { attachments: r.attachmentsHeld.length, nextCheck: now + 10 * this.cfg.resyncMs });
      if (before !== r.attachmentsHeld.length) {
        this.metrics?.nodeReleased('held');
        const kept = r.blocksKept.length ? `; blocks kept: ${r.blocksKept.join('; ')}` : '';
        this.log.warn(
          `${gone} still holds ${r.attachmentsHeld.length} attachment(s): ${r.attachmentsHeld.slice(0, 5).join('; ')}${r.attachmentsHeld.length > 5 ? '; ...' : ''}${kept} ` +
            `(its blocks stay routed; strand ipam node release --force ${n} releases them once the node is known to be gone)`,
        );
      }
    }
    this.metrics?.setGoneNodeAttachments(new Map([...this.goneHolding].filter(([, h]) => h.attachments > 0).map(([n, h]) => [n, h.attachments])));
  }

  private scheduleReconcile(): void {
    if (this.reconcilePending) return;
    this.reconcilePending = true;
    setImmediate(() => {
      this.reconcilePending = false;
      if (!this.stopped) void this.requestReconcile('watch');
    });
  }

  /**
   * Runs a reconcile pass for `reason`, or, when one is running, queues one more pass
   * after it. Resolves when the chain of passes is done. Never rejects.
   */
  requestReconcile(reason: string): Promise<void> {
    if (this.reconciling) {
      this.reconcileAgain ??= reason;
      return this.reconciling;
    }
    const chain = async (): Promise<void> => {
      let next: string | undefined = reason;
      while (next !== undefined && !this.stopped) {
        this.reconcileAgain = undefined;
        await this.reconcile(next);
        next = this.reconcileAgain;
      }
    };
    this.reconciling = chain().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  /** Desired vs actual, then apply. Never throws. Only through requestReconcile (passes must not overlap). */
  private async reconcile(reason: string): Promise<Desired | undefined> {
    const flat = this.flatReassertDue ? this.cfg.flat : undefined;
    this.flatReassertDue = false;
    const view = this.view;
    if ((!view || !this.underlay) && !flat) return undefined;
    const t0 = performance.now();
    this.reconcileWatch.begin();
    try {
      // flat: what strand-bridge ADD changes on the node's bridge goes back first (its
      // MTU is the uplink's: the pods' follows below)
      if (flat) await this.reassertFlat(flat);
      if (!view || !this.underlay) return undefined;
      // the uplink's MTU may have changed: the tunnel's and the pods' follow
      this.underlay.link.mtu = await this.dp.linkMtu(this.underlay.link.index);
      if (this.cfg.flat && this.state.flat) this.flatMtu = await this.uplinkMtu(this.cfg.flat);
      if (this.cfg.mode === 'vxlan') this.vtep = await this.dp.ensureVxlan(this.cfg.vxlan, this.underlay, this.cfg.nodeName);
      if (this.vtep && this.state.vtep) this.state.vtep.mtu = this.vtep.mtu;
      this.publishPodMtu();
      const links = await this.dp.links();
      this.linkSignature = JSON.stringify(links);
      const facts = {
        node: this.cfg.nodeName,
        mode: this.cfg.mode,
        prefix: this.registry?.prefix ?? this.cfg.etcd.prefix,
        addresses: this.underlay.addresses,
        links,
        networks: this.cfg.networks,
        ...(this.vtep ? { vxlanDevice: this.vtep.device } : {}),
      };
      const desired = desiredState(view, facts);
      const ops = plan(desired, await this.dp.actual());
      const report = await this.dp.apply(ops);
      const sysctlErrors = this.cfg.proxyArp ? await this.dp.ensureProxyArp(desired.podLinks) : [];
      const errors = [...report.errors, ...sysctlErrors];
      for (const o of ops) this.log.info(`${reason}: ${describeOp(o)}`);
      const errText = errors.join('\n');
      if (errText && errText !== this.lastErrors) for (const e of errors) this.log.warn(e);
      this.lastErrors = errText;
      const probText = desired.problems.join('\n');
      if (probText && probText !== this.lastProblems) for (const p of desired.problems) this.log.warn(p);
      this.lastProblems = probText;
      const ms = performance.now() - t0;
      Object.assign(this.state, {
        peers: desired.peers,
        routes: desired.routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}), ...(r.dev ? { dev: r.dev } : {}), node: r.node, why: r.why })),
        orphanBlocks: desired.orphanBlocks,
        podLinks: desired.podLinks,
        problems: [...this.flatProblems, ...this.flatSettingProblems, ...desired.problems],
        lastReconcile: { at: new Date().toISOString(), reason, ops: ops.length, errors, ms },
      });
      this.recordMetrics(reason, ms, desired, ops, report.failed, sysctlErrors.length, view);
      this.writeStatus();
      return desired;
    } catch (e) {
      this.log.error(`reconcile (${reason}) failed: ${errorText(e)}`);
      const ms = performance.now() - t0;
      this.state.lastReconcile = { at: new Date().toISOString(), reason, ops: 0, errors: [errorText(e)], ms };
      this.metrics?.reconcileFailed(reason, ms / 1000);
      this.writeStatus();
      return undefined;
    } finally {
      this.reconcileWatch.end();
    }
  }

  private recordMetrics(
    reason: string,
    ms: number,
    desired: Desired,
    ops: readonly Op[],
    failed: readonly Op[],
    sysctlErrors: number,
    view: ClusterView,
  ): void {
    const m = this.metrics;
    if (!m) return;
    const bad = new Set(failed);
    const failedRoutes = new Set(failed.filter((o) => o.op === 'route').map((o) => o.route.dst));
    const routes = { block: 0, borrowed: 0, 'local-borrowed': 0 };
    for (const r of desired.routes) if (!failedRoutes.has(r.dst)) routes[r.why]++;
    const failedFdb = failed.filter((o) => o.op === 'fdb' && o.action !== 'del').length;
    const failedNeigh = failed.filter((o) => o.op === 'neigh' && o.action !== 'del').length;
    const alive = desired.peers.filter((p) => p.alive).length;
    m.reconciled({
      reason,
      seconds: ms / 1000,
      routes,
      fdb: desired.fdb.length - failedFdb,
      neighs: desired.neighs.length - failedNeigh,
      changes: ops.filter((o) => !bad.has(o)).map((o) => ({ object: o.op, action: o.action })),
      errors: [...failed.map((o) => ({ object: o.op })), ...Array.from({ length: sysctlErrors }, () => ({ object: 'sysctl' }))],
      peers: { alive, away: desired.peers.length - alive },
      orphanBlocks: desired.orphanBlocks.length,
    });
    const usage = blockUsage(view, this.cfg.nodeName, this.cfg.networks);
    m.setNodeUsage(this.cfg.nodeName, usage.node);
    m.setPoolUsage(usage.pool);
  }

  private writeStatus(): void {
    this.state.updated = new Date().toISOString();
    try {
      writeState(this.cfg.stateFile, this.state);
    } catch (e) {
      this.log.warn(`cannot write ${this.cfg.stateFile}: ${errorText(e)}`);
    }
  }
}
