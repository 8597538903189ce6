import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, pathEnv, refBinDir, repoRoot } from './run-plugin.ts';

// Runs test/cnitool (our libcni driver, built by scripts/build-test-tools.sh) the way a
// runtime calls plugins: network lists from .conflist files in a temp NETCONFPATH, a
// temp libcni result cache, optionally inside a "host" network namespace so that
// bridges and iptables rules the plugins make never touch the real host.

export const cnitoolBin = join(repoRoot, 'dist', 'test-tools', 'cnitool');

/** Builds dist/test-tools/cnitool when missing or stale (a no-op otherwise, ~10 ms). */
export function buildCnitool(): string {
  execFileSync('bash', [join(repoRoot, 'scripts', 'build-test-tools.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (!existsSync(cnitoolBin)) throw new Error(`cnitool not built: ${cnitoolBin}`);
  return cnitoolBin;
}

/**
 * Fails loudly unless `dist/bin/<name>` exists: strand plugins are built by
 * scripts/build.sh. A test calling this before its plugin lands fails with
 * "<name> not built yet".
 */
export function requireStrandPlugin(name: string): string {
  const exe = join(binDir, name);
  if (!existsSync(exe)) throw new Error(`${name} not built yet: ${exe} missing (run scripts/build.sh)`);
  return exe;
}

export type CniVerb = 'add' | 'check' | 'del' | 'gc' | 'status';

export interface CnitoolRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout as JSON: the ADD result, or the plugin's CNI error object on failure. */
  json: any;
}

export interface CnitoolOptions {
  /** Run inside this network namespace (name under /run/netns) via `ip netns exec`. */
  hostNs?: string;
  ifName?: string;
  containerId?: string;
  /** CNI_ARGS string "K=V;K=V". */
  args?: string;
  /** CAP_ARGS: capability arguments injected as runtimeConfig. */
  capArgs?: Record<string, unknown>;
  /** gc: cni.dev/valid-attachments; default (unset) = every cached attachment. */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
  /** CNI_PATH; default dist/bin then the reference plugins. */
  path?: string[];
  extraEnv?: Record<string, string>;
}

/**
 * One test's CNI environment: a temp directory holding the conflists (NETCONFPATH),
 * libcni's result cache and any plugin data dirs. `cleanup()` removes it.
 */
export class CniEnv {
  readonly root: string;
  readonly confDir: string;
  readonly cacheDir: string;

  constructor() {
    this.root = mkdtempSync(join(tmpdir(), 'strand-cnitool-'));
    this.confDir = join(this.root, 'net.d');
    this.cacheDir = join(this.root, 'cache');
    mkdirSync(this.confDir);
  }

  /** A fresh directory under the root (e.g. host-local's dataDir). */
  dir(name: string): string {
    const d = join(this.root, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Writes `<name>.conflist` (the list's `name` is set to `name`). */
  writeConflist(name: string, list: { cniVersion: string; plugins: object[]; [k: string]: unknown }): string {
    const file = join(this.confDir, `${name}.conflist`);
    writeFileSync(file, JSON.stringify({ ...list, name }, null, 2));
    return file;
  }

  /** libcni's cached results for `net` (one file per attachment). */
  cachedResults(net: string): Array<{ containerId: string; ifName: string; result: any }> {
    const dir = join(this.cacheDir, 'results');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.startsWith(`${net}-`))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')))
      .filter((c) => c.networkName === net)
      .map((c) => ({ containerId: c.containerId, ifName: c.ifName, result: c.result }));
  }

  run(verb: CniVerb, net: string, netns: string | undefined, opts: CnitoolOptions = {}): Promise<CnitoolRun> {
    return runCnitool(verb, net, netns, { ...opts, confDir: this.confDir, cacheDir: this.cacheDir });
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export function runCnitool(
  verb: CniVerb,
  net: string,
  netns: string | undefined,
  opts: CnitoolOptions & { confDir: string; cacheDir: string },
): Promise<CnitoolRun> {
  if (!existsSync(cnitoolBin)) throw new Error(`cnitool missing: ${cnitoolBin} (call buildCnitool() in beforeAll)`);
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    NETCONFPATH: opts.confDir,
    CNI_CACHE_DIR: opts.cacheDir,
    CNI_PATH: (opts.path ?? [binDir, refBinDir]).join(':'),
    CNI_IFNAME: opts.ifName ?? 'eth0',
    ...pathEnv(),
  };
  if (opts.containerId !== undefined) env['CNI_CONTAINERID'] = opts.containerId;
  if (opts.args !== undefined) env['CNI_ARGS'] = opts.args;
  if (opts.capArgs !== undefined) env['CAP_ARGS'] = JSON.stringify(opts.capArgs);
  if (opts.validAttachments !== undefined) env['CNI_VALID_ATTACHMENTS'] = JSON.stringify(opts.validAttachments);
  Object.assign(env, opts.extraEnv ?? {});
  const tail = [verb, net, ...(netns !== undefined ? [netns] : [])];
  const [cmd, argv] = opts.hostNs ? ['ip', ['netns', 'exec', opts.hostNs, cnitoolBin, ...tail]] : [cnitoolBin, tail];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv as string[], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** Throws with the driver's stderr unless the run succeeded; returns stdout JSON. */
export function ok(run: CnitoolRun): any {
  if (run.code !== 0) throw new Error(`cnitool failed (exit ${run.code}): ${run.stderr.trim() || run.stdout.trim()}`);
  return run.json;
}
