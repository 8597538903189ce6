// strand-ipam: the IPAM plugin. A host-local compatible config (only `type` changed)
// works with the local store; `ipam.etcd` switches to cluster-wide allocation on etcd.
//
// Error codes: config 7 (naming the field), store unreachable 11 on ADD/DEL/CHECK/GC and
// 50 on STATUS, range exhausted 102 (naming the range), requested IP taken 103, CHECK
// mismatch 105.
import { hostname } from 'node:os';
import { validateIpamConf } from '../gen/validators.js';
import { clip, CniError, Code } from '../lib/cni/errors.ts';
import { pluginMain, validateWith, type CmdArgs, type PluginIO } from '../lib/cni/skel.ts';
import { gcAttachments, type NetConf, type Result } from '../lib/cni/types.ts';
import { formatIP, tryParseCidr, tryParseIP } from '../lib/addr/cidr.ts';
import { Allocator, IpamCheckError, IpamConflictError, IpamContentionError, IpamExhaustedError } from './allocator.ts';
import { parseIpamConfig, type IpamConfig } from './config.ts';
import { DataDirError, LocalStore } from './store/local.ts';
import { isStoreUnavailable, type Store } from './store/types.ts';

export const PLUGIN_NAME = 'strand-ipam';
const ABOUT = `${PLUGIN_NAME} v0.1.0 (host-local compatible; local or etcd store)`;

/** Node identity: config nodeName, else K8S_NODE_NAME / NODENAME, else the hostname. */
export function nodeName(cfg: IpamConfig, env: Record<string, string | undefined>): string {
  return cfg.nodeName || env['K8S_NODE_NAME'] || env['NODENAME'] || hostname();
}

/**
 * The store a config asks for; an etcd transport is loaded only here, only when
 * configured: etcd's JSON gateway (default) or the etcd3 client (`transport: "grpc"`).
 */
export async function openStore(cfg: IpamConfig): Promise<Store> {
  if (cfg.etcd) {
    const { openEtcdStore, openEtcdHttpStore } = await import('./store/etcd.ts');
    return cfg.etcd.transport === 'grpc' ? openEtcdStore(cfg.etcd) : openEtcdHttpStore(cfg.etcd);
  }
  return new LocalStore(cfg.dataDir);
}

/**
 * Parses the IPAM config. The local store defaults to one block per subnet (so it
 * behaves like host-local: one round-robin cursor per range); etcd to /26 and /122.
 */
export function loadConfig(conf: NetConf, cniArgs: string, withRequested: boolean): IpamConfig {
  const cfg = parseIpamConfig(conf, { cniArgs, ignoreRequested: !withRequested });
  const ipam = conf.ipam as Record<string, unknown>;
  if (!cfg.etcd) {
    if (ipam['blockSize'] === undefined) cfg.blockSize[4] = 0;
    if (ipam['blockSizeV6'] === undefined) cfg.blockSize[6] = 0;
  }
  return cfg;
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
  if (isStoreUnavailable(e)) return new CniError(unavailableCode, `IPAM store unavailable (${e.store})`, e.message, { cause: e });
  if (e instanceof IpamExhaustedError) return new CniError(Code.IpamExhausted, e.message, '', { cause: e });
  if (e instanceof IpamConflictError) return new CniError(Code.IpamConflict, e.message, '', { cause: e });
  if (e instanceof IpamContentionError) return new CniError(Code.TryAgainLater, 'IPAM store too busy', e.message, { cause: e });
  if (e instanceof IpamCheckError) return new CniError(Code.CheckFailed, e.message, '', { cause: e });
  return e;
}

/** Opens the store, builds this node's allocator, runs `fn`, closes, maps errors to CNI codes. */
async function withAllocator<T>(
  a: CmdArgs,
  conf: NetConf,
  opts: { requested: boolean; unavailableCode: number },
  fn: (al: Allocator, cfg: IpamConfig) => Promise<T>,
): Promise<T> {
  const cfg = loadConfig(conf, a.args, opts.requested);
  let store: Store | undefined;
  try {
    store = await openStore(cfg);
    const node = nodeName(cfg, a.env);
    a.log?.debug(
      `store ${store.kind}${cfg.etcd ? ` (${cfg.etcd.transport}, prefix ${cfg.etcd.prefix})` : ` (${cfg.dataDir})`}, network ${cfg.network}, node ${node}`,
    );
    return await fn(new Allocator({ store, config: cfg, node }), cfg);
  } catch (e) {
    throw mapError(e, opts.unavailableCode);
  } finally {
    await store?.close().catch(() => undefined);
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
    const got = await al.allocate(a.containerId, a.ifName);
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
    () =>
      withAllocator(a, conf, { requested: false, unavailableCode: Code.TryAgainLater }, async (al) => {
        const released = await al.release(a.containerId, a.ifName);
        a.log?.debug(released.length ? `released ${released.join(', ')}` : 'nothing allocated to release');
        return released;
      }),
    (released) => released.length,
  );
}

export async function cmdCheck(a: CmdArgs, conf: NetConf): Promise<void> {
  const expected = conf.prevResult?.ips
    ?.map((i) => tryParseCidr(i.address) ?? tryParseIP(i.address))
    .filter((x) => x !== undefined)
    .map((x) => formatIP('value' in x ? x : { family: x.family, value: x.ip }));
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.TryAgainLater }, (al) => al.check(a.containerId, a.ifName, expected));
}

export async function cmdStatus(a: CmdArgs, conf: NetConf): Promise<void> {
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.PluginNotAvailable }, (al, cfg) => al.store.ping(cfg.network));
}

export async function cmdGc(a: CmdArgs, conf: NetConf): Promise<void> {
  const valid = gcAttachments(conf);
  await withAllocator(a, conf, { requested: false, unavailableCode: Code.TryAgainLater }, async (al) => {
    const released = await al.gc(valid);
    if (released.length) a.log?.info(`gc released ${released.join(', ')}`);
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
