import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The path the plugin suites take (vitest project "daemon" sets STRAND_TEST_VIA=daemon):
 * "standalone" runs the executable's hardlinks (dist/bin), "daemon" the shims of the
 * installed layout (dist/shim) against the `strand daemon` that project's global set-up
 * starts (test/helpers/daemon-setup.ts).
 */
export const via: 'standalone' | 'daemon' = process.env['STRAND_TEST_VIA'] === 'daemon' ? 'daemon' : 'standalone';

/** Directory with the plugins: strand-bridge, strand-ipam, ... (and `strand`). */
export const binDir = join(repoRoot, 'dist', via === 'daemon' ? 'shim' : 'bin');

/**
 * Variables every plugin run needs on this path: through the daemon, its socket and
 * STRAND_SHIM_REQUIRE_DAEMON=1, so a call the daemon should serve can never pass
 * silently through the standalone fallback.
 */
export function pathEnv(): Record<string, string> {
  if (via !== 'daemon') return {};
  const socket = process.env['STRAND_DAEMON_SOCKET'];
  if (!socket) throw new Error('STRAND_TEST_VIA=daemon without STRAND_DAEMON_SOCKET: run through the vitest project "daemon"');
  return { STRAND_DAEMON_SOCKET: socket, STRAND_SHIM_REQUIRE_DAEMON: '1' };
}
/** The Go reference plugins (Debian containernetworking-plugins). */
export const refBinDir = '/usr/lib/cni';

export interface PluginRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

export interface PluginEnv {
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION' | string;
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  path?: string;
  extra?: Record<string, string>;
}

/**
 * Runs a plugin executable exactly as a container runtime does: CNI_* variables in the
 * environment, the config on stdin, the result or error JSON read from stdout.
 */
export function runPlugin(bin: string, env: PluginEnv, stdin: string | object): Promise<PluginRun> {
  const exe = bin.includes('/') ? bin : join(binDir, bin);
  if (!existsSync(exe)) throw new Error(`plugin binary missing: ${exe} (run scripts/build.sh)`);
  const childEnv: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: env.command,
    CNI_PATH: env.path ?? `${binDir}:${refBinDir}`,
    ...pathEnv(),
  };
  if (env.containerId !== undefined) childEnv['CNI_CONTAINERID'] = env.containerId;
  if (env.netns !== undefined) childEnv['CNI_NETNS'] = env.netns;
  if (env.ifName !== undefined) childEnv['CNI_IFNAME'] = env.ifName;
  if (env.args !== undefined) childEnv['CNI_ARGS'] = env.args;
  Object.assign(childEnv, env.extra ?? {});
  const input = typeof stdin === 'string' ? stdin : JSON.stringify(stdin);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(exe, [], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolvePromise({ code, signal, stdout, stderr, json });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}
