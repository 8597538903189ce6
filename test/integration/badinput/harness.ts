// Bad-input harness: runs the BUILT plugin binaries (dist/bin/...) inside throwaway
// "host" namespaces with hostile requests and checks each answer (CNI error JSON on
// stdout, the documented code, exit 1, no stack trace) and that nothing changed in the
// host namespace, the pod namespace or the IPAM data directory.
//
// The corpus lives in test/fixtures/badinput/ (see README.md there): one JSON file per
// case, a base config per plugin that the case patches, and fake IPAM delegates.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ip } from '../../helpers/netns.ts';
import { runPrefix } from '../../helpers/prefix.ts';
import { binDir, pathEnv, refBinDir, repoRoot } from '../../helpers/run-plugin.ts';

export const fixturesDir = join(repoRoot, 'test', 'fixtures', 'badinput');
export const casesDir = join(fixturesDir, 'cases');
export const delegatesDir = join(fixturesDir, 'delegates');

export const PLUGINS = ['strand-bridge', 'strand-macvlan', 'strand-ipvlan', 'strand-ipam', 'strand-portmap'] as const;
export type PluginName = (typeof PLUGINS)[number];

/** A port where nothing listens (checked before the run): an unreachable etcd. */
export const DEAD_ETCD_PORT = 24087;

/** How a case builds stdin when it is not a patch of the base config. */
export type StdinGen =
  | { kind: 'huge-string-field'; field: string; bytes: number }
  | { kind: 'deep-nesting'; field: string; depth: number }
  | { kind: 'deep-objects'; field: string; depth: number }
  | { kind: 'huge-garbage'; bytes: number }
  | { kind: 'huge-array-field'; field: string; items: number };

export interface Expect {
  /** The CNI error code (or the codes allowed, each explained in `why`). */
  code?: number | number[];
  /** Strings that must appear in msg + details (the field named, the value...). */
  mentions?: string[];
  /** The request is hostile but legal: exit 0 and no error (e.g. DEL of nothing). */
  ok?: boolean;
  /**
   * Bounds on the answer (issue 16 item 8): the median CPU time (user + system) of three
   * runs in milliseconds (wall time at most 10x that) and the plugin's peak RSS in MiB
   * (GNU time's maximum resident set size).
   */
  within?: { ms: number; rssMiB: number };
}

export interface BadCase {
  /** File name without .json, relative to cases/ ("macvlan/mode-bogus"). */
  id: string;
  plugin: PluginName;
  /** Why this answer is the right one (spec section, reference plugin behaviour...). */
  why: string;
  command?: string;
  /** Overrides of the default environment; null removes the variable. */
  env?: Record<string, string | null>;
  /** Deep-merged into the plugin's base config (also the one stdinGen starts from); null deletes a key. */
  patch?: Record<string, unknown>;
  /** A whole config object, used instead of base+patch. */
  config?: unknown;
  /** Raw stdin text. */
  stdin?: string;
  /** Raw stdin bytes, base64. */
  stdinBase64?: string;
  stdinGen?: StdinGen;
  expect: Expect;
}

// ---------------------------------------------------------------------------------
// corpus loading

function listJson(dir: string): string[] {
  const out: string[] = [];
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) out.push(...listJson(p));
    else if (ent.name.endsWith('.json')) out.push(p);
  }
  return out.sort();
}

const CASE_KEYS = new Set(['plugin', 'why', 'command', 'env', 'patch', 'config', 'stdin', 'stdinBase64', 'stdinGen', 'expect']);

/** Checks one case file's shape; returns a list of problems (empty when fine). */
export function caseProblems(c: Record<string, unknown>): string[] {
  const p: string[] = [];
  for (const k of Object.keys(c)) if (!CASE_KEYS.has(k)) p.push(`unknown key ${k}`);
  if (!(PLUGINS as readonly unknown[]).includes(c['plugin'])) p.push(`plugin must be one of ${PLUGINS.join(', ')}`);
  if (typeof c['why'] !== 'string' || c['why'].length < 10) p.push('why: explain the expected answer');
  const sources = ['config', 'stdin', 'stdinBase64', 'stdinGen'].filter((k) => c[k] !== undefined);
  if (sources.length > 1) p.push(`only one of ${sources.join(', ')}`);
  if (sources.length === 1 && sources[0] !== 'stdinGen' && c['patch'] !== undefined) p.push('patch applies to the base config (and to stdinGen)');
  const e = c['expect'] as Expect | undefined;
  if (!e || typeof e !== 'object') p.push('expect is required');
  else {
    if (e.ok !== undefined && e.code !== undefined) p.push('expect: ok and code exclude each other');
    if (e.ok === undefined && e.code === undefined) p.push('expect: code (or ok) is required');
    const codes = e.code === undefined ? [] : Array.isArray(e.code) ? e.code : [e.code];
    if (codes.some((x) => !Number.isInteger(x) || x < 1)) p.push('expect.code: positive integers');
    if (e.within !== undefined && !(e.within.ms > 0 && e.within.rssMiB > 0)) p.push('expect.within: {ms, rssMiB}, both positive');
  }
  if (c['env'] !== undefined) {
    for (const [k, v] of Object.entries(c['env'] as object)) {
      if (v !== null && typeof v !== 'string') p.push(`env.${k}: string or null`);
    }
  }
  return p;
}

export function loadCorpus(): BadCase[] {
  return listJson(casesDir).map((file) => {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const id = relative(casesDir, file).replace(/\.json$/, '');
    const problems = caseProblems(raw);
    if (problems.length) throw new Error(`bad fixture ${id}: ${problems.join('; ')}`);
    return { id, ...(raw as Omit<BadCase, 'id'>) };
  });
}

export function loadBase(plugin: PluginName): Record<string, unknown> {
  return JSON.parse(readFileSync(join(fixturesDir, 'base', `${plugin}.json`), 'utf8')) as Record<string, unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge (objects merge, everything else replaces, null deletes). Never touches prototypes. */
export function mergePatch(base: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch) || !isPlainObject(base)) return structuredClone(patch);
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(base)) Object.defineProperty(out, k, { value: structuredClone(v), enumerable: true, writable: true, configurable: true });
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else Object.defineProperty(out, k, { value: k in out ? mergePatch(out[k], v) : structuredClone(v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------
// worlds: one host namespace, one pod namespace, temp files per concurrent worker

export interface World {
  index: number;
  prefix: string;
  hostNs: string;
  podNs: string;
  tmp: string;
  dataDir: string;
  /** Values substituted for ${NAME} in case env values and config strings. */
  vars: Record<string, string>;
  /** The state after the last case (the next case's "before"); unset when unknown. */
  last?: WorldState | undefined;
  /** A case changed something: the pool rebuilds this world before handing it out again. */
  dirty: boolean;
}

/** Replaces ${NAME} in every string of `v` (keys too). */
export function substitute(v: unknown, vars: Record<string, string>): unknown {
  if (typeof v === 'string') return v.replace(/\$\{([A-Z_]+)\}/g, (m, name: string) => vars[name] ?? m);
  if (Array.isArray(v)) return v.map((x) => substitute(x, vars));
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [k, x] of Object.entries(v)) {
      Object.defineProperty(out, substitute(k, vars) as string, { value: substitute(x, vars), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return v;
}

export function makeWorld(prefix: string, index: number): World {
  const hostNs = `${prefix}-h${index}`;
  const podNs = `${prefix}-p${index}`;
  const tmp = mkdtempSync(join(tmpdir(), `${prefix}-bi${index}-`));
  const made: string[] = [];
  try {
    for (const ns of [hostNs, podNs]) {
      ip(['netns', 'add', ns]);
      made.push(ns);
      ip(['link', 'set', 'lo', 'up'], { ns });
    }
    // The host's "uplink": one end of a veth pair (this kernel has no dummy links) with an
    // address and the default route, as the master macvlan/ipvlan pick when none is named.
    // No IPv6 link-local addresses on them: their DAD would finish during a case and look
    // like a change.
    ip(['link', 'add', 'm0', 'mtu', '1500', 'type', 'veth', 'peer', 'name', 'm0peer'], { ns: hostNs });
    for (const l of ['m0', 'm0peer']) ip(['link', 'set', l, 'addrgenmode', 'none'], { ns: hostNs });
    ip(['link', 'set', 'm0peer', 'up'], { ns: hostNs });
    ip(['addr', 'add', '192.0.2.10/24', 'dev', 'm0'], { ns: hostNs });
    ip(['link', 'set', 'm0', 'up'], { ns: hostNs });
    ip(['route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'm0'], { ns: hostNs });
  } catch (e) {
    for (const ns of made) ip(['netns', 'del', ns]);
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const dataDir = join(tmp, 'ipam');
  mkdirSync(dataDir);
  const file = join(tmp, 'regular-file');
  writeFileSync(file, 'not a namespace\n');
  const dir = join(tmp, 'a-directory');
  mkdirSync(dir);
  const vars: Record<string, string> = {
    NET: `bi-${prefix}`,
    POD_NETNS: `/run/netns/${podNs}`,
    HOST_NETNS: `/run/netns/${hostNs}`,
    DATA_DIR: dataDir,
    TMP: tmp,
    FILE: file,
    DIR: dir,
    MISSING: join(tmp, 'no-such-netns'),
    DELEGATES: delegatesDir,
    DIST: binDir,
    REF: refBinDir,
    DEAD_ETCD: `http://127.0.0.1:${DEAD_ETCD_PORT}`,
    PREFIX: prefix,
  };
  return { index, prefix, hostNs, podNs, tmp, dataDir, vars, dirty: false };
}

export function destroyWorld(w: World): void {
  for (const ns of [w.podNs, w.hostNs]) {
    try {
      ip(['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
  rmSync(w.tmp, { recursive: true, force: true });
}

/** A fixed number of worlds handed to concurrent tests one at a time. */
export class WorldPool {
  private readonly free: World[] = [];
  private readonly all: World[] = [];
  private readonly waiters: Array<(w: World) => void> = [];
  readonly prefix: string;

  constructor(size: number, prefix = runPrefix()) {
    this.prefix = prefix;
    try {
      for (let i = 0; i < size; i++) {
        const w = makeWorld(prefix, i);
        this.all.push(w);
        this.free.push(w);
      }
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  async use<T>(fn: (w: World) => Promise<T>): Promise<T> {
    const w = this.free.pop() ?? (await new Promise<World>((r) => this.waiters.push(r)));
    let handed = w;
    try {
      return await fn(w);
    } finally {
      if (w.dirty) {
        // Whatever the case left behind goes with its namespaces; the next case starts clean.
        destroyWorld(w);
        handed = makeWorld(this.prefix, w.index);
        this.all[this.all.indexOf(w)] = handed;
      }
      const next = this.waiters.shift();
      if (next) next(handed);
      else this.free.push(handed);
    }
  }

  destroy(): void {
    for (const w of this.all.splice(0)) destroyWorld(w);
  }
}

// ---------------------------------------------------------------------------------
// building and running a request

export interface Request {
  env: Record<string, string>;
  stdin: Buffer;
  /** Short description of stdin for failure messages (huge inputs are not printed). */
  stdinSummary: string;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (!isPlainObject(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/** Builds the JSON text of `base` with `field` replaced by `placeholder`, then splices `big` in (no giant object graph). */
function withField(base: Record<string, unknown>, field: string, big: string): Buffer {
  const marker = `__BADINPUT_${Math.random().toString(36).slice(2)}__`;
  const copy = structuredClone(base);
  setPath(copy, field, marker);
  const [head, tail] = JSON.stringify(copy).split(`"${marker}"`) as [string, string];
  return Buffer.concat([Buffer.from(head), Buffer.from(big), Buffer.from(tail)]);
}

function generate(gen: StdinGen, base: Record<string, unknown>): Buffer {
  switch (gen.kind) {
    case 'huge-string-field':
      return withField(base, gen.field, JSON.stringify('a'.repeat(gen.bytes)));
    case 'deep-nesting':
      return withField(base, gen.field, '['.repeat(gen.depth) + ']'.repeat(gen.depth));
    case 'deep-objects':
      return withField(base, gen.field, `${'{"a":'.repeat(gen.depth)}1${'}'.repeat(gen.depth)}`);
    case 'huge-array-field': {
      const items = new Array<string>(gen.items).fill('1').join(',');
      return withField(base, gen.field, `[${items}]`);
    }
    case 'huge-garbage': {
      const b = Buffer.alloc(gen.bytes);
      let x = 0x2545f491;
      for (let i = 0; i < b.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        b[i] = x & 0xff;
      }
      return b;
    }
  }
}

export function defaultEnv(w: World, c: { id: string; command?: string }): Record<string, string> {
  return {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: c.command ?? 'ADD',
    CNI_CONTAINERID: `badinput-${c.id.replace(/[^A-Za-z0-9_.-]/g, '-')}`,
    CNI_NETNS: w.vars['POD_NETNS']!,
    CNI_IFNAME: 'eth0',
    CNI_PATH: `${binDir}:${refBinDir}`,
    ...pathEnv(),
  };
}

export function buildRequest(w: World, c: BadCase): Request {
  const env = defaultEnv(w, c);
  for (const [k, v] of Object.entries(c.env ?? {})) {
    if (v === null) delete env[k];
    else env[k] = substitute(v, w.vars) as string;
  }
  const base = mergePatch(substitute(loadBase(c.plugin), w.vars), substitute(c.patch ?? {}, w.vars)) as Record<string, unknown>;
  let stdin: Buffer;
  let summary: string;
  if (c.stdin !== undefined) {
    stdin = Buffer.from(substitute(c.stdin, w.vars) as string);
    summary = JSON.stringify(c.stdin.slice(0, 300));
  } else if (c.stdinBase64 !== undefined) {
    stdin = Buffer.from(c.stdinBase64, 'base64');
    summary = `base64 ${c.stdinBase64.slice(0, 200)}`;
  } else if (c.stdinGen !== undefined) {
    stdin = generate(c.stdinGen, base);
    summary = `generated ${JSON.stringify(c.stdinGen)} (${stdin.length} bytes)`;
  } else {
    const conf = c.config !== undefined ? substitute(c.config, w.vars) : base;
    const text = JSON.stringify(conf);
    stdin = Buffer.from(text);
    summary = text.length > 2000 ? `${text.slice(0, 2000)}... (${text.length} bytes)` : text;
  }
  return { env, stdin, stdinSummary: summary };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
  /** Peak RSS of the plugin in KiB, when run with `measure`. */
  maxRssKiB?: number;
  /** CPU time (user + system) of the plugin in ms, when run with `measure`. */
  cpuMs?: number;
}

/** GNU time (Debian package `time`, scripts/setup.sh): the peak RSS and CPU time of the process it runs. */
const GNU_TIME = '/usr/bin/time';

/**
 * Runs `dist/bin/<plugin>` inside the world's host namespace (nsenter, which execs the
 * plugin in its own process), stdin piped, bounded in time. With `measure`, under GNU
 * time, which writes the peak RSS to a file of the world.
 */
export function runInHost(w: World, plugin: string, req: Request, timeoutMs = 30_000, measure = false): Promise<RunResult> {
  const exe = join(binDir, plugin);
  if (!existsSync(exe)) throw new Error(`plugin binary missing: ${exe} (run scripts/build.sh)`);
  if (measure && !existsSync(GNU_TIME)) throw new Error(`${GNU_TIME} missing (Debian package time; scripts/setup.sh installs it)`);
  const rssFile = join(w.tmp, '.maxrss');
  const argv = [`--net=/run/netns/${w.hostNs}`, '--', exe];
  const [cmd, args] = measure ? [GNU_TIME, ['-f', '%M %U %S', '-o', rssFile, 'nsenter', ...argv]] : ['nsenter', argv];
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: req.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 64) err.push(d);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const r: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
        timedOut,
      };
      if (measure) {
        // GNU time exits with the plugin's status and writes "<KiB> <user s> <sys s>\n"
        // (after a "Command exited with non-zero status" line when it failed).
        const lines = existsSync(rssFile) ? readFileSync(rssFile, 'utf8').trim().split('\n') : [];
        rmSync(rssFile, { force: true });
        const [kib, user, sys] = (lines[lines.length - 1] ?? '').split(' ').map(Number);
        if (kib !== undefined && Number.isFinite(kib) && kib > 0) r.maxRssKiB = kib;
        if (user !== undefined && sys !== undefined && Number.isFinite(user + sys)) r.cpuMs = (user + sys) * 1000;
      }
      resolve(r);
    });
    // The plugin may stop reading early (a validation error before stdin is read): EPIPE is fine.
    child.stdin.on('error', () => {});
    child.stdin.end(req.stdin);
  });
}

// ---------------------------------------------------------------------------------
// state snapshots

const SNAPSHOT_SCRIPT = [
  // -d addr: links with their kind, master, mtu, flags and addresses in one dump
  'ip -j -d addr show',
  'ip -j route show table all',
  'ip -j -6 route show table all',
  'for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv4/conf/all/arp_notify; do read v < $f; echo "$f=$v"; done',
  // iptables here is the nf_tables backend: the ruleset holds masquerade rules of both
  'nft list ruleset 2>/dev/null || true',
].join('; echo @@; ');

/** Volatile fields that change on their own (counters, timers, neighbour states). */
function normalise(text: string): string {
  return text
    .replace(
      /"(stats64|stats|used|updated|confirmed|refcnt|probes|expires|valid_life_time|preferred_life_time|[a-z_]+_timer)":\s*("[^"]*"|\{[^}]*\}|[0-9.]+)/g,
      '"$1":0',
    )
    .replace(/"state":"(STALE|REACHABLE|DELAY|PROBE|FAILED|INCOMPLETE)"/g, '"state":"X"')
    .replace(/\[[0-9]+:[0-9]+\]/g, '[0:0]');
}

/** Links, addresses, routes, neighbours, forwarding sysctls and NAT rules of one namespace. */
export function nsState(ns: string): string {
  const out = execFileSync('nsenter', [`--net=/run/netns/${ns}`, '--', 'sh', '-c', SNAPSHOT_SCRIPT], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 16 << 20,
  });
  return normalise(out);
}

/** Every file under `dir` with its size and content hash-free text (IPAM records are small). */
export function dirState(dir: string): string {
  const lines: string[] = [];
  const walk = (d: string): void => {
    for (const ent of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) {
        lines.push(`${relative(dir, p)}/`);
        walk(p);
      } else {
        const st = statSync(p);
        lines.push(`${relative(dir, p)} ${st.size} ${st.size < 65536 ? JSON.stringify(readFileSync(p, 'utf8')) : ''}`);
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return lines.join('\n');
}

export interface WorldState {
  host: string;
  pod: string;
  data: string;
  tmp: string;
  /** The default host-local/strand-ipam data directory for this run's network name (must never appear). */
  defaultDataDir: boolean;
}

export function worldState(w: World): WorldState {
  return {
    host: nsState(w.hostNs),
    pod: nsState(w.podNs),
    data: dirState(w.dataDir),
    tmp: readdirSync(w.tmp).sort().join(','),
    defaultDataDir: existsSync(join('/var/lib/cni/networks', w.vars['NET']!)),
  };
}

/** A short line diff of two snapshots, for failure messages. */
export function diffText(before: string, after: string): string {
  const a = before.split(/[\n,]/);
  const b = after.split(/[\n,]/);
  const sa = new Set(a);
  const sb = new Set(b);
  const gone = a
    .filter((x) => !sb.has(x))
    .slice(0, 20)
    .map((x) => `- ${x}`);
  const added = b
    .filter((x) => !sa.has(x))
    .slice(0, 20)
    .map((x) => `+ ${x}`);
  return [...gone, ...added].join('\n');
}

// ---------------------------------------------------------------------------------
// judging an answer

/** A JavaScript stack frame ("    at fn (file:1:2)") or a Go panic trace. */
const STACK = /^\s+at .+[:(]|^goroutine \d+ \[|^panic: /m;
const ERROR_KEYS = new Set(['cniVersion', 'code', 'msg', 'details']);
const VERSIONS = new Set(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);

/** Problems with a plugin's answer to a case (empty when it is right). */
export function judge(r: RunResult, expect: Expect): string[] {
  const p: string[] = [];
  if (r.timedOut) p.push(`timed out after ${r.ms.toFixed(0)} ms`);
  if (r.signal) p.push(`killed by ${r.signal}`);
  if (STACK.test(r.stdout)) p.push('stack trace on stdout');
  if (expect.ok) {
    if (r.code !== 0) p.push(`exit ${r.code}, expected 0`);
    return p;
  }
  if (r.code !== 1) p.push(`exit ${r.code}, expected 1`);
  let j: unknown;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    p.push('stdout is not one JSON document');
    return p;
  }
  if (!isPlainObject(j)) {
    p.push('stdout is not a JSON object');
    return p;
  }
  const extra = Object.keys(j).filter((k) => !ERROR_KEYS.has(k));
  if (extra.length) p.push(`unexpected keys in the error: ${extra.join(', ')}`);
  if (j['cniVersion'] !== undefined && !VERSIONS.has(j['cniVersion'] as string)) p.push(`error cniVersion ${JSON.stringify(j['cniVersion'])}`);
  if (typeof j['msg'] !== 'string' || j['msg'].length === 0) p.push('msg must be a non-empty string');
  if (j['details'] !== undefined && typeof j['details'] !== 'string') p.push('details must be a string');
  const allowed = expect.code === undefined ? [] : Array.isArray(expect.code) ? expect.code : [expect.code];
  if (!allowed.includes(j['code'] as number)) p.push(`code ${JSON.stringify(j['code'])}, expected ${allowed.join(' or ')}`);
  const text = `${String(j['msg'])} ${String(j['details'] ?? '')}`;
  for (const m of expect.mentions ?? []) if (!text.includes(m)) p.push(`error does not mention ${JSON.stringify(m)}`);
  // A runaway error message (echoing a 16 MB input back) is a bug too.
  if (r.stdout.length > 8192) p.push(`error JSON is ${r.stdout.length} bytes`);
  return p;
}

export interface CaseOutcome {
  problems: string[];
  result: RunResult;
  request: Request;
}

/** Runs one case in a world: snapshot, run, snapshot, judge. */
export async function runCase(w: World, c: BadCase): Promise<CaseOutcome> {
  const request = buildRequest(w, c);
  const before = w.last ?? worldState(w);
  const within = c.expect.within;
  const result = await runInHost(w, c.plugin, request, undefined, within !== undefined);
  const after = worldState(w);
  const problems = judge(result, c.expect);
  if (within) problems.push(...(await limitProblems(w, c, request, result, within)));
  const changed: string[] = [];
  for (const k of ['host', 'pod', 'data', 'tmp'] as const) {
    // A legal request (DEL of nothing) may create the store's empty directory and lock
    // file, as host-local does; it may not add or remove any record.
    const [b, a] = c.expect.ok && k === 'data' ? [records(before.data), records(after.data)] : [before[k], after[k]];
    if (b !== a) changed.push(`${k} changed:\n${diffText(b, a)}`);
  }
  if (after.defaultDataDir && !before.defaultDataDir) changed.push(`wrote the default data dir /var/lib/cni/networks/${w.vars['NET']}`);
  problems.push(...changed);
  w.dirty = changed.length > 0;
  w.last = w.dirty ? undefined : after;
  return { problems, result, request };
}

/**
 * The time and memory bounds of a case: the median CPU time (user + system) of the first
 * run and two more, and the largest peak RSS of the three. CPU time, not wall time: the
 * bound is about the work a plugin does with such input (the nesting bomb once took 70 s
 * and 5 GB), and the test command runs the qemu guest tests beside these, which can stretch
 * a run's wall time several times over. The wall time is reported, and bounded at 10x.
 */
async function limitProblems(w: World, c: BadCase, request: Request, first: RunResult, within: { ms: number; rssMiB: number }): Promise<string[]> {
  const runs = [first, await runInHost(w, c.plugin, request, undefined, true), await runInHost(w, c.plugin, request, undefined, true)];
  const p: string[] = [];
  for (const r of runs.slice(1)) p.push(...judge(r, c.expect).map((x) => `repeated run: ${x}`));
  const walls = runs.map((r) => r.ms.toFixed(0)).join(', ');
  const cpus = runs.map((r) => r.cpuMs);
  if (cpus.some((x) => x === undefined)) p.push('no CPU time from GNU time');
  else {
    const ms = (cpus as number[]).sort((a, b) => a - b)[1] as number;
    if (ms > within.ms) p.push(`median CPU time of 3 runs ${ms.toFixed(0)} ms, limit ${within.ms} ms (wall: ${walls} ms)`);
  }
  const wall = runs.map((r) => r.ms).sort((a, b) => a - b)[1] as number;
  if (wall > 10 * within.ms) p.push(`median wall time of 3 runs ${wall.toFixed(0)} ms, over 10x the limit of ${within.ms} ms (runs: ${walls})`);
  const rss = runs.map((r) => r.maxRssKiB);
  if (rss.some((x) => x === undefined)) p.push('no peak RSS from GNU time');
  else {
    const mib = Math.max(...(rss as number[])) / 1024;
    if (mib > within.rssMiB) p.push(`peak RSS ${mib.toFixed(0)} MiB, limit ${within.rssMiB} MiB`);
  }
  return p;
}

/** Data-dir lines without directories and empty lock files. */
function records(data: string): string {
  return data
    .split('\n')
    .filter((l) => !l.endsWith('/') && !/\.lock 0 ""$/.test(l))
    .join('\n');
}

/** The failure message for a case: what was sent, what came back, what is wrong. */
export function report(id: string, o: CaseOutcome): string {
  const env = Object.entries(o.request.env)
    .filter(([k]) => k.startsWith('CNI_'))
    .map(([k, v]) => `${k}=${JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}...` : v)}`)
    .join(' ');
  return [
    `case ${id}:`,
    ...o.problems.map((x) => `  * ${x}`),
    `  env: ${env}`,
    `  stdin: ${o.request.stdinSummary}`,
    `  exit ${o.result.code} signal ${o.result.signal} in ${o.result.ms.toFixed(0)} ms${o.result.maxRssKiB ? `, peak RSS ${(o.result.maxRssKiB / 1024).toFixed(0)} MiB` : ''}`,
    `  stdout: ${o.result.stdout.slice(0, 1500)}`,
    `  stderr: ${o.result.stderr.slice(0, 1500)}`,
  ].join('\n');
}
