// Reads the Vitest JSON reports of this CI run (one per database) and prints one plain closing
// line with the totals. In CI nothing may skip: a test skipped in every report fails the run. A
// test that runs on one database only (a PostgreSQL outage cannot happen to the embedded PGlite)
// skips in the other report and counts as run, since it ran here.
import { readFileSync } from 'node:fs';

const totals = { passed: 0, failed: 0, skipped: 0 };
const ranSomewhere = new Set();
const skippedSomewhere = new Set();
for (const file of process.argv.slice(2)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  totals.passed += report.numPassedTests;
  totals.failed += report.numFailedTests;
  if (report.numTotalTests === 0) {
    console.error(`${file}: no test ran`);
    totals.failed += 1;
  }
  for (const suite of report.testResults) {
    for (const test of suite.assertionResults) {
      const key = `${suite.name} :: ${test.fullName}`;
      if (test.status === 'passed' || test.status === 'failed') ranSomewhere.add(key);
      else skippedSomewhere.add(key);
    }
  }
}
const neverRan = [...skippedSomewhere].filter((key) => !ranSomewhere.has(key));
totals.skipped = neverRan.length;
console.log(`Tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
if (neverRan.length > 0) console.error(`Tests skipped on every database in CI, where everything must run:\n  ${neverRan.join('\n  ')}`);
process.exit(totals.failed > 0 || totals.skipped > 0 ? 1 : 0);
