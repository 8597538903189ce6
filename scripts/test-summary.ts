// Sums vitest JSON reports into one closing line: "tests: N passed, N failed[, N skipped]".
// A report file that is missing or unreadable counts as a failure: a run that produced
// nothing must not look green.
import { readFileSync } from 'node:fs';

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numFailedTestSuites: number;
}

let passed = 0;
let failed = 0;
let skipped = 0;
const files = process.argv.slice(2);
if (files.length === 0) failed += 1;
for (const f of files) {
  try {
    const r = JSON.parse(readFileSync(f, 'utf8')) as VitestJson;
    passed += r.numPassedTests;
    failed += r.numFailedTests + r.numFailedTestSuites;
    skipped += r.numPendingTests + r.numTodoTests;
  } catch (e) {
    process.stderr.write(`test-summary: cannot read ${f}: ${(e as Error).message}\n`);
    failed += 1;
  }
}
const tail = skipped ? `, ${skipped} skipped` : '';
process.stdout.write(`tests: ${passed} passed, ${failed} failed${tail}\n`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
