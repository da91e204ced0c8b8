// jobs.* over real HTTP: configuration checks, deploy with the manual launcher, owner scoping.
import { describe, expect, it } from 'vitest';
import { errorDetails } from '../../client/api/client';
import { useTestServer, type TestServer } from '../test-support/server';
import { createDataset, createManualJob, createUser } from '../test-support/factories';
import { opened, until } from '../test-support/wait';

let server: TestServer;
useTestServer((started) => (server = started));

async function userWithDataset(count = 40) {
  const user = await createUser(server.deps);
  const dataset = await createDataset(server.deps, user.id, { count });
  return { user, dataset, api: server.client(user.token) };
}

describe('jobs.validateConfig', () => {
  it('accepts the defaults on a real dataset and reports the total steps', async () => {
    const { api, dataset } = await userWithDataset(60);
    const result = await api.jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'manual' });
    // 54 training rows (6 held out) in batches of 8 → 7 steps per epoch, 3 epochs.
    expect(result).toEqual({ ok: true, problems: [], totalSteps: 21 });
  });

  it('calls eval-frequency with evaluation disabled an error: it can never fire', async () => {
    const { api, dataset } = await userWithDataset();
    const result = await api.jobs.validateConfig.query({
      datasetId: dataset.id,
      launcher: 'manual',
      training: { evalStrategy: 'no' },
      predictions: { sampleFrequency: 'eval' },
    });
    expect(result.ok).toBe(false);
    expect(result.problems).toContainEqual(
      expect.objectContaining({ severity: 'error', field: 'predictions.sampleFrequency', message: expect.stringMatching(/never be sampled/) }),
    );
  });

  it('calls steps-frequency without an interval, or beyond the job, an error', async () => {
    const { api, dataset } = await userWithDataset();
    const missing = await api.jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'manual', predictions: { sampleFrequency: 'steps' } });
    expect(missing.problems).toContainEqual(expect.objectContaining({ severity: 'error', field: 'predictions.stepInterval' }));
    const beyond = await api.jobs.validateConfig.query({
      datasetId: dataset.id,
      launcher: 'manual',
      predictions: { sampleFrequency: 'steps', stepInterval: 16 },
    });
    expect(beyond.problems).toContainEqual(
      expect.objectContaining({ severity: 'error', field: 'predictions.stepInterval', fix: 'Set stepInterval to at most 15.' }),
    );
  });

  it('warns when sampleCount exceeds the held-out rows, and when predictions are off', async () => {
    const { api, dataset } = await userWithDataset(40);
    const many = await api.jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'manual', predictions: { sampleCount: 50 } });
    expect(many.ok).toBe(true);
    expect(many.problems).toContainEqual(expect.objectContaining({ severity: 'warning', field: 'predictions.sampleCount' }));
    const off = await api.jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'manual', predictions: { enabled: false } });
    expect(off.problems).toEqual([expect.objectContaining({ severity: 'warning', field: 'predictions.enabled' })]);
  });

  it('reports shape errors per field instead of throwing', async () => {
    const { api } = await userWithDataset();
    const result = await api.jobs.validateConfig.query({ datasetId: 'nope', predictions: { sampleCount: 1000 } });
    expect(result.ok).toBe(false);
    expect(result.problems.map((p) => p.field).sort()).toEqual(['datasetId', 'predictions.sampleCount']);
  });

  it("treats another user's dataset as missing", async () => {
    const { dataset } = await userWithDataset();
    const other = await createUser(server.deps);
    const result = await server.client(other.token).jobs.validateConfig.query({ datasetId: dataset.id, launcher: 'manual' });
    expect(result.problems).toContainEqual(expect.objectContaining({ field: 'datasetId', message: 'Dataset not found.' }));
  });
});

describe('jobs.deploy', () => {
  it('refuses a configuration with errors, with the same message validateConfig gives', async () => {
    const { api, dataset } = await userWithDataset();
    const config = { datasetId: dataset.id, launcher: 'manual' as const, training: { evalStrategy: 'no' as const } };
    const failure = await api.jobs.deploy.mutate({ name: 'never fires', config }).catch((e: unknown) => e);
    const details = errorDetails(failure);
    expect(details.httpStatus).toBe(400);
    expect(details.field).toBe('config.predictions.sampleFrequency');
    const { problems } = await api.jobs.validateConfig.query(config);
    expect(details.message).toContain(problems[0]?.message);
    expect((await api.jobs.list.query({})).items).toHaveLength(0);
  });

  it('with the manual launcher, reveals the pod environment once and never again', async () => {
    const { api, dataset } = await userWithDataset();
    const { job, pod } = await api.jobs.deploy.mutate({ name: 'manual run', config: { datasetId: dataset.id, launcher: 'manual' } });
    expect(job.status).toBe('pending');
    expect(pod?.env).toEqual({ JOB_ID: job.id, JOB_TOKEN: expect.any(String), API_URL: server.deps.config.publicUrl });
    expect(pod?.command).toContain('npm run trainer');
    const token = pod?.env.JOB_TOKEN ?? '';
    const detail = await api.jobs.get.query({ jobId: job.id });
    expect(JSON.stringify(detail)).not.toContain(token);
    expect(JSON.stringify(await api.jobs.list.query({}))).not.toContain(token);
    expect(detail.config.predictions).toMatchObject({ enabled: true, sampleFrequency: 'eval', sampleCount: 5 });
  });

  it('refuses a launcher this server does not have', async () => {
    const { api, dataset } = await userWithDataset();
    const failure = await api.jobs.deploy.mutate({ name: 'k8s', config: { datasetId: dataset.id, launcher: 'kubernetes' } }).catch((e: unknown) => e);
    expect(errorDetails(failure)).toMatchObject({ httpStatus: 400, field: 'config.launcher' });
  });
});

describe('jobs.list', () => {
  it('lists newest first, page by page, with nothing repeated or missed', async () => {
    const { user, dataset, api } = await userWithDataset();
    for (let i = 0; i < 7; i++) await createManualJob(server.deps, user.id, { datasetId: dataset.id, name: `job ${i}` });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.jobs.list.query({ limit: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((j) => j.name));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(['job 6', 'job 5', 'job 4', 'job 3', 'job 2', 'job 1', 'job 0']);
  });

  it('refuses a forged cursor with 400', async () => {
    const { api } = await userWithDataset();
    const failure = await api.jobs.list.query({ cursor: 'bm90LWEtY3Vyc29y' }).catch((e: unknown) => e);
    expect(errorDetails(failure)).toMatchObject({ httpStatus: 400, field: 'cursor' });
  });
});

describe("another user's job", () => {
  it('is NOT_FOUND for every job procedure, exactly like a missing id, and changes nothing', async () => {
    const alice = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, alice.id);
    const bob = server.client((await createUser(server.deps)).token);
    const missing = '00000000-0000-4000-8000-000000000000';
    const calls = (id: string) => [
      () => bob.jobs.get.query({ jobId: id }),
      () => bob.jobs.cancel.mutate({ jobId: id }),
      () => bob.jobs.rotateToken.mutate({ jobId: id }),
      () => bob.jobs.logs.query({ jobId: id }),
      () => bob.jobs.metrics.query({ jobId: id }),
    ];
    const theirs = await Promise.all(calls(jobId).map((call) => call().catch((e: unknown) => errorDetails(e))));
    const nobodys = await Promise.all(calls(missing).map((call) => call().catch((e: unknown) => errorDetails(e))));
    expect(theirs).toEqual(nobodys);
    for (const details of theirs) expect(details).toMatchObject({ httpStatus: 404, message: 'Job not found' });
    expect((await server.client(alice.token).jobs.get.query({ jobId })).status).toBe('pending');
    expect((await bob.jobs.list.query({})).items).toHaveLength(0);
  });
});

describe('jobs.cancel and jobs.rotateToken', () => {
  it('cancels once; a second cancel says the job has ended', async () => {
    const user = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);
    expect((await api.jobs.cancel.mutate({ jobId })).status).toBe('cancelled');
    const again = await api.jobs.cancel.mutate({ jobId }).catch((e: unknown) => e);
    expect(errorDetails(again)).toMatchObject({ httpStatus: 412, message: expect.stringMatching(/already ended \(cancelled\)/) });
  });

  it('rotating issues a working token and revokes the old one', async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const fresh = await server.client(user.token).jobs.rotateToken.mutate({ jobId });
    expect(fresh.env.JOB_TOKEN).not.toBe(token);
    expect((await server.raw('pod.config', { token: fresh.env.JOB_TOKEN })).status).toBe(200);
    const old = await server.raw('pod.config', { token });
    expect(old.status).toBe(401);
    expect(JSON.stringify(old.body)).toMatch(/revoked/);
  });
});

// Decision (b), docs/decisions/0005-upload-tokens.md: an ended job can always take the rows a
// pod kept in its spool, through an upload token that can do nothing else.
describe('jobs.rotateToken on an ended job: the upload token', () => {
  const row = (sampleIndex: number) => ({ epoch: 1, step: 10, sampleIndex, trigger: 'eval' as const, prompt: `p${sampleIndex}`, groundTruth: 'g', prediction: `x${sampleIndex}` });
  const send = (procedure: string, input: unknown, token: string) => server.raw(procedure, { method: 'POST', body: JSON.stringify(input), token });
  const refusal = (body: unknown) => {
    const error = (body as { error?: { message: string; data: { httpStatus: number; reason: string | null } } }).error;
    return { httpStatus: error?.data.httpStatus, reason: error?.data.reason, message: error?.message };
  };

  it("refuses a cancelled job's old token with job_ended; its upload token stores predictions, metrics and logs, and cannot heartbeat or finish", async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);
    await api.jobs.cancel.mutate({ jobId });
    expect(refusal((await send('pod.writePredictions', { predictions: [row(0)] }, token)).body)).toMatchObject({ httpStatus: 401, reason: 'job_ended' });

    const upload = await api.jobs.rotateToken.mutate({ jobId });
    expect(upload.command).toMatch(/npm run trainer -- sync --spool /);
    expect(upload.pythonCommand).toMatch(/predictions_callback\.py sync --spool /);
    const uploadToken = upload.env.JOB_TOKEN;
    const written = await send('pod.writePredictions', { predictions: [row(0), row(1), row(2)] }, uploadToken);
    expect(written.status, JSON.stringify(written.body)).toBe(200);
    // A sync run twice: the second upload stores nothing again.
    expect((await send('pod.writePredictions', { predictions: [row(0), row(1), row(2)] }, uploadToken)).status).toBe(200);
    expect((await send('pod.writeMetrics', { metrics: [{ step: 10, epoch: 1, name: 'loss', value: 1.5 }] }, uploadToken)).status).toBe(200);
    expect((await send('pod.log', { lines: [{ level: 'info', message: 'synced from the spool' }] }, uploadToken)).status).toBe(200);
    expect((await server.raw('pod.config', { token: uploadToken })).status).toBe(200);

    for (const [procedure, input] of [
      ['pod.heartbeat', { status: 'running' }],
      ['pod.finish', { status: 'completed' }],
    ] as const) {
      const answer = refusal((await send(procedure, input, uploadToken)).body);
      expect(answer, procedure).toMatchObject({ httpStatus: 403, reason: 'job_ended' });
      expect(answer.message, procedure).toMatch(/upload token for a job that has ended \(cancelled\).*may only upload predictions, metrics and logs/);
    }

    const job = await api.jobs.get.query({ jobId });
    expect(job).toMatchObject({ status: 'cancelled', predictionCount: 3, lastHeartbeatAt: null });
    expect((await api.jobs.metrics.query({ jobId })).points).toHaveLength(1);
    expect((await api.jobs.logs.query({ jobId })).lines.map((l) => l.message)).toContain('synced from the spool');
    // The old token stays refused as an ended job's, not as a revoked one.
    expect(refusal((await send('pod.writePredictions', { predictions: [row(3)] }, token)).body)).toMatchObject({ httpStatus: 401, reason: 'job_ended' });
  });

  it('a newer upload token revokes the one before; a failed job gets one too', async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    expect((await send('pod.finish', { status: 'failed', error: 'out of memory' }, token)).status).toBe(200);
    const api = server.client(user.token);
    const first = (await api.jobs.rotateToken.mutate({ jobId })).env.JOB_TOKEN;
    expect((await send('pod.writePredictions', { predictions: [row(0)] }, first)).status).toBe(200);
    const second = (await api.jobs.rotateToken.mutate({ jobId })).env.JOB_TOKEN;
    expect(refusal((await send('pod.writePredictions', { predictions: [row(1)] }, first)).body)).toMatchObject({ httpStatus: 401, reason: 'token_revoked' });
    expect((await send('pod.writePredictions', { predictions: [row(1)] }, second)).status).toBe(200);
    expect((await api.jobs.get.query({ jobId })).predictionCount).toBe(2);
  });

  it("another user cannot rotate an ended job's token: NOT_FOUND, and the owner's upload token still works", async () => {
    const owner = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, owner.id);
    const api = server.client(owner.token);
    await api.jobs.cancel.mutate({ jobId });
    const upload = (await api.jobs.rotateToken.mutate({ jobId })).env.JOB_TOKEN;
    const stranger = server.client((await createUser(server.deps)).token);
    const failure = await stranger.jobs.rotateToken.mutate({ jobId }).catch((e: unknown) => e);
    expect(errorDetails(failure)).toMatchObject({ httpStatus: 404, message: 'Job not found' });
    expect((await send('pod.writePredictions', { predictions: [row(0)] }, upload)).status).toBe(200);
  });
});

describe('jobs.onUpdate', () => {
  type Update = { id: string; status: string; predictionCount: number; progress: { step: number | null } };
  const seen = (updates: Update[], done: (u: Update) => boolean, what: string) => until(() => updates.some(done), Boolean, what, 10_000);

  it("streams the owner's job as heartbeats, prediction batches and cancel change it; nobody else sees it", async () => {
    const user = await createUser(server.deps);
    const stranger = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const pod = server.client(token).pod;
    const mine: Update[] = [];
    const theirs: Update[] = [];
    const all = await opened((onStarted) => server.client(user.token).jobs.onUpdate.subscribe({}, { onStarted, onData: (job) => mine.push(job) }));
    const other = await opened((onStarted) => server.client(stranger.token).jobs.onUpdate.subscribe({}, { onStarted, onData: (job) => theirs.push(job) }));
    try {
      await pod.heartbeat.mutate({ mode: 'cloud', env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true }, step: 4, counters: { generated: 0, persisted: 0, spooled: 0, rejected: 0 }, triggerFires: 0 });
      await seen(mine, (u) => u.id === jobId && u.status === 'running' && u.progress.step === 4, 'the heartbeat');
      const prediction = { epoch: 1, step: 5, sampleIndex: 0, trigger: 'eval' as const, prompt: 'p', groundTruth: 'g', prediction: 'x' };
      await pod.writePredictions.mutate({ predictions: [prediction, { ...prediction, sampleIndex: 1 }] });
      await seen(mine, (u) => u.predictionCount === 2, 'the prediction count');
      await server.client(user.token).jobs.cancel.mutate({ jobId });
      await seen(mine, (u) => u.status === 'cancelled', 'the cancel');
      expect(theirs).toEqual([]);
    } finally {
      all.unsubscribe();
      other.unsubscribe();
    }
  });

  it("answers another user's job id NOT_FOUND, like a missing one", async () => {
    const owner = await createUser(server.deps);
    const stranger = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, owner.id);
    const error = await new Promise<unknown>((resolve) => {
      const sub = server.client(stranger.token).jobs.onUpdate.subscribe({ jobId }, { onError: (e) => { sub.unsubscribe(); resolve(e); }, onData: () => resolve(null) });
    });
    expect(errorDetails(error).code).toBe('NOT_FOUND');
  });
});
