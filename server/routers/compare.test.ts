// predictions.compare over real HTTP: a comparison is complete. Paging by
// sample returns every sample of every chosen epoch exactly once with each epoch's latest
// prediction; the totals and mean F1 cover all samples on every page; cursors the server did
// not issue are a 400 naming `cursor`; another owner's job is NOT_FOUND.
import { describe, expect, it } from 'vitest';
import { errorDetails, type RouterOutputs } from '../../client/api/client';
import { COMPARE_CURSOR_MAX_LENGTH, COMPARE_PAGE_DEFAULT, COMPARE_PAGE_MAX } from '#contract/predictions.schemas';
import { PREDICTION_BATCH_MAX } from '#contract/pod.schemas';
import { tokenF1 } from '#contract/scoring';
import { createManualJob, createUser } from '../test-support/factories';
import { useTestServer, type TestServer } from '../test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

type Comparison = RouterOutputs['predictions']['compare'];
type Api = ReturnType<TestServer['client']>;

const EPOCHS = [1, 2, 3] as const;
const STEPS_PER_EPOCH = 3;
// Each epoch has 150 samples, shifted by 5 per epoch: 160 distinct samples, some in one or two
// epochs only. More than 100 per epoch, the cap compare used to apply without saying so.
const SAMPLES_PER_EPOCH = 150;
const firstSampleOf = (epoch: number) => (epoch - 1) * 5;
const ALL_SAMPLES = firstSampleOf(EPOCHS.length) + SAMPLES_PER_EPOCH;
// Steps keep growing across epochs (Hugging Face's global_step).
const stepOf = (epoch: number, fire: number) => (epoch - 1) * 100 + (fire + 1) * 10;
// Some samples are only sampled at an epoch's earlier fires: their latest step is not the epoch's last.
const lastFireOf = (epoch: number, sampleIndex: number) => ((sampleIndex + epoch) % 7 === 0 ? 0 : (sampleIndex + epoch) % 11 === 0 ? 1 : STEPS_PER_EPOCH - 1);

const truthOf = (sampleIndex: number) => `the answer to question ${sampleIndex} is ${sampleIndex % 13}`;
// Overlap with the truth varies by sample and epoch, so the means are not trivially 0 or 1.
function predictionOf(epoch: number, fire: number, sampleIndex: number): string {
  const words = truthOf(sampleIndex).split(' ');
  const kept = words.slice(0, 1 + ((sampleIndex + epoch * 3 + fire) % words.length));
  return `${kept.join(' ')} ${fire === lastFireOf(epoch, sampleIndex) ? 'final' : `stale ${fire}`}`;
}

interface Expected {
  step: number;
  prediction: string;
  groundTruth: string;
}

/** Every row the pod writes, and the comparison the test expects: per epoch, each sample's latest (highest-step) prediction. */
const ROWS: Array<{ epoch: number; step: number; sampleIndex: number; trigger: 'eval'; prompt: string; groundTruth: string; prediction: string }> = [];
const expected = new Map<number, Map<number, Expected>>(EPOCHS.map((epoch) => [epoch, new Map()]));
for (const epoch of EPOCHS) {
  for (let fire = 0; fire < STEPS_PER_EPOCH; fire++) {
    for (let sampleIndex = firstSampleOf(epoch); sampleIndex < firstSampleOf(epoch) + SAMPLES_PER_EPOCH; sampleIndex++) {
      if (fire > lastFireOf(epoch, sampleIndex)) continue;
      const row = {
        epoch,
        step: stepOf(epoch, fire),
        sampleIndex,
        trigger: 'eval' as const,
        prompt: `question ${sampleIndex}`,
        groundTruth: truthOf(sampleIndex),
        prediction: predictionOf(epoch, fire, sampleIndex),
      };
      ROWS.push(row);
      expected.get(epoch)?.set(sampleIndex, { step: row.step, prediction: row.prediction, groundTruth: row.groundTruth });
    }
  }
}

/** A job whose pod wrote ROWS through the pod API, as a real pod would. Tables are emptied before each test. */
async function jobWithComparison() {
  const owner = await createUser(server.deps);
  const { jobId, token } = await createManualJob(server.deps, owner.id);
  const pod = server.client(token).pod;
  for (let i = 0; i < ROWS.length; i += PREDICTION_BATCH_MAX) {
    const written = await pod.writePredictions.mutate({ predictions: ROWS.slice(i, i + PREDICTION_BATCH_MAX) });
    expect(written.rejected).toEqual([]);
  }
  return { jobId, api: server.client(owner.token) };
}

async function compareAll(api: Api, input: { jobId: string; epochs: number[]; limit?: number }) {
  const pages: Comparison[] = [];
  let cursor: string | null = null;
  do {
    const page: Comparison = await api.predictions.compare.query({ ...input, cursor });
    pages.push(page);
    cursor = page.nextCursor;
  } while (cursor && pages.length <= ALL_SAMPLES);
  return pages;
}

function expectedMeans(epochs: readonly number[]) {
  return epochs.map((epoch) => {
    const latest = [...(expected.get(epoch)?.entries() ?? [])].sort(([a], [b]) => a - b);
    return latest.reduce((sum, [, row]) => sum + tokenF1(row.prediction, row.groundTruth), 0) / latest.length;
  });
}

/** Each sample carries, per epoch, that epoch's latest prediction for it, or null where the epoch has none. */
function expectLatestPerEpoch(samples: Comparison['samples'], epochs: readonly number[]) {
  for (const sample of samples) {
    expect(sample.groundTruth).toBe(truthOf(sample.sampleIndex));
    expect(sample.prompt).toBe(`question ${sample.sampleIndex}`);
    epochs.forEach((epoch, i) => {
      const want = expected.get(epoch)?.get(sample.sampleIndex);
      const got = sample.predictions[i];
      if (!want) {
        expect(got, `sample ${sample.sampleIndex} has no prediction in epoch ${epoch}`).toBeNull();
        return;
      }
      expect(got, `sample ${sample.sampleIndex}, epoch ${epoch}`).toEqual({
        prediction: want.prediction,
        step: want.step,
        f1: tokenF1(want.prediction, want.groundTruth),
        exact: false,
        altered: false,
      });
    });
  }
}

describe('predictions.compare pages by sample and cuts nothing', () => {
  it('returns every sample of 3 epochs × 150 samples exactly once, each epoch with its latest prediction', async () => {
    const job = await jobWithComparison();
    const pages = await compareAll(job.api, { jobId: job.jobId, epochs: [3, 1, 2], limit: 40 });
    expect(pages.map((p) => p.samples.length)).toEqual([40, 40, 40, 40]);
    expect(pages.at(-1)?.nextCursor).toBeNull();

    const samples = pages.flatMap((p) => p.samples);
    expect(samples.map((s) => s.sampleIndex)).toEqual(Array.from({ length: ALL_SAMPLES }, (_, i) => i));
    expectLatestPerEpoch(samples, EPOCHS);

    // Every page states the whole, not itself.
    const means = expectedMeans(EPOCHS);
    for (const page of pages) {
      expect(page.epochs).toEqual([...EPOCHS]);
      expect(page.limit).toBe(40);
      expect(page.sampleCount).toBe(ALL_SAMPLES);
      expect(page.epochSampleCounts).toEqual(EPOCHS.map(() => SAMPLES_PER_EPOCH));
      page.meanF1.forEach((mean, i) => expect(mean).toBeCloseTo(means[i] ?? NaN, 12));
    }
  });

  it('says the default page size and that more follows, and gives the same totals on one page of the largest size', async () => {
    const job = await jobWithComparison();
    const first = await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1, 2] });
    expect(first.limit).toBe(COMPARE_PAGE_DEFAULT);
    expect(first.samples).toHaveLength(COMPARE_PAGE_DEFAULT);
    expect(first.nextCursor).not.toBeNull();
    // Epochs 1 and 2 together have samples 0..154.
    expect(first.sampleCount).toBe(firstSampleOf(2) + SAMPLES_PER_EPOCH);

    const whole = await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1, 2], limit: COMPARE_PAGE_MAX });
    expect(whole.samples.map((s) => s.sampleIndex)).toEqual(Array.from({ length: firstSampleOf(2) + SAMPLES_PER_EPOCH }, (_, i) => i));
    expectLatestPerEpoch(whole.samples, [1, 2]);
    expect(whole.nextCursor).toBeNull();
    expect(whole.sampleCount).toBe(first.sampleCount);
    expect(whole.epochSampleCounts).toEqual(first.epochSampleCounts);
    whole.meanF1.forEach((mean, i) => expect(mean).toBeCloseTo(first.meanF1[i] ?? NaN, 12));
    expectedMeans([1, 2]).forEach((mean, i) => expect(whole.meanF1[i]).toBeCloseTo(mean, 12));
  });

  it('carries the altered flag of a prediction whose text had to be made storable', async () => {
    const owner = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, owner.id);
    await server.client(token).pod.writePredictions.mutate({
      predictions: [0, 1].map((sampleIndex) => ({
        epoch: 1,
        step: 5,
        sampleIndex,
        trigger: 'eval' as const,
        prompt: 'p',
        groundTruth: 'the truth',
        prediction: sampleIndex === 0 ? 'the\u0000truth' : 'the truth',
      })),
    });
    const result = await server.client(owner.token).predictions.compare.query({ jobId, epochs: [1] });
    expect(result.samples.map((s) => s.predictions[0]?.altered)).toEqual([true, false]);
    expect(result.samples[0]?.predictions[0]?.prediction).toBe('the\uFFFDtruth');
  });

  it("answers NOT_FOUND for another user's job, on the first page and with a cursor", async () => {
    const job = await jobWithComparison();
    const first = await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1], limit: 10 });
    const stranger = server.client((await createUser(server.deps)).token);
    for (const cursor of [null, first.nextCursor]) {
      const error = errorDetails(await stranger.predictions.compare.query({ jobId: job.jobId, epochs: [1], cursor }).catch((e: unknown) => e));
      expect(error).toMatchObject({ code: 'NOT_FOUND', httpStatus: 404, message: 'Job not found' });
    }
  });

  it('refuses a cursor it did not issue, and a limit out of range, with a 400 naming the field', async () => {
    const job = await jobWithComparison();
    const issued = await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1], limit: 10 });
    const listCursor = (await job.api.predictions.list.query({ jobId: job.jobId, limit: 1 })).nextCursor;
    const b64 = (text: string) => Buffer.from(text).toString('base64url');
    const forged = [
      'not-a-cursor',
      b64('compare:-1'),
      b64('compare:1e3'),
      b64('compare:0010'),
      b64('compare:99999999'),
      b64(`compare:${2 ** 53}`),
      `${issued.nextCursor ?? ''}=`,
      listCursor ?? 'missing list cursor',
      'x'.repeat(COMPARE_CURSOR_MAX_LENGTH + 1),
    ];
    for (const cursor of forged) {
      const error = errorDetails(await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1], cursor }).catch((e: unknown) => e));
      expect(error, cursor).toMatchObject({ httpStatus: 400, field: 'cursor' });
      expect(error.message, cursor).toMatch(/cursor/);
    }
    for (const limit of [0, COMPARE_PAGE_MAX + 1, 1.5, 2 ** 31]) {
      const error = errorDetails(await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1], limit }).catch((e: unknown) => e));
      expect(error, String(limit)).toMatchObject({ httpStatus: 400, field: 'limit' });
    }
    // The server still answers, and its own cursor still works.
    const next = await job.api.predictions.compare.query({ jobId: job.jobId, epochs: [1], limit: 10, cursor: issued.nextCursor });
    expect(next.samples[0]?.sampleIndex).toBe(10);
  });
});
