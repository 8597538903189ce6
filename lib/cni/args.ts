// CNI_ARGS ("K=V;K2=V2"), `args.cni` and `runtimeConfig` accessors.
import { clip, CniError, Code } from './errors.ts';
import { canonicalMac, macProblem } from '../addr/mac.ts';
import type { NetConf } from './types.ts';

/**
 * Splits CNI_ARGS into an ordered map (a later duplicate key wins). Empty segments
 * ("A=1;;B=2", a trailing ";") are skipped; a segment without "=" is an error (CniError 4
 * naming CNI_ARGS). The value is everything after the first "=".
 */
export function parseCniArgs(s: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!s) return out;
  for (const pair of s.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw new CniError(Code.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: invalid pair ${JSON.stringify(pair)}`);
    }
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** libcni's boolean text: 1/true and 0/false, any case. Throws CniError 4 otherwise. */
export function parseArgBool(key: string, v: string): boolean {
  switch (v.toLowerCase()) {
    case '1':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      throw new CniError(Code.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: ${key}=${JSON.stringify(v)} is not a boolean (1, true, 0, false)`);
  }
}

/**
 * CNI_ARGS for a plugin that declares the keys it understands: an unknown key is an error
 * (CniError 4 naming the keys) unless `IgnoreUnknown` is 1/true, as libcni's LoadArgs does.
 * `IgnoreUnknown` is always known. Returns only the known keys.
 */
export function loadCniArgs(s: string | undefined, known: readonly string[]): Map<string, string> {
  const all = parseCniArgs(s);
  const ignoreRaw = all.get('IgnoreUnknown');
  const ignore = ignoreRaw === undefined ? false : parseArgBool('IgnoreUnknown', ignoreRaw);
  const out = new Map<string, string>();
  const unknown: string[] = [];
  for (const [k, v] of all) {
    if (k === 'IgnoreUnknown') continue;
    if (known.includes(k)) out.set(k, v);
    else unknown.push(`${k}=${v}`);
  }
  if (unknown.length && !ignore) {
    throw new CniError(Code.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: unknown args ${JSON.stringify(unknown)}`);
  }
  return out;
}

/** `args.cni` of the config ({} when absent or not an object). */
export function argsCni(conf: NetConf): Record<string, unknown> {
  const cni = conf.args?.cni;
  return cni && typeof cni === 'object' && !Array.isArray(cni) ? cni : {};
}

/** One `args.cni` key. */
export function argCni(conf: NetConf, key: string): unknown {
  return argsCni(conf)[key];
}

/** One `runtimeConfig` key (a capability argument such as `mac`, `ips`, `portMappings`). */
export function runtimeConfig(conf: NetConf, key: string): unknown {
  const rc = conf.runtimeConfig;
  return rc && typeof rc === 'object' && !Array.isArray(rc) ? rc[key] : undefined;
}

/** Whether the config declares a capability (`capabilities: {mac: true}`). */
export function hasCapability(conf: NetConf, name: string): boolean {
  return conf.capabilities?.[name] === true;
}

/**
 * The MAC address for a pod's interface, lowest precedence first as in the reference
 * plugins: the plugin's own option (`own`, e.g. macvlan's `mac`), CNI_ARGS `MAC=`,
 * `args.cni.mac`, then `runtimeConfig.mac` (capability "mac"). Every one given must be a
 * unicast, non-zero MAC (`macProblem`): CNI_ARGS is CniError 4 naming CNI_ARGS, a config
 * field CniError 7 naming the field, with the value clipped. Also reads CNI_ARGS with
 * `loadCniArgs(..., ['MAC'])` (unknown keys need IgnoreUnknown). Returns the lower-case
 * ":" form; undefined: let the kernel pick.
 */
export function resolveMac(conf: NetConf, cniArgs: string, own?: { field: string; value: unknown }): string | undefined {
  const sources: Array<{ field: string; value: unknown }> = [];
  if (own) sources.push(own);
  const fromEnv = loadCniArgs(cniArgs, ['MAC']).get('MAC');
  if (fromEnv !== undefined && fromEnv !== '') {
    const why = macProblem(fromEnv);
    if (why) throw new CniError(Code.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: MAC=${JSON.stringify(clip(fromEnv, 64))} ${why}`);
  }
  sources.push({ field: 'CNI_ARGS MAC', value: fromEnv });
  sources.push({ field: 'args.cni.mac', value: argCni(conf, 'mac') });
  sources.push({ field: 'runtimeConfig.mac', value: runtimeConfig(conf, 'mac') });
  let mac: string | undefined;
  for (const { field, value } of sources) {
    if (value === undefined || value === null || value === '') continue;
    const why = typeof value === 'string' ? macProblem(value) : 'must be a string';
    if (why) {
      const shown = typeof value === 'string' ? JSON.stringify(clip(value, 64)) : typeof value;
      throw new CniError(Code.InvalidNetworkConfig, `invalid config field ${field}`, `${field}: ${shown} ${why}`);
    }
    mac = canonicalMac(value as string);
  }
  return mac;
}
