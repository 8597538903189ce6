// Delegation to another plugin (IPAM, or a chained plugin): find its executable on
// CNI_PATH, run it with our environment except CNI_COMMAND, the config on stdin, and decode
// its result (any version -> 1.1.0) or its error JSON (code kept). No shell is involved.
// A strand plugin found on CNI_PATH as the running executable itself, or as a shim of
// this very build, runs in-process instead (see inprocess.ts): same stdin, environment
// and output handling, no exec.
//
// Under `strand daemon` a request carries the caller's namespaces (CmdArgs.namespaces):
// an exec'd delegate then runs in the caller's network and mount namespaces and gets
// CNI_NETNS as a descriptor it inherits (childSpawn).
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CniError, Code, isCniError } from './errors.ts';
import { isResultFormatError, parseResult } from './convert.ts';
import { inProcessPlugin, shimBuild, type InProcessPlugin } from './inprocess.ts';
import type { Logger } from './log.ts';
import { CALL_STARTED_ENV, type CmdArgs, type PluginIO, type RequestNamespaces, type RequestObserver } from './skel.ts';
import type { Result } from './types.ts';

export interface DelegateOptions {
  /**
   * Kill the delegate (SIGKILL) after this long; no limit by default. A delegate with a
   * timeout is always exec'd: only a process can be killed.
   */
  timeoutMs?: number;
  /** Where the delegate's stderr and rollback failures are logged; default `a.log`. */
  log?: Logger;
}

/**
 * Variables never passed to a delegate: Node's own (NODE_OPTIONS can make a Node program,
 * strand included, load arbitrary code; so can NODE_PATH, NODE_REPL_EXTERNAL_MODULE...) and
 * OpenSSL's configuration loaders. NODE_NAME (the Kubernetes downward-API convention, not
 * read by Node) is kept.
 */
export function isScrubbedEnv(name: string): boolean {
  if (name.startsWith('NODE_')) return name !== 'NODE_NAME';
  return name === 'OPENSSL_CONF' || name === 'OPENSSL_MODULES' || name === 'OPENSSL_ENGINES';
}

/** The delegate's environment: ours, minus the scrubbed variables, with CNI_COMMAND set. */
export function delegateEnv(env: Record<string, string | undefined>, verb: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || isScrubbedEnv(k)) continue;
    out[k] = v;
  }
  out['CNI_COMMAND'] = verb;
  return out;
}

/** How to start a child process (a delegate, a tool) for a request. */
export interface ChildSpawn {
  command: string;
  args: string[];
  /** argv[0] when it is not `command` (the shim started as strand-nsexec). */
  argv0?: string;
  /** stdin, stdout, stderr, then the request's namespace descriptors as fds 3, 4, 5. */
  stdio: Array<'pipe' | number>;
  /** CNI_NETNS as the child opens it (its inherited fd 5), when there is a pod namespace. */
  netns?: string;
}

/**
 * How to start `file args` for a request. Standalone: as is. Under `strand daemon` the
 * child inherits the request's namespace descriptors (caller's netns as fd 3, caller's
 * mount namespace as fd 4, the pod's netns as fd 5: CNI_NETNS=/proc/self/fd/5 opens it
 * in any mount namespace) and runs where the runtime would have run it: when the caller's
 * network or mount namespace is not the daemon's own (the daemon in its container; test
 * harnesses give every call a network namespace of its own), through the shim as
 * `strand-nsexec`, which enters them and execs `file`.
 */
export function childSpawn(file: string, args: readonly string[], ns: RequestNamespaces | undefined): ChildSpawn {
  if (!ns) return { command: file, args: [...args], stdio: ['pipe', 'pipe', 'pipe'] };
  const stdio: ChildSpawn['stdio'] = ['pipe', 'pipe', 'pipe', ns.fds.host, ns.fds.mnt];
  if (ns.fds.pod !== undefined) stdio.push(ns.fds.pod);
  const netns = ns.fds.pod !== undefined ? '/proc/self/fd/5' : undefined;
  const base = netns ? { stdio, netns } : { stdio };
  if (ns.hostIsOwn && ns.mntIsOwn) return { command: file, args: [...args], ...base };
  if (!ns.nsexec) {
    throw new CniError(Code.Internal, `cannot run ${file} in the caller's namespaces`, 'the daemon has no strand-nsexec helper (the shim)');
  }
  const enter = [ns.hostIsOwn ? '-1' : '3', ns.mntIsOwn ? '-1' : '4'];
  return { command: ns.nsexec.file, argv0: ns.nsexec.argv0, args: [...enter, file, ...args], ...base };
}

/** strerror(3) texts strand-nsexec prints when its exec fails, by errno name. */
const EXEC_ERRORS: Readonly<Record<string, string>> = {
  'Permission denied': 'EACCES',
  'No such file or directory': 'ENOENT',
  'Exec format error': 'ENOEXEC',
  'Text file busy': 'ETXTBSY',
  'Not a directory': 'ENOTDIR',
  'Too many levels of symbolic links': 'ELOOP',
  'Is a directory': 'EISDIR',
  'File name too long': 'ENAMETOOLONG',
  'Argument list too long': 'E2BIG',
  'Cannot allocate memory': 'ENOMEM',
};

/**
 * When `file` ran through strand-nsexec (childSpawn) and could not be executed, the
 * helper exits 126 or 127 saying why: the same error spawn() gives when it starts `file`
 * itself ("spawn <file> EACCES", code EACCES), so both paths fail alike. Else undefined.
 */
export function nsexecError(file: string, status: number | null, stderr: string): NodeJS.ErrnoException | undefined {
  if (status !== 126 && status !== 127) return undefined;
  const m = /^strand-nsexec: failed to execute (.*): ([^\n]*)\n?$/.exec(stderr);
  const code = m && m[1] === file ? EXEC_ERRORS[m[2]!] : undefined;
  if (!code) return undefined;
  const e: NodeJS.ErrnoException = new Error(`spawn ${file} ${code}`);
  e.code = code;
  e.syscall = `spawn ${file}`;
  e.path = file;
  return e;
}

/**
 * The first regular file named `plugin` in `paths` (libcni's FindInPath). A missing plugin
 * is a plain failure in libcni, reported by Go plugins as code 999 with this message.
 */
export async function findInPath(plugin: string, paths: readonly string[]): Promise<string> {
  if (!plugin) throw new CniError(Code.Internal, 'no plugin name provided');
  if (plugin.includes('/')) throw new CniError(Code.Internal, `invalid plugin name: ${plugin}`);
  if (paths.length === 0) throw new CniError(Code.Internal, 'no paths provided', `CNI_PATH is empty, looking for ${plugin}`);
  for (const dir of paths) {
    const full = join(dir, plugin);
    try {
      if ((await stat(full)).isFile()) return full;
    } catch {
      // not here
    }
  }
  throw new CniError(Code.Internal, `failed to find plugin ${JSON.stringify(plugin)} in path [${paths.join(' ')}]`);
}

interface ExecOutcome {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

function execOnce(file: string, stdin: Buffer, env: Record<string, string>, timeoutMs?: number, ns?: RequestNamespaces): Promise<ExecOutcome> {
  const how = childSpawn(file, [], ns);
  // The delegate opens the pod's namespace through its inherited descriptor.
  const childEnv = how.netns && env['CNI_NETNS'] ? { ...env, CNI_NETNS: how.netns } : env;
  return new Promise((resolve, reject) => {
    // Own process group, so a timeout kills the delegate's children too (they would keep
    // its stdout open otherwise).
    // node:child_process is loaded here, not at start-up: most runs never spawn, and the
    // start-up snapshot of the single executable must not contain it.
    const child = process.getBuiltinModule('node:child_process').spawn(how.command, how.args, {
      env: childEnv,
      stdio: how.stdio,
      shell: false,
      detached: timeoutMs !== undefined,
      ...(how.argv0 ? { argv0: how.argv0 } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, timeoutMs);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    // A delegate that exits without reading stdin makes our write fail with EPIPE: its exit
    // status and output tell the story, so the write error itself is ignored.
    child.stdin!.on('error', () => {});
    child.stdin!.end(stdin);
    child.on('close', (status, signal) => {
      if (timer) clearTimeout(timer);
      const stderr = Buffer.concat(err);
      const execError = how.command !== file ? nsexecError(file, status, stderr.toString('utf8')) : undefined;
      if (execError) reject(execError);
      else resolve({ status, signal, stdout: Buffer.concat(out), stderr, timedOut });
    });
  });
}

const TEXT_BUSY_RETRIES = 5;
const TEXT_BUSY_WAIT_MS = 1000;

/** A delegate's error JSON as a CniError with its code, or undefined when stdout is not one. */
function parseErrorJson(stdout: Buffer): CniError | undefined {
  let o: unknown;
  try {
    o = JSON.parse(stdout.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return undefined;
  const { code, msg, details } = o as Record<string, unknown>;
  if (typeof code !== 'number' || !Number.isInteger(code)) return undefined;
  return new CniError(code, typeof msg === 'string' ? msg : '', typeof details === 'string' ? details : '');
}

function clip(b: Buffer, n = 400): string {
  const s = b.toString('utf8').trim();
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

/**
 * Runs a plugin executable once (retrying while it is "text file busy", as libcni does)
 * and returns its stdout. A non-zero exit becomes a CniError: the delegate's own error JSON
 * when it printed one (code kept), else code 104 (DelegateFailed) with its stderr.
 */
async function execPlugin(file: string, stdin: Buffer, env: Record<string, string>, opts: DelegateOptions = {}, ns?: RequestNamespaces): Promise<Buffer> {
  let outcome: ExecOutcome | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      outcome = await execOnce(file, stdin, env, opts.timeoutMs, ns);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ETXTBSY' && attempt < TEXT_BUSY_RETRIES) {
        await new Promise((r) => setTimeout(r, TEXT_BUSY_WAIT_MS));
        continue;
      }
      throw new CniError(Code.Internal, `failed to execute plugin ${file}`, `${code ?? ''} ${(e as Error).message}`.trim(), {
        cause: e,
      });
    }
  }
  return outcomeStdout(file, outcome, opts);
}

/** The exec'd (or in-process) delegate's stdout on success; its error as a CniError otherwise. */
function outcomeStdout(file: string, outcome: ExecOutcome, opts: DelegateOptions): Buffer {
  const name = file.slice(file.lastIndexOf('/') + 1);
  if (outcome.stderr.length) opts.log?.warn(`${name} stderr: ${clip(outcome.stderr, 4000)}`);
  if (outcome.timedOut) {
    throw new CniError(Code.DelegateFailed, `plugin ${name} timed out`, `killed after ${opts.timeoutMs} ms`);
  }
  if (outcome.status === 0) return outcome.stdout;
  const parsed = parseErrorJson(outcome.stdout);
  if (parsed) throw parsed;
  const how = outcome.signal ? `killed by ${outcome.signal}` : `exit status ${outcome.status}`;
  const details = outcome.stdout.length
    ? `${how}; unparseable output: ${clip(outcome.stdout)}`
    : outcome.stderr.length
      ? `${how}; stderr: ${clip(outcome.stderr)}`
      : `${how}, no error message`;
  throw new CniError(Code.DelegateFailed, `plugin ${name} failed`, details);
}

let selfId: Promise<string | undefined> | undefined;

async function fileId(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** The marker native/shim.c carries: "STRAND-SHIM protocol=<n> build=<version-commit>\n". */
const SHIM_MARKER = Buffer.from('STRAND-SHIM protocol=');
/** A shim is tens of KiB; anything bigger (the 120 MB executable) is not read. */
const SHIM_MAX_SIZE = 1024 * 1024;
const shimBuilds = new Map<string, Promise<string | undefined>>();
const SHIM_CACHE_MAX = 64;

async function readShimBuild(path: string): Promise<string | undefined> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > SHIM_MAX_SIZE) return undefined;
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const data = buf.subarray(0, bytesRead);
    const at = data.indexOf(SHIM_MARKER);
    if (at < 0) return undefined;
    const end = data.indexOf(0x0a, at);
    const m = /build=(\S+)$/.exec(data.subarray(at, end < 0 ? at + 200 : end).toString('latin1'));
    return m?.[1];
  } finally {
    await fh.close();
  }
}

/**
 * The build a strand shim at `path` was made with (its marker), or undefined when the
 * file is not a shim. Cached by device, inode, size and modification time.
 */
async function shimBuildOf(path: string): Promise<string | undefined> {
  let key: string;
  try {
    const st = await stat(path);
    if (!st.isFile() || st.size > SHIM_MAX_SIZE) return undefined;
    key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
  let got = shimBuilds.get(key);
  if (!got) {
    if (shimBuilds.size >= SHIM_CACHE_MAX) shimBuilds.delete(shimBuilds.keys().next().value!);
    got = readShimBuild(path).catch(() => undefined);
    shimBuilds.set(key, got);
  }
  return got;
}

/**
 * The registered in-process plugin to use for `file` (the type's executable found on
 * CNI_PATH), or undefined to exec it: unregistered, disabled by its `execEnv` variable,
 * a timeout asked for, or `file` is neither the running executable (same inode) nor a
 * shim of this build (its marker; the shim would only bring the call back to a strand
 * of this build).
 */
export async function inProcessFor(
  pluginType: string,
  file: string,
  env: Record<string, string | undefined>,
  opts: DelegateOptions = {},
): Promise<InProcessPlugin | undefined> {
  const plugin = inProcessPlugin(pluginType);
  if (!plugin || opts.timeoutMs !== undefined) return undefined;
  if (plugin.execEnv && env[plugin.execEnv] === '1') return undefined;
  if (plugin.anyFile) return plugin;
  selfId ??= fileId(process.execPath);
  const self = await selfId;
  if (self !== undefined && self === (await fileId(file))) return plugin;
  const build = shimBuild();
  return build !== undefined && build === (await shimBuildOf(file)) ? plugin : undefined;
}

/**
 * Runs a registered plugin's main in this process with the delegate's environment and
 * stdin, capturing its stdout and stderr; its exit status and output are then read exactly
 * as an exec'd delegate's are.
 */
async function runInProcess(
  file: string,
  plugin: InProcessPlugin,
  stdin: Buffer,
  env: Record<string, string>,
  opts: DelegateOptions = {},
  ns?: RequestNamespaces,
  observer?: RequestObserver,
): Promise<Buffer> {
  const out: string[] = [];
  const err: string[] = [];
  const io: PluginIO = {
    env,
    stdin: () => Promise.resolve(stdin),
    stdout: { write: (s) => void out.push(s) },
    stderr: { write: (s) => void err.push(s) },
    ...(observer ? { observer } : {}),
  };
  if (ns) io.namespaces = ns;
  let status: number;
  try {
    status = await (await plugin.load())(io);
  } catch (e) {
    // pluginMain never throws; a module that cannot load does (the exec'd binary would
    // have printed code 999 and exited 1: the runtime sees a failed delegate either way).
    const name = file.slice(file.lastIndexOf('/') + 1);
    if (err.length) opts.log?.warn(`${name} stderr: ${clip(Buffer.from(err.join('')), 4000)}`);
    throw new CniError(Code.DelegateFailed, `plugin ${name} failed`, `in-process: ${(e as Error).message}`, { cause: e });
  }
  return outcomeStdout(
    file,
    { status, signal: null, stdout: Buffer.from(out.join(''), 'utf8'), stderr: Buffer.from(err.join(''), 'utf8'), timedOut: false },
    opts,
  );
}

function confBytes(netconf: Buffer | object): Buffer {
  return Buffer.isBuffer(netconf) ? netconf : Buffer.from(JSON.stringify(netconf));
}

function confVersion(conf: Buffer): string | undefined {
  try {
    const v = (JSON.parse(conf.toString('utf8')) as Record<string, unknown>)['cniVersion'];
    return typeof v === 'string' && v ? v : undefined;
  } catch {
    return undefined;
  }
}

async function run(verb: string, pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions): Promise<Buffer> {
  const file = await findInPath(pluginType, a.path);
  const log = opts.log ?? a.log;
  const o = log ? { ...opts, log } : opts;
  const env = delegateEnv(a.env, verb);
  // the delegate's deadlines count from the start of the runtime's call, not its own
  if (a.started !== undefined) env[CALL_STARTED_ENV] = String(a.started);
  const inProcess = await inProcessFor(pluginType, file, a.env, opts);
  const how = inProcess ? 'in-process' : `exec ${file}`;
  log?.debug(`delegate ${verb} ${pluginType} (${how})`);
  const t0 = performance.now();
  try {
    const out = inProcess
      ? await runInProcess(file, inProcess, confBytes(netconf), env, o, a.namespaces, a.observer)
      : await execPlugin(file, confBytes(netconf), env, o, a.namespaces);
    log?.debug(`delegate ${verb} ${pluginType} done in ${(performance.now() - t0).toFixed(1)} ms`);
    return out;
  } catch (e) {
    log?.debug(
      `delegate ${verb} ${pluginType} failed after ${(performance.now() - t0).toFixed(1)} ms: ${isCniError(e) ? `code ${e.code} ${e.msg}` : String(e)}`,
    );
    throw e;
  }
}

/** Decodes a delegate's ADD output into the 1.1.0 form (a result without a version has the config's). */
function decodeDelegateResult(pluginType: string, stdout: Buffer, conf: Buffer | object): Result {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout.toString('utf8'));
  } catch (e) {
    throw new CniError(Code.DecodingFailure, `failed to decode the result of ${pluginType}`, clip(stdout), { cause: e });
  }
  if (raw === null) raw = {}; // libcni accepts "null" as an empty result
  try {
    return parseResult(raw, confVersion(confBytes(conf)));
  } catch (e) {
    if (isResultFormatError(e)) {
      throw new CniError(Code.DecodingFailure, `invalid result from ${pluginType}`, `${e.field}: ${e.reason}`, { cause: e });
    }
    if (isCniError(e)) {
      throw new CniError(e.code, `invalid result from ${pluginType}: ${e.msg}`, e.details, { cause: e });
    }
    throw e;
  }
}

/** Delegated ADD: returns the delegate's result in the 1.1.0 form. */
export async function delegateAdd(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<Result> {
  const stdout = await run('ADD', pluginType, netconf, a, opts);
  return decodeDelegateResult(pluginType, stdout, netconf);
}

export async function delegateDel(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<void> {
  await run('DEL', pluginType, netconf, a, opts);
}

export async function delegateCheck(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<void> {
  await run('CHECK', pluginType, netconf, a, opts);
}

export async function delegateStatus(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<void> {
  await run('STATUS', pluginType, netconf, a, opts);
}

export async function delegateGc(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<void> {
  await run('GC', pluginType, netconf, a, opts);
}

/**
 * Delegated ADD that, when the delegate fails, runs the delegate's DEL before rethrowing
 * (spec section 4: a failed delegated ADD is followed by DEL). A DEL failure is logged and
 * the ADD error is what the caller sees. Use it for IPAM in a plugin's ADD; then push the
 * IPAM DEL onto the undo stack for the later steps.
 */
export async function delegateAddWithRollback(pluginType: string, netconf: Buffer | object, a: CmdArgs, opts: DelegateOptions = {}): Promise<Result> {
  // A delegate that cannot be found never ran: nothing to roll back.
  await findInPath(pluginType, a.path);
  try {
    return await delegateAdd(pluginType, netconf, a, opts);
  } catch (addErr) {
    try {
      await delegateDel(pluginType, netconf, a, opts);
    } catch (delErr) {
      (opts.log ?? a.log)?.warn(`rollback: DEL of ${pluginType} after its failed ADD also failed`, delErr);
    }
    throw addErr;
  }
}
