// Headless Chromium (Debian's, never a downloaded build) driven by playwright-core.
// Browser tests call describeBrowser: without Chromium they skip and say why, unless
// REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { SPA_DIR } from '../spa';
import { startTestServer, type TestServer } from './server';
import { chromiumAvailable, testEnv } from './test-env';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export function describeBrowser(name: string, body: () => void): void {
  if (chromiumAvailable()) {
    describe(name, body);
    return;
  }
  const reason = `no Chromium at ${testEnv.chromiumPath} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
  if (testEnv.requireBrowser) {
    describe(name, () => {
      it('needs a browser', () => {
        throw new Error(`REQUIRE_BROWSER=1 but ${reason}`);
      });
    });
    return;
  }
  console.warn(`[browser tests] skipping "${name}": ${reason}`);
  describe.skip(`${name} (skipped: ${reason})`, body);
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: testEnv.chromiumPath, args: CHROMIUM_FLAGS, headless: true });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(testEnv.screenshotDir, { recursive: true });
  const file = path.resolve(testEnv.screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * A real server serving the built SPA, and Chromium, for the enclosing describeBrowser block:
 * started before its tests, closed after them.
 */
export function useBrowserApp(onStart: (server: TestServer, browser: Browser) => void, env: Record<string, string> = {}): void {
  let server: TestServer | undefined;
  let browser: Browser | undefined;
  beforeAll(async () => {
    server = await startTestServer(env, { spaDir: SPA_DIR });
    browser = await launchBrowser();
    onStart(server, browser);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });
}
