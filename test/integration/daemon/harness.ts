// Shared set-up of the daemon tests: a "host" and pods in fresh namespaces, a private
// IPAM data directory, a daemon on a private socket, and a way to run a plugin the way a
// runtime does (inside the host namespace, env and stdin only) through either the shim
// (dist/shim/<plugin>) or the standalone executable (dist/bin/<plugin>).
import { spawn } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { TestDaemon, SHIM_DIR } from '../../helpers/daemon.ts';
import { requireBuilt } from '../ipam/helpers.ts';
import { ipJson, NetnsSet } from '../../helpers/netns.ts';
import { refBinDir, repoRoot } from '../../helpers/run-plugin.ts';

export const STANDALONE_DIR = join(repoRoot, 'dist', 'bin');

export interface Call {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any;
  ms: number;
}

export interface CallOptions {
  /** Which executable: the shim (default) or the standalone one. */
  via?: 'shim' | 'standalone' | string;
  command: string;
  containerId?: string;
  ifName?: string;
  netns?: string;
  cniPath?: string;
  env?: Record<string, string>;
  /** uid to run as (default: root). */
  uid?: number;
}

export class World {
  readonly ns = new NetnsSet();
  readonly tmp: string;
  readonly dataDir: string;
  readonly host: string;
  readonly daemon: TestDaemon;
  /** A directory on CNI_PATH for test delegates (slow-ipam). */
  readonly tools: string;

  constructor() {
    this.tmp = mkdtempSync(join(tmpdir(), `${this.ns.prefix}-dmt-`));
    this.dataDir = join(this.tmp, 'ipam');
    this.tools = join(this.tmp, 'tools');
    this.host = this.ns.add('h');
    this.daemon = new TestDaemon();
    writeTool(this.tools, 'slow-ipam', SLOW_IPAM);
  }

  get prefix(): string {
    return this.ns.prefix;
  }

  pod(short: string): string {
    return this.ns.add(short);
  }

  /** A bridge network with strand-ipam (local store), or `ipam` instead. */
  conf(ipam?: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: '1.1.0',
      name: `${this.prefix}-net`,
      type: 'strand-bridge',
      bridge: `${this.prefix}-br`,
      isGateway: true,
      ipam: ipam ?? { type: 'strand-ipam', dataDir: this.dataDir, ranges: [[{ subnet: '10.98.0.0/24' }]] },
      ...extra,
    };
  }

  /** The same network with IPAM by the slow-ipam script (host-local, 1.0.0 at most, after a sleep on ADD). */
  slowConf(): Record<string, unknown> {
    return { ...this.conf({ type: 'slow-ipam', dataDir: this.dataDir, ranges: [[{ subnet: '10.98.0.0/24' }]] }), cniVersion: '1.0.0' };
  }

  cniPath(via: string): string {
    return `${via === 'standalone' ? STANDALONE_DIR : SHIM_DIR}:${this.tools}:${refBinDir}`;
  }

  /** Runs `plugin` in the host namespace as a runtime would. */
  call(plugin: string, o: CallOptions, stdin: unknown): Promise<Call> {
    const via = o.via ?? 'shim';
    const exe = via === 'shim' ? join(SHIM_DIR, plugin) : via === 'standalone' ? join(STANDALONE_DIR, plugin) : join(via, plugin);
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: o.command,
      CNI_PATH: o.cniPath ?? this.cniPath(via),
      STRAND_DAEMON_SOCKET: this.daemon.socket,
      ...o.env,
    };
    if (o.containerId !== undefined) env['CNI_CONTAINERID'] = o.containerId;
    if (o.ifName !== undefined) env['CNI_IFNAME'] = o.ifName;
    if (o.netns !== undefined) env['CNI_NETNS'] = o.netns;
    return runIn(this.host, exe, env, typeof stdin === 'string' ? stdin : JSON.stringify(stdin), o.uid);
  }

  /** ADD/DEL/CHECK of container `id` in pod namespace `pod`. */
  verb(command: string, pod: string, id: string, conf: unknown, o: Partial<CallOptions> = {}): Promise<Call> {
    return this.call('strand-bridge', { command, containerId: id, ifName: 'eth0', netns: this.ns.path(pod), ...o }, conf);
  }

  /** Host links whose name starts with the prefix or is a veth (the bridge's ports), and the pods' links. */
  hostLinks(): string[] {
    return ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: this.host })
      .map((l) => l.ifname)
      .filter((n) => n !== 'lo');
  }

  podLinks(pod: string): string[] {
    return ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: pod })
      .map((l) => l.ifname)
      .filter((n) => n !== 'lo');
  }

  /** Every IPAM record left: host-local's per-IP files, strand-ipam's attachments. */
  ipamRecords(): string[] {
    const out: string[] = [];
    const walk = (d: string): void => {
      let names: string[];
      try {
        names = readdirSync(d);
      } catch {
        return;
      }
      for (const n of names) {
        const p = join(d, n);
        if (/^\d+\.\d+\.\d+\.\d+$/.test(n)) out.push(p);
        else if (n === 'strand-ipam.json') {
          const doc = JSON.parse(readFileSync(p, 'utf8')) as { attachments?: Record<string, unknown> };
          out.push(...Object.keys(doc.attachments ?? {}).map((k) => `${p}:${k}`));
        } else if (!n.includes('.')) walk(p);
      }
    };
    walk(this.dataDir);
    return out;
  }

  async cleanup(): Promise<void> {
    await this.daemon.stop(2000);
    this.ns.cleanup();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** IPAM for fault tests: host-local, after sleeping STRAND_TEST_SLEEP seconds on ADD; logs each call to STRAND_TEST_MARK. */
const SLOW_IPAM = `#!/bin/sh
[ -n "$STRAND_TEST_MARK" ] && echo "$CNI_COMMAND $CNI_CONTAINERID" >> "$STRAND_TEST_MARK"
[ "$CNI_COMMAND" = ADD ] && sleep "\${STRAND_TEST_SLEEP:-2}"
exec ${refBinDir}/host-local
`;

export function writeTool(dir: string, name: string, script: string): string {
  mkdirSync(dir, { recursive: true });
  const f = join(dir, name);
  writeFileSync(f, script);
  chmodSync(f, 0o755);
  return f;
}

/**
 * `dir` as an install: the shim `dir/strand-shim` linked under `names`, and `strand` (a
 * symlink to dist/strand) beside it, where the shim looks for its fallback.
 */
export function shimDir(dir: string, names: string[]): string {
  for (const n of names) linkSync(join(dir, 'strand-shim'), join(dir, n));
  symlinkSync(join(repoRoot, 'dist', 'strand'), join(dir, 'strand'));
  return dir;
}

/** Runs `exe` in namespace `ns`; as another user (uid) it runs where the test runs (nsenter needs root). */
export function runIn(ns: string, exe: string, env: Record<string, string>, stdin: string, uid?: number): Promise<Call> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const [cmd, args] = uid === undefined ? ['/usr/bin/nsenter', [`--net=/run/netns/${ns}`, '--', exe]] : [exe, []];
    const child = spawn(cmd as string, args as string[], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(uid !== undefined ? { uid, gid: uid } : {}),
    });
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
      resolve({ code, stdout, stderr, json, ms: performance.now() - t0 });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

/**
 * Log lines carry a timestamp and the call's elapsed time, and a logged stack has the
 * daemon's own frames below the plugin's: all normalised away to compare two runs' stderr.
 */
export function stableStderr(s: string): string {
  return s
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z/g, '<time>')
    .replace(/ \+\d+(\.\d+)?ms:/g, ' +<elapsed>:')
    .replace(/^ +at .*\n/gm, '');
}

/** What the daemon log says happened to requests: ["strand-bridge ADD: done 0", ...]. */
export function outcomes(log: string): string[] {
  return [...log.matchAll(/(?:DEBUG|INFO) strand daemon: request (\S*) (\S*): (\w+)( \d+)?/g)].map((m) => `${m[1]} ${m[2]}: ${m[3]}${m[4] ?? ''}`);
}

/** The daemon's outcomes once at least `n` are logged (a line is written after the reply is sent). */
export async function settled(d: { log: string }, n: number, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  if (n === 0) await new Promise((r) => setTimeout(r, 200)); // nothing expected: give a late line the chance to show
  while (outcomes(d.log).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return outcomes(d.log);
}

/** The daemon's descriptors once they stay the same for 300 ms (a quiet daemon), or after 5 s. */
export async function quietFds(d: { fds(): string[] }): Promise<string[]> {
  let last = d.fds();
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = d.fds();
    if (now.join() === last.join() && i >= 2) return now;
    last = now;
  }
  return last;
}

/**
 * The daemon's descriptors once they are back to `base` (a connection is closed just
 * after its reply is sent), or what they are after a second.
 */
export async function fdsBackTo(d: { fds(): string[] }, base: readonly string[]): Promise<string[]> {
  for (let i = 0; i < 50; i++) {
    const now = d.fds();
    if (now.length <= base.length) return now;
    await new Promise((r) => setTimeout(r, 20));
  }
  return d.fds();
}

/** A fresh World per test (made before, cleaned up after, the daemon stopped): `world()` is the current one. */
export function useWorld(): () => World {
  let w: World | undefined;
  beforeEach(() => {
    requireBuilt();
    w = new World();
  });
  afterEach(async () => {
    await w?.cleanup();
  });
  return () => w!;
}

/** The parsed answer of a call that must have succeeded. */
export function ok(r: Call, what = 'call'): any {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  return r.json;
}
