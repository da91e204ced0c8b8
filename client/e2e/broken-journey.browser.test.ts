// The journeys that go wrong, in the browser: a trigger that can never fire is stopped at the
// form, and a manual job whose pod never connects is named as such on the diagnostics tab.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, jobIdFromUrl, jobTab, signUp, UUID } from './support';

describeBrowser('broken journeys in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  // No grace period: a pod that has not connected yet counts as never connected.
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  }, { DIAGNOSTICS_CONNECT_GRACE_SECONDS: '0' });

  it('stops a trigger that cannot fire at the form, and names a pod that never connected', async () => {
    const page = await browser.newPage({ viewport: DESKTOP });
    await signUp(page, server.url, 'broken');

    // A new account has no jobs: the empty state leads to the first deploy.
    await page.getByRole('heading', { name: 'No jobs yet' }).waitFor();
    await screenshot(page, 'jobs-list-empty');
    await page.getByRole('link', { name: 'Deploy your first job' }).click();
    await page.waitForURL(/\/jobs\/new$/);
    await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();

    // A file with bad lines is refused, naming each line; a good one is uploaded and chosen.
    await page.getByRole('button', { name: 'Upload a JSONL file…' }).click();
    const good = (i: number) => JSON.stringify({ prompt: `What is ${i} + ${i}?`, completion: `${i + i}` });
    const bad = [good(1), '{"prompt": "no completion"}', good(2), 'not json at all', good(3)].join('\n');
    await page.getByLabel('JSONL file').setInputFiles({ name: 'sums.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(bad) });
    await page.getByRole('button', { name: 'Upload dataset' }).click();
    const uploadError = page.getByTestId('upload-error');
    await uploadError.getByText(/^line 2:/).waitFor();
    await uploadError.getByText(/^line 4:/).waitFor();
    await screenshot(page, 'new-job-upload-error');
    const rows = Array.from({ length: 30 }, (_, i) => good(i)).join('\n');
    await page.getByLabel('JSONL file').setInputFiles({ name: 'sums.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(rows) });
    await page.getByRole('button', { name: 'Upload dataset' }).click();
    await page.getByLabel('Dataset', { exact: true }).locator('option:checked', { hasText: 'sums (30 rows)' }).waitFor({ state: 'attached' });
    await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();

    // "After each evaluation" with evaluation off can never fire: the error sits by the trigger.
    await expect(page.getByRole('radio', { name: /After each evaluation/ }).isChecked()).resolves.toBe(true);
    await page.getByLabel('Evaluation', { exact: true }).selectOption('no');
    const triggerProblems = page.locator('#trigger-problems');
    await triggerProblems.getByText('evaluation is disabled').waitFor();
    await expect(triggerProblems.getByTestId('problem-error').textContent()).resolves.toContain('Set evalStrategy');
    await page.getByTestId('form-status').getByText('stops this job from deploying').waitFor();
    await expect(page.getByRole('button', { name: 'Deploy job' }).isDisabled()).resolves.toBe(true);
    await triggerProblems.scrollIntoViewIfNeeded();
    await screenshot(page, 'new-job-validation-error');

    // Sampling at each epoch end instead fixes it; deploy with the manual launcher.
    await page.getByRole('radio', { name: /At the end of each epoch/ }).check();
    await triggerProblems.waitFor({ state: 'detached' });
    await page.getByRole('radio', { name: /Manual/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('manual pod that never starts');
    await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();
    await page.getByRole('button', { name: 'Deploy job' }).click();

    // The pod environment is shown once, with copy buttons.
    const dialog = page.getByRole('dialog', { name: 'Start your pod' });
    await dialog.waitFor();
    await dialog.getByTestId('token-once-notice').getByText('This token is shown only once').waitFor();
    const token = (await dialog.getByTestId('env-JOB_TOKEN').textContent()) ?? '';
    expect(token.split('.')).toHaveLength(3);
    expect(await dialog.getByTestId('env-JOB_ID').textContent()).toMatch(new RegExp(`^${UUID}$`));
    await expect(dialog.getByRole('button', { name: 'Copy JOB_TOKEN' }).isVisible()).resolves.toBe(true);
    await screenshot(page, 'manual-pod-env');
    await dialog.getByRole('button', { name: 'Go to the job page' }).click();
    await page.waitForURL(new RegExp(`/jobs/${UUID}$`));
    const jobId = jobIdFromUrl(page.url());
    await page.getByTestId('job-status').filter({ hasText: 'Pending' }).waitFor();
    await page.getByTestId('waiting-for-predictions').waitFor();

    // Diagnostics names the root cause: the pod never connected.
    await jobTab(page, 'Diagnostics').click();
    await page.waitForURL(new RegExp(`/jobs/${jobId}/diagnostics$`));
    await page.getByTestId('root-cause').filter({ hasText: /pod never connected/i }).waitFor();
    await expect(page.locator('[data-check="pod_connected"]').getAttribute('data-status')).resolves.toBe('fail');
    await screenshot(page, 'diagnostics-failing');

    // The page is bookmarkable: a reload lands on the same tab.
    await page.reload();
    await page.getByTestId('root-cause').filter({ hasText: /pod never connected/i }).waitFor();

    // The logs tab says the pod has not sent anything yet.
    await jobTab(page, 'Logs').click();
    await page.getByText('The pod sends its log here once it connects').waitFor();

    // Cancelling asks first, then stops the job without a reload.
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.getByRole('dialog', { name: 'Cancel this job?' }).getByRole('button', { name: 'Cancel job' }).click();
    await page.getByTestId('job-status').filter({ hasText: 'Cancelled' }).waitFor();

    await page.getByRole('link', { name: 'All jobs' }).click();
    await page.waitForURL(new RegExp(`${server.url}/$`));
    await page.locator(`[data-job-id="${jobId}"]`).getByText('Cancelled').waitFor();
    await page.close();
  });
});
