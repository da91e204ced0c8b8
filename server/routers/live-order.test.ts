// Live delivery under overlapping writes: several pods' batches for one job in flight at once
// (on PostgreSQL they commit in any order), and subscribers that follow from the start, join
// mid-way, or drop and resume from their last event id. Each must receive every stored row
// exactly once. Before the per-job write lock, ids were drawn at insert and became visible at
// commit, so a subscriber that had read "after id N" skipped rows committing later below N.
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { trainingPredictions } from '../../db/schema';
import { useTestServer, type TestServer } from '../test-support/server';
import { createManualJob, createUser } from '../test-support/factories';
import { until } from '../test-support/wait';

let server: TestServer;
useTestServer((started) => (server = started));

const WRITERS = 8;
const BATCHES_PER_WRITER = 20;
const ROWS_PER_BATCH = 40;

describe('live delivery with concurrent writers', () => {
  it('gives every subscriber every stored row exactly once', async () => {
    const user = await createUser(server.deps);
    const { token, jobId } = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);

    type Subscriber = { name: string; ids: number[]; stop: () => void };
    const subscribe = (name: string, lastEventId?: string): Subscriber => {
      const subscriber: Subscriber = { name, ids: [], stop: () => undefined };
      const subscription = api.predictions.onNew.subscribe(
        { jobId, ...(lastEventId !== undefined ? { lastEventId } : {}) },
        { onData: (event) => subscriber.ids.push(Number(event.id)) },
      );
      subscriber.stop = () => subscription.unsubscribe();
      return subscriber;
    };
    // From the very first row (resuming from id 0 reads everything, then follows).
    const fromStart = subscribe('from the start', '0');

    let batchesDone = 0;
    const writer = async (w: number) => {
      const pod = server.client(token).pod;
      for (let b = 0; b < BATCHES_PER_WRITER; b++) {
        const step = 1 + b * WRITERS + w;
        await pod.writePredictions.mutate({
          predictions: Array.from({ length: ROWS_PER_BATCH }, (_, i) => ({
            epoch: 1, step, sampleIndex: i, trigger: 'steps' as const, prompt: `p${i}`, groundTruth: `t${i}`, prediction: `w${w} b${b} i${i}`,
          })),
        });
        batchesDone++;
      }
    };
    const writing = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));

    // Joins mid-way from the list's latestId, as the web app does.
    await until(() => batchesDone, (n) => n >= 20, 'twenty batches stored');
    const { latestId } = await api.predictions.list.query({ jobId, limit: 1 });
    const midway = subscribe('joined mid-way', String(latestId));
    const midwayFloor = latestId;

    // Drops after a while and resumes from its last event id.
    await until(() => fromStart.ids.length, (n) => n >= 300, 'the first subscriber to receive 300 rows');
    const dropping = subscribe('drops and resumes', '0');
    await until(() => dropping.ids.length, (n) => n >= 200, 'the dropping subscriber to receive 200 rows');
    dropping.stop();
    const resumed = subscribe('resumed', String(dropping.ids.at(-1)));

    await writing;
    const stored = (await server.database.db.select({ id: trainingPredictions.id }).from(trainingPredictions).where(eq(trainingPredictions.jobId, jobId))).map((r) => r.id).sort((a, b) => a - b);
    expect(stored).toHaveLength(WRITERS * BATCHES_PER_WRITER * ROWS_PER_BATCH);

    const expectExactlyOnce = async (name: string, received: () => number[], expected: number[]) => {
      await until(() => received().length, (n) => n >= expected.length, `${name} to receive ${expected.length} rows`, 60_000).catch(() => undefined);
      const got = received();
      const missing = expected.filter((id) => !got.includes(id));
      expect({ name, missing: missing.slice(0, 10), missingCount: missing.length, repeats: got.length - new Set(got).size }).toEqual({ name, missing: [], missingCount: 0, repeats: 0 });
      expect([...got].sort((a, b) => a - b)).toEqual(expected);
    };
    await expectExactlyOnce(fromStart.name, () => fromStart.ids, stored);
    await expectExactlyOnce(midway.name, () => midway.ids, stored.filter((id) => id > midwayFloor));
    await expectExactlyOnce('dropped then resumed', () => [...dropping.ids, ...resumed.ids], stored);
    // Each stream delivers in id order.
    for (const s of [fromStart, midway, resumed]) expect(s.ids).toEqual([...s.ids].sort((a, b) => a - b));
    for (const s of [fromStart, midway, resumed]) s.stop();
  }, 180_000);
});
