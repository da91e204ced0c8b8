// The running totals per epoch (prediction_epoch_stats, kept by the insert statement itself) must
// add up batch after batch: a second batch in the same epoch adds to the epoch's count and widens
// its step range, a replayed batch adds nothing, a resumed run's replacement adds nothing, and
// every view that reads the totals (epoch list, job list, list count) agrees with the rows.
import { describe, expect, it } from 'vitest';
import { createManualJob, createUser } from '../test-support/factories';
import { useTestServer, type TestServer } from '../test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

const rows = (epoch: number, step: number, count: number, prediction = 'p') =>
  Array.from({ length: count }, (_, sampleIndex) => ({ epoch, step, sampleIndex, trigger: 'eval' as const, prompt: `q${sampleIndex}`, groundTruth: 't', prediction }));

describe('per-epoch totals', () => {
  it('add up over several batches in one epoch, ignore replays and replacements, and agree with the rows', async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const pod = server.client(token).pod;
    const api = server.client(user.token);

    await pod.writePredictions.mutate({ predictions: rows(1, 10, 4) });
    await pod.writePredictions.mutate({ predictions: rows(1, 20, 3) });
    await pod.writePredictions.mutate({ predictions: rows(2, 30, 5) });
    await pod.writePredictions.mutate({ predictions: rows(1, 40, 2) });
    // A retried batch (duplicates) and a resumed run writing step 20 again with new text (replaced).
    expect(await pod.writePredictions.mutate({ predictions: rows(1, 20, 3) })).toMatchObject({ inserted: 0, duplicates: 3 });
    expect(await pod.writePredictions.mutate({ predictions: rows(1, 20, 3, 'resumed') })).toMatchObject({ inserted: 0, replaced: 3 });

    const epochs = await api.predictions.epochs.query({ jobId });
    expect(epochs.map(({ epoch, count, minStep, maxStep }) => ({ epoch, count, minStep, maxStep }))).toEqual([
      { epoch: 1, count: 9, minStep: 10, maxStep: 40 },
      { epoch: 2, count: 5, minStep: 30, maxStep: 30 },
    ]);
    const list = await api.predictions.list.query({ jobId, limit: 200 });
    expect(list.totalCount).toBe(14);
    expect(list.items).toHaveLength(14);
    expect((await api.predictions.list.query({ jobId, epoch: 1, limit: 200 })).totalCount).toBe(9);
    const listed = (await api.jobs.list.query({})).items.find((job) => job.id === jobId);
    expect(listed?.predictionCount).toBe(14);
  });
});
