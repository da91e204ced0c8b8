// A manual job whose pod is played by this test through the pod API with the job token from
// the deploy dialog: predictions, curves and logs appear on the job page without a reload;
// the comparison lines up the epochs; the finished job diagnoses healthy. Also the phone view.
import { expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, jobIdFromUrl, jobTab, openNewJobForm, PHONE, signUp, UUID } from './support';

const FACTS = [
  { prompt: 'What is the capital of France?', truth: 'Paris is the capital of France', first: 'France capital is Lyon', second: 'Paris is the capital of France' },
  { prompt: 'How many legs does a spider have?', truth: 'A spider has eight legs', first: 'A spider has six legs', second: 'A spider has eight legs' },
  { prompt: 'What colour is the sky on a clear day?', truth: 'The sky is blue', first: 'The sky is blue', second: 'The sky is very blue today' },
  { prompt: 'What do bees make?', truth: 'Bees make honey', first: 'Bees make', second: 'Bees make honey' },
  { prompt: 'Which planet is known as the red planet?', truth: 'Mars is the red planet', first: 'The red planet', second: 'Mars is the red planet' },
];
const ENV = { JOB_ID: true, JOB_TOKEN: true, API_URL: true };

describeBrowser('a manual pod, watched in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  it('shows predictions, curves and logs live, compares epochs, and diagnoses the finished job healthy', async () => {
    // One context, two tabs sharing the session: the job page and the jobs list.
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    await signUp(page, server.url, 'pod');
    await openNewJobForm(page);
    await page.getByRole('radio', { name: /Manual/ }).check();
    await page.getByLabel('Name', { exact: true }).fill('fine-tune on everyday facts');
    await page.getByTestId('form-status').getByText('Ready to deploy').waitFor();
    await page.getByRole('button', { name: 'Deploy job' }).click();
    const dialog = page.getByRole('dialog', { name: 'Start your pod' });
    const token = ((await dialog.getByTestId('env-JOB_TOKEN').textContent()) ?? '').trim();
    await dialog.getByRole('button', { name: 'Go to the job page' }).click();
    await page.waitForURL(new RegExp(`/jobs/${UUID}$`));
    const jobId = jobIdFromUrl(page.url());
    await page.getByTestId('waiting-for-predictions').waitFor();
    await page.getByTestId('live-indicator').waitFor();
    // Marks this document: if the page reloaded, the mark would be gone.
    await page.evaluate(() => document.body.setAttribute('data-mark', 'no-reload'));

    const pod = server.client(token);
    const rows = (epoch: 1 | 2, step: number) =>
      FACTS.map((fact, sampleIndex) => ({
        epoch,
        step,
        sampleIndex,
        trigger: 'eval' as const,
        prompt: fact.prompt,
        groundTruth: fact.truth,
        prediction: epoch === 1 ? fact.first : fact.second,
      }));

    // Epoch 1: the pod connects, logs, reports its loss and writes its first predictions.
    await pod.pod.heartbeat.mutate({ status: 'running', mode: 'cloud', env: ENV, epoch: 1, step: 42, totalSteps: 126, triggerFires: 1, counters: { generated: 5, persisted: 5, spooled: 0, rejected: 0 } });
    await pod.pod.log.mutate({
      lines: [
        { level: 'info', message: 'trainer starting: 334 train rows, 37 eval rows, 126 steps' },
        { level: 'info', message: 'cloud mode: JOB_ID, JOB_TOKEN and API_URL present' },
        { level: 'warn', message: 'learning rate 0.5 is high for this model; watch the loss' },
        { level: 'info', message: 'epoch 1 evaluation: loss 2.113, f1 0.55; sampled 5 predictions' },
      ],
    });
    await pod.pod.writeMetrics.mutate({
      metrics: [
        ...[10, 20, 30, 42].map((step, i) => ({ step, epoch: step / 42, name: 'train/loss', value: 3.2 - i * 0.35 })),
        { step: 42, epoch: 1, name: 'eval/loss', value: 2.113 },
        { step: 42, epoch: 1, name: 'eval/f1', value: 0.55 },
      ],
    });
    await pod.pod.writePredictions.mutate({ predictions: rows(1, 42) });
    await page.getByTestId('prediction-row').nth(4).waitFor();
    await page.getByRole('figure').filter({ hasText: 'Loss' }).waitFor();

    // Epoch 2 arrives while the page is open.
    await pod.pod.heartbeat.mutate({ status: 'running', mode: 'cloud', env: ENV, epoch: 2, step: 84, totalSteps: 126, triggerFires: 2, counters: { generated: 10, persisted: 10, spooled: 0, rejected: 0 } });
    await pod.pod.writeMetrics.mutate({
      metrics: [
        ...[52, 62, 72, 84].map((step, i) => ({ step, epoch: step / 42, name: 'train/loss', value: 1.7 - i * 0.2 })),
        { step: 84, epoch: 2, name: 'eval/loss', value: 1.31 },
        { step: 84, epoch: 2, name: 'eval/f1', value: 0.93 },
      ],
    });
    await pod.pod.log.mutate({ lines: [{ level: 'info', message: 'epoch 2 evaluation: loss 1.310, f1 0.93; sampled 5 predictions' }] });
    await pod.pod.writePredictions.mutate({ predictions: rows(2, 84) });
    await page.getByTestId('prediction-row').nth(9).waitFor();
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 10 of 10 predictions' }).waitFor();
    await page.getByRole('progressbar', { name: 'Training progress' }).and(page.locator('[aria-valuetext*="step 84 / 126"]')).waitFor();
    await expect(page.evaluate(() => document.body.getAttribute('data-mark'))).resolves.toBe('no-reload');
    // The ground truth sits beside the prediction.
    const lastRow = page.getByTestId('prediction-row').nth(9);
    await expect(lastRow.locator('td[data-label="Ground truth"]').textContent()).resolves.toBe('Mars is the red planet');
    await expect(lastRow.locator('td[data-label="Prediction"]').textContent()).resolves.toBe('Mars is the red planet');
    await screenshot(page, 'job-predictions');

    // Filters: one epoch, then a search.
    await page.getByLabel('Epoch', { exact: true }).selectOption('1');
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 5 of 5 predictions matching the filters' }).waitFor();
    await page.getByLabel('Search').fill('spider');
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 1 of 1 prediction matching the filters' }).waitFor();
    await page.getByLabel('Epoch', { exact: true }).selectOption('');
    await page.getByLabel('Search').fill('');

    // The comparison: first and last epoch by default, the same samples side by side.
    await jobTab(page, 'Compare epochs').click();
    await page.waitForURL(new RegExp(`/jobs/${jobId}/compare$`));
    await page.getByTestId('compare-sample').nth(4).waitFor();
    await expect(page.getByRole('checkbox', { name: /Epoch 1/ }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('checkbox', { name: /Epoch 2/ }).isChecked()).resolves.toBe(true);
    await expect(page.getByTestId('mean-f1').locator('li').count()).resolves.toBe(2);
    const outcomes = await page.getByTestId('compare-sample').evaluateAll((els) => els.map((el) => el.getAttribute('data-outcome')));
    expect(outcomes).toEqual(['improved', 'improved', 'regressed', 'improved', 'improved']);
    await expect(page.getByTestId('compare-sample').first().getByTestId('compare-cell').count()).resolves.toBe(2);
    await expect(page.getByTestId('compare-sample').first().getByTestId('f1').last().textContent()).resolves.toBe('F1 1.00');
    await screenshot(page, 'compare');
    await page.getByRole('button', { name: /^Regressed 1$/ }).click();
    await expect(page.getByTestId('compare-sample').count()).resolves.toBe(1);

    // Logs tail live.
    await jobTab(page, 'Logs').click();
    await page.getByTestId('log').getByText('epoch 2 evaluation').waitFor();
    await pod.pod.log.mutate({ lines: [{ level: 'error', message: 'CUDA out of memory on batch 97; retrying with a smaller batch' }] });
    await page.getByTestId('log').getByText('CUDA out of memory').waitFor();
    await screenshot(page, 'logs');

    // A second tab on the jobs list follows the job live too.
    const listPage = await context.newPage();
    await listPage.goto(`${server.url}/`);
    const listRow = listPage.locator(`[data-job-id="${jobId}"]`);
    await listRow.getByText('Running').waitFor();

    // The pod finishes: the status changes without a reload and diagnostics find nothing wrong.
    await pod.pod.heartbeat.mutate({ status: 'finishing', mode: 'cloud', env: ENV, epoch: 3, step: 126, totalSteps: 126, triggerFires: 2, counters: { generated: 10, persisted: 10, spooled: 0, rejected: 0 } });
    await pod.pod.finish.mutate({ status: 'completed' });
    await page.getByTestId('job-status').filter({ hasText: 'Completed' }).waitFor();
    await listRow.getByText('Completed').waitFor();
    await listRow.getByText('epoch 3 · step 126 / 126').waitFor();
    await listPage.close();
    await jobTab(page, 'Diagnostics').click();
    await page.getByTestId('root-cause').filter({ hasText: 'Everything looks healthy' }).waitFor();
    const statuses = await page.getByTestId('check').evaluateAll((els) => els.map((el) => el.getAttribute('data-status')));
    expect(statuses.every((status) => status === 'pass')).toBe(true);
    await screenshot(page, 'diagnostics-healthy-manual');

    // A phone-width view of the jobs list and the predictions.
    await page.setViewportSize(PHONE);
    await jobTab(page, 'Predictions').click();
    await page.getByTestId('prediction-row').nth(9).waitFor();
    await screenshot(page, 'phone-job-predictions');
    await page.getByRole('link', { name: 'All jobs' }).click();
    await page.getByTestId('job-row').first().getByText('Completed').waitFor();
    await screenshot(page, 'phone-jobs-list');
    await context.close();
  });
});
