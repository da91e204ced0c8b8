// pod.* over real HTTP: a job token writes to its own job and nowhere else, every write is
// idempotent, and every refusal of a well-signed token lands on the job's ledger.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { jobEvents, trainingJobs, trainingPredictions } from '../../db/schema';
import { FIELD_LIMITS, LOG_BATCH_MAX, PREDICTION_BATCH_MAX } from '#contract/pod.schemas';
import { LOG_LINES_KEPT_PER_JOB } from '../../db/queries/job-logs';
import { startTestServer, useTestServer, type TestServer } from '../test-support/server';
import { createManualJob, createUser } from '../test-support/factories';
import { craftJobToken, FOREIGN_KEY, unsignedJobToken } from '../test-support/tokens';

let server: TestServer;
useTestServer((started) => (server = started));

type Body = { result?: { data: unknown }; error?: { message: string; data: { httpStatus: number } } };
const dataOf = <T>(body: unknown) => (body as Body).result?.data as T;
const messageOf = (body: unknown) => (body as Body).error?.message ?? '';
const post = (procedure: string, input: unknown, token?: string, headers?: Record<string, string>) =>
  server.raw(procedure, { method: 'POST', body: JSON.stringify(input), ...(token ? { token } : {}), ...(headers ? { headers } : {}) });

function rows(n: number, from = 0) {
  return Array.from({ length: n }, (_, i) => ({
    epoch: 1,
    step: 10,
    sampleIndex: from + i,
    trigger: 'eval',
    prompt: `prompt ${from + i}`,
    groundTruth: `truth ${from + i}`,
    prediction: `guess ${from + i}`,
  }));
}

async function storedFor(jobId: string) {
  return server.database.db
    .select({ sampleIndex: trainingPredictions.sampleIndex, userId: trainingPredictions.userId })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, jobId));
}

async function eventsFor(jobId: string) {
  return server.database.db.select({ kind: jobEvents.kind, detail: jobEvents.detail }).from(jobEvents).where(eq(jobEvents.jobId, jobId));
}

async function setup() {
  const user = await createUser(server.deps);
  const job = await createManualJob(server.deps, user.id);
  return { user, ...job, api: server.client(user.token) };
}

describe('with a valid job token', () => {
  it('reads its config and dataset, and every write shows up on the owner\'s job', async () => {
    const { token, jobId, user, api } = await setup();
    const config = await post('pod.config', undefined, token).then(() => server.raw('pod.config', { token }));
    expect(config.status).toBe(200);
    const podConfig = dataOf<{ jobId: string; dataset: { rows: unknown[] }; plan: { totalSteps: number } }>(config.body);
    expect(podConfig.jobId).toBe(jobId);
    expect(podConfig.dataset.rows).toHaveLength(40);
    expect(podConfig.plan.totalSteps).toBe(15);

    const heartbeat = await post('pod.heartbeat', {
      status: 'running',
      mode: 'cloud',
      env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true },
      epoch: 1.5,
      step: 7,
      totalSteps: 15,
      counters: { generated: 5, persisted: 5, spooled: 0, rejected: 0 },
      triggerFires: 1,
    }, token);
    expect(heartbeat.status).toBe(200);
    expect((await post('pod.writePredictions', { predictions: rows(5) }, token)).status).toBe(200);
    expect((await post('pod.writeMetrics', { metrics: [{ step: 7, epoch: 1.5, name: 'loss', value: 2.5 }] }, token)).status).toBe(200);
    expect((await post('pod.log', { lines: [{ level: 'info', message: 'hello from the pod' }] }, token)).status).toBe(200);

    const job = await api.jobs.get.query({ jobId });
    expect(job.status).toBe('running');
    expect(job.predictionCount).toBe(5);
    expect(job.progress).toEqual({ epoch: 1.5, step: 7, totalSteps: 15 });
    expect(job.podReport?.counters.persisted).toBe(5);
    expect((await api.jobs.metrics.query({ jobId })).points).toEqual([{ step: 7, epoch: 1.5, name: 'loss', value: 2.5 }]);
    expect((await api.jobs.logs.query({ jobId })).lines.map((l) => l.message)).toEqual(['hello from the pod']);
    // The owner is the token's, never something the pod said.
    expect(new Set((await storedFor(jobId)).map((r) => r.userId))).toEqual(new Set([user.id]));

    const finish = await post('pod.finish', { status: 'completed' }, token);
    expect(finish.status).toBe(200);
    expect((await api.jobs.get.query({ jobId })).status).toBe('completed');
  });

  it('makes a replayed batch change nothing', async () => {
    const { token, jobId } = await setup();
    const first = dataOf<{ inserted: number }>((await post('pod.writePredictions', { predictions: rows(20) }, token)).body);
    const again = dataOf<{ inserted: number; duplicates: number }>((await post('pod.writePredictions', { predictions: rows(20) }, token)).body);
    expect(first.inserted).toBe(20);
    expect(again).toEqual({ inserted: 0, duplicates: 20, replaced: 0, altered: 0, rejected: [] });
    expect(await storedFor(jobId)).toHaveLength(20);
  });

  it('refuses a 1001-row batch whole, naming the limit', async () => {
    const { token, jobId } = await setup();
    const res = await post('pod.writePredictions', { predictions: rows(PREDICTION_BATCH_MAX + 1) }, token);
    expect(res.status).toBe(400);
    expect(messageOf(res.body)).toMatch(/at most 1000 rows per batch/);
    expect(await storedFor(jobId)).toHaveLength(0);
  });

  it('refuses bad rows by index and reason while storing the good ones', async () => {
    const { token, jobId } = await setup();
    const batch: unknown[] = rows(4);
    batch[1] = { ...rows(1, 1)[0], prediction: 'x'.repeat(FIELD_LIMITS.prediction + 1) };
    batch[3] = { ...rows(1, 3)[0], trigger: 'sometimes' };
    const res = await post('pod.writePredictions', { predictions: batch }, token);
    expect(res.status).toBe(200);
    const result = dataOf<{ inserted: number; duplicates: number; rejected: Array<{ index: number; reason: string }> }>(res.body);
    expect(result.inserted).toBe(2);
    expect(result.rejected.map((r) => r.index)).toEqual([1, 3]);
    expect(result.rejected[0]?.reason).toMatch(/^prediction: .*16000/);
    expect(result.rejected[1]?.reason).toMatch(/^trigger: /);
    expect((await storedFor(jobId)).map((r) => r.sampleIndex).sort()).toEqual([0, 2]);
    expect((await eventsFor(jobId)).map((e) => e.kind)).toContain('predictions_rejected');
  });

  it('accepts a gzip body', async () => {
    const { token, jobId } = await setup();
    const body = gzipSync(Buffer.from(JSON.stringify({ predictions: rows(50) })));
    const res = await server.raw('pod.writePredictions', { method: 'POST', body, token, headers: { 'content-encoding': 'gzip' } });
    expect(res.status).toBe(200);
    expect(await storedFor(jobId)).toHaveLength(50);
  });

  it('keeps only the newest log lines when a pod floods its log past the bound', { timeout: 120_000 }, async () => {
    const { token, jobId, api } = await setup();
    // One batch more than the bound holds: the first batch's lines are the ones that must go.
    const batches = Math.ceil(LOG_LINES_KEPT_PER_JOB / LOG_BATCH_MAX) + 1;
    for (let b = 0; b < batches; b++) {
      const lines = Array.from({ length: LOG_BATCH_MAX }, (_, i) => ({ level: 'info', message: `line ${b * LOG_BATCH_MAX + i}` }));
      expect((await post('pod.log', { lines }, token)).status).toBe(200);
    }
    const sent = batches * LOG_BATCH_MAX;
    const stored: string[] = [];
    for (let afterId = 0; ; ) {
      const page = await api.jobs.logs.query({ jobId, afterId, limit: 1000 });
      stored.push(...page.lines.map((line) => line.message));
      if (page.lines.length < 1000) break;
      afterId = page.lastId;
    }
    expect(stored).toHaveLength(LOG_LINES_KEPT_PER_JOB);
    expect(stored[0]).toBe(`line ${sent - LOG_LINES_KEPT_PER_JOB}`);
    expect(stored.at(-1)).toBe(`line ${sent - 1}`);
  });
});

describe('bad tokens', () => {
  const procedures: Array<[string, unknown]> = [
    ['pod.heartbeat', { status: 'running' }],
    ['pod.writePredictions', { predictions: rows(1) }],
    ['pod.writeMetrics', { metrics: [{ step: 1, epoch: 1, name: 'loss', value: 1 }] }],
    ['pod.log', { lines: [{ message: 'x' }] }],
    ['pod.finish', { status: 'completed' }],
  ];

  async function expectRefusedEverywhere(token: string | undefined, status: number) {
    expect((await server.raw('pod.config', token ? { token } : {})).status).toBe(status);
    for (const [procedure, input] of procedures) {
      const res = await post(procedure, input, token);
      expect(res.status, procedure).toBe(status);
    }
  }

  it('refuses no token, a user token, a foreign-key token and an unsigned one, writing nothing', async () => {
    const { jobId, user } = await setup();
    await expectRefusedEverywhere(undefined, 401);
    await expectRefusedEverywhere(user.token, 403);
    await expectRefusedEverywhere(await craftJobToken(FOREIGN_KEY, { jobId, userId: user.id }), 401);
    await expectRefusedEverywhere(unsignedJobToken({ jobId, userId: user.id }), 401);
    expect(await storedFor(jobId)).toHaveLength(0);
  });

  it('refuses an expired token and records it on the job', async () => {
    const { jobId, user, api } = await setup();
    const expired = await craftJobToken(server.deps.secrets.jobToken, { jobId, userId: user.id, expiresInSeconds: -60 });
    const res = await post('pod.writePredictions', { predictions: rows(1) }, expired);
    expect(res.status).toBe(401);
    expect(messageOf(res.body)).toMatch(/expired at .*rotate the token/);
    expect((res.body as { error: { data: { reason: string } } }).error.data.reason).toBe('token_expired');
    expect(await eventsFor(jobId)).toContainEqual(expect.objectContaining({ kind: 'token_rejected', detail: expect.objectContaining({ reason: 'expired' }) }));
    expect((await api.jobs.get.query({ jobId })).predictionCount).toBe(0);
  });

  it('refuses the token after cancel, everywhere, and the refusal is on the ledger (once per burst)', async () => {
    const { jobId, token, api } = await setup();
    await api.jobs.cancel.mutate({ jobId });
    await expectRefusedEverywhere(token, 401);
    const rejections = (await eventsFor(jobId)).filter((e) => e.kind === 'token_rejected');
    expect(rejections).toHaveLength(1);
    expect(rejections[0]?.detail).toMatchObject({ reason: 'job_ended', status: 'cancelled' });
  });

  it('refuses the token after the pod finishes', async () => {
    const { token } = await setup();
    expect((await post('pod.finish', { status: 'failed', error: 'CUDA out of memory' }, token)).status).toBe(200);
    const res = await post('pod.writePredictions', { predictions: rows(1) }, token);
    expect(res.status).toBe(401);
    expect(messageOf(res.body)).toMatch(/has ended \(failed\)/);
    // The pod can act on it without reading the message: its job is over, so it stops training.
    expect((res.body as { error: { data: { reason: string } } }).error.data.reason).toBe('job_ended');
  });

  it("a job's token writes only to its own job: there is no way to name another", async () => {
    const { user } = await setup();
    const a = await createManualJob(server.deps, user.id);
    const b = await createManualJob(server.deps, user.id);
    const sneaky = rows(1).map((r) => ({ ...r, jobId: b.jobId, userId: '00000000-0000-4000-8000-000000000000' }));
    expect((await post('pod.writePredictions', { predictions: sneaky }, a.token)).status).toBe(200);
    expect(await storedFor(a.jobId)).toHaveLength(1);
    expect(await storedFor(b.jobId)).toHaveLength(0);
    // A token naming another job id with the right key but a stale version is revoked, not accepted.
    const forged = await craftJobToken(server.deps.secrets.jobToken, { jobId: b.jobId, userId: user.id, tokenVersion: 99 });
    expect((await post('pod.writePredictions', { predictions: rows(1) }, forged)).status).toBe(401);
  });

  it('refuses a job token on every user procedure', async () => {
    const { token, jobId } = await setup();
    for (const [procedure, input] of [
      ['auth.me', undefined],
      ['datasets.list', undefined],
      ['jobs.list', {}],
      ['jobs.get', { jobId }],
    ] as const) {
      const res = input === undefined ? await server.raw(procedure, { token }) : await server.raw(procedure, { token, query: `?input=${encodeURIComponent(JSON.stringify(input))}` });
      expect(res.status, procedure).toBe(403);
    }
    expect((await post('jobs.cancel', { jobId }, token)).status).toBe(403);
  });
});

// Decision (a), docs/decisions/0004-late-predictions.md: rows made after training ends
// (evaluate() after train(), a second train()) still land for a while after a completed finish.
describe('after pod.finish({ status: "completed" }): the write grace period', () => {
  const reasonOf = (body: unknown) => (body as { error?: { data: { reason: string | null } } }).error?.data.reason;
  const heartbeat = { status: 'finishing', mode: 'cloud', env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true }, step: 15, totalSteps: 15, counters: { generated: 8, persisted: 8, spooled: 0, rejected: 0 }, triggerFires: 2 };

  /** A job its pod ran and completed, with 5 rows stored during training. */
  async function completedJob(on: TestServer = server) {
    const user = await createUser(on.deps);
    const job = await createManualJob(on.deps, user.id);
    const api = on.client(user.token);
    const send = (procedure: string, input: unknown) => on.raw(procedure, { method: 'POST', body: JSON.stringify(input), token: job.token });
    expect((await send('pod.heartbeat', { ...heartbeat, status: 'running' })).status).toBe(200);
    expect((await send('pod.writePredictions', { predictions: rows(5) })).status).toBe(200);
    expect((await send('pod.finish', { status: 'completed' })).status).toBe(200);
    return { ...job, api, send };
  }

  it('the token still writes predictions, metrics, logs and heartbeats, reads its config, and a second finish is a no-op; the job stays completed', async () => {
    const { jobId, token, api, send } = await completedJob();
    const finishedAt = (await api.jobs.get.query({ jobId })).finishedAt;

    const late = await send('pod.writePredictions', { predictions: rows(3, 5) });
    expect(late.status, JSON.stringify(late.body)).toBe(200);
    expect(dataOf<{ inserted: number }>(late.body).inserted).toBe(3);
    expect((await send('pod.writeMetrics', { metrics: [{ step: 16, epoch: 3, name: 'eval/loss', value: 0.5 }] })).status).toBe(200);
    expect((await send('pod.log', { lines: [{ level: 'info', message: 'evaluate() after train()' }] })).status).toBe(200);
    expect((await server.raw('pod.config', { token })).status).toBe(200);
    expect((await send('pod.heartbeat', heartbeat)).status).toBe(200);
    const again = await send('pod.finish', { status: 'failed', error: 'a second train() crashed' });
    expect(again.status).toBe(200);
    expect(dataOf<{ ok: boolean; status: string }>(again.body)).toEqual({ ok: true, status: 'completed' });

    const job = await api.jobs.get.query({ jobId });
    expect(job).toMatchObject({ status: 'completed', error: null, finishedAt, predictionCount: 8 });
    expect(job.podReport?.counters.generated).toBe(8); // the late heartbeat's report is kept
    expect((await api.jobs.metrics.query({ jobId })).points).toContainEqual({ step: 16, epoch: 3, name: 'eval/loss', value: 0.5 });
    expect((await api.jobs.logs.query({ jobId })).lines.map((l) => l.message)).toContain('evaluate() after train()');
    // A late heartbeat is not a pod connecting again, and nothing was refused.
    const kinds = (await eventsFor(jobId)).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'pod_connected')).toHaveLength(1);
    expect(kinds).not.toContain('token_rejected');
  });

  it('once the grace period is over, the token is refused everywhere with reason job_ended', async () => {
    const { jobId, token, send } = await completedJob();
    expect((await send('pod.writePredictions', { predictions: rows(1, 5) })).status).toBe(200);
    // The job finished longer ago than the grace period (an hour by default).
    await server.database.db.update(trainingJobs).set({ finishedAt: sql`now() - interval '3601 seconds'` }).where(eq(trainingJobs.id, jobId));
    const config = await server.raw('pod.config', { token });
    expect(config.status).toBe(401);
    expect(reasonOf(config.body)).toBe('job_ended');
    for (const [procedure, input] of [
      ['pod.writePredictions', { predictions: rows(1, 9) }],
      ['pod.writeMetrics', { metrics: [{ step: 16, epoch: 3, name: 'loss', value: 1 }] }],
      ['pod.log', { lines: [{ message: 'too late' }] }],
      ['pod.heartbeat', heartbeat],
      ['pod.finish', { status: 'completed' }],
    ] as const) {
      const res = await send(procedure, input);
      expect(res.status, procedure).toBe(401);
      expect(messageOf(res.body), procedure).toMatch(/has ended \(completed\)/);
      expect(reasonOf(res.body), procedure).toBe('job_ended');
    }
    expect(await storedFor(jobId)).toHaveLength(6);
  });

  it('with FINISHED_JOB_WRITE_GRACE_SECONDS=0 a completed job refuses its token at once', async () => {
    // Another instance on the same database, with the same keys (so each accepts the other's tokens).
    const keys = { SESSION_SECRET: new TextDecoder().decode(server.deps.secrets.session), JOB_TOKEN_SECRET: new TextDecoder().decode(server.deps.secrets.jobToken) };
    const strict = await startTestServer({ ...keys, FINISHED_JOB_WRITE_GRACE_SECONDS: '0' }, { database: server.database });
    try {
      const { jobId, token, send } = await completedJob(strict);
      const res = await send('pod.writePredictions', { predictions: rows(1, 5) });
      expect(res.status).toBe(401);
      expect(reasonOf(res.body)).toBe('job_ended');
      expect(await storedFor(jobId)).toHaveLength(5);
      // The same token, at the same moment, to a server with the default grace period: stored.
      expect((await post('pod.writePredictions', { predictions: rows(1, 5) }, token)).status).toBe(200);
      expect(await storedFor(jobId)).toHaveLength(6);
    } finally {
      await strict.close();
    }
  });

  it('a failed finish or a cancel still refuses the token at once, a live rotation revokes it, and a write past the token check when cancel lands is stored', async () => {
    const user = await createUser(server.deps);
    const failed = await createManualJob(server.deps, user.id);
    expect((await post('pod.finish', { status: 'failed', error: 'boom' }, failed.token)).status).toBe(200);
    const refused = await post('pod.writePredictions', { predictions: rows(1) }, failed.token);
    expect([refused.status, reasonOf(refused.body)]).toEqual([401, 'job_ended']);

    // Cancel and a batch race: whichever wins, every answered row is stored and nothing is half-written.
    const racing = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);
    const [write] = await Promise.all([post('pod.writePredictions', { predictions: rows(50) }, racing.token), api.jobs.cancel.mutate({ jobId: racing.jobId })]);
    const stored = await storedFor(racing.jobId);
    if (write.status === 200) expect(stored).toHaveLength(50);
    else expect([write.status, reasonOf(write.body), stored.length]).toEqual([401, 'job_ended', 0]);
    const after = await post('pod.writePredictions', { predictions: rows(1, 50) }, racing.token);
    expect([after.status, reasonOf(after.body)]).toEqual([401, 'job_ended']);
  });
});

describe('a pod process with only the three variables', () => {
  it('reads its config and writes over plain HTTP, as a pod in any language would', async () => {
    const { env, jobId, api } = await setup();
    const script = `
      const { JOB_ID, JOB_TOKEN, API_URL } = process.env;
      const call = async (p, input) => {
        const res = await fetch(API_URL + '/trpc/' + p, input === undefined
          ? { headers: { authorization: 'Bearer ' + JOB_TOKEN } }
          : { method: 'POST', headers: { authorization: 'Bearer ' + JOB_TOKEN, 'content-type': 'application/json' }, body: JSON.stringify(input) });
        const body = await res.json();
        if (!res.ok) throw new Error(p + ': ' + body.error.message);
        return body.result.data;
      };
      const config = await call('pod.config');
      const sample = config.dataset.rows[0];
      await call('pod.heartbeat', { status: 'running', mode: 'cloud', env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true } });
      const out = await call('pod.writePredictions', { predictions: [{ epoch: 1, step: 1, sampleIndex: 0, trigger: 'eval', prompt: sample.prompt, groundTruth: sample.completion, prediction: 'hm' }] });
      await call('pod.log', { lines: [{ level: 'info', message: 'job ' + JOB_ID + ' wrote ' + out.inserted }] });
    `;
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH, JOB_ID: env.JOB_ID, JOB_TOKEN: env.JOB_TOKEN, API_URL: env.API_URL },
    });
    expect((await api.jobs.get.query({ jobId })).predictionCount).toBe(1);
    expect((await api.jobs.logs.query({ jobId })).lines[0]?.message).toBe(`job ${jobId} wrote 1`);
  });
});
