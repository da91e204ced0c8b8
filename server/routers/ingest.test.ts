// Over real HTTP: nothing a pod can send is lost or hidden. Text PostgreSQL cannot
// store is made storable and marked, a resumed run replaces what it re-predicts (and says so),
// steps that restart each epoch are refused by row with the reason, metrics keep NaN and
// evaluator names, and per-epoch totals add up over many batches.
import { and, asc, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { jobEvents, trainingPredictions } from '../../db/schema';
import type { WriteMetricsOutput, WritePredictionsOutput } from '#contract/pod.schemas';
import { podWrites, predictionRow } from '../test-support/pod-writes';
import { useTestServer, type TestServer } from '../test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

const { post, write, setup } = podWrites(() => server);
const row = predictionRow;

async function stored(jobId: string) {
  return server.database.db
    .select({ id: trainingPredictions.id, epoch: trainingPredictions.epoch, step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex, prediction: trainingPredictions.prediction, altered: trainingPredictions.altered })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, jobId))
    .orderBy(asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex));
}

const HALF_EMOJI = '😀'.slice(0, 1);

describe('text PostgreSQL cannot store', () => {
  it('stores every row of a batch with a NUL and half an emoji, marking the two altered', async () => {
    const { token, jobId, api } = await setup();
    const batch = [row(1, 5, 0), row(1, 5, 1, 'ab\u0000cd'), row(1, 5, 2), row(1, 5, 3, `smile ${HALF_EMOJI}!`), row(1, 5, 4, 'whole 😀 emoji')];
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: batch }, token);
    expect(answer).toEqual({ inserted: 5, duplicates: 0, replaced: 0, altered: 2, rejected: [] });
    const rows = await stored(jobId);
    expect(rows.map((r) => [r.sampleIndex, r.prediction, r.altered])).toEqual([
      [0, 'guess 5/0', false],
      [1, 'ab\uFFFDcd', true],
      [2, 'guess 5/2', false],
      [3, 'smile \uFFFD!', true],
      [4, 'whole 😀 emoji', false],
    ]);
    // The reading side says so too.
    const page = await api.predictions.list.query({ jobId });
    expect(page.items.filter((i) => i.altered).map((i) => i.sampleIndex)).toEqual([1, 3]);
    // Sent again, the same batch changes nothing.
    expect(await write<WritePredictionsOutput>('pod.writePredictions', { predictions: batch }, token)).toEqual({ inserted: 0, duplicates: 5, replaced: 0, altered: 0, rejected: [] });
  });

  it('never answers 500 for a NUL or lone surrogate in prompts, metric names, log lines, heartbeat keys or searches', async () => {
    const { token, jobId, api } = await setup();
    const nasty = `x\u0000y${HALF_EMOJI}z\uDC00`;
    const batch = [{ ...row(1, 1, 0), prompt: nasty, groundTruth: nasty }];
    expect((await write<WritePredictionsOutput>('pod.writePredictions', { predictions: batch }, token)).altered).toBe(1);
    expect((await post('pod.writeMetrics', { metrics: [{ step: 1, epoch: 1, name: `loss${HALF_EMOJI}`, value: 1 }] }, token)).status).toBe(200);
    expect((await post('pod.log', { lines: [{ level: 'info', message: nasty }] }, token)).status).toBe(200);
    // An env name must be a printable name: a NUL in one is refused by name, not stored and not a 500.
    const heartbeat = await post('pod.heartbeat', { env: { [`A\u0000B`]: true }, counters: { generated: 1, persisted: 1, spooled: 0, rejected: 0 } }, token);
    expect(heartbeat.status).toBe(400);
    expect((heartbeat.body as { error: { data: { field: string } } }).error.data.field).toBe('env');
    expect((await post('pod.heartbeat', { env: { JOB_ID: true }, counters: { generated: 1, persisted: 1, spooled: 0, rejected: 0 } }, token)).status).toBe(200);
    expect((await post('pod.finish', { status: 'failed', error: nasty }, token)).status).toBe(200);
    // A search is made storable like the text it looks in, so the same characters find the row.
    expect((await api.predictions.list.query({ jobId, search: 'y\u0000' })).items).toHaveLength(1);
    expect((await api.predictions.list.query({ jobId, search: 'q\u0000' })).items).toHaveLength(0);
    expect((await api.predictions.list.query({ jobId, search: '\uFFFDy' })).items).toHaveLength(1);
    expect((await api.jobs.logs.query({ jobId })).lines.map((l) => l.message)).toEqual(['x\uFFFDy\uFFFDz\uFFFD']);
    expect((await api.jobs.get.query({ jobId })).error).toBe('x\uFFFDy\uFFFDz\uFFFD');
  });
});

describe('the same key again', () => {
  it('replaces a prediction a resumed run makes again with new text, counts it, and says so on the ledger and in diagnostics', async () => {
    const { token, jobId, api } = await setup();
    await write('pod.writePredictions', { predictions: [10, 20, 30].flatMap((step) => [0, 1].map((i) => row(1, step, i))) }, token);
    const before = await stored(jobId);
    // Resumed from the checkpoint at step 10: steps 20 and 30 are predicted again, differently.
    const resumed = [20, 30].flatMap((step) => [0, 1].map((i) => row(1, step, i, `resumed ${step}/${i}`)));
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: [...resumed, row(1, 10, 0)] }, token);
    expect(answer).toEqual({ inserted: 0, duplicates: 1, replaced: 4, altered: 0, rejected: [] });
    const after = await stored(jobId);
    expect(after).toHaveLength(6);
    expect(after.filter((r) => r.step >= 20).map((r) => r.prediction)).toEqual(['resumed 20/0', 'resumed 20/1', 'resumed 30/0', 'resumed 30/1']);
    // Replaced rows take new ids, so a live subscriber following ids sees the new text.
    const maxBefore = Math.max(...before.map((r) => r.id));
    expect(after.filter((r) => r.step >= 20).every((r) => r.id > maxBefore)).toBe(true);
    expect(after.find((r) => r.step === 10 && r.sampleIndex === 0)?.id).toBe(before.find((r) => r.step === 10 && r.sampleIndex === 0)?.id);
    // Totals are unchanged by a replacement.
    expect((await api.jobs.get.query({ jobId })).predictionCount).toBe(6);
    expect(await api.predictions.epochs.query({ jobId })).toMatchObject([{ epoch: 1, count: 6, minStep: 10, maxStep: 30 }]);

    const events = await server.database.db.select({ detail: jobEvents.detail }).from(jobEvents).where(and(eq(jobEvents.jobId, jobId), eq(jobEvents.kind, 'predictions_replaced')));
    expect(events.map((e) => e.detail)).toEqual([{ count: 4, minStep: 20, maxStep: 30 }]);
    const diagnostics = await api.diagnostics.job.query({ jobId });
    const check = diagnostics.checks.find((c) => c.id === 'rows_replaced');
    expect(check?.message).toMatch(/4 predictions at steps 20 to 30 were replaced by a resumed run/);
  });

  it('treats a key sent twice in one batch as two batches in order: the later text replaces, another epoch is refused', async () => {
    const { token, jobId } = await setup();
    const answer = await write<WritePredictionsOutput>(
      'pod.writePredictions',
      { predictions: [row(1, 4, 0, 'first'), row(1, 4, 1), row(1, 4, 0, 'second'), row(1, 4, 1), row(2, 4, 0, 'epoch two')] },
      token,
    );
    expect(answer).toMatchObject({ inserted: 2, duplicates: 1, replaced: 1 });
    expect(answer.rejected.map((r) => r.index)).toEqual([4]);
    expect((await stored(jobId)).map((r) => r.prediction)).toEqual(['second', 'guess 4/1']);
  });

  it('refuses by row a step stored under another epoch (steps restarting each epoch), stores the rest, and names it as the root cause', async () => {
    const { token, jobId, api } = await setup();
    await write('pod.heartbeat', { env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true }, step: 3, triggerFires: 2 }, token);
    // A pod counting steps within the epoch: epoch 2 starts again at step 1.
    await write('pod.writePredictions', { predictions: [row(1, 1, 0), row(1, 1, 1), row(1, 2, 0)] }, token);
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: [row(2, 1, 0), row(2, 3, 0), row(2, 1, 1)] }, token);
    expect(answer.inserted).toBe(1);
    expect(answer.duplicates).toBe(0);
    expect(answer.rejected.map((r) => r.index)).toEqual([0, 2]);
    expect(answer.rejected[0]?.reason).toMatch(/step 1 \(sampleIndex 0\) is already stored under epoch 1; steps must keep growing across epochs/);
    expect((await stored(jobId)).map((r) => [r.epoch, r.step, r.sampleIndex, r.prediction])).toEqual([
      [1, 1, 0, 'guess 1/0'],
      [1, 1, 1, 'guess 1/1'],
      [1, 2, 0, 'guess 2/0'],
      [2, 3, 0, 'guess 3/0'],
    ]);
    const diagnostics = await api.diagnostics.job.query({ jobId });
    expect(diagnostics.rootCauseCheck).toBe('rows_rejected');
    expect(diagnostics.rootCause).toMatch(/global_step/);
  });
});

describe('metrics as trainers emit them', () => {
  it('stores NaN and infinite values and evaluator names, refusing only the bad row', async () => {
    const { token, jobId, api } = await setup();
    const metrics = [
      { step: 1, epoch: 0.5, name: 'loss', value: null },
      { step: 2, epoch: 1, name: 'loss', value: 'NaN' },
      { step: 3, epoch: 1, name: 'loss', value: 'Infinity' },
      { step: 4, epoch: 1, name: 'loss', value: '-Infinity' },
      { step: 5, epoch: 1, name: 'loss', value: 0.25 },
      { step: 5, epoch: 1, name: 'eval_precision@5', value: 0.5 },
      { step: 5, epoch: 1, name: 'rouge:L score', value: 0.75 },
      { step: 5, epoch: 1, name: 'bad\nname', value: 1 },
      { step: 5, epoch: 1, name: 'x'.repeat(129), value: 1 },
      { step: 5, epoch: 1, name: 'loss2', value: 'lots' },
    ];
    const answer = await write<WriteMetricsOutput>('pod.writeMetrics', { metrics }, token);
    expect(answer.inserted).toBe(7);
    expect(answer.rejected.map((r) => r.index)).toEqual([7, 8, 9]);
    expect(answer.rejected[1]?.reason).toMatch(/name: .*128/);
    const { points } = await api.jobs.metrics.query({ jobId });
    expect(points.map((p) => [p.name, p.step, p.value])).toEqual([
      ['eval_precision@5', 5, 0.5],
      ['loss', 1, 'NaN'],
      ['loss', 2, 'NaN'],
      ['loss', 3, 'Infinity'],
      ['loss', 4, '-Infinity'],
      ['loss', 5, 0.25],
      ['rouge:L score', 5, 0.75],
    ]);
    // A resumed run logs a step again: the newer value is kept, an identical one is a duplicate.
    const again = await write<WriteMetricsOutput>('pod.writeMetrics', { metrics: [{ step: 5, epoch: 1, name: 'loss', value: 0.5 }, { step: 1, epoch: 0.5, name: 'loss', value: null }] }, token);
    expect(again).toEqual({ inserted: 0, replaced: 1, duplicates: 1, rejected: [] });
    expect((await api.jobs.metrics.query({ jobId })).points.find((p) => p.name === 'loss' && p.step === 5)?.value).toBe(0.5);
  });
});

describe('per-epoch totals', () => {
  it('add up over many batches per epoch and trigger', async () => {
    const { token, jobId, api } = await setup();
    // Ten batches into epoch 1, four into epoch 2, each a different step: totals must add, never overwrite.
    for (let b = 0; b < 10; b++) await write('pod.writePredictions', { predictions: [0, 1, 2].map((i) => row(1, 10 + b, i)) }, token);
    for (let b = 0; b < 4; b++) await write('pod.writePredictions', { predictions: [0, 1].map((i) => row(2, 100 + b, i)) }, token);
    // A retried batch and a replacement change no count.
    await write('pod.writePredictions', { predictions: [row(1, 10, 0), row(1, 11, 0, 'other')] }, token);
    expect(await api.predictions.epochs.query({ jobId })).toMatchObject([
      { epoch: 1, count: 30, minStep: 10, maxStep: 19 },
      { epoch: 2, count: 8, minStep: 100, maxStep: 103 },
    ]);
    expect((await api.predictions.list.query({ jobId, epoch: 1, limit: 1 })).totalCount).toBe(30);
    expect((await api.predictions.list.query({ jobId })).totalCount).toBe(38);
    expect((await api.jobs.get.query({ jobId })).predictionCount).toBe(38);
  });
});
