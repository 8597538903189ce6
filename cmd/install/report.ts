// What `strand install` tells the operator beyond what it wrote: a network configuration
// that a runtime would pick instead of strand's, and, on --uninstall, what strand made
// on the node that uninstalling the files leaves in place.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

/** The extensions libcni's ConfFiles reads from a conf dir (containerd, CRI-O). */
const CONF_EXTENSIONS = new Set(['.conf', '.conflist', '.json']);

/**
 * Network configuration files in `confDir` that sort before `confName`. Runtimes read
 * the conf dir through libcni, which lists these extensions sorted by name, and use the
 * first file (containerd's `max_conf_num = 1`, CRI-O's default network): any file here
 * is the network pods get instead of strand's.
 */
export function configsBefore(confDir: string, confName: string): string[] {
  let names: string[];
  try {
    names = readdirSync(confDir);
  } catch {
    return [];
  }
  return names.filter((n) => CONF_EXTENSIONS.has(extname(n)) && n < confName && isFile(join(confDir, n))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The warning for configsBefore(), or undefined when strand's file comes first. */
export function precedenceWarning(confDir: string, confName: string): string | undefined {
  const before = configsBefore(confDir, confName);
  if (before.length === 0) return undefined;
  return (
    `warning: ${before.map((n) => join(confDir, n)).join(', ')} sort${before.length === 1 ? 's' : ''} before ${confName}: ` +
    "runtimes use the first network configuration by name (containerd, CRI-O), so pods would get that network, not strand's. " +
    `Remove ${before.length === 1 ? 'it' : 'them'}, or give strand a name that sorts first (--conf-name, e.g. 00-strand.conflist).`
  );
}

/** What a conflist says strand made on the node (parsed leniently: it is our own output). */
export interface NodeState {
  bridges: string[];
  network: string | undefined;
  /** strand-ipam's local store directory of this network, when not on etcd */
  localIpamDir: string | undefined;
  etcd: { endpoints: string[]; prefix: string } | undefined;
  ipMasq: boolean;
}

/** Reads the parts of an installed conflist that name node state. */
export function nodeStateOf(conflist: string): NodeState {
  const out: NodeState = { bridges: [], network: undefined, localIpamDir: undefined, etcd: undefined, ipMasq: false };
  let c: unknown;
  try {
    c = JSON.parse(conflist);
  } catch {
    return out;
  }
  if (c === null || typeof c !== 'object') return out;
  const list = c as { name?: unknown; plugins?: unknown };
  if (typeof list.name === 'string') out.network = list.name;
  const plugins = Array.isArray(list.plugins) ? list.plugins : [];
  for (const p of plugins as Array<Record<string, unknown> | null>) {
    if (p === null || typeof p !== 'object') continue;
    if (p['type'] === 'strand-bridge') out.bridges.push(typeof p['bridge'] === 'string' ? p['bridge'] : 'cni0');
    if (p['ipMasq'] === true) out.ipMasq = true;
    const ipam = p['ipam'] as Record<string, unknown> | undefined;
    if (ipam?.['type'] !== 'strand-ipam') continue;
    const etcd = ipam['etcd'] as Record<string, unknown> | undefined;
    if (etcd && typeof etcd === 'object') {
      const eps = etcd['endpoints'];
      const endpoints = Array.isArray(eps) ? eps.filter((e): e is string => typeof e === 'string') : typeof eps === 'string' ? eps.split(',') : [];
      out.etcd = { endpoints, prefix: typeof etcd['prefix'] === 'string' ? etcd['prefix'] : '/strand/ipam' };
    } else if (out.network !== undefined) {
      out.localIpamDir = join(typeof ipam['dataDir'] === 'string' ? ipam['dataDir'] : '/var/lib/cni/networks', out.network);
    }
  }
  return out;
}

/**
 * Lines naming what stays on the node after the files are removed: links that exist
 * (checked in /sys/class/net, i.e. this network namespace), IPAM state, rules and routes
 * strand's plugins and agent make, other files left in the directories. `sysNet` and
 * `exists` are parameters for tests.
 */
export function leftovers(state: NodeState, opts: { sysNet?: string; exists?: (p: string) => boolean; otherConfigs?: string[] }): string[] {
  const sysNet = opts.sysNet ?? '/sys/class/net';
  const exists = opts.exists ?? existsSync;
  const out: string[] = [];
  for (const b of [...new Set(state.bridges)]) {
    if (exists(join(sysNet, b)))
      out.push(`bridge ${b} (with its gateway address; pods still attached to it keep working): ip link del ${b} once no pod uses it`);
  }
  let vxlan: string[] = [];
  try {
    vxlan = readdirSync(sysNet).filter((n) => /^strand\.\d+$/.test(n));
  } catch {
    // no sysfs here
  }
  for (const v of vxlan) out.push(`VXLAN device ${v} of strand agent: ip link del ${v}`);
  out.push("routes of strand agent to other nodes' pod blocks, if any: ip route flush proto 115");
  if (state.ipMasq) out.push("masquerade rules of ipMasq for pods still attached (each pod's DEL removes its own)");
  if (state.localIpamDir !== undefined && exists(state.localIpamDir)) {
    out.push(`IPAM records of network ${state.network} in ${state.localIpamDir} (strand ipam ls --data-dir ${join(state.localIpamDir, '..')})`);
  }
  if (state.etcd !== undefined) {
    out.push(
      `IPAM records and node blocks of network ${state.network ?? '?'} in etcd ${state.etcd.endpoints.join(',')} under ${state.etcd.prefix} ` +
        '(strand ipam ls / release before deleting etcd)',
    );
  }
  const others = opts.otherConfigs ?? [];
  if (others.length > 0) out.push(`network configurations that are not strand's: ${others.join(', ')} (runtimes now use the first)`);
  return out;
}
