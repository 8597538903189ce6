// strand-ipam: the IPAM plugin. A host-local compatible config (only `type` changed)
// works with the local store; `ipam.etcd` switches to cluster-wide allocation on etcd.
//
// Error codes: config 7 (naming the field; also a requested address that is reserved),
// store unreachable or damaged 11 on ADD/DEL/CHECK/GC and 50 on STATUS (naming the file or
// key and what is wrong), range exhausted 102 (naming the range), requested IP taken 103,
// CHECK mismatch 105.
//
// Every verb but STATUS first adopts the reference host-local's reservations of the same
// network (<dataDir>/<network>/<ip> files) into the store (ipam/host-local.ts).
//
// Deadlines: every store request of one call shares the call's deadline, counted from
// the start of the runtime's call (CmdArgs.started: a delegating strand plugin passes its
// own start on), and the first request that cannot reach etcd ends the call (the store
// fails every later one at once), so a hung etcd costs a call one request timeout, not
// one per step or per undo step. The deadline bounds a slow etcd: ADD, CHECK and STATUS
// end by 2 x requestTimeout, DEL gives the store DEL_STORE_BUDGET_MS at most, GC
// GC_BUDGET_MS. Connections refused by every endpoint fail at once (etcd-kv.ts).
//
// DEL never strands a pod: when the store cannot be used (unreachable, timed out, its TLS
// files unreadable, the local store's directory unreadable or locked past the budget),
// DEL records the release in this node's journal (ipam/pending.ts) and succeeds; the
// address stays allocated until the release is completed. Every call that reaches the
// store completes pending releases of that store first for its own attachment (ADD never
// allocates for an attachment whose old release is pending), then a few others. A
// damaged store is not "unavailable": it stays code 11 naming the record, for repair.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { validateIpamConf } from '../gen/validators.js';
import { parseCniArgs } from '../lib/cni/args.ts';
import { clip, CniError, Code } from '../lib/cni/errors.ts';
import { pluginMain, validateWith, type CmdArgs, type PluginIO } from '../lib/cni/skel.ts';
import type { Verb } from '../lib/cni/types.ts';
import { gcAttachments, type NetConf, type Result } from '../lib/cni/types.ts';
import { formatIP, tryParseCidr, tryParseIP } from '../lib/addr/cidr.ts';
import { Netns } from '../lib/netlink/netns.ts';
import { listAddrs } from '../lib/netlink/rtnl.ts';
import { Allocator, IpamCheckError, IpamConflictError, IpamContentionError, IpamExhaustedError, IpamReservedError, type AttachmentMeta } from './allocator.ts';
import { parseIpamConfig, type IpamConfig } from './config.ts';
import { hostLocalFilesOf, readHostLocal, removeHostLocal, withHostLocalLock } from './host-local.ts';
import { completePending, PendingJournal, pendingDirOf, reasonOf, releaseConfig, storeRefOf, type StoreRef } from './pending.ts';
import { isSecretFileError } from './store/etcd-config.ts';
import { DataDirError, LocalStore } from './store/local.ts';
import type { EtcdStore } from './store/etcd.ts';
import { etcdStorePool } from './store/pool.ts';
import { isStoreDamaged, isStoreUnavailable, StoreUnavailableError, type Attachment, type PodRef, type Store } from './store/types.ts';

export const PLUGIN_NAME = 'strand-ipam';
const ABOUT = `${PLUGIN_NAME} v0.1.0 (host-local compatible; local or etcd store)`;

/** Node identity: config nodeName, else K8S_NODE_NAME / NODENAME, else the hostname. */
export function nodeName(cfg: IpamConfig, env: Record<string, string | undefined>): string {
  return cfg.nodeName || env['K8S_NODE_NAME'] || env['NODENAME'] || hostname();
}

/**
 * The store a config asks for; an etcd transport is loaded only here, only when
 * configured: etcd's JSON gateway (default) or the etcd3 client (`transport: "grpc"`).
 * `deadline` (Date.now() ms): the call's deadline, shared by every request of the store.
 */
export async function openStore(cfg: IpamConfig, opts: { deadline?: number } = {}): Promise<Store> {
  if (cfg.etcd) {
    const { openEtcdStore, openEtcdHttpStore } = await import('./store/etcd.ts');
    return cfg.etcd.transport === 'grpc' ? openEtcdStore(cfg.etcd, opts) : openEtcdHttpStore(cfg.etcd, opts);
  }
  return new LocalStore(cfg.dataDir, opts.deadline === undefined ? {} : { deadline: opts.deadline });
}

/** What DEL gives the store at most, from the start of the call: then it records the release (exit within 3 s). */
const DEL_STORE_BUDGET_MS = 1500;
/** GC's whole run (it stops at the first request that fails). */
const GC_BUDGET_MS = 60_000;

/**
 * The deadline of a call's store requests: ADD, CHECK, STATUS by twice the etcd request
 * timeout (one timed-out request ends the call anyway: this bounds a slow etcd, and
 * leaves a loaded node the time to load the etcd client; local store: its lock wait as
 * before), DEL by DEL_STORE_BUDGET_MS (or the request timeout when shorter), GC by
 * GC_BUDGET_MS. Undefined: no call deadline.
 */
function callDeadline(verb: Verb | undefined, cfg: IpamConfig, started: number): number | undefined {
  const rt = cfg.etcd?.requestTimeoutMs;
  if (verb === 'DEL') return started + Math.min(rt ?? DEL_STORE_BUDGET_MS, DEL_STORE_BUDGET_MS);
  if (verb === 'GC') return started + Math.max(rt ?? 0, GC_BUDGET_MS);
  return rt === undefined ? undefined : started + 2 * rt;
}

/** This node's journal of pending releases (beside the IPAM's node-local state). */
export function journalOf(cfg: IpamConfig): PendingJournal {
  return new PendingJournal(pendingDirOf(cfg.dataDir));
}

/** The store a config's pending releases belong to. */
export function storeRefOfConf(cfg: IpamConfig, conf: NetConf): StoreRef {
  return storeRefOf(cfg, (conf.ipam as Record<string, unknown> | undefined)?.['etcd']);
}

/**
 * Parses the IPAM config. The local store defaults to one block per subnet (so it
 * behaves like host-local: one round-robin cursor per range); etcd to /26 and /122.
 * `readFiles` false leaves the TLS files and resolvConf unread.
 */
export function loadConfig(conf: NetConf, cniArgs: string, withRequested: boolean, readFiles = true): IpamConfig {
  return parseIpamConfig(conf, { cniArgs, ignoreRequested: !withRequested, readFiles });
}

/** Why a data directory is unusable, by the errno of the failed file operation. */
const DATA_DIR_PROBLEMS: Readonly<Record<string, string>> = {
  ENOTDIR: 'is not a directory (a regular file is in the way)',
  EEXIST: 'is not a directory (a regular file is in the way)',
  ENAMETOOLONG: 'is too long a path (ENAMETOOLONG)',
};

function mapError(e: unknown, unavailableCode: number): unknown {
  if (e instanceof CniError) return e;
  // Code 7: the configured path can never hold the store, so the config is what is wrong;
  // 11 (try again later) would have the runtime retry something that cannot succeed.
  if (e instanceof DataDirError) {
    const why = DATA_DIR_PROBLEMS[e.code] ?? `cannot be used (${e.code})`;
    return new CniError(Code.InvalidNetworkConfig, 'invalid config field ipam.dataDir', `ipam.dataDir: ${JSON.stringify(clip(e.dataDir))} ${why}`, {
      cause: e,
    });
  }
  if (isStoreDamaged(e)) return new CniError(unavailableCode, `IPAM store damaged (${e.store})`, e.message, { cause: e });
  if (isStoreUnavailable(e)) return new CniError(unavailableCode, `IPAM store unavailable (${e.store})`, e.message, { cause: e });
  if (e instanceof IpamReservedError) return new CniError(Code.InvalidNetworkConfig, e.message, '', { cause: e });
  if (e instanceof IpamExhaustedError) return new CniError(Code.IpamExhausted, e.message, '', { cause: e });
  if (e instanceof IpamConflictError) return new CniError(Code.IpamConflict, e.message, '', { cause: e });
  if (e instanceof IpamContentionError) return new CniError(Code.TryAgainLater, 'IPAM store too busy', e.message, { cause: e });
  if (e instanceof IpamCheckError) return new CniError(Code.CheckFailed, e.message, '', { cause: e });
  return e;
}

/**
 * Moves the reference host-local's reservations of this network into the store (each an
 * attachment keyed by its container ID and ifname, on this node), under host-local's own
 * lock. `del`: the container being deleted, whose files go even when they could not be
 * adopted. A readdir when there is nothing to move.
 */
async function adoptHostLocal(al: Allocator, cfg: IpamConfig, a: CmdArgs, del?: { containerId: string; ifname: string }): Promise<void> {
  const dir = join(cfg.dataDir, cfg.network);
  if (!readHostLocal(dir)) return;
  await withHostLocalLock(dir, async () => {
    const hl = readHostLocal(dir);
    if (!hl) return;
    const res = await al.adopt(hl.entries, hl.cursors);
    const moved = [...res.imported, ...res.already].map((x) => x.split(' ')[0] as string);
    const gone = del ? hostLocalFilesOf(hl, del.containerId, del.ifname) : [];
    removeHostLocal(hl, [...moved, ...gone]);
    if (res.imported.length) a.log?.info(`adopted host-local reservations: ${res.imported.join(', ')}`);
    for (const x of [...res.conflicts, ...res.outside.map((o) => `${o}: outside every configured range`), ...hl.skipped]) {
      a.log?.warn(`host-local reservation not adopted: ${x}`);
    }
  });
}

/** Pod identity and network namespace of a request, recorded on its attachment. */
function attachmentMeta(a: CmdArgs): AttachmentMeta {
  const meta: AttachmentMeta = {};
  if (a.netns) meta.netns = a.netns;
  let args: Map<string, string>;
  try {
    args = parseCniArgs(a.args);
  } catch {
    return meta; // a malformed CNI_ARGS was refused already (loadConfig)
  }
  const pod: PodRef = {};
  const ns = args.get('K8S_POD_NAMESPACE');
  const name = args.get('K8S_POD_NAME');
  const uid = args.get('K8S_POD_UID');
  if (ns) pod.namespace = ns;
  if (name) pod.name = name;
  if (uid) pod.uid = uid;
  if (Object.keys(pod).length) meta.pod = pod;
  return meta;
}

/**
 * Whether an attachment's recorded network namespace still exists and holds one of its
 * addresses: its pod still uses it (GC keeps it). A namespace path can be reused by a
 * later pod (the address then differs); one that cannot be inspected counts as holding it.
 */
export async function netnsHoldsAddress(att: Attachment): Promise<boolean> {
  if (!att.netns || !Netns.exists(att.netns)) return false;
  let ns: Netns | undefined;
  try {
    ns = Netns.open(att.netns);
    const mine = new Set(att.ips.map((e) => e.ip));
    const addrs = await listAddrs(ns);
    return addrs.some((a) => {
      const ip = tryParseIP(a.ip);
      return ip !== undefined && mine.has(formatIP(ip));
    });
  } catch {
    return true;
  } finally {
    ns?.close();
  }
}

interface CallOptions {
  requested: boolean;
  unavailableCode: number;
  adopt?: boolean;
  del?: boolean;
  /** Complete pending releases of this store after `fn`: at most this many (default 8; 0: none). */
  completeAfter?: number;
}

/**
 * Opens the store (with the call's deadline), builds this node's allocator, adopts
 * host-local's reservations, settles a pending release of this very attachment, runs
 * `fn`, completes a few other pending releases, closes. Errors are thrown as they are.
 */
async function runAllocator<T>(a: CmdArgs, conf: NetConf, cfg: IpamConfig, opts: CallOptions, fn: (al: Allocator, cfg: IpamConfig) => Promise<T>): Promise<T> {
  const deadline = callDeadline(a.verb, cfg, a.started ?? Date.now());
  const { store, pool, done } = await callStore(cfg, deadline);
  try {
    const node = nodeName(cfg, a.env);
    a.log?.debug(
      `store ${store.kind}${cfg.etcd ? ` (${cfg.etcd.transport}, prefix ${cfg.etcd.prefix})` : ` (${cfg.dataDir})`}${pool ? ' (warm)' : ''}, network ${cfg.network}, node ${node}`,
    );
    const al = new Allocator({ store, config: cfg, node });
    if (opts.adopt ?? true) await adoptHostLocal(al, cfg, a, opts.del ? { containerId: a.containerId, ifname: a.ifName } : undefined);
    const journal = journalOf(cfg);
    const ref = storeRefOfConf(cfg, conf);
    // An old release of this attachment still pending: complete it first, so that a
    // later completer can never release what this call allocates.
    if (a.containerId && a.ifName && (await journal.get(cfg.network, a.containerId, a.ifName))) {
      await settleOwn(journal, store, cfg, a, deadline);
    }
    const out = await fn(al, cfg);
    const limit = opts.completeAfter ?? 8;
    if (limit > 0) {
      try {
        await completePending(journal, store, ref, { limit, config: cfg, ...(a.log ? { log: a.log } : {}), ...(deadline === undefined ? {} : { deadline }) });
      } catch (e) {
        a.log?.warn('completing pending releases failed', e);
      }
    }
    return out;
  } finally {
    await done();
  }
}

/**
 * The store of one call, with the call's deadline. In a long-lived process (strand
 * daemon) an etcd store comes from the warm pool: the call gets a view of the shared
 * client with its own deadline (EtcdStore.forCall), and `done` hands the client back
 * instead of closing it. A plugin process opens a store and closes it.
 */
async function callStore(cfg: IpamConfig, deadline: number | undefined): Promise<{ store: Store; pool: boolean; done: () => Promise<void> }> {
  const pool = cfg.etcd ? etcdStorePool() : undefined;
  if (pool && cfg.etcd) {
    const lease = await pool.lease(cfg.etcd, () => openStore(cfg));
    const shared = lease.store as EtcdStore;
    return { store: shared.forCall(deadline), pool: true, done: async () => lease.release() };
  }
  const store = await openStore(cfg, deadline === undefined ? {} : { deadline });
  return { store, pool: false, done: () => store.close().catch(() => undefined) };
}

/** Completes the pending release of the call's own attachment under the journal's lock (it must be done before anything else). */
async function settleOwn(journal: PendingJournal, store: Store, cfg: IpamConfig, a: CmdArgs, deadline: number | undefined): Promise<void> {
  await journal.locked(deadline ?? Date.now() + 60_000, async () => {
    const e = await journal.get(cfg.network, a.containerId, a.ifName);
    if (!e) return;
    const al = new Allocator({ store, config: releaseConfig(cfg.network, cfg), node: e.node });
    const released = await al.release(e.containerId, e.ifname, { node: e.node });
    await journal.remove(e.network, e.containerId, e.ifname);
    a.log?.info(
      `pending release of ${e.containerId}/${e.ifname} (since ${e.since}) completed first: ${released.length ? released.join(', ') : 'nothing held any more'}`,
    );
  });
}

/** Loads the config, runs runAllocator, maps errors to CNI codes. */
async function withAllocator<T>(a: CmdArgs, conf: NetConf, opts: CallOptions, fn: (al: Allocator, cfg: IpamConfig) => Promise<T>): Promise<T> {
  const cfg = loadConfig(conf, a.args, opts.requested);
  try {
    return await runAllocator(a, conf, cfg, opts, fn);
  } catch (e) {
    throw mapError(e, opts.unavailableCode);
  }
}

/** Tells the observer (the daemon's metrics) how an allocation or release went. */
async function observed<T>(a: CmdArgs, conf: NetConf, op: 'allocate' | 'release', fn: () => Promise<T>, count: (r: T) => number): Promise<T> {
  if (!a.observer?.ipam) return fn();
  let r: T;
  try {
    r = await fn();
  } catch (e) {
    a.observer.ipam(conf.name, op, false, 0);
    throw e;
  }
  a.observer.ipam(conf.name, op, true, count(r));
  return r;
}

export async function cmdAdd(a: CmdArgs, conf: NetConf): Promise<Result> {
  return observed(
    a,
    conf,
    'allocate',
    () => add(a, conf),
    (r) => r.ips?.length ?? 0,
  );
}

async function add(a: CmdArgs, conf: NetConf): Promise<Result> {
  return withAllocator(a, conf, { requested: true, unavailableCode: Code.TryAgainLater }, async (al, cfg) => {
    const got = await al.allocate(a.containerId, a.ifName, attachmentMeta(a));
    a.log?.debug(`allocated ${got.map((g) => formatIP(g.ip)).join(', ')}`);
    const result: Result = {
      cniVersion: '1.1.0',
      ips: got.map((g) => ({
        address: `${formatIP(g.ip)}/${g.range.subnet.prefix}`,
        gateway: formatIP({ family: g.range.family, value: g.range.gateway }),
      })),
      dns: cfg.dns ?? {},
    };
    if (cfg.routes.length) result.routes = cfg.routes;
    return result;
  });
}

export async function cmdDel(a: CmdArgs, conf: NetConf): Promise<void> {
  await observed(
    a,
    conf,
    'release',
    () => del(a, conf),
    (released) => released.length,
  );
}

/**
 * DEL: releases the attachment; when the store cannot be used, records the release in
 * this node's journal and succeeds (the address stays allocated until it is completed).
 */
async function del(a: CmdArgs, conf: NetConf): Promise<string[]> {
  let cfg: IpamConfig;
  let unreadableSecret: CniError | undefined;
  try {
    cfg = loadConfig(conf, a.args, false);
  } catch (e) {
    // etcd's TLS files are gone (an uninstall, a rotation gone wrong): the store cannot be
    // reached, which is no reason to strand the pod
    if (!isSecretFileError(e)) throw e;
    unreadableSecret = e;
    cfg = loadConfig(conf, a.args, false, false);
  }
  try {
    if (unreadableSecret) throw new StoreUnavailableError('etcd', unreadableSecret.msg, { cause: unreadableSecret });
    return await runAllocator(a, conf, cfg, { requested: false, unavailableCode: Code.TryAgainLater, del: true }, async (al) => {
      const released = await al.release(a.containerId, a.ifName);
      a.log?.debug(released.length ? `released ${released.join(', ')}` : 'nothing allocated to release');
      return released;
    });
  } catch (e) {
    if (!isStoreUnavailable(e) || isStoreDamaged(e)) throw mapError(e, Code.TryAgainLater);
    const journal = journalOf(cfg);
    let file: string;
    try {
      file = await journal.record({
        version: 1,
        network: cfg.network,
        containerId: a.containerId,
        ifname: a.ifName,
        node: nodeName(cfg, a.env),
        since: new Date().toISOString(),
        reason: reasonOf(e),
        store: storeRefOfConf(cfg, conf),
      });
    } catch (je) {
      a.log?.error(`cannot record the pending release in ${journal.dir}`, je);
      throw mapError(e, Code.TryAgainLater);
    }
    a.log?.warn(
      `IPAM store unavailable (${e.store}): ${e.message}; the release of ${a.containerId}/${a.ifName} is recorded in ${file} and completes once the store answers (the address stays allocated until then)`,
    );
    return [];
  }
}

export async function cmdCheck(a: CmdArgs, conf: NetConf): Promise<void> {
  const expected = conf.prevResult?.ips
    ?.map((i) => tryParseCidr(i.address) ?? tryParseIP(i.address))
    .filter((x) => x !== undefined)
    .map((x) => formatIP('value' in x ? x : { family: x.family, value: x.ip }));
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.TryAgainLater }, (al) => al.check(a.containerId, a.ifName, expected));
}

export async function cmdStatus(a: CmdArgs, conf: NetConf): Promise<void> {
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.PluginNotAvailable, adopt: false }, (al, cfg) => al.store.ping(cfg.network));
}

/**
 * GC per spec: every attachment of this node not in `cni.dev/valid-attachments` (null,
 * [] and an absent key all mean none is valid, as libcni and the Go skel read them) is
 * released, except one created during the GC or within ipam.gcGracePeriod before it, and
 * one whose network namespace still exists and holds one of its addresses (unless
 * ipam.gcKeepLiveNetns is false).
 */
export async function cmdGc(a: CmdArgs, conf: NetConf): Promise<void> {
  const startedAt = Date.now();
  const valid = gcAttachments(conf);
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.TryAgainLater, completeAfter: 0 }, async (al, cfg) => {
    // GC and the journal agree: this network's pending releases are completed first (a
    // released attachment is gone for GC; an entry whose attachment GC releases later
    // finds nothing to release), never released twice, never recreated.
    const pending = await completePending(journalOf(cfg), al.store, storeRefOfConf(cfg, conf), {
      network: cfg.network,
      config: cfg,
      ...(a.log ? { log: a.log } : {}),
    });
    if (pending.failed.length) throw new StoreUnavailableError(al.store.kind, `pending releases could not be completed: ${pending.failed.join('; ')}`);
    const res = await al.gc(valid, { startedAt, ...(cfg.gcKeepLiveNetns ? { isLive: netnsHoldsAddress } : {}) });
    if (res.released.length) a.log?.info(`gc released ${res.released.join(', ')}`);
    for (const k of res.kept) a.log?.info(`gc kept ${k.containerId}/${k.ifname} (${k.ips.join(',')}): ${k.why}`);
  });
}

export function parseConfig(raw: NetConf): NetConf {
  if (!raw.ipam || typeof raw.ipam !== 'object') throw new CniError(Code.InvalidNetworkConfig, 'missing config field ipam', 'ipam: required');
  validateWith(validateIpamConf, raw.ipam, ['ipam']);
  return raw;
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain({ add: cmdAdd, del: cmdDel, check: cmdCheck, status: cmdStatus, gc: cmdGc }, { name: PLUGIN_NAME, about: ABOUT, parseConfig }, io);
}
