// `strand agent` configuration: a JSON file (--config), the etcd/network settings of a
// CNI conflist's strand-ipam section (--cni-conf), then command-line flags, later ones
// overriding earlier ones. Pure except for reading the named files. Every error names
// the field (or flag) at fault.
//
// {
//   "nodeName": "node-a",                 default: K8S_NODE_NAME, NODENAME, hostname
//   "nodeIP": "192.168.1.10",             or a list (one per family); default: the
//   "nodeInterface": "eth0",              addresses of nodeInterface, else of the
//                                         interface of the default route
//   "networks": ["strand"],               IPAM network names (default: every network)
//   "mode": "vxlan",                      "host-gw" (default), "vxlan" or "flat"
//   "flat": { "uplink": "eth0", "bridge": "br0", "record": "/run/strand/flat.json",
//             "vlans": [100] },           flat mode: the uplink the bridge takes over,
//                                         and the pod VLANs tagged on it
//   "vxlan": { "vni": 4096, "port": 4789, "device": "strand.4096", "mtu": 1450 },
//   "etcd": { "endpoints": [...], "prefix": "/strand/ipam", "tls": {...}, ... },
//                                         the same shape as strand-ipam's `etcd`
//   "leaseTTL": "20s",                    node record lease
//   "resyncInterval": "30s",              periodic full data-plane check
//   "stateFile": "/run/strand/agent.json",
//   "podMtuFile": "/run/strand/pod-mtu",  the pods' MTU for strand-bridge's `mtuFile`
//   "routeProtocol": 115,                 rtnetlink protocol number marking our routes
//   "proxyArp": true,                     proxy ARP on the pod bridges (see docs/agent.md)
//   "metricsAddress": "127.0.0.1:9476",   the /metrics, /healthz, /readyz listener
//   "reconcileStuckAfter": "60s",         a reconcile pass this long fails /healthz
//   "logLevel": "info",
//   "logFormat": "text",                  or "json": one JSON object per line on stderr
//   "ipamDataDir": "/var/lib/cni/networks",  strand-ipam's node-local directory (default:
//                                         the --cni-conf's ipam.dataDir): the agent
//                                         completes the releases pending there
//   "nodeReleaseAfter": "1h"              release the empty blocks of a node whose agent is
//                                         gone this long ("never": do not)
// }
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isCniError } from '../lib/cni/errors.ts';
import { isLogLevel, type LogFormat, type LogLevel } from '../lib/cni/log.ts';
import { canonicalIP, tryParseIP } from '../lib/addr/cidr.ts';
import { ifNameProblem } from '../lib/addr/ifname.ts';
import { parseEtcdConfig, type EtcdConfig } from '../ipam/store/etcd-config.ts';
import { DEFAULT_POD_MTU_FILE } from '../lib/plugin/mtu.ts';
import { DEFAULT_DATA_DIR } from '../ipam/config.ts';
import { DEFAULT_OBSERVE_ADDRESS, ListenAddressError, parseListenAddress, type ListenAddress } from '../lib/observe/server.ts';
import { isMode, type Mode } from './model.ts';
import { isObject } from '../lib/cni/json.ts';

/** rtnetlink protocol number of the agent's routes (`ip route show proto 115`). */
export const STRAND_ROUTE_PROTOCOL = 115;
const DEFAULT_VNI = 4096;
const DEFAULT_VXLAN_PORT = 4789;
export const DEFAULT_STATE_FILE = '/run/strand/agent.json';
const DEFAULT_LEASE_TTL_S = 20;
const DEFAULT_RESYNC_MS = 30_000;
const DEFAULT_RECONCILE_STUCK_MS = 60_000;
/** How long a node's agent must be gone before the agents release its empty blocks. */
const DEFAULT_NODE_RELEASE_AFTER_MS = 3_600_000;
const DEFAULT_FLAT_BRIDGE = 'br0';
/** Flat mode's takeover record: in /run, so that a reboot resets it together with the kernel's state. */
export const DEFAULT_TAKEOVER_RECORD = '/run/strand/flat.json';

export interface FlatConfig {
  /** The node's uplink (physical interface) that joins the bridge. */
  uplink: string;
  /** The bridge that takes over the uplink's configuration (strand-bridge's `bridge`). */
  bridge: string;
  /** Where the state before the takeover is kept for restore. */
  record: string;
  /** VLANs of pods (strand-bridge `vlan`): bridge VLAN filtering on, these VLANs tagged on the uplink port. */
  vlans: number[];
}

export interface VxlanConfig {
  vni: number;
  port: number;
  device: string;
  /** Fixed MTU; default: the underlay MTU minus the encapsulation overhead. */
  mtu?: number;
}

export interface AgentConfig {
  nodeName: string;
  nodeIPs: string[];
  nodeInterface?: string;
  networks: string[];
  mode: Mode;
  vxlan: VxlanConfig;
  etcd: EtcdConfig;
  leaseTTLSeconds: number;
  resyncMs: number;
  stateFile: string;
  /** Where the pod MTU (the tunnel's or the uplink's) is written for the plugins. */
  podMtuFile: string;
  routeProtocol: number;
  proxyArp: boolean;
  /** The metrics and health listener (lib/observe/server.ts). */
  metricsAddress: ListenAddress;
  /** A reconcile pass running longer than this fails /healthz. */
  reconcileStuckMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** strand-ipam's node-local directory: the journal of pending releases is in it (ipam/pending.ts). */
  ipamDataDir: string;
  /**
   * A node whose agent has been gone (no liveness key) this long, as this agent sees it,
   * has its empty blocks released and its record removed; undefined: never.
   */
  nodeReleaseAfterMs: number | undefined;
  /** Flat mode: the uplink takeover (agent/flat.ts). */
  flat?: FlatConfig;
}

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
  readonly field: string;
  constructor(field: string, msg: string, opts?: { cause?: unknown }) {
    super(`${field}: ${msg}`, opts);
    this.field = field;
  }
}

function readJson(file: string, field: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AgentConfigError(field, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new AgentConfigError(field, `${file} is not JSON: ${(e as Error).message}`);
  }
}

/** The network name, strand-ipam `etcd` section and data directory of a conflist (or single config). */
function fromCniConf(raw: unknown, field: string): { network: string; etcd: unknown; dataDir?: string } {
  if (!isObject(raw)) throw new AgentConfigError(field, 'must be a JSON object');
  const plugins = Array.isArray(raw['plugins']) ? (raw['plugins'] as unknown[]) : [raw];
  for (const p of plugins) {
    if (!isObject(p)) continue;
    const ipam = p['type'] === 'strand-ipam' ? p : p['ipam'];
    if (isObject(ipam) && ipam['type'] === 'strand-ipam') {
      if (!isObject(ipam['etcd'])) throw new AgentConfigError(field, 'the strand-ipam section has no etcd store (the agent needs one)');
      if (typeof raw['name'] !== 'string' || !raw['name']) throw new AgentConfigError(`${field}: name`, 'missing network name');
      return typeof ipam['dataDir'] === 'string' && ipam['dataDir'] !== ''
        ? { network: raw['name'], etcd: ipam['etcd'], dataDir: ipam['dataDir'] }
        : { network: raw['name'], etcd: ipam['etcd'] };
    }
  }
  throw new AgentConfigError(field, 'no plugin with a strand-ipam IPAM section');
}

/** Milliseconds from a number (milliseconds) or "500ms" / "20s" / "1m" / "1h". */
export function parseDuration(v: unknown, field: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
    if (m) {
      const n = Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : m[2] === 'h' ? 3_600_000 : 1);
      if (n > 0) return n;
    }
  }
  throw new AgentConfigError(field, `invalid duration ${JSON.stringify(v)} (milliseconds, or "500ms", "20s", "1m", "1h")`);
}

function int(v: unknown, field: string, lo: number, hi: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < lo || n > hi) throw new AgentConfigError(field, `must be an integer between ${lo} and ${hi}`);
  return n;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw new AgentConfigError(field, 'must be a non-empty string');
  return v;
}

function list(v: unknown, field: string): string[] {
  const arr =
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : v;
  if (!Array.isArray(arr) || !arr.every((x) => typeof x === 'string' && x !== '')) throw new AgentConfigError(field, 'must be a string or a list of strings');
  return arr as string[];
}

function linkName(v: unknown, field: string): string {
  const s = str(v, field);
  const why = ifNameProblem(s);
  if (why) throw new AgentConfigError(field, `invalid interface name ${JSON.stringify(s)}: it ${why}`);
  return s;
}

/** Command-line flags that take a value, and the config key each one sets. */
export const FLAGS: Record<string, string> = {
  config: '',
  'cni-conf': '',
  'node-name': 'nodeName',
  'node-ip': 'nodeIP',
  'node-interface': 'nodeInterface',
  network: 'networks',
  mode: 'mode',
  vni: 'vxlan.vni',
  'vxlan-port': 'vxlan.port',
  'vxlan-device': 'vxlan.device',
  mtu: 'vxlan.mtu',
  'etcd-endpoints': 'etcd.endpoints',
  'etcd-prefix': 'etcd.prefix',
  'etcd-ca': 'etcd.tls.ca',
  'etcd-cert': 'etcd.tls.cert',
  'etcd-key': 'etcd.tls.key',
  'etcd-username': 'etcd.username',
  'etcd-password': 'etcd.password',
  'lease-ttl': 'leaseTTL',
  resync: 'resyncInterval',
  'state-file': 'stateFile',
  'pod-mtu-file': 'podMtuFile',
  'route-protocol': 'routeProtocol',
  'proxy-arp': 'proxyArp',
  'metrics-address': 'metricsAddress',
  'reconcile-stuck-after': 'reconcileStuckAfter',
  'log-level': 'logLevel',
  'log-format': 'logFormat',
  'ipam-data-dir': 'ipamDataDir',
  'node-release-after': 'nodeReleaseAfter',
  uplink: 'flat.uplink',
  'flat-bridge': 'flat.bridge',
  'flat-record': 'flat.record',
  'flat-vlans': 'flat.vlans',
};

function setPath(o: Record<string, unknown>, path: string, v: unknown): void {
  const parts = path.split('.');
  let cur = o;
  for (const p of parts.slice(0, -1)) {
    if (!isObject(cur[p])) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = v;
}

/**
 * Builds the configuration from flags (name -> value, without "--"), the environment and
 * the files the flags name.
 */
export function loadAgentConfig(flags: ReadonlyMap<string, string>, env: Record<string, string | undefined>): AgentConfig {
  return parseAgentConfig(loadRawConfig(flags), env);
}

/** The merged, not yet validated configuration of --config, --cni-conf and the flags. */
export function loadRawConfig(flags: ReadonlyMap<string, string>): Record<string, unknown> {
  let raw: Record<string, unknown> = {};
  const file = flags.get('config');
  if (file !== undefined) {
    const j = readJson(file, '--config');
    if (!isObject(j)) throw new AgentConfigError('--config', `${file} must hold a JSON object`);
    raw = structuredClone(j);
  }
  const cniConf = flags.get('cni-conf');
  if (cniConf !== undefined) {
    const c = fromCniConf(readJson(cniConf, '--cni-conf'), '--cni-conf');
    if (raw['etcd'] === undefined) raw['etcd'] = structuredClone(c.etcd);
    if (raw['networks'] === undefined) raw['networks'] = [c.network];
    if (raw['ipamDataDir'] === undefined && c.dataDir !== undefined) raw['ipamDataDir'] = c.dataDir;
  }
  for (const [name, value] of flags) {
    const path = FLAGS[name];
    if (path) setPath(raw, path, value);
  }
  return raw;
}

/** The `flat` section: uplink (required), bridge, record. */
function parseFlatConfig(v: unknown): FlatConfig {
  if (!isObject(v)) throw new AgentConfigError('flat', 'must be an object (mode flat needs "flat": {"uplink": ...} or --uplink)');
  for (const k of Object.keys(v)) if (!['uplink', 'bridge', 'record', 'vlans'].includes(k)) throw new AgentConfigError(`flat.${k}`, 'unknown setting');
  if (v['uplink'] === undefined) throw new AgentConfigError('flat.uplink', 'required in mode flat (--uplink)');
  const uplink = linkName(v['uplink'], 'flat.uplink');
  const bridge = v['bridge'] === undefined ? DEFAULT_FLAT_BRIDGE : linkName(v['bridge'], 'flat.bridge');
  if (uplink === bridge) throw new AgentConfigError('flat.bridge', `must differ from the uplink (${uplink})`);
  const raw = v['vlans'] === undefined ? [] : typeof v['vlans'] === 'string' ? list(v['vlans'], 'flat.vlans') : v['vlans'];
  if (!Array.isArray(raw)) throw new AgentConfigError('flat.vlans', 'must be a list of VLAN ids');
  const vlans = [...new Set(raw.map((x, i) => int(x, `flat.vlans[${i}]`, 2, 4094)))].sort((a, b) => a - b);
  return { uplink, bridge, record: v['record'] === undefined ? DEFAULT_TAKEOVER_RECORD : str(v['record'], 'flat.record'), vlans };
}

/** The takeover record named by a raw configuration (for `strand agent --restore`, which needs nothing else). */
export function flatRecordOf(raw: Record<string, unknown>): string {
  const f = raw['flat'];
  if (f === undefined) return DEFAULT_TAKEOVER_RECORD;
  if (!isObject(f)) throw new AgentConfigError('flat', 'must be an object');
  return f['record'] === undefined ? DEFAULT_TAKEOVER_RECORD : str(f['record'], 'flat.record');
}

/**
 * Validates a merged raw configuration object. Long as a table: the known settings, then
 * one line per field of the result.
 */
export function parseAgentConfig(raw: Record<string, unknown>, env: Record<string, string | undefined>): AgentConfig {
  const known = new Set([
    'nodeName',
    'nodeIP',
    'nodeInterface',
    'networks',
    'mode',
    'vxlan',
    'etcd',
    'leaseTTL',
    'resyncInterval',
    'stateFile',
    'podMtuFile',
    'routeProtocol',
    'proxyArp',
    'metricsAddress',
    'reconcileStuckAfter',
    'logLevel',
    'logFormat',
    'ipamDataDir',
    'nodeReleaseAfter',
    'flat',
  ]);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new AgentConfigError(k, 'unknown setting');

  const nodeName = raw['nodeName'] !== undefined ? str(raw['nodeName'], 'nodeName') : env['K8S_NODE_NAME'] || env['NODENAME'] || hostname();
  if (nodeName.includes('/')) throw new AgentConfigError('nodeName', 'must not contain "/"');

  const nodeIPs = nodeIPsOf(raw['nodeIP']);

  const mode = raw['mode'] ?? 'host-gw';
  if (!isMode(mode)) throw new AgentConfigError('mode', `must be "host-gw", "vxlan" or "flat", not ${JSON.stringify(mode)}`);
  if (mode !== 'flat' && raw['flat'] !== undefined) throw new AgentConfigError('flat', `the uplink takeover needs mode flat (mode is ${mode})`);

  const vxlan = vxlanOf(raw['vxlan'] ?? {});

  const etcd = etcdOf(raw['etcd']);

  const ttlMs = raw['leaseTTL'] === undefined ? DEFAULT_LEASE_TTL_S * 1000 : parseDuration(raw['leaseTTL'], 'leaseTTL');
  const logLevel = raw['logLevel'] ?? 'info';
  if (!isLogLevel(logLevel)) throw new AgentConfigError('logLevel', 'must be debug, info, warn or error');
  const logFormat = raw['logFormat'] ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') throw new AgentConfigError('logFormat', 'must be text or json');
  const pa = proxyArpOf(raw['proxyArp'] ?? true);
  const metricsAddress = metricsAddressOf(raw['metricsAddress']);

  const cfg: AgentConfig = {
    nodeName,
    nodeIPs,
    networks: raw['networks'] === undefined ? [] : list(raw['networks'], 'networks'),
    mode,
    vxlan,
    etcd,
    leaseTTLSeconds: Math.max(1, Math.ceil(ttlMs / 1000)),
    resyncMs: raw['resyncInterval'] === undefined ? DEFAULT_RESYNC_MS : parseDuration(raw['resyncInterval'], 'resyncInterval'),
    stateFile: raw['stateFile'] === undefined ? DEFAULT_STATE_FILE : str(raw['stateFile'], 'stateFile'),
    podMtuFile: raw['podMtuFile'] === undefined ? DEFAULT_POD_MTU_FILE : str(raw['podMtuFile'], 'podMtuFile'),
    routeProtocol: raw['routeProtocol'] === undefined ? STRAND_ROUTE_PROTOCOL : int(raw['routeProtocol'], 'routeProtocol', 5, 254),
    proxyArp: pa,
    metricsAddress,
    reconcileStuckMs: raw['reconcileStuckAfter'] === undefined ? DEFAULT_RECONCILE_STUCK_MS : parseDuration(raw['reconcileStuckAfter'], 'reconcileStuckAfter'),
    logLevel,
    logFormat,
    ipamDataDir: raw['ipamDataDir'] === undefined ? DEFAULT_DATA_DIR : str(raw['ipamDataDir'], 'ipamDataDir'),
    nodeReleaseAfterMs:
      raw['nodeReleaseAfter'] === undefined
        ? DEFAULT_NODE_RELEASE_AFTER_MS
        : raw['nodeReleaseAfter'] === 'never'
          ? undefined
          : parseDuration(raw['nodeReleaseAfter'], 'nodeReleaseAfter'),
  };
  if (raw['nodeInterface'] !== undefined) cfg.nodeInterface = linkName(raw['nodeInterface'], 'nodeInterface');
  if (mode === 'flat') {
    cfg.flat = parseFlatConfig(raw['flat']);
    if (cfg.networks.length === 0)
      throw new AgentConfigError('networks', "mode flat reserves the node's addresses in the IPAM networks: name them (--network, or --cni-conf)");
  }
  return cfg;
}

/** nodeIP: at most one address per family, canonical. */
function nodeIPsOf(v: unknown): string[] {
  const nodeIPs = v === undefined ? [] : list(v, 'nodeIP');
  const fams = new Set<number>();
  for (const [i, ip] of nodeIPs.entries()) {
    const p = tryParseIP(ip);
    if (!p) throw new AgentConfigError(`nodeIP[${i}]`, `invalid IP address ${JSON.stringify(ip)}`);
    if (fams.has(p.family)) throw new AgentConfigError(`nodeIP[${i}]`, `a second IPv${p.family} address`);
    fams.add(p.family);
    nodeIPs[i] = canonicalIP(ip);
  }
  return nodeIPs;
}

/** The vxlan section with its defaults. */
function vxlanOf(vx: unknown): VxlanConfig {
  if (!isObject(vx)) throw new AgentConfigError('vxlan', 'must be an object');
  const vni = vx['vni'] === undefined ? DEFAULT_VNI : int(vx['vni'], 'vxlan.vni', 1, 0xffffff);
  const vxlan: VxlanConfig = {
    vni,
    port: vx['port'] === undefined ? DEFAULT_VXLAN_PORT : int(vx['port'], 'vxlan.port', 1, 65535),
    device: vx['device'] === undefined ? `strand.${vni}` : linkName(vx['device'], 'vxlan.device'),
  };
  if (vx['mtu'] !== undefined) vxlan.mtu = int(vx['mtu'], 'vxlan.mtu', 576, 65535);
  for (const k of Object.keys(vx)) if (!['vni', 'port', 'device', 'mtu'].includes(k)) throw new AgentConfigError(`vxlan.${k}`, 'unknown setting');
  return vxlan;
}

/** The etcd section (required), its CNI config errors as agent config errors naming the field. */
function etcdOf(v: unknown): EtcdConfig {
  if (v === undefined) throw new AgentConfigError('etcd', 'required (--etcd-endpoints, --cni-conf or "etcd" in --config)');
  try {
    return parseEtcdConfig(v, 'etcd');
  } catch (e) {
    if (isCniError(e)) {
      const m = /^([^:]+): (.*)$/s.exec(e.msg);
      throw new AgentConfigError(m?.[1] ?? 'etcd', m?.[2] ?? e.msg, { cause: e });
    }
    throw e;
  }
}

/** proxyArp: a boolean, or "true"/"false" from a flag. */
function proxyArpOf(v: unknown): boolean {
  const pa = v === 'true' ? true : v === 'false' ? false : v;
  if (typeof pa !== 'boolean') throw new AgentConfigError('proxyArp', 'must be true or false');
  return pa;
}

function metricsAddressOf(v: unknown): ListenAddress {
  try {
    return parseListenAddress(v === undefined ? DEFAULT_OBSERVE_ADDRESS : str(v, 'metricsAddress'));
  } catch (e) {
    if (e instanceof ListenAddressError) throw new AgentConfigError('metricsAddress', e.message);
    throw e;
  }
}
