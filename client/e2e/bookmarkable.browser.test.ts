// A view of predictions is an address: the filters of the predictions table and the epochs and
// outcome chosen in the comparison are in the URL, so a bookmarked or shared link opens the same
// view, and changing a filter changes the address without adding a page to the history.
import { expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import { createManualJob, createUser } from '../../server/test-support/factories';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, signIn } from './support';

const FRUIT = ['apple', 'banana', 'cherry'];

describeBrowser('views you can bookmark', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  async function signedIn(email: string, password: string): Promise<Page> {
    const page = await browser.newPage({ viewport: DESKTOP });
    await signIn(page, server.url, email, password);
    return page;
  }

  it('opens the predictions table and the comparison with the filters of their address', { timeout: 90_000 }, async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const rows = (epoch: number, step: number) =>
      FRUIT.map((fruit, sampleIndex) => ({
        epoch,
        step,
        sampleIndex,
        trigger: 'eval' as const,
        prompt: `name a fruit: ${fruit}`,
        groundTruth: fruit,
        // Epoch 2 gets apple right and banana wrong: one improved, one regressed.
        prediction: epoch === 1 ? (fruit === 'banana' ? 'banana' : 'pear') : fruit === 'banana' ? 'plum' : fruit,
      }));
    const pod = server.client(token).pod;
    for (const epoch of [1, 2, 3]) await pod.writePredictions.mutate({ predictions: rows(epoch, epoch * 10) });
    const page = await signedIn(user.email, user.password);

    await page.goto(`${server.url}/jobs/${jobId}/predictions?epoch=2&q=banana`);
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 1 of 1 prediction matching the filters' }).waitFor();
    await expect(page.getByLabel('Epoch').inputValue()).resolves.toBe('2');
    await expect(page.getByLabel('Search').inputValue()).resolves.toBe('banana');
    const historyLength = await page.evaluate(() => window.history.length);

    await page.getByLabel('Sampled').selectOption('eval');
    await page.waitForURL((url) => url.searchParams.get('trigger') === 'eval' && url.searchParams.get('epoch') === '2');
    await page.getByLabel('Search').fill('cherry');
    await page.waitForURL((url) => url.searchParams.get('q') === 'cherry');
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 1 of 1 prediction matching the filters' }).waitFor();
    await expect(page.locator('.predictions-table tbody tr').first().textContent()).resolves.toContain('cherry');
    // Filters replace the history entry: Back leaves the job page's view, it does not undo a keystroke.
    await expect(page.evaluate(() => window.history.length)).resolves.toBe(historyLength);
    await screenshot(page, 'bookmarked-predictions');

    await page.goto(`${server.url}/jobs/${jobId}/compare?epochs=1,2&show=regressed`);
    await page.getByTestId('compare-sample').first().waitFor();
    await expect(page.getByTestId('epoch-sample-count').count()).resolves.toBe(2);
    await expect(page.getByRole('checkbox', { name: /Epoch 3/ }).isChecked()).resolves.toBe(false);
    await expect(page.getByRole('button', { name: /Regressed/ }).getAttribute('aria-pressed')).resolves.toBe('true');
    await expect(page.getByTestId('compare-sample').count()).resolves.toBe(1);
    await expect(page.getByTestId('compare-sample').first().textContent()).resolves.toContain('banana');

    await page.getByRole('checkbox', { name: /Epoch 3/ }).check();
    await page.waitForURL((url) => url.searchParams.get('epochs') === '1,2,3');
    // The comparison is read again for three epochs: wait for its third column rather than count mid-load.
    await page.getByTestId('epoch-sample-count').nth(2).waitFor();
    await page.getByRole('button', { name: /^All/ }).click();
    await page.waitForURL((url) => !url.searchParams.has('show'));
    await page.close();
  });
});
