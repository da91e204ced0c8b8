// The test suite's switches, read in one place: which database to run against and whether the
// browser tests may skip (locally yes, with a reason; in CI no).
import { existsSync } from 'node:fs';

export const testEnv = {
  /** A Postgres URL to run every test file against (its own database each); unset means PGlite. */
  databaseUrl: process.env.TEST_DATABASE_URL || undefined,
  /** Set in CI: a missing browser fails the browser tests instead of skipping them. */
  requireBrowser: process.env.REQUIRE_BROWSER === '1',
  chromiumPath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  screenshotDir: process.env.SCREENSHOT_DIR || 'test-results/screenshots',
};

export function chromiumAvailable(): boolean {
  return existsSync(testEnv.chromiumPath);
}
