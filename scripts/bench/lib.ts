// Shared helpers for benchmarks: statistics over samples, timing, child CPU/RSS via GNU
// time, and the machine-readable result convention used by `npm run bench`.
//
// Convention: a benchmark run with the environment variable BENCH_JSON=<file> writes its
// result there as one JSON object `{bench: "<name>", ...}` (emitBenchJson below). It may
// still print whatever it likes for people. Raw samples go under a `samples` key
// (milliseconds) so scripts/bench/chart.ts can draw distributions rather than medians.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** The q-quantile (0..1) by linear interpolation between closest ranks. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = sorted(xs);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const median = (xs: readonly number[]): number => quantile(xs, 0.5);

export interface Summary {
  n: number;
  min: number;
  p10: number;
  p25: number;
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

export function summarize(xs: readonly number[]): Summary {
  const mean = xs.reduce((a, b) => a + b, 0) / (xs.length || 1);
  return {
    n: xs.length,
    min: round(Math.min(...xs)),
    p10: round(quantile(xs, 0.1)),
    p25: round(quantile(xs, 0.25)),
    p50: round(quantile(xs, 0.5)),
    p75: round(quantile(xs, 0.75)),
    p90: round(quantile(xs, 0.9)),
    p99: round(quantile(xs, 0.99)),
    max: round(Math.max(...xs)),
    mean: round(mean),
  };
}

export function ratio(a: number, b: number): number {
  return round(a / b);
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The machine a result was measured on (two shared CPUs make absolute numbers noisy). */
export function machine(): { cpus: number; cpuModel: string; loadavg: number[]; node: string } {
  const c = cpus();
  return { cpus: c.length, cpuModel: c[0]?.model ?? 'unknown', loadavg: loadavg().map((x) => round(x, 2)), node: process.version };
}

/** Writes `result` to $BENCH_JSON when set (the `npm run bench` convention). */
export function emitBenchJson(result: { bench: string } & Record<string, unknown>): void {
  const file = process.env['BENCH_JSON'];
  if (file) writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
}

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time seen from here, ms. */
  wallMs: number;
  /** User + system CPU of the process and the children it waited for (wait4 rusage), ms. */
  cpuMs: number;
  /** Peak RSS of the process or its largest waited-for child (wait4 ru_maxrss), KiB. */
  maxRssKb: number;
}

// GNU time prints CPU seconds with two decimals: useless for a Go plugin that runs in
// 2 ms. This helper forks, enters a network namespace when asked (argv[2], "-" for
// none: no nsenter process in between), execs its arguments, and writes the wait4
// rusage in microseconds. Peak RSS: the kernel's ru_maxrss reads 0 for a process as
// small as the shim (its RSS counters are per-CPU and folded in batches), so the helper
// also stops the child at its exit (ptrace, PTRACE_O_TRACEEXIT) and reads VmHWM from
// /proc; the larger of the two counts. Compiled on first use, static with musl when
// available (the forked child's footprint before exec would count too).
const RUSAGE_C = `#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/resource.h>
static long hwm_kb(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strstr(buf, "VmHWM:");
  return p ? strtol(p + 6, NULL, 10) : 0;
}
int main(int argc, char **argv) {
  if (argc < 4) return 127;
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (strcmp(argv[2], "-") != 0) {
      int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) _exit(126);
      close(fd);
    }
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    execvp(argv[3], argv + 3);
    _exit(127);
  }
  int st;
  long hwm = 0;
  struct rusage ru;
  if (waitpid(pid, &st, 0) < 0) return 127; // stopped at exec
  if (WIFSTOPPED(st)) {
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXIT);
    ptrace(PTRACE_CONT, pid, 0, 0);
  }
  for (;;) {
    if (wait4(pid, &st, 0, &ru) < 0) return 127;
    if (!WIFSTOPPED(st)) break;
    if ((st >> 8) == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
      hwm = hwm_kb(pid);
      ptrace(PTRACE_CONT, pid, 0, 0);
    } else {
      int sig = WSTOPSIG(st);
      ptrace(PTRACE_CONT, pid, 0, sig == SIGTRAP ? 0 : sig);
    }
  }
  FILE *f = fopen(argv[1], "w");
  if (f) {
    fprintf(f, "%ld %ld %ld\\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
            ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec, ru.ru_maxrss > hwm ? ru.ru_maxrss : hwm);
    fclose(f);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}
`;

let timeDir: string | undefined;
let timeSeq = 0;

function rusageHelper(): string {
  timeDir ??= mkdtempSync(join(tmpdir(), 'strand-bench-rusage-'));
  const exe = join(timeDir, 'rusage-exec');
  if (!existsSync(exe)) {
    writeFileSync(join(timeDir, 'rusage-exec.c'), RUSAGE_C);
    const [cc, flags] = existsSync('/usr/bin/musl-gcc') ? ['musl-gcc', ['-static', '-Os']] : ['cc', ['-O2']];
    execFileSync(cc, [...flags, '-o', exe, join(timeDir, 'rusage-exec.c')], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return exe;
}

/**
 * Runs `file args` under a small wait4 wrapper: CPU time and peak RSS of the process
 * and of what it waited for (a plugin and its IPAM delegate), stdin piped in. A process
 * killed by signal N comes back as exit code 128+N.
 */
export function runMeasured(
  file: string,
  args: string[],
  opts: { env: Record<string, string>; input?: string; timeoutMs?: number; netns?: string },
): Promise<Measured> {
  const helper = rusageHelper();
  const out = join(timeDir!, `t${process.pid}-${timeSeq++}`);
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const child = spawn(helper, [out, opts.netns ?? '-', file, ...args], { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const wallMs = nowMs() - t0;
      let cpuMs = Number.NaN;
      let maxRssKb = Number.NaN;
      try {
        const [u, s, m] = readFileSync(out, 'utf8').trim().split(' ').map(Number);
        cpuMs = ((u ?? Number.NaN) + (s ?? Number.NaN)) / 1000;
        maxRssKb = m ?? Number.NaN;
        rmSync(out, { force: true });
      } catch {
        // killed before the helper wrote its line
      }
      resolve({ code, signal, stdout, stderr, wallMs, cpuMs, maxRssKb });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export function cleanupMeasured(): void {
  if (timeDir) rmSync(timeDir, { recursive: true, force: true });
  timeDir = undefined;
}

/**
 * Creates network namespaces (loopback up) for a benchmark; `remove()` deletes every one
 * it made, never throwing. Call remove() in a finally block.
 */
export function benchNamespaces(): { add(name: string): string; remove(): void } {
  const made: string[] = [];
  return {
    add(name: string): string {
      execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
      made.push(name);
      execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
      return name;
    },
    remove(): void {
      for (const name of made.splice(0).reverse()) {
        try {
          execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
        } catch {
          // already gone
        }
      }
    },
  };
}

/** Formats ms with a sensible number of digits. */
export function fmtMs(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** The installed layout (shim under each plugin name, strand beside it): the daemon column. */
export const SHIM_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'shim');

/** `strand daemon` for a benchmark: the daemon column's server, in the node namespace the plugins run in. */
export class BenchDaemon {
  readonly dir: string;
  readonly socket: string;
  private proc: ChildProcess | undefined;
  private log = '';

  private constructor(dir: string) {
    this.dir = dir;
    this.socket = join(dir, 'cni.sock');
  }

  /** Starts dist/strand daemon inside network namespace `netns` (as a node's shares the node's), or here. */
  static async start(netns?: string): Promise<BenchDaemon> {
    const d = new BenchDaemon(mkdtempSync(join(tmpdir(), 'strand-bench-daemon-')));
    const strand = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'strand');
    const argv = [strand, 'daemon', '--socket', d.socket, '--max-requests', '1000', '--max-connections', '4000', '--metrics-address', 'off'];
    if (netns) argv.unshift('nsenter', `--net=/run/netns/${netns}`);
    d.proc = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    for (const s of [d.proc.stdout!, d.proc.stderr!]) {
      s.setEncoding('utf8').on('data', (x: string) => {
        if (d.log.length < 1e6) d.log += x;
      });
    }
    const deadline = Date.now() + 30_000;
    while (!d.log.includes('serving ')) {
      if (d.proc.exitCode !== null || Date.now() > deadline) throw new Error(`strand daemon did not start: ${d.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return d;
  }

  /** What a shim call needs in its environment: the socket, and no silent fallback. */
  env(): Record<string, string> {
    return { STRAND_DAEMON_SOCKET: this.socket, STRAND_SHIM_REQUIRE_DAEMON: '1' };
  }

  /** CPU time (ms) and resident size now and at its peak (KiB). */
  usage(): { cpuMs: number; rssKb: number; hwmKb: number } {
    const pid = this.proc!.pid!;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]); // utime, stime
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
    return { cpuMs: (ticks * 1000) / 100, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once('close', r));
      p.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
