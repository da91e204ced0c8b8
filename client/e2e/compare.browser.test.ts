// The comparison of a job with more samples than one page: the page says how
// many samples it shows of how many, the mean F1 covers all of them, and "Load more samples"
// brings the rest, so the web app never shows silently fewer samples than the job has.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { COMPARE_PAGE_DEFAULT } from '#contract/predictions.schemas';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import { createManualJob, createUser } from '../../server/test-support/factories';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, signIn } from './support';

// More than one page, and epochs of different sizes: epoch 2 misses the last 10 samples.
const SAMPLES = COMPARE_PAGE_DEFAULT + 30;
const EPOCH_2_SAMPLES = SAMPLES - 10;

describeBrowser('comparing epochs of a job with more samples than one page', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  it('says how many samples it shows of how many, and loads the rest on request', { timeout: 90_000 }, async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const rows = (epoch: number, step: number, count: number) =>
      Array.from({ length: count }, (_, sampleIndex) => ({
        epoch,
        step,
        sampleIndex,
        trigger: 'eval' as const,
        prompt: `question ${sampleIndex}`,
        groundTruth: `answer ${sampleIndex}`,
        // Epoch 1 is half right everywhere, epoch 2 exactly right: means 0.50 and 1.00 over all samples.
        prediction: epoch === 1 ? `wrong ${sampleIndex}` : `answer ${sampleIndex}`,
      }));
    const pod = server.client(token).pod;
    await pod.writePredictions.mutate({ predictions: rows(1, 10, SAMPLES) });
    await pod.writePredictions.mutate({ predictions: rows(2, 20, EPOCH_2_SAMPLES) });

    const page = await browser.newPage({ viewport: DESKTOP });
    await signIn(page, server.url, user.email, user.password);
    await page.goto(`${server.url}/jobs/${jobId}/compare`);

    const shown = page.getByTestId('compare-shown');
    await shown.filter({ hasText: `Showing ${COMPARE_PAGE_DEFAULT} of ${SAMPLES} samples` }).waitFor();
    await expect(page.getByTestId('compare-sample').count()).resolves.toBe(COMPARE_PAGE_DEFAULT);
    // The means and counts are those of every sample, not of the page.
    await expect(page.getByTestId('epoch-sample-count').allTextContents()).resolves.toEqual([`${SAMPLES} samples`, `${EPOCH_2_SAMPLES} samples`]);
    await expect(page.getByTestId('mean-f1').locator('.mean-value').allTextContents()).resolves.toEqual(['0.50', '1.00']);
    await expect(page.getByText(`${SAMPLES} samples across these epochs`).count()).resolves.toBe(1);
    await screenshot(page, 'compare-first-page');

    await page.getByRole('button', { name: `Load more samples (${SAMPLES - COMPARE_PAGE_DEFAULT} left)` }).click();
    await shown.filter({ hasText: `Showing all ${SAMPLES} samples` }).waitFor();
    const indexes = await page.getByTestId('compare-sample').locator('h3').allTextContents();
    expect(indexes).toEqual(Array.from({ length: SAMPLES }, (_, i) => `Sample #${i}`));
    await expect(page.getByRole('button', { name: /Load more samples/ }).count()).resolves.toBe(0);
    // The samples epoch 2 lacks say so instead of disappearing.
    const last = page.getByTestId('compare-sample').last();
    await expect(last.getByText('No prediction in this epoch.').count()).resolves.toBe(1);
    await screenshot(page, 'compare-all-loaded');
    await page.close();
  });
});
