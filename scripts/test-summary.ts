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
  /** One entry per test file. */
  testResults?: Array<{ status: string; assertionResults?: Array<{ status: string }> }>;
}

/**
 * Test files that failed without a failed test (an import error, a failing hook): each
 * counts as one failure. numFailedTestSuites would also count every describe block around
 * a failed test, so one failed test would read as three.
 */
function filesFailedOutsideTests(r: VitestJson): number {
  if (!r.testResults) return r.numFailedTests > 0 ? 0 : r.numFailedTestSuites;
  return r.testResults.filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')).length;
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
    failed += r.numFailedTests + filesFailedOutsideTests(r);
    skipped += r.numPendingTests + r.numTodoTests;
  } catch (e) {
    process.stderr.write(`test-summary: cannot read ${f}: ${(e as Error).message}\n`);
    failed += 1;
  }
}
const tail = skipped ? `, ${skipped} skipped` : '';
process.stdout.write(`tests: ${passed} passed, ${failed} failed${tail}\n`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
