// Audit F13: a write that had passed the token check could still be stored after jobs.cancel
// (600 rows with created_at later than the job's finished_at over 4 races). Writers race the end
// of their job (a cancel, a failed pod.finish, a token rotation) over real HTTP, a few rounds
// each; no prediction, metric or log line may be stored after the end, and no write sent after
// the end was acknowledged may be acknowledged.
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { useTestServer, type TestServer } from '../test-support/server';
import { podWrites, predictionRow, type TrpcBody } from '../test-support/pod-writes';
import { until } from '../test-support/wait';
import { rowsOf } from '../../db/client';

let server: TestServer;
useTestServer((started) => (server = started));
const pod = podWrites(() => server);

const ROUNDS = 3;
const PREDICTION_WRITERS = 4;
const ROWS_PER_BATCH = 200;

type Attempt = { procedure: string; sentAt: number; answeredAt: number; status: number; reason: string | null; stored: number };
type Ending = 'cancel' | 'finish' | 'rotate';

/** One writer: sends batches until its token is refused, and keeps every answer with its times. */
async function writer(token: string, procedure: string, batch: (k: number) => unknown, attempts: Attempt[]): Promise<void> {
  for (let k = 0; ; k++) {
    const sentAt = performance.now();
    const res = await pod.post(procedure, batch(k), token);
    const body = res.body as TrpcBody & { error?: { data?: { reason?: string | null } } };
    const data = body.result?.data as { inserted?: number; accepted?: number } | undefined;
    attempts.push({
      procedure,
      sentAt,
      answeredAt: performance.now(),
      status: res.status,
      reason: body.error?.data?.reason ?? null,
      stored: data?.inserted ?? data?.accepted ?? 0,
    });
    if (res.status !== 200) return;
  }
}

/** Rows stored later than the end: after finished_at (cancel, finish) or the rotation's updated_at. */
async function storedAfterEnd(jobId: string, ending: Ending) {
  const endColumn = ending === 'rotate' ? sql.raw('updated_at') : sql.raw('finished_at');
  const result = await server.database.db.execute(sql`
    with job as (select ${endColumn} as ended_at from training_jobs where id = ${jobId})
    select
      (select count(*)::int from training_predictions p, job where p.job_id = ${jobId} and p.created_at > job.ended_at) as predictions,
      (select count(*)::int from training_metrics m, job where m.job_id = ${jobId} and m.created_at > job.ended_at) as metrics,
      (select count(*)::int from job_logs l, job where l.job_id = ${jobId} and l.created_at > job.ended_at) as logs,
      (select count(*)::int from training_predictions p where p.job_id = ${jobId}) as stored_predictions,
      (select ended_at from job) as ended_at`);
  const [row] = rowsOf<{ predictions: number; metrics: number; logs: number; stored_predictions: number; ended_at: unknown }>(result);
  return { predictions: Number(row?.predictions), metrics: Number(row?.metrics), logs: Number(row?.logs), storedPredictions: Number(row?.stored_predictions), endedAt: row?.ended_at };
}

async function race(ending: Ending) {
  const { jobId, token, api } = await pod.setup();
  const attempts: Attempt[] = [];
  const writers = [
    ...Array.from({ length: PREDICTION_WRITERS }, (_, w) =>
      writer(token, 'pod.writePredictions', (k) => ({ predictions: Array.from({ length: ROWS_PER_BATCH }, (_, i) => predictionRow(1, 1 + w * 100_000 + k, i)) }), attempts),
    ),
    writer(token, 'pod.writeMetrics', (k) => ({ metrics: Array.from({ length: 50 }, (_, i) => ({ step: 1 + k, epoch: 1, name: `m${i}`, value: k + i })) }), attempts),
    writer(token, 'pod.log', (k) => ({ lines: Array.from({ length: 50 }, (_, i) => ({ level: 'info', message: `batch ${k} line ${i}` })) }), attempts),
  ];
  // The end comes while writes are in flight: after a few have been acknowledged.
  await until(() => attempts.filter((a) => a.status === 200 && a.procedure === 'pod.writePredictions').length, (n) => n >= PREDICTION_WRITERS, 'the first acknowledged writes');
  if (ending === 'cancel') await api.jobs.cancel.mutate({ jobId });
  else if (ending === 'rotate') await api.jobs.rotateToken.mutate({ jobId });
  else await pod.write('pod.finish', { status: 'failed', error: 'stopped by the test' }, token);
  const endAcknowledgedAt = performance.now();
  await Promise.all(writers);
  return { jobId, attempts, endAcknowledgedAt };
}

describe('no write after the end of a job (F13)', () => {
  for (const ending of ['cancel', 'finish', 'rotate'] as const) {
    it(`stores nothing after ${ending === 'finish' ? 'a failed pod.finish' : `jobs.${ending === 'cancel' ? 'cancel' : 'rotateToken'}`}, and acknowledges nothing sent after it (${ROUNDS} rounds)`, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const { jobId, attempts, endAcknowledgedAt } = await race(ending);
        const after = await storedAfterEnd(jobId, ending);
        const context = JSON.stringify({ ending, round, ...after });
        expect(after.storedPredictions, context).toBeGreaterThan(0);
        expect({ predictions: after.predictions, metrics: after.metrics, logs: after.logs }, context).toEqual({ predictions: 0, metrics: 0, logs: 0 });
        // Every write sent once the end was acknowledged is refused, with the reason a pod acts on.
        const sentLater = attempts.filter((a) => a.sentAt > endAcknowledgedAt);
        expect(sentLater.filter((a) => a.status === 200), context).toEqual([]);
        // Each writer stopped on a refusal naming why, never on a server error.
        const refusals = attempts.filter((a) => a.status !== 200);
        expect(refusals.map((a) => [a.status, a.reason]), context).toEqual(refusals.map(() => [401, ending === 'rotate' ? 'token_revoked' : 'job_ended']));
      }
    });
  }
});

describe('a job token whose job or owner no longer exists', () => {
  const procedures: Array<[string, unknown]> = [
    ['pod.heartbeat', {}],
    ['pod.writePredictions', { predictions: [predictionRow(1, 1, 0)] }],
    ['pod.writeMetrics', { metrics: [{ step: 1, epoch: 1, name: 'loss', value: 1 }] }],
    ['pod.log', { lines: [{ level: 'info', message: 'hello' }] }],
    ['pod.finish', { status: 'completed' }],
  ];

  it.each([
    ['the job was deleted', (jobId: string) => sql`delete from training_jobs where id = ${jobId}`],
    ['its owner was deleted', (jobId: string) => sql`delete from users where id = (select user_id from training_jobs where id = ${jobId})`],
  ])('is refused on every pod procedure when %s (401, reason job_missing)', async (_case, deletion) => {
    const { jobId, token } = await pod.setup();
    await pod.write('pod.heartbeat', {}, token);
    await server.database.db.execute(deletion(jobId));
    const config = await server.raw('pod.config', { token });
    const answers = [config, ...(await Promise.all(procedures.map(([procedure, input]) => pod.post(procedure, input, token))))];
    expect(answers.map((a) => [a.status, (a.body as { error?: { data?: { reason?: string } } }).error?.data?.reason])).toEqual(answers.map(() => [401, 'job_missing']));
  });
});
