// The whole journey on the embedded default: sign up, deploy a job on the example dataset with
// the local launcher (the trainer runs as a child process of the server), watch predictions
// arrive without a reload, compare the first and last epoch, and find every check passing.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, jobIdFromUrl, jobTab, openNewJobForm, signUp, UUID } from './support';

const RUN_TIMEOUT = 90_000;

describeBrowser('the whole journey in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  it('deploys a local job on the example dataset and watches, compares and diagnoses it', { timeout: 180_000 }, async () => {
    const page = await browser.newPage({ viewport: DESKTOP });
    await signUp(page, server.url, 'journey');
    await openNewJobForm(page);

    // The defaults: the example dataset, this server, sampled after each evaluation.
    await expect(page.getByRole('radio', { name: /On this server/ }).isChecked()).resolves.toBe(true);
    // Only the launchers this server offers (launchers.list): local and manual, not the cloud ones.
    await expect(page.locator('input[name="launcher"]').evaluateAll((inputs) => inputs.map((i) => (i as HTMLInputElement).value))).resolves.toEqual(['local', 'manual']);
    await expect(page.getByRole('radio', { name: /After each evaluation/ }).isChecked()).resolves.toBe(true);
    await page.getByTestId('total-steps').getByText('optimizer steps').waitFor();
    await page.getByLabel('Name', { exact: true }).fill('everyday facts, local');
    await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();
    await page.getByRole('button', { name: 'Deploy job' }).click();

    // Straight to the job page; predictions arrive while it is open.
    await page.waitForURL(new RegExp(`/jobs/${UUID}$`));
    const jobId = jobIdFromUrl(page.url());
    await page.evaluate(() => document.body.setAttribute('data-mark', 'no-reload'));
    await page.getByTestId('prediction-row').first().waitFor({ timeout: RUN_TIMEOUT });
    await page.getByTestId('job-status').filter({ hasText: 'Completed' }).waitFor({ timeout: RUN_TIMEOUT });
    // Three epochs of five samples each, all shown without a reload.
    await page.getByTestId('prediction-row').nth(14).waitFor();
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 15 of 15 predictions' }).waitFor();
    await expect(page.evaluate(() => document.body.getAttribute('data-mark'))).resolves.toBe('no-reload');
    await page.getByRole('figure').filter({ hasText: 'Loss' }).waitFor();
    await screenshot(page, 'job-predictions-local');

    // The comparison lines up the same samples in the first and the last epoch, with scores.
    await jobTab(page, 'Compare epochs').click();
    await page.waitForURL(new RegExp(`/jobs/${jobId}/compare$`));
    await page.getByTestId('compare-sample').nth(4).waitFor();
    await expect(page.getByRole('checkbox', { name: /Epoch 1/ }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('checkbox', { name: /Epoch 3/ }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('checkbox', { name: /Epoch 2/ }).isChecked()).resolves.toBe(false);
    for (const sample of await page.getByTestId('compare-sample').all()) {
      await expect(sample.getByTestId('compare-cell').count()).resolves.toBe(2);
      await expect(sample.getByTestId('f1').count()).resolves.toBe(2);
      expect(await sample.getAttribute('data-outcome')).toMatch(/^(improved|regressed|unchanged)$/);
    }
    await expect(page.getByTestId('mean-f1').locator('li').count()).resolves.toBe(2);
    await screenshot(page, 'compare-local');
    // A third epoch joins the comparison.
    await page.getByRole('checkbox', { name: /Epoch 2/ }).check();
    await page.getByTestId('mean-f1').locator('li').nth(2).waitFor();

    // Every check passes.
    await jobTab(page, 'Diagnostics').click();
    await page.getByTestId('root-cause').filter({ hasText: 'Everything looks healthy' }).waitFor();
    const statuses = await page.getByTestId('check').evaluateAll((els) => els.map((el) => el.getAttribute('data-status')));
    expect(statuses.length).toBeGreaterThan(5);
    expect(statuses.every((status) => status === 'pass')).toBe(true);
    await screenshot(page, 'diagnostics-healthy');

    await jobTab(page, 'Logs').click();
    await page.getByTestId('log').locator('.log-line').first().waitFor();
    await screenshot(page, 'logs-local');

    await page.getByRole('link', { name: 'All jobs' }).click();
    await page.locator(`[data-job-id="${jobId}"]`).getByText('Completed').waitFor();
    await screenshot(page, 'jobs-list');
    await page.close();
  });
});
