// The plugin entry: reads the CNI environment and stdin, checks them as the spec and
// libcni's skel do, dispatches to the plugin's handlers and prints the result or the error
// JSON on stdout. Environment, stdin and stdout are injected (PluginIO) so all of this is
// testable without a process; it never calls process.exit.
import { statSync } from 'node:fs';
import { validateNetConf } from '../../gen/validators.js';
import { CniError, Code, invalidNetns, toCniError } from './errors.ts';
import { formatResultJson, isResultFormatError, parseResult } from './convert.ts';
import { ifNameProblem } from '../addr/ifname.ts';
import { isContainerId } from './formats.ts';
import { createLogger, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, defaultLogFile, isLogLevel, type Logger } from './log.ts';
import { CURRENT_VERSION, SPEC_VERSIONS, VERBS, type NetConf, type Result, type Verb } from './types.ts';
import { validateWith } from './validate.ts';
import { checkSupported, checkVerbAllowed, isSupportedVersion, selectVersion, versionInfo } from './version.ts';
import { checkJsonDepth, isObject } from './json.ts';

export { validateWith } from './validate.ts';

/**
 * Told about each finished plugin call and IPAM operation by the process that runs the
 * plugin code: the daemon's metrics (lib/observe/metrics.ts). A plugin run as its own
 * process has none.
 */
export interface RequestObserver {
  /** `code` is 0 for success, else the CNI error code; `verb` is a CNI verb or "invalid". */
  request(plugin: string, verb: string, code: number, seconds: number): void;
  /** A strand-ipam allocation (ADD) or release (DEL); `addresses` counts what succeeded. */
  ipam?(network: string, op: 'allocate' | 'release', ok: boolean, addresses: number): void;
}

export interface PluginIO {
  env: Record<string, string | undefined>;
  stdin(): Promise<Buffer>;
  stdout: { write(s: string): void };
  stderr: { write(s: string): void };
  /** Set when `strand daemon` runs the request: the caller's namespaces (see RequestNamespaces). */
  namespaces?: RequestNamespaces;
  /** Metrics of a long-lived process serving this call (the daemon); none in a plugin process. */
  observer?: RequestObserver;
}

/**
 * The network namespaces of a request that `strand daemon` runs for a shim. The shim
 * opened them in the runtime's mount namespace and passed them as descriptors; here
 * they are paths that reopen those descriptors. Standalone there is no such object: the
 * plugin's "host" is the namespace the process runs in and CNI_NETNS is opened by path.
 * CNI_NETNS itself (CmdArgs.netns) stays what the runtime gave: results, logs and
 * errors name it.
 */
export interface RequestNamespaces {
  /** The caller's network namespace, the plugin's "host" (/proc/self/fd/N). */
  host: string;
  /** Whether `host` is this process's own network namespace (always, in a deployment). */
  hostIsOwn: boolean;
  /**
   * Whether the caller's mount namespace is this process's own. When it is not (the
   * daemon in its container), tools and delegates are looked up and run in the
   * caller's, through `nsexec`, so they are the node's own (lib/cni/invoke.ts childSpawn).
   */
  mntIsOwn: boolean;
  /** CNI_NETNS reopened (/proc/self/fd/M), when the shim could open it. */
  pod?: string;
  /** Why the shim could not open CNI_NETNS: the errno of its open(2). */
  podErrno?: number;
  /** The descriptors behind them (a child process inherits them): caller's netns, caller's mount namespace, pod netns. */
  fds: { host: number; mnt: number; pod?: number };
  /** The helper that enters the caller's namespaces and execs (the shim started as strand-nsexec). */
  nsexec?: { file: string; argv0: string };
}

/**
 * The largest network config a plugin reads from stdin (64 MiB; more is CniError 5). The
 * shim (native/shim.c) forwards at most 1 MiB to the daemon and hands anything larger to
 * the standalone executable, so both paths give the same answer.
 */
export const STDIN_LIMIT = 64 * 1024 * 1024;

export interface CmdArgs {
  containerId: string;
  netns: string;
  ifName: string;
  /** Raw CNI_ARGS. */
  args: string;
  /** CNI_PATH split on ":" (empty entries dropped). */
  path: string[];
  stdinData: Buffer;
  env: Record<string, string | undefined>;
  /** The verb being run. Set by skel. */
  verb?: Verb;
  /** Logs to stderr or the configured log file. Set by skel. */
  log?: Logger;
  /** The request's namespaces when a daemon runs it (PluginIO.namespaces). */
  namespaces?: RequestNamespaces;
  /** PluginIO.observer, passed on to in-process delegates. Set by skel. */
  observer?: RequestObserver;
  /**
   * When the call began (Date.now() ms): the runtime's call to the outermost plugin, which
   * passes it on to its delegates (CALL_STARTED_ENV), so a delegate's deadline (strand-ipam's
   * etcd requests) counts from the call's start, not its own. Set by skel.
   */
  started?: number;
}

/**
 * The variable a delegating strand plugin sets for its delegate: when the runtime's call
 * began (Date.now() ms, decimal). Shared deadlines count from it.
 */
export const CALL_STARTED_ENV = 'STRAND_CALL_STARTED';

/** A delegate's call start from CALL_STARTED_ENV when plausible (the last 10 minutes, not in the future), else `now`. */
function callStarted(env: Record<string, string | undefined>, now: number): number {
  const v = env[CALL_STARTED_ENV];
  if (v === undefined || !/^\d{1,16}$/.test(v)) return now;
  const t = Number(v);
  return t <= now && t >= now - 600_000 ? t : now;
}

export interface PluginFuncs<C extends NetConf> {
  /** Returns the 1.1.0 result; skel converts it to conf.cniVersion and prints it. */
  add(a: CmdArgs, conf: C): Promise<Result>;
  del(a: CmdArgs, conf: C): Promise<void>;
  check(a: CmdArgs, conf: C): Promise<void>;
  status(a: CmdArgs, conf: C): Promise<void>;
  /** conf carries the `cni.dev/valid-attachments` key (see gcAttachments()). */
  gc(a: CmdArgs, conf: C): Promise<void>;
}

export interface PluginSpec<C extends NetConf> {
  /** e.g. "strand-bridge" */
  name: string;
  /** e.g. "strand bridge plugin v0.1.0" */
  about: string;
  /**
   * Plugin-specific validation (a compiled validator via validateWith); throws CniError 7
   * naming the field. `ctx.env` is the request's environment (under a daemon, not
   * process.env).
   */
  parseConfig(raw: NetConf, ctx: { env: Record<string, string | undefined> }): C;
  /** Versions to advertise and accept; default all of SPEC_VERSIONS. */
  versions?: readonly string[];
}

/** Which variables each verb needs (the spec's table; libcni's skel also needs CNI_PATH for ADD/DEL/CHECK). */
export const REQUIRED_ENV: Readonly<Record<Verb, readonly string[]>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  STATUS: ['CNI_PATH'],
  GC: ['CNI_PATH'],
  VERSION: [],
};

/** Throws CniError 4 unless `id` is a valid CNI container ID (alphanumeric start, then [A-Za-z0-9_.-]). */
function validateContainerId(id: string): void {
  if (!isContainerId(id)) {
    throw new CniError(Code.InvalidEnvironment, 'invalid characters in CNI_CONTAINERID', JSON.stringify(id));
  }
}

/**
 * Throws CniError 4 unless `name` is a valid Linux interface name: libcni's rules and the
 * kernel's, name templates ("eth%d") refused (lib/addr/ifname.ts).
 */
function validateIfName(name: string, variable = 'CNI_IFNAME'): void {
  const why = ifNameProblem(name);
  if (why) throw new CniError(Code.InvalidEnvironment, `invalid ${variable}`, `${variable} ${JSON.stringify(name)}: interface name ${why}`);
}

function isVerb(v: string): v is Verb {
  return (VERBS as readonly string[]).includes(v);
}

/**
 * Whether CNI_NETNS is the namespace the plugin itself runs in (running a plugin on
 * itself): this process's namespace, or under a daemon the caller's.
 */
function isOwnNetns(path: string, ns: RequestNamespaces | undefined): boolean {
  if (ns && !ns.pod) return false; // the shim could not open it: the plugin reports that
  try {
    const target = statSync(ns?.pod ?? path, { throwIfNoEntry: false });
    const self = statSync(ns?.host ?? '/proc/self/ns/net', { throwIfNoEntry: false });
    return !!target && !!self && target.dev === self.dev && target.ino === self.ino;
  } catch {
    return false; // unreadable: the plugin reports it when it opens the namespace
  }
}

/** What every log line of this call names: the verb and, when there is one, the attachment. */
function requestContext(cmd: string, env: Record<string, string | undefined>): string {
  const verb = isVerb(cmd) ? cmd : cmd ? 'invalid-command' : 'no-command';
  const id = env['CNI_CONTAINERID'];
  return id ? `${verb} ${id}/${env['CNI_IFNAME'] ?? ''}` : verb;
}

/**
 * The logger of one call: the config's `logFile`, else STRAND_LOG_FILE, else
 * /var/log/strand/cni.log when that directory exists, else stderr; level `logLevel`, else
 * STRAND_LOG_LEVEL, else info into a file and warn on stderr (the runtime's own log gets
 * only problems); rotation `logFileMaxSize` / `logFileMaxFiles`.
 */
function requestLogger(name: string, io: PluginIO, env: Record<string, string | undefined>, conf: NetConf | undefined, context: string, t0: number): Logger {
  const file = (typeof conf?.logFile === 'string' ? conf.logFile : undefined) ?? (env['STRAND_LOG_FILE'] || undefined) ?? defaultLogFile();
  const envLevel = env['STRAND_LOG_LEVEL'];
  const level = isLogLevel(conf?.logLevel) ? conf.logLevel : isLogLevel(envLevel) ? envLevel : file ? 'info' : 'warn';
  return createLogger({
    name,
    stderr: io.stderr,
    file,
    level,
    context,
    since: t0,
    rotation: {
      maxBytes: typeof conf?.logFileMaxSize === 'number' ? conf.logFileMaxSize : DEFAULT_LOG_MAX_BYTES,
      maxFiles: typeof conf?.logFileMaxFiles === 'number' ? conf.logFileMaxFiles : DEFAULT_LOG_MAX_FILES,
    },
  });
}

/**
 * Runs one CNI command. Returns the exit status: 0, or 1 after printing the error JSON on
 * stdout. Logs go to stderr or to STRAND_LOG_FILE / the config's `logFile`.
 */
export async function pluginMain<C extends NetConf>(funcs: PluginFuncs<C>, spec: PluginSpec<C>, io: PluginIO): Promise<number> {
  const env = io.env;
  const t0 = performance.now();
  const started = callStarted(env, Date.now());
  const supported = spec.versions ?? SPEC_VERSIONS;
  let errVersion: string = CURRENT_VERSION;
  const cmd = env['CNI_COMMAND'] ?? '';
  const context = requestContext(cmd, env);
  let log = requestLogger(spec.name, io, env, undefined, context, t0);
  const observe = (code: number): void => {
    if (!io.observer) return;
    try {
      io.observer.request(spec.name, isVerb(cmd) ? cmd : 'invalid', code, (performance.now() - t0) / 1000);
    } catch (e) {
      log.warn('metrics observer failed', e);
    }
  };
  try {
    const verb = checkCommand(cmd, spec.about, supported, io);
    if (verb === 'VERSION') {
      // stdin is not read: libcni sends {"cniVersion": ...}, a person at a terminal sends nothing
      io.stdout.write(`${JSON.stringify(versionInfo(supported))}\n`);
      observe(0);
      return 0;
    }
    const needsAttachment = checkAttachmentEnv(verb, env);
    const { stdinData, raw } = await readNetConf(io);
    const version = negotiateVersion(raw, supported);
    errVersion = version;
    checkVerbAllowed(verb, version);
    const conf = netConfOf(raw, version);
    if (conf.logFile !== undefined || conf.logLevel !== undefined || conf.logFileMaxSize !== undefined || conf.logFileMaxFiles !== undefined) {
      log = requestLogger(spec.name, io, env, conf, context, t0);
    }
    const netns = env['CNI_NETNS'] ?? '';
    if (needsAttachment) rejectOwnNetns(netns, env, io.namespaces);

    const typed = spec.parseConfig(conf, { env });
    const a: CmdArgs = {
      containerId: env['CNI_CONTAINERID'] ?? '',
      netns,
      ifName: env['CNI_IFNAME'] ?? '',
      args: env['CNI_ARGS'] ?? '',
      path: (env['CNI_PATH'] ?? '').split(':').filter(Boolean),
      stdinData,
      env,
      verb,
      log,
      started,
      ...(io.observer ? { observer: io.observer } : {}),
    };
    if (io.namespaces) a.namespaces = io.namespaces;
    await dispatch(funcs, verb, a, typed, version, io);
    log.info(`${verb} succeeded`);
    observe(0);
    return 0;
  } catch (e) {
    const code = reportError(e, cmd, env, errVersion, log, io);
    observe(code);
    return 1;
  }
}

/** CNI_COMMAND present and a verb (the plugin's about line on stderr when it is absent). */
function checkCommand(cmd: string, about: string, supported: readonly string[], io: PluginIO): Verb {
  if (!cmd) {
    io.stderr.write(`${about}\nCNI protocol versions supported: ${supported.join(', ')}\n`);
    throw new CniError(Code.InvalidEnvironment, 'required env variables [CNI_COMMAND] missing');
  }
  if (!isVerb(cmd)) throw new CniError(Code.InvalidEnvironment, `unknown CNI_COMMAND: ${cmd}`);
  return cmd;
}

/** The verb's required variables are set, and CNI_CONTAINERID / CNI_IFNAME valid; whether the verb names an attachment. */
function checkAttachmentEnv(verb: Exclude<Verb, 'VERSION'>, env: PluginIO['env']): boolean {
  const missing = REQUIRED_ENV[verb].filter((k) => !env[k]);
  if (missing.length) {
    throw new CniError(Code.InvalidEnvironment, `required env variables [${missing.join(',')}] missing`);
  }
  const needsAttachment = REQUIRED_ENV[verb].includes('CNI_IFNAME');
  if (needsAttachment) {
    validateContainerId(env['CNI_CONTAINERID'] ?? '');
    validateIfName(env['CNI_IFNAME'] ?? '');
  }
  return needsAttachment;
}

/** stdin, bounded by STDIN_LIMIT and the nesting limit, parsed as a JSON object. */
async function readNetConf(io: PluginIO): Promise<{ stdinData: Buffer; raw: Record<string, unknown> }> {
  let stdinData: Buffer;
  try {
    stdinData = await io.stdin();
  } catch (e) {
    throw new CniError(Code.IoFailure, 'error reading from stdin', (e as Error).message, { cause: e });
  }
  if (stdinData.length > STDIN_LIMIT) {
    throw new CniError(Code.IoFailure, 'error reading from stdin', `the network config is larger than ${STDIN_LIMIT} bytes`);
  }
  let raw: unknown;
  try {
    checkJsonDepth(stdinData); // before JSON.parse: a nesting bomb never becomes objects
    raw = JSON.parse(stdinData.toString('utf8'));
  } catch (e) {
    throw new CniError(Code.DecodingFailure, 'error unmarshalling network config', (e as Error).message, { cause: e });
  }
  if (!isObject(raw)) {
    throw new CniError(Code.DecodingFailure, 'error unmarshalling network config', 'the network config must be a JSON object');
  }
  return { stdinData, raw };
}

/** The config's version (cniVersion, or the best of cniVersions), known to the spec and supported by this plugin. */
function negotiateVersion(raw: Record<string, unknown>, supported: readonly string[]): string {
  const version = selectVersion(raw['cniVersion'], raw['cniVersions']);
  checkSupported(version);
  if (!supported.includes(version)) {
    throw new CniError(
      Code.IncompatibleVersion,
      'incompatible CNI versions',
      `config is ${JSON.stringify(version)}, plugin supports ${JSON.stringify(supported)}`,
    );
  }
  return version;
}

/** The validated network config at `version`, prevResult parsed into a Result. */
function netConfOf(raw: Record<string, unknown>, version: string): NetConf {
  validateWith(validateNetConf, raw);
  const conf = raw as NetConf;
  conf.cniVersion = version;
  if (raw['prevResult'] !== undefined) {
    try {
      conf.prevResult = parseResult(raw['prevResult'], version);
    } catch (e) {
      if (!isResultFormatError(e)) throw e;
      const field = `prevResult.${e.field}`.replace(/\.$/, '').replace(/\.\[/g, '[');
      throw new CniError(Code.InvalidNetworkConfig, `invalid config field ${field}`, `${field}: ${e.reason}`, { cause: e });
    }
  }
  return conf;
}

/** CNI_NETNS must not be the plugin's own namespace, unless CNI_NETNS_OVERRIDE says so. */
function rejectOwnNetns(netns: string, env: PluginIO['env'], ns: RequestNamespaces | undefined): void {
  const override = (env['CNI_NETNS_OVERRIDE'] ?? '').toLowerCase();
  if (netns && override !== '1' && override !== 'true' && isOwnNetns(netns, ns)) {
    throw invalidNetns(netns, "the plugin's own network namespace (plugin's netns and netns from CNI_NETNS should not be the same)");
  }
}

/** Runs the verb's function; ADD prints its result in the config's version. */
async function dispatch<C extends NetConf>(
  funcs: PluginFuncs<C>,
  verb: Exclude<Verb, 'VERSION'>,
  a: CmdArgs,
  typed: C,
  version: string,
  io: PluginIO,
): Promise<void> {
  switch (verb) {
    case 'ADD': {
      const result = await funcs.add(a, typed);
      io.stdout.write(`${formatResultJson(result, version)}\n`);
      break;
    }
    case 'DEL':
      await funcs.del(a, typed);
      break;
    case 'CHECK':
      await funcs.check(a, typed);
      break;
    case 'STATUS':
      await funcs.status(a, typed);
      break;
    case 'GC':
      await funcs.gc(a, typed);
      break;
  }
}

/** Logs the failure in full and prints the error JSON (in the config's version when known); returns its code. */
function reportError(e: unknown, cmd: string, env: PluginIO['env'], errVersion: string, log: Logger, io: PluginIO): number {
  const err = toCniError(e);
  const attachment = env['CNI_CONTAINERID'] || env['CNI_IFNAME'] ? ` ${env['CNI_CONTAINERID'] ?? ''}/${env['CNI_IFNAME'] ?? ''}` : '';
  const where = `${cmd || '(no CNI_COMMAND)'}${attachment}`;
  // The full error, stack and causes included, goes to the log; stdout gets only the JSON.
  log.error(`${where} failed with code ${err.code}: ${err.message}`, err.code === Code.Internal ? err.cause : undefined);
  try {
    io.stdout.write(`${JSON.stringify(err.toJSON(isSupportedVersion(errVersion) ? errVersion : CURRENT_VERSION), null, 4)}\n`);
  } catch (w) {
    log.error('cannot write the error to stdout', w);
  }
  return err.code;
}
