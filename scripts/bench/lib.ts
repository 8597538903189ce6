// Shared helpers for benchmarks: statistics over samples, timing, child CPU/RSS via GNU
// time, and the machine-readable result convention used by `npm run bench`.
//
// Convention: a benchmark run with the environment variable BENCH_JSON=<file> writes its
// result there as one JSON object `{bench: "<name>", ...}` (emitBenchJson below). It may
// still print whatever it likes for people. Raw samples go under a `samples` key
// (milliseconds) so scripts/bench/chart.ts can draw distributions rather than medians.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

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
// 2 ms. This helper forks, execs its arguments, and writes the wait4 rusage in
// microseconds. Compiled on first use with the C compiler the native addon needs.
const RUSAGE_C = `#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
  if (argc < 3) return 127;
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) { execvp(argv[2], argv + 2); _exit(127); }
  int st; struct rusage ru;
  if (wait4(pid, &st, 0, &ru) < 0) return 127;
  FILE *f = fopen(argv[1], "w");
  if (f) {
    fprintf(f, "%ld %ld %ld\\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
            ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec, ru.ru_maxrss);
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
    execFileSync('cc', ['-O2', '-o', exe, join(timeDir, 'rusage-exec.c')], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return exe;
}

/**
 * Runs `file args` under a small wait4 wrapper: CPU time and peak RSS of the process
 * and of what it waited for (a plugin and its IPAM delegate), stdin piped in. A process
 * killed by signal N comes back as exit code 128+N.
 */
export function runMeasured(file: string, args: string[], opts: { env: Record<string, string>; input?: string; timeoutMs?: number }): Promise<Measured> {
  const helper = rusageHelper();
  const out = join(timeDir!, `t${process.pid}-${timeSeq++}`);
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const child = spawn(helper, [out, file, ...args], { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
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
