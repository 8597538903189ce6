// npm run bench [-- --only a,b] [-- --skip a,b] [-- --reuse] [-- --out DIR] [-- --timeout MIN]   (root)
//
// --reuse: the benchmarks not run this time keep their result from the previous
// latest.json (marked "reused from <date> <commit>" in latest.md), so running only the
// benchmarks a change touches still gives a complete table.
//
// Runs every benchmark script that exists, one after another (they would disturb each
// other's timings), and writes:
//   bench/results/<date>.json   every bench's machine-readable result, with status
//   bench/results/<date>.svg    chart: ADD/DEL latency distributions, IPAM throughput,
//                               pod churn, strand vs the Go reference
//   bench/results/latest.svg, latest.md (the table of ratios the README includes),
//   latest.json
//
// Convention (scripts/bench/lib.ts): a bench writes its result object to the file named
// by BENCH_JSON. For benches that do not do that yet, the last JSON object they print
// with --json is taken instead. A bench that fails is recorded as failed (with the end
// of its output) and the others still run; the exit status is 1 if any failed.
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderMarkdown, renderSvg, type BenchEntry, type BenchRun } from './chart.ts';
import { machine } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** In the order they run: cheap and independent first, churn (heaviest) near the end. */
export const BENCHES = ['startup', 'netlink', 'bridge', 'macvlan', 'chain', 'ipam', 'datapath', 'churn', 'burst', 'agent'] as const;

/** The last complete JSON object in `text` (pretty-printed or one line). */
export function lastJsonObject(text: string): Record<string, unknown> | undefined {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i]!.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(lines.slice(i).join('\n').trim());
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // not the start of the last object; keep looking
    }
  }
  return undefined;
}

function tail(s: string, n = 2000): string {
  return s.length > n ? `...${s.slice(-n)}` : s;
}

function runBench(name: string, dir: string, timeoutMin: number): Promise<BenchEntry> {
  const script = join(root, 'scripts', 'bench', `${name}.ts`);
  if (!existsSync(script)) return Promise.resolve({ status: 'missing' });
  const out = join(dir, `${name}.json`);
  const node = process.execPath;
  const t0 = performance.now();
  process.stderr.write(`== bench ${name}\n`);
  return new Promise((resolvePromise) => {
    const child = spawn(node, [script, '--json'], {
      cwd: root,
      env: { ...process.env, BENCH_JSON: out },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      process.stderr.write(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      process.stderr.write(d);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMin * 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - t0) / 1000;
      let result: Record<string, unknown> | undefined;
      if (existsSync(out)) {
        try {
          result = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
        } catch {
          result = undefined;
        }
      }
      result ??= lastJsonObject(stdout);
      if (code === 0 && result) return resolvePromise({ status: 'ok', seconds, result });
      const why = code === 0 ? 'exit 0 but no JSON result (neither $BENCH_JSON nor a JSON object on stdout with --json)' : `exit ${code ?? signal}`;
      resolvePromise({ status: 'failed', seconds, error: `${why}\n${tail(`${stdout}\n${stderr}`)}` });
    });
  });
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function resultName(dir: string): string {
  const day = new Date().toISOString().slice(0, 10);
  for (let i = 1; ; i++) {
    const name = i === 1 ? day : `${day}-${i}`;
    if (!existsSync(join(dir, `${name}.json`))) return name;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { only: { type: 'string' }, skip: { type: 'string' }, out: { type: 'string' }, timeout: { type: 'string' }, reuse: { type: 'boolean' } },
    strict: true,
  });
  const only = values.only?.split(',').filter(Boolean);
  const skip = new Set(values.skip?.split(',').filter(Boolean));
  for (const n of [...(only ?? []), ...skip])
    if (!(BENCHES as readonly string[]).includes(n)) throw new Error(`unknown bench ${n}; known: ${BENCHES.join(', ')}`);
  const outDir = resolve(values.out ?? join(root, 'bench', 'results'));
  const timeoutMin = Number(values.timeout ?? 30);
  if (process.getuid?.() !== 0) throw new Error('npm run bench needs root: most benchmarks create network namespaces');
  if (!existsSync(join(root, 'dist', 'bin', 'strand'))) throw new Error('dist/bin/strand missing: run npm run build first');

  mkdirSync(outDir, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), 'strand-bench-all-'));
  const run: BenchRun = { date: new Date().toISOString(), commit: gitCommit(), machine: machine(), benches: {} };
  try {
    for (const name of BENCHES) {
      if ((only && !only.includes(name)) || skip.has(name)) continue;
      run.benches[name] = await runBench(name, tmp, timeoutMin);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (values.reuse && existsSync(join(outDir, 'latest.json'))) {
    const previous = JSON.parse(readFileSync(join(outDir, 'latest.json'), 'utf8')) as BenchRun;
    for (const name of BENCHES) {
      const prev = previous.benches[name];
      if (run.benches[name] || !prev || prev.status !== 'ok') continue;
      run.benches[name] = { ...prev, reusedFrom: prev.reusedFrom ?? `${previous.date.slice(0, 10)} ${previous.commit.slice(0, 10)}` };
    }
  }

  const name = resultName(outDir);
  const files = { json: join(outDir, `${name}.json`), svg: join(outDir, `${name}.svg`) };
  writeFileSync(files.json, `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(files.svg, renderSvg(run));
  copyFileSync(files.json, join(outDir, 'latest.json'));
  copyFileSync(files.svg, join(outDir, 'latest.svg'));
  writeFileSync(join(outDir, 'latest.md'), renderMarkdown(run, 'latest.svg'));

  const summary = Object.entries(run.benches).map(([n, b]) => `  ${n.padEnd(9)} ${b.status}${b.seconds !== undefined ? ` in ${b.seconds.toFixed(0)} s` : ''}`);
  process.stdout.write([`bench results: ${files.json}`, `chart: ${files.svg} (and latest.svg, latest.md)`, ...summary, ''].join('\n'));
  if (Object.values(run.benches).some((b) => b.status === 'failed')) process.exitCode = 1;
}

if (import.meta.main) await main();
