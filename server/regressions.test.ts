// Regressions found by a hostile pass over the promise "every prediction a pod generates is stored
// or visibly accounted for". Each test pins one defect, with the input a real pod or user sends;
// each fails on the code it was written against and passes once the defect is fixed.
import { and, eq, sql } from 'drizzle-orm';
import { execFileSync, spawnSync } from 'node:child_process';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { trainingPredictions } from '../db/schema';
import type { WriteMetricsOutput, WritePredictionsOutput } from '#contract/pod.schemas';
import { podWrites, predictionRow, type TrpcBody } from './test-support/pod-writes';
import { useTestServer, type TestServer } from './test-support/server';
import { createManualJob, createUser } from './test-support/factories';
import { testEnv } from './test-support/test-env';
import { until } from './test-support/wait';

let server: TestServer;
useTestServer((started) => (server = started));

type Body = TrpcBody;
const { post, write, setup } = podWrites(() => server);
const row = predictionRow;

async function storedRows(jobId: string) {
  return server.database.db
    .select({ epoch: trainingPredictions.epoch, step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex, prediction: trainingPredictions.prediction, altered: trainingPredictions.altered })
    .from(trainingPredictions)
    .where(and(eq(trainingPredictions.jobId, jobId)));
}

describe('one batch holding the same key twice', () => {
  // A pod whose step counter restarts each epoch, with a batch that spans the epoch boundary (or
  // a `sync` of its spool, which sends up to 1000 rows of every epoch at once): the row of the
  // earlier epoch is dropped and answered as a "duplicate", which pods count as persisted. Sent in
  // two batches, the same rows are answered correctly (the second refused: steps must be global).
  it('does not drop the earlier epoch\'s row as a "duplicate" when steps restart each epoch', async () => {
    const { token, jobId } = await setup();
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: [row(1, 0, 0, 'epoch one'), row(2, 0, 0, 'epoch two')] }, token);

    // Nothing in this batch was already stored with identical content.
    expect(answer.duplicates).toBe(0);
    // As two separate batches would be answered: the first stored, the second refused by row.
    expect(answer.inserted).toBe(1);
    expect(answer.rejected).toEqual([{ index: 1, reason: expect.stringMatching(/global_step/) }]);
    expect(await storedRows(jobId)).toEqual([expect.objectContaining({ epoch: 1, step: 0, prediction: 'epoch one' })]);
  });
});

describe('the altered mark', () => {
  it('is not set on a row whose stored text was not changed (a NUL in an unknown key)', async () => {
    const { token, jobId } = await setup();
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: [{ ...row(1, 1, 0, 'clean text'), 'meta\u0000': 'x' }] }, token);
    expect(answer.inserted).toBe(1);
    expect(answer.altered).toBe(0);
    expect(await storedRows(jobId)).toEqual([expect.objectContaining({ prediction: 'clean text', altered: false })]);
  });

  it('reaches the CSV export, as it reaches the list, compare and JSONL export', async () => {
    const { token, jobId, api } = await setup();
    await write('pod.writePredictions', { predictions: [row(1, 1, 0, 'a\u0000b'), row(1, 1, 1, 'clean')] }, token);
    const { url } = await api.predictions.exportLink.mutate({ jobId, format: 'csv' });
    const bytes = Buffer.from(await (await fetch(server.url + url)).arrayBuffer());
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const [header, ...lines] = bytes.subarray(3).toString('utf8').trim().split('\r\n');
    const columns = header!.split(',');
    expect(columns).toContain('altered');
    const alteredColumn = columns.indexOf('altered');
    expect(lines.map((line) => line.split(',')[alteredColumn])).toEqual(['true', 'false']);
  });
});

describe('metrics', () => {
  it('stores evaluator names holding emoji sequences or right-to-left marks ("any printable text")', async () => {
    const { token, api, jobId } = await setup();
    // U+200D (zero-width joiner, inside every family/profession emoji) and U+200F (right-to-left
    // mark, typed into Hebrew and Arabic labels) are format characters, not control characters.
    const names = ['reward 👩‍💻', 'דיוק\u200f@5'];
    const answer = await write<WriteMetricsOutput>('pod.writeMetrics', { metrics: names.map((name) => ({ step: 1, epoch: 1, name, value: 0.5 })) }, token);
    expect(answer.rejected).toEqual([]);
    expect(answer.inserted).toBe(2);
    const { points } = await api.jobs.metrics.query({ jobId });
    expect(points.map((p) => p.name).sort()).toEqual([...names].sort());
  });

  it('does not overwrite an earlier epoch\'s points when steps restart each epoch (predictions refuse these)', async () => {
    const { token, api, jobId } = await setup();
    const epochPoints = (epoch: number, base: number) => [1, 2, 3].map((step) => ({ step, epoch, name: 'loss', value: base + step }));
    await write('pod.writeMetrics', { metrics: epochPoints(1, 10) }, token);
    const second = await write<WriteMetricsOutput>('pod.writeMetrics', { metrics: epochPoints(2, 20) }, token);
    // Not a resumed run (that re-sends a step under the same epoch): the epoch-1 curve must survive,
    // or the rows be refused with a reason, as predictions are. Today all three are "replaced".
    expect(second.replaced).toBe(0);
    const { points } = await api.jobs.metrics.query({ jobId });
    expect(points.filter((p) => p.epoch === 1).map((p) => p.value)).toEqual([11, 12, 13]);
  });
});

const PYTHON_MISSING = Boolean(spawnSync('python3', ['--version']).error);

describe.skipIf(PYTHON_MISSING)('the Python callback and the server agree on the text limit', () => {
  // The server's limit (zod's max) counts code points: 16 000 emoji are stored whole. The callback
  // clips to 16 000 UTF-16 units ("like the server", says its comment), so it throws away half of
  // an emoji-heavy (or CJK-extension, or math-alphanumeric) prediction the server would store.
  it('does not clip a prediction the server stores whole', async () => {
    const { token, jobId } = await setup();
    const text = '😀'.repeat(16_000);
    const answer = await write<WritePredictionsOutput>('pod.writePredictions', { predictions: [row(1, 1, 0, text)] }, token);
    expect(answer.inserted).toBe(1);
    expect((await storedRows(jobId))[0]?.prediction).toBe(text);

    const clipped = execFileSync('python3', ['-c', 'import sys, predictions_callback as p\ntext, clipped = p.clip_field("\\U0001F600" * 16000)\nprint(len(text), clipped)'], {
      cwd: 'trainer/python',
      encoding: 'utf8',
    }).trim();
    expect(clipped).toBe('16000 False');
  });
});

describe('jobs.list paging', () => {
  it('reaches every job when two were created within the same millisecond', async () => {
    const user = await createUser(server.deps);
    const first = await createManualJob(server.deps, user.id, { name: 'first' });
    const second = await createManualJob(server.deps, user.id, { name: 'second' });
    // PostgreSQL keeps microseconds; the cursor keeps milliseconds. Concurrent deploys (a sweep
    // started with Promise.all) land in one millisecond; here the two timestamps are set so.
    await server.database.db.execute(sql`update training_jobs set created_at = '2026-01-01T00:00:00.123400Z' where id = ${first.jobId}`);
    await server.database.db.execute(sql`update training_jobs set created_at = '2026-01-01T00:00:00.123900Z' where id = ${second.jobId}`);
    const api = server.client(user.token);
    // Within one millisecond the order is by id; what matters is that both are listed, once.
    const page1 = await api.jobs.list.query({ limit: 1 });
    expect(page1.nextCursor).not.toBeNull();
    const page2 = await api.jobs.list.query({ limit: 1, cursor: page1.nextCursor! });
    expect([...page1.items, ...page2.items].map((j) => j.name).sort()).toEqual(['first', 'second']);
    if (page2.nextCursor) expect((await api.jobs.list.query({ limit: 1, cursor: page2.nextCursor })).items).toEqual([]);
  });
});

describe('refusals before any handler', () => {
  it('a GET too long for the header limit gives advice that works (POSTing a query is refused with 405)', async () => {
    const { jobId, user } = await setup();
    const input = { jobId, search: 'x'.repeat(20_000) };
    const get = await server.raw('predictions.list', { token: user.token, query: `?input=${encodeURIComponent(JSON.stringify(input))}` });
    expect(get.status).toBe(431);
    const advice = (get.body as Body).error?.message ?? '';
    if (/POST/.test(advice)) {
      // Following the advice must reach the procedure and name the field at fault.
      const followed = await server.raw('predictions.list', { method: 'POST', token: user.token, body: JSON.stringify(input) });
      expect(followed.status, JSON.stringify(followed.body)).toBe(400);
      expect((followed.body as Body).error?.data?.field).toBe('search');
    }
  });
});

describe.skipIf(!testEnv.databaseUrl)('writes to different jobs on PostgreSQL', () => {
  // insertPredictions takes a connection from the pool, opens a transaction and then waits for the
  // job's advisory lock. Writers queued on one busy job therefore hold every pooled connection, and
  // a write to any other job (and /health) waits for a connection, then answers 503 "the database
  // is unreachable" after the 5 s connect timeout. The busy job is simulated by holding its lock
  // as a slow write would; with real batches (24 × 1000 rows on one job, pool of 5) an unrelated
  // job's one-row write took 1.8 s instead of 50 ms.
  it('do not wait for each other: another job\'s queued writes neither delay nor 503 this one', async () => {
    const user = await createUser(server.deps);
    const busy = await createManualJob(server.deps, user.id, { name: 'busy' });
    const other = await createManualJob(server.deps, user.id, { name: 'other' });
    const slowWrite = new pg.Client({ connectionString: server.database.url });
    await slowWrite.connect();
    try {
      await slowWrite.query('select pg_advisory_lock(727274102, hashtext($1))', [busy.jobId]);
      const queued = Array.from({ length: 12 }, (_, k) => post('pod.writePredictions', { predictions: [row(1, 10 + k, 0)] }, busy.token));
      // The first queued write is waiting on the held lock in the database (the rest queue in the server).
      await until(
        async () => (await slowWrite.query<{ n: number }>("select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted")).rows[0]?.n ?? 0,
        (n) => n >= 1,
        'a queued write to wait on the job lock',
      );
      const started = Date.now();
      const res = await post('pod.writePredictions', { predictions: [row(1, 1, 0)] }, other.token);
      const elapsed = Date.now() - started;
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(elapsed).toBeLessThan(2_000);
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      await slowWrite.query('select pg_advisory_unlock(727274102, hashtext($1))', [busy.jobId]);
      await Promise.all(queued);
    } finally {
      await slowWrite.end();
    }
  }, 60_000);
});
