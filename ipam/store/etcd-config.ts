// The `ipam.etcd` block of a strand-ipam config: endpoints, key prefix, transport,
// timeouts, TLS files and credentials. Parsed here, beside the stores that use it, so the
// stores and the agent need not import the whole IPAM config parser.
import { readFileSync } from 'node:fs';
import { clip, CniError, Code } from '../../lib/cni/errors.ts';
import { fieldError, optString } from '../../lib/cni/validate.ts';
import { isObject } from '../../lib/cni/json.ts';

/**
 * How a plugin process talks to etcd: `http`, etcd's v3 JSON gateway over node:http(s)
 * (loads in ~5 ms: the default for the short-lived plugin process), or `grpc`, the etcd3
 * client (~200 ms of CPU to load gRPC and protobufjs per process). The agent always uses
 * etcd3 (it lives long and watches), as does `strand ipam --etcd-endpoints`; `strand
 * ipam --conf` follows the config.
 */
const ETCD_TRANSPORTS = ['http', 'grpc'] as const;
export type EtcdTransport = (typeof ETCD_TRANSPORTS)[number];

export interface EtcdConfig {
  endpoints: string[];
  prefix: string;
  transport: EtcdTransport;
  dialTimeoutMs: number;
  requestTimeoutMs: number;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  username?: string;
  password?: string;
}

export const DEFAULT_ETCD_PREFIX = '/strand/ipam';

/** What `strand ipam` and `strand agent` print when the etcd password comes on the command line. */
export function passwordOnCommandLineWarning(instead: string): string {
  return `warning: --etcd-password is visible to other users of this machine (/proc/<pid>/cmdline); use ${instead}`;
}

function parseDuration(v: unknown, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number' && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v);
    if (m) return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : m[2] === 's' ? 1000 : 1);
  }
  throw fieldError(field, `invalid duration ${JSON.stringify(v)} (milliseconds or "5s")`);
}

/**
 * The cause of the config error (7) for a TLS file that cannot be read: DEL tells it from
 * other config errors (isSecretFileError) and records the release for later instead of
 * stranding the pod (ipam/pending.ts).
 */
export class SecretFileError extends Error {
  override readonly name = 'SecretFileError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

export function isSecretFileError(e: unknown): e is CniError & { cause: SecretFileError } {
  return e instanceof CniError && e.cause instanceof SecretFileError;
}

function readSecretFile(path: unknown, field: string): Buffer | undefined {
  if (path === undefined || path === '') return undefined;
  if (typeof path !== 'string') throw fieldError(field, 'must be a file path');
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const what = `cannot read ${path} (${code})`;
    throw new CniError(Code.InvalidNetworkConfig, `${field}: ${what}`, '', { cause: new SecretFileError(field, `${field}: ${what}`) });
  }
}

const CREDENTIALS_IN_URL = 'must not carry credentials (user:password@): use username and password';

/**
 * Why an etcd endpoint cannot be used, or undefined: "http(s)://host[:port]",
 * "host[:port]" (the scheme then follows from TLS), or a gRPC unix socket target
 * ("unix:/path", "unix:///path"); nothing else (no path, query, whitespace). Checked here
 * so that a typo is a config error (7) naming the entry, not an unreachable store (11)
 * that the runtime retries forever.
 */
function endpointProblem(ep: string): string | undefined {
  if (/[\s]/.test(ep)) return 'is not an endpoint URL (it contains whitespace)';
  if (/^unixs?:/i.test(ep)) return /^unixs?:(\/\/)?[^/]*\/?./i.test(ep) && !ep.includes('@') ? undefined : 'is not a unix socket target (unix:/path)';
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(ep);
  let u: URL;
  try {
    u = new URL(hasScheme ? ep : `http://${ep}`);
  } catch {
    return 'is not an endpoint URL (http://host:port, https://host:port or host:port)';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `has scheme ${JSON.stringify(u.protocol.slice(0, -1))}; only http and https`;
  if (!u.hostname) return 'has no host';
  if (u.username || u.password) return CREDENTIALS_IN_URL;
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return 'must be scheme://host:port, without a path, query or fragment';
  return undefined;
}

export function parseEtcdConfig(raw: unknown, field = 'ipam.etcd'): EtcdConfig {
  if (!isObject(raw)) throw fieldError(field, 'must be an object');
  const eps = typeof raw['endpoints'] === 'string' ? (raw['endpoints'] as string).split(',') : raw['endpoints'];
  if (!Array.isArray(eps) || eps.length === 0 || !eps.every((e) => typeof e === 'string' && e.length > 0)) {
    throw fieldError(`${field}.endpoints`, 'must be a non-empty list of URLs');
  }
  // Credentials in a URL would be echoed by the etcd client's errors and logs.
  const withUserinfo = (eps as string[]).findIndex((e) => /^[a-z][a-z0-9+.-]*:\/\/[^/@]*@/i.test(e));
  if (withUserinfo >= 0) {
    throw fieldError(`${field}.endpoints[${withUserinfo}]`, CREDENTIALS_IN_URL);
  }
  (eps as string[]).forEach((e, i) => {
    const why = endpointProblem(e);
    // The value is echoed unless it may hold a credential.
    if (why) throw fieldError(`${field}.endpoints[${i}]`, why === CREDENTIALS_IN_URL || e.includes('@') ? why : `${JSON.stringify(clip(e, 100))} ${why}`);
  });
  let prefix = optString(raw, 'prefix', field) ?? DEFAULT_ETCD_PREFIX;
  if (!prefix.startsWith('/')) prefix = `/${prefix}`;
  prefix = prefix.replace(/\/+$/, '');
  const transport = raw['transport'] ?? 'http';
  if (!(ETCD_TRANSPORTS as readonly unknown[]).includes(transport)) {
    throw fieldError(`${field}.transport`, `must be one of ${ETCD_TRANSPORTS.map((t) => JSON.stringify(t)).join(', ')}`);
  }
  const out: EtcdConfig = {
    endpoints: eps as string[],
    prefix,
    transport: transport as EtcdTransport,
    dialTimeoutMs: parseDuration(raw['dialTimeout'], `${field}.dialTimeout`, 5000),
    requestTimeoutMs: parseDuration(raw['requestTimeout'], `${field}.requestTimeout`, 5000),
  };
  const tls = raw['tls'];
  if (tls !== undefined && tls !== null) {
    if (!isObject(tls)) throw fieldError(`${field}.tls`, 'must be an object');
    const t: NonNullable<EtcdConfig['tls']> = {};
    const ca = readSecretFile(tls['ca'], `${field}.tls.ca`);
    const cert = readSecretFile(tls['cert'], `${field}.tls.cert`);
    const key = readSecretFile(tls['key'], `${field}.tls.key`);
    if (ca) t.ca = ca;
    if (cert) t.cert = cert;
    if (key) t.key = key;
    if (!!cert !== !!key) throw fieldError(`${field}.tls.${cert ? 'key' : 'cert'}`, 'cert and key go together');
    out.tls = t;
  }
  const user = optString(raw, 'username', field);
  const pass = optString(raw, 'password', field);
  if (user !== undefined) out.username = user;
  if (pass !== undefined) out.password = pass;
  if ((user === undefined) !== (pass === undefined)) throw fieldError(`${field}.${user ? 'password' : 'username'}`, 'username and password go together');
  return out;
}
