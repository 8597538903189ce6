// The long-running node agent: registers this node, mirrors etcd into a ClusterView
// (list, then watch; list again whenever the watch breaks), and reconciles the data
// plane after every change and every resync interval.
//
// Failure rules:
// - nothing is changed in the kernel before the first successful listing;
// - etcd unreachable: routes stay as they are (the last known view), the agent retries
//   with exponential backoff and is "not synced" until it has listed again;
// - stop() (SIGTERM) leaves routes, FDB and neighbour entries in place and does not
//   revoke the lease, so peers keep their routes to this node during a restart.
import type { Logger } from '../lib/cni/log.ts';
import type { Netns } from '../lib/netlink/rtnl.ts';
import type { AgentConfig, FlatConfig } from './config.ts';
import { Dataplane, type Underlay, type Vtep } from './dataplane.ts';
import { applyEvent, viewFromListing, type ClusterView, type NodeRecord } from './model.ts';
import { desiredState, describeOp, plan, type Desired } from './reconcile.ts';
import { Registry, type WatchEvent, type WatchHandle } from './registry.ts';
import { STATE_VERSION, writeState, type AgentState } from './status.ts';

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
  private reregister: (() => void) | undefined;
  private lastErrors = '';
  private lastProblems = '';
  /** Flat mode: node addresses that pods hold (reported with every reconcile). */
  private flatProblems: string[] = [];
  private loops: Array<Promise<void>> = [];
  readonly state: AgentState;

  constructor(cfg: AgentConfig, deps: AgentDeps) {
    this.cfg = cfg;
    this.log = deps.log;
    this.registry = deps.registry;
    this.dp = new Dataplane(deps.ns, { protocol: cfg.routeProtocol, mode: cfg.mode });
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
    this.loops = [this.registerLoop(), this.syncLoop()];
    if (this.cfg.flat) this.loops.push(this.reserveLoop(this.cfg.flat));
    this.resyncTimer = setInterval(() => {
      if (this.cfg.flat && this.state.flat) void this.reassertFlat(this.cfg.flat);
      if (this.view) this.reconcile('resync');
      else this.writeStatus();
    }, this.cfg.resyncMs);
    this.linkTimer = setInterval(() => this.checkLinks(), LINK_POLL_MS);
  }

  /** Reconciles when the node's addressed links changed since the last reconcile. */
  private checkLinks(): void {
    if (!this.view || this.reconcilePending) return;
    try {
      if (JSON.stringify(this.dp.links()) !== this.linkSignature) this.reconcile('links');
    } catch (e) {
      this.log.debug(`link check: ${errorText(e)}`);
    }
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
    await Promise.race([Promise.allSettled(this.loops), this.sleep(3000, true)]);
    await this.registry?.close();
    this.state.synced = false;
    this.writeStatus();
  }

  /** A promise that settles when stop() is called. */
  private whenStopped(): Promise<void> {
    return this.stopped ? Promise.resolve() : new Promise((r) => this.stopWaiters.push(r));
  }

  private sleep(ms: number, evenIfStopped = false): Promise<void> {
    if (this.stopped && !evenIfStopped) return Promise.resolve();
    return new Promise((resolve) => {
      const s = { timer: setTimeout(() => (this.sleeps.delete(s), resolve()), ms), resolve };
      this.sleeps.add(s);
    });
  }

  /** Node addresses and (vxlan) the VTEP device; retried until it works or stop(). */
  private async setupNode(): Promise<void> {
    const backoff = new Backoff();
    while (!this.stopped) {
      try {
        if (this.cfg.flat && !this.state.flat) await this.takeOverUplink(this.cfg.flat);
        this.underlay = this.dp.underlay(this.cfg.nodeIPs, this.cfg.nodeInterface);
        this.state.addresses = this.underlay.addresses;
        if (this.cfg.mode === 'vxlan') {
          this.vtep = this.dp.ensureVxlan(this.cfg.vxlan, this.underlay, this.cfg.nodeName);
          this.state.vtep = { device: this.vtep.device, mac: this.vtep.mac, mtu: this.vtep.mtu, vni: this.vtep.vni, port: this.vtep.port };
        }
        this.log.info(
          `node ${this.cfg.nodeName}: ${this.underlay.addresses.join(', ')} on ${this.underlay.link.name}, mode ${this.cfg.mode}${this.vtep ? ` (${this.vtep.device} ${this.vtep.mac} mtu ${this.vtep.mtu})` : ''}`,
        );
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
        const addrs = nodeAddresses(this.dp.ns, flat);
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

  /** Flat mode, every resync: the bridge keeps the uplink's MTU and accept_ra, the uplink its pod VLANs. */
  private async reassertFlat(flat: FlatConfig): Promise<void> {
    const { reassertBridge } = await import('./flat.ts');
    try {
      for (const f of reassertBridge(this.dp.ns, flat)) this.log.warn(`flat: ${f}`);
    } catch (e) {
      this.log.warn(`flat: ${errorText(e)}`);
    }
  }

  private record(): NodeRecord {
    const r: NodeRecord = { name: this.cfg.nodeName, addresses: this.underlay?.addresses ?? [], mode: this.cfg.mode, started: this.state.started };
    if (this.vtep) {
      r.vtepMac = this.vtep.mac;
      r.vni = this.vtep.vni;
      r.port = this.vtep.port;
    }
    return r;
  }

  /** Keeps the node record on a live lease; re-registers when the lease is lost. */
  private async registerLoop(): Promise<void> {
    const backoff = new Backoff();
    const reg = this.registry as Registry;
    while (!this.stopped) {
      try {
        const r = await reg.register(this.cfg.nodeName, this.record(), this.cfg.leaseTTLSeconds);
        if (this.stopped) {
          r.lease.release();
          return;
        }
        this.state.registered = true;
        this.writeStatus();
        this.log.info(`registered ${reg.nodeKey(this.cfg.nodeName)} (lease ttl ${this.cfg.leaseTTLSeconds}s)`);
        backoff.reset();
        const again = new Promise<string>((resolve) => (this.reregister = () => resolve('node record deleted')));
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
        this.reconcile('list');
        this.state.synced = true;
        this.state.syncedAt = new Date().toISOString();
        this.writeStatus();
        this.log.info(`synced at revision ${listing.revision}: ${view.nodes.size} node(s), ${view.affinities.size} block(s)`);
        const start = Date.now();
        broken = await Promise.race([brokenP, this.whenStopped().then(() => 'stop')]);
        if (broken === 'stop') return;
        if (Date.now() - start > 5000) backoff.reset();
      } catch (e) {
        broken = errorText(e);
      }
      this.watch = undefined;
      this.state.synced = false;
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
      if (e.type === 'delete' && e.key === reg.nodeKey(this.cfg.nodeName)) this.reregister?.();
    }
    if (changed) this.scheduleReconcile();
  }

  private scheduleReconcile(): void {
    if (this.reconcilePending) return;
    this.reconcilePending = true;
    setImmediate(() => {
      this.reconcilePending = false;
      if (!this.stopped) this.reconcile('watch');
    });
  }

  /** Desired vs actual, then apply; all synchronous netlink. Never throws. */
  reconcile(reason: string): Desired | undefined {
    const view = this.view;
    if (!view || !this.underlay) return undefined;
    const t0 = performance.now();
    try {
      if (this.cfg.mode === 'vxlan') this.vtep = this.dp.ensureVxlan(this.cfg.vxlan, this.underlay, this.cfg.nodeName);
      const links = this.dp.links();
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
      const ops = plan(desired, this.dp.actual());
      const report = this.dp.apply(ops);
      const errors = [...report.errors, ...(this.cfg.proxyArp ? this.dp.ensureProxyArp(desired.podLinks) : [])];
      for (const o of ops) this.log.info(`${reason}: ${describeOp(o)}`);
      const errText = errors.join('\n');
      if (errText && errText !== this.lastErrors) for (const e of errors) this.log.warn(e);
      this.lastErrors = errText;
      const probText = desired.problems.join('\n');
      if (probText && probText !== this.lastProblems) for (const p of desired.problems) this.log.warn(p);
      this.lastProblems = probText;
      Object.assign(this.state, {
        peers: desired.peers,
        routes: desired.routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}), ...(r.dev ? { dev: r.dev } : {}), node: r.node, why: r.why })),
        orphanBlocks: desired.orphanBlocks,
        podLinks: desired.podLinks,
        problems: [...this.flatProblems, ...desired.problems],
        lastReconcile: { at: new Date().toISOString(), reason, ops: ops.length, errors, ms: performance.now() - t0 },
      });
      this.writeStatus();
      return desired;
    } catch (e) {
      this.log.error(`reconcile (${reason}) failed: ${errorText(e)}`);
      this.state.lastReconcile = { at: new Date().toISOString(), reason, ops: 0, errors: [errorText(e)], ms: performance.now() - t0 };
      this.writeStatus();
      return undefined;
    }
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
