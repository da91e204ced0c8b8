// In the browser: what a pod sends that PostgreSQL cannot store (a NUL, half of an
// emoji) is shown with U+FFFD and an "altered" marker on exactly those rows; a 16,000-character,
// a right-to-left and an emoji prediction stay inside their cells; a NaN loss breaks the curve
// and is marked instead of drawn through; evaluator metric names (`eval_precision@5`) show as sent.
import { expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import { FIELD_LIMITS } from '#contract/pod.schemas';
import { hasUnstorableText, REPLACEMENT_CHARACTER } from '#contract/text';
import { describeBrowser, screenshot, useBrowserApp } from '../../server/test-support/browser';
import { createManualJob, createUser } from '../../server/test-support/factories';
import type { TestServer } from '../../server/test-support/server';
import { DESKTOP, PHONE, signIn } from './support';

const ENV = { JOB_ID: true, JOB_TOKEN: true, API_URL: true };
const GRIN = '\u{1F600}';
/** 16,000 characters, the most a prediction may hold; one 3,000-character word among them, as a degenerate model writes. */
const LONG = `${'the model repeats itself '.repeat(520)}${'x'.repeat(3_000)}`.padEnd(FIELD_LIMITS.prediction, ' again').slice(0, FIELD_LIMITS.prediction);
const RTL = 'صباح الخير يا Sarah، كيف حالك؟ שלום 123';
/** Families, skin tones and flags are several code points; the cell collapses it after 180 UTF-16 units, which here fall inside an emoji. */
const EMOJI = `Well done!! 🎉👍🏽 👩‍👩‍👧 🇫🇷 ${GRIN.repeat(90)}`;
const NUL_PREDICTION = 'The answer is\u0000 42';
/** What `slice()` through an emoji leaves: its first half, a lone surrogate. */
const HALF_EMOJI_PREDICTION = `Great work ${GRIN}`.slice(0, -1);
const ODD_NAME = '<b>exact match</b> & rouge:L';
const LONG_NAME = `eval/${'very_long_evaluator_metric_name_'.repeat(4)}`.slice(0, 128);

function row(step: number, sampleIndex: number, prompt: string, groundTruth: string, prediction: string) {
  return { epoch: 1, step, sampleIndex, trigger: 'eval' as const, prompt, groundTruth, prediction };
}

function predictionCell(page: Page, text: string): Locator {
  return page.getByTestId('prediction-row').filter({ has: page.locator('td[data-label="Prediction"]', { hasText: text }) });
}

/** Which rows carry the altered marker, by their prediction text, in table order. */
async function alteredRows(page: Page): Promise<Array<{ prediction: string; altered: boolean }>> {
  return page.getByTestId('prediction-row').evaluateAll((rows) =>
    rows.map((tr) => ({
      prediction: tr.querySelector('td[data-label="Prediction"]')?.textContent ?? '',
      altered: tr.querySelector('[data-testid="altered-marker"]') !== null,
    })),
  );
}

/** Nothing is wider than the window: no cell pushes the page sideways. */
async function expectNoSidewaysScroll(page: Page): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
  expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
}

describeBrowser('hostile text and odd metrics in the browser', () => {
  let server: TestServer;
  let browser: Browser;
  useBrowserApp((started, launched) => {
    server = started;
    browser = launched;
  });

  it('marks the two altered rows, keeps long, right-to-left and emoji text in its cells, and breaks the loss at a NaN', { timeout: 120_000 }, async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id, { name: 'hostile text' });
    const pod = server.client(token);
    await pod.pod.heartbeat.mutate({ status: 'running', mode: 'cloud', env: ENV, epoch: 1, step: 10, totalSteps: 80 });

    // Metrics as trainers emit them: a NaN loss (JSON null), evaluator names with @, : and spaces.
    const losses = [10, 20, 30, 40, 50, 60, 70, 80].map((step, i) => ({ step, epoch: step / 80, name: 'train/loss', value: step === 40 ? null : 2.4 - i * 0.2 }));
    const scores = [20, 40, 60, 80].flatMap((step, i) => [
      { step, epoch: step / 80, name: 'eval_precision@5', value: 0.3 + i * 0.15 },
      { step, epoch: step / 80, name: ODD_NAME, value: 0.2 + i * 0.1 },
      { step, epoch: step / 80, name: LONG_NAME, value: 0.5 },
      // A diverging gradient norm: -Infinity once, then NaN for good, in the names a Python trainer sends.
      { step, epoch: step / 80, name: 'grad_norm', value: [1.2, '-Infinity', 'NaN', 'NaN'][i] },
    ]);
    const metrics = await pod.pod.writeMetrics.mutate({ metrics: [...losses, ...scores] });
    expect(metrics).toMatchObject({ inserted: losses.length + scores.length, rejected: [] });

    // Before the page opens: ordinary rows, the longest prediction allowed, Arabic and Hebrew, emoji.
    const first = await pod.pod.writePredictions.mutate({
      predictions: [
        row(10, 0, 'What is the capital of France?', 'Paris', 'Paris'),
        row(10, 1, 'How many legs does a spider have?', 'Eight', 'Six'),
        row(10, 2, 'Say it at length', 'Briefly', LONG),
        row(10, 3, 'Greet Sarah in Arabic', 'صباح الخير يا Sarah', RTL),
        row(10, 4, 'Celebrate', 'Well done! 🎉', EMOJI),
      ],
    });
    expect(first).toMatchObject({ inserted: 5, altered: 0, rejected: [] });

    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    await signIn(page, server.url, user.email);
    await page.goto(`${server.url}/jobs/${jobId}`);
    await page.getByTestId('prediction-row').nth(4).waitFor();
    await page.getByTestId('live-indicator').waitFor();

    // While the page is open the pod sends a NUL and half an emoji among good rows: all stored.
    const second = await pod.pod.writePredictions.mutate({
      predictions: [
        row(20, 0, 'What is six times seven?', '42', NUL_PREDICTION),
        row(20, 1, 'Praise the work', `Great work ${GRIN}`, HALF_EMOJI_PREDICTION),
        row(20, 2, 'What do bees make?', 'Honey', 'Honey'),
      ],
    });
    expect(second).toMatchObject({ inserted: 3, altered: 2, rejected: [] });
    const storedNul = NUL_PREDICTION.replace('\u0000', REPLACEMENT_CHARACTER);
    const storedHalf = `Great work ${REPLACEMENT_CHARACTER}`;
    const expected = (rows: Array<{ prediction: string }>) => rows.map((r) => ({ prediction: r.prediction, altered: r.prediction === storedNul || r.prediction === storedHalf }));

    // Live rows first, then the same from a fresh read: the marker on exactly the two altered rows.
    await page.getByTestId('predictions-count').filter({ hasText: 'Showing 8 of 8 predictions' }).waitFor();
    await predictionCell(page, storedNul).getByTestId('altered-marker').waitFor();
    const live = await alteredRows(page);
    expect(live.map((r) => r.prediction)).toEqual(expect.arrayContaining([storedNul, storedHalf]));
    expect(live.filter((r) => r.altered)).toHaveLength(2);
    expect(live).toEqual(expected(live));
    await page.reload();
    await page.getByTestId('prediction-row').nth(7).waitFor();
    const listed = await alteredRows(page);
    expect(listed.map((r) => r.prediction).sort()).toEqual(live.map((r) => r.prediction).sort());
    expect(listed).toEqual(expected(listed));
    await page.getByTestId('altered-note').filter({ hasText: `2 rows shown are marked altered: characters that cannot be stored (a NUL or half of an emoji) were replaced by ${REPLACEMENT_CHARACTER}.` }).waitFor();
    await expect(page.getByTestId('altered-marker').first().getAttribute('title')).resolves.toContain('were replaced by');
    // The marker's explanation reaches screen readers too, not only a mouse hovering it.
    await expect(page.getByTestId('altered-marker').first().textContent()).resolves.toContain('a NUL or half of an emoji');

    // Right-to-left text runs right to left in its cell; the emoji arrive whole.
    const rtl = predictionCell(page, 'صباح الخير يا Sarah،').locator('td[data-label="Prediction"] .cell-text-body');
    await expect(rtl.evaluate((el) => getComputedStyle(el).direction)).resolves.toBe('rtl');
    // Only the text turns: the cell, and its label on a phone, keep the page's direction.
    await expect(rtl.evaluate((el) => getComputedStyle(el.closest('td') ?? el).direction)).resolves.toBe('ltr');
    await expect(predictionCell(page, 'Paris').locator('td[data-label="Prediction"] .cell-text-body').evaluate((el) => getComputedStyle(el).direction)).resolves.toBe('ltr');
    const emojiCell = predictionCell(page, 'Well done!! 🎉👍🏽').locator('td[data-label="Prediction"]');
    await emojiCell.getByRole('button', { name: 'Show more' }).click();
    await expect(emojiCell.textContent()).resolves.toBe(`${EMOJI} Show less`);

    // The longest prediction, expanded, scrolls inside its cell: the page neither widens nor grows by metres.
    const longCell = predictionCell(page, 'the model repeats itself').locator('td[data-label="Prediction"]');
    await longCell.getByRole('button', { name: 'Show more' }).click();
    await longCell.getByRole('button', { name: 'Show less' }).waitFor();
    const longBox = await longCell.boundingBox();
    expect(longBox?.width).toBeLessThanOrEqual(400);
    expect(longBox?.height).toBeLessThanOrEqual(420);
    await expect(longCell.locator('.cell-text-body').evaluate((el) => el.scrollHeight > el.clientHeight)).resolves.toBe(true);
    await expectNoSidewaysScroll(page);

    // The loss curve breaks at the NaN and marks it; the legend counts it; odd names show as sent.
    const chart = (title: string) => page.getByTestId('metrics-chart').filter({ has: page.locator('figcaption', { hasText: new RegExp(`^${title}$`) }) });
    const lossChart = chart('Loss');
    const nanMarker = lossChart.getByTestId('metric-non-finite');
    await expect(nanMarker.count()).resolves.toBe(1);
    await expect(nanMarker.getAttribute('data-kind')).resolves.toBe('NaN');
    await expect(nanMarker.locator('title').textContent()).resolves.toBe('train/loss: NaN at step 40');
    await expect(lossChart.locator('path').count()).resolves.toBe(2);
    await lossChart.getByTestId('metric-legend').filter({ hasText: 'train/loss' }).filter({ hasText: '1 of 8 points not finite: NaN' }).waitFor();
    await expect(lossChart.locator('svg').getAttribute('aria-label')).resolves.toContain('train/loss 1.000 (1 of 8 points not finite: NaN)');
    const scoresChart = chart('Scores');
    await scoresChart.getByTestId('metric-legend').filter({ hasText: 'eval_precision@5' }).waitFor({ state: 'visible' });
    await scoresChart.getByTestId('metric-legend').filter({ hasText: ODD_NAME }).waitFor({ state: 'visible' });
    await scoresChart.getByTestId('metric-legend').filter({ hasText: LONG_NAME }).waitFor({ state: 'visible' });
    // Escaped, not interpreted: the name's "<b>" is text, no element.
    await expect(scoresChart.locator('b').count()).resolves.toBe(0);
    // Consecutive NaNs are one marker; -Infinity sits on the bottom edge, NaN on the top one.
    const markers = await scoresChart.getByTestId('metric-non-finite').evaluateAll((groups) =>
      groups.map((g) => ({ kind: g.getAttribute('data-kind'), title: g.querySelector('title')?.textContent, y: Number(g.querySelector('rect')?.getAttribute('y')) })),
    );
    expect(markers.map(({ kind, title }) => ({ kind, title }))).toEqual([
      { kind: '-Infinity', title: 'grad_norm: -Infinity at step 40' },
      { kind: 'NaN', title: 'grad_norm: NaN at steps 60 to 80 (2 points)' },
    ]);
    expect(markers[0]?.y).toBeGreaterThan(markers[1]?.y ?? Infinity);
    await scoresChart.getByTestId('metric-legend').filter({ hasText: 'grad_norm NaN · 3 of 4 points not finite: 2 NaN, 1 -Infinity' }).waitFor();
    await screenshot(page, 'hostile-text-predictions');

    // On a phone the same rows stay one card wide, right-to-left text included.
    await page.setViewportSize(PHONE);
    await longCell.getByRole('button', { name: 'Show less' }).click();
    await page.getByTestId('prediction-row').nth(7).waitFor();
    await expectNoSidewaysScroll(page);
    // The phone layout aligns its cells left; right-to-left text (direction rtl, above) still starts on the right.
    await expect(rtl.evaluate((el) => getComputedStyle(el).textAlign)).resolves.toBe('start');
    await screenshot(page, 'phone-hostile-text-predictions');

    // Collapsed again to 180 UTF-16 units, which end inside an emoji here: half of one would show as �.
    await emojiCell.getByRole('button', { name: 'Show less' }).click();
    const collapsed = (await emojiCell.textContent()) ?? '';
    expect(hasUnstorableText(collapsed)).toBe(false);
    expect(collapsed).not.toContain(REPLACEMENT_CHARACTER);
    await context.close();
  });
});
