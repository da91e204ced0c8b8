// Reads the Vitest JSON reports of this CI run and prints one plain closing line with the
// totals. In CI nothing may skip: a skipped test fails the run here.
import { readFileSync } from 'node:fs';

const totals = { passed: 0, failed: 0, skipped: 0 };
for (const file of process.argv.slice(2)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  totals.passed += report.numPassedTests;
  totals.failed += report.numFailedTests;
  totals.skipped += report.numPendingTests + report.numTodoTests;
  if (report.numTotalTests === 0) {
    console.error(`${file}: no test ran`);
    totals.failed += 1;
  }
}
console.log(`Tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
if (totals.skipped > 0) console.error('Tests were skipped in CI, where everything must run.');
process.exit(totals.failed > 0 || totals.skipped > 0 ? 1 : 0);
