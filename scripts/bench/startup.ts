// npm run bench:startup [-- --runs N] [-- --json]
//
// Process start-up cost of the single executable against bare Node: wall time of
// `CNI_COMMAND=VERSION dist/bin/strand-bridge` vs `node -e 0` with the same pinned Node
// (node_modules/.bin/node), run alternately in this one process so both see the same
// machine load. Prints both medians and their ratio (goal: <= 1.25).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const strandBridge = join(root, 'dist', 'bin', 'strand-bridge');
const pinnedNode = join(root, 'node_modules', '.bin', 'node');
const GOAL = 1.25;

interface Subject {
  label: string;
  file: string;
  args: string[];
  env: Record<string, string>;
  check(stdout: string): boolean;
}

const versionInput = '{"cniVersion":"1.1.0"}';
const subjects: Subject[] = [
  {
    label: 'strand-bridge VERSION',
    file: strandBridge,
    args: [],
    env: { CNI_COMMAND: 'VERSION' },
    check: (out) => out.includes('"supportedVersions"'),
  },
  { label: 'node -e 0', file: pinnedNode, args: ['-e', '0'], env: {}, check: (out) => out === '' },
];

function runOnce(s: Subject): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(s.file, s.args, {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...s.env },
    input: versionInput,
    encoding: 'utf8',
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  if (r.status !== 0 || !s.check(r.stdout)) {
    throw new Error(`${s.label}: exit ${r.status}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`);
  }
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function main(): void {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const runs = Number(values.runs ?? 40);
  if (!Number.isInteger(runs) || runs < 30) throw new Error('--runs must be an integer >= 30');
  if (!existsSync(strandBridge)) throw new Error(`${strandBridge} missing: run scripts/build.sh first`);
  if (!existsSync(pinnedNode)) throw new Error(`${pinnedNode} missing: run npm ci first`);

  for (const s of subjects) for (let i = 0; i < 3; i++) runOnce(s); // warm the page cache
  const times: number[][] = subjects.map(() => []);
  for (let i = 0; i < runs; i++) {
    // Alternate the order too, so neither always runs right after the other.
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) times[k]!.push(runOnce(subjects[k]!));
  }
  const [strandMs, nodeMs] = times.map(median) as [number, number];
  const ratio = strandMs / nodeMs;
  const result = {
    runs,
    strandBridgeVersionMedianMs: +strandMs.toFixed(2),
    nodeMedianMs: +nodeMs.toFixed(2),
    ratio: +ratio.toFixed(3),
    goal: GOAL,
    binaryBytes: statSync(strandBridge).size,
    node: process.version,
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    process.stdout.write(
      [
        `start-up, median of ${runs} alternating runs each`,
        `  strand-bridge VERSION  ${strandMs.toFixed(2)} ms`,
        `  node -e 0              ${nodeMs.toFixed(2)} ms   (pinned ${process.version})`,
        `  ratio                  ${ratio.toFixed(3)}   (goal <= ${GOAL}${ratio <= GOAL ? ', met' : ', NOT met'})`,
        '',
      ].join('\n'),
    );
  }
}

main();
