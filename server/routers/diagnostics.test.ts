// diagnostics.job names the cause of every failure mode of the seed incident report, through
// the real API: each scenario is staged the way it happens (a pod's calls, a token's refusal).
import { describe, expect, it } from 'vitest';
import { errorDetails } from '../../client/api/client';
import { jobConfig } from '#contract/job-config';
import { insertJob } from '../../db/queries/jobs';
import { signJobToken } from '../auth/tokens';
import { useTestServer, type TestServer } from '../test-support/server';
import { createDataset, createManualJob, createUser } from '../test-support/factories';
import { craftJobToken } from '../test-support/tokens';
import { diagnose, type JobFacts } from '../diagnostics/checks';
import { CHECK_IDS } from '#contract/diagnostics.schemas';

let server: TestServer;
useTestServer((started) => (server = started), { DIAGNOSTICS_CONNECT_GRACE_SECONDS: '0' });

const cloudEnv = { JOB_ID: true, JOB_TOKEN: true, API_URL: true };
const counters = (generated: number, persisted: number, spooled = 0, rejected = 0) => ({ generated, persisted, spooled, rejected });
function rows(n: number, step = 7) {
  return Array.from({ length: n }, (_, i) => ({ epoch: 1, step, sampleIndex: i, trigger: 'eval' as const, prompt: `p${i}`, groundTruth: 'g', prediction: 'x' }));
}

async function scenario(options: Parameters<typeof createManualJob>[2] = {}) {
  const user = await createUser(server.deps);
  const job = await createManualJob(server.deps, user.id, options);
  const api = server.client(user.token);
  return { user, ...job, api, pod: server.client(job.token).pod, diagnose: () => api.diagnostics.job.query({ jobId: job.jobId }) };
}

describe('diagnostics.job', () => {
  it('calls a job whose predictions all arrived healthy', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 7, totalSteps: 15, counters: counters(5, 5), triggerFires: 1 });
    await s.pod.writePredictions.mutate({ predictions: rows(5) });
    await s.pod.finish.mutate({ status: 'completed' });
    const result = await s.diagnose();
    expect(result.checks.filter((c) => c.status !== 'pass')).toEqual([]);
    expect(result).toMatchObject({ status: 'healthy', rootCause: null });
    expect(result.checks.map((c) => c.id)).toEqual([...CHECK_IDS]);
  });

  it('seed: eval trigger with evaluation off, so the callback never fires', async () => {
    // Deploy refuses this; a job configured elsewhere (or before that check) still gets an answer.
    const user = await createUser(server.deps);
    const dataset = await createDataset(server.deps, user.id);
    const config = jobConfig.parse({ datasetId: dataset.id, launcher: 'manual', training: { evalStrategy: 'no' }, predictions: { sampleFrequency: 'eval' } });
    const { id: jobId } = await insertJob(server.database.db, { userId: user.id, datasetId: dataset.id, name: 'legacy', launcher: 'manual', config, status: 'pending' });
    const { token } = await signJobToken(server.deps.secrets.jobToken, { jobId, userId: user.id, tokenVersion: 1 }, 3600);
    await server.client(token).pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 15, counters: counters(0, 0), triggerFires: 0 });
    const result = await server.client(user.token).diagnostics.job.query({ jobId });
    expect(result.rootCauseCheck).toBe('trigger_can_fire');
    expect(result.rootCause).toMatch(/evaluation is disabled/);
    expect(result.checks.find((c) => c.id === 'trigger_can_fire')?.fix).toMatch(/evalStrategy/);
  });

  it('seed: a trigger that should have fired but never did', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 12, counters: counters(0, 0), triggerFires: 0 });
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('trigger_fired');
    expect(result.rootCause).toMatch(/The trigger never fired: Training reached step 12, past step 5/);
  });

  it('seed: a missing env var puts the pod in local mode, named by variable', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'local', env: { JOB_ID: false, JOB_TOKEN: true, API_URL: true }, step: 3, counters: counters(5, 0, 5), triggerFires: 1 });
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('pod_mode');
    expect(result.rootCause).toMatch(/local mode: The pod started without JOB_ID/);
    expect(result.checks.find((c) => c.id === 'pod_mode')?.fix).toMatch(/sync --spool/);
  });

  it('local mode whose spool was synced afterwards is a warning about the next run, not a loss', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'local', env: { JOB_ID: false, JOB_TOKEN: true, API_URL: true }, step: 15, counters: counters(5, 5), triggerFires: 1 });
    await s.pod.writePredictions.mutate({ predictions: rows(5) });
    await s.pod.finish.mutate({ status: 'completed' });
    const result = await s.diagnose();
    const podMode = result.checks.find((c) => c.id === 'pod_mode');
    expect(podMode).toMatchObject({ status: 'warn', title: 'The pod ran in local mode' });
    expect(podMode?.message).toMatch(/without JOB_ID .* 5 predictions have been uploaded since/);
    expect(result.checks.filter((c) => c.status === 'fail')).toEqual([]);
  });

  it('seed: a pod that never connects', async () => {
    const s = await scenario();
    const result = await s.diagnose();
    expect(result.checks.find((c) => c.id === 'job_failure')?.title).toBe('Waiting for the pod to start');
    expect(result.rootCauseCheck).toBe('pod_connected');
    expect(result.rootCause).toMatch(/^The pod never connected/);
    expect(result.checks.find((c) => c.id === 'pod_connected')?.fix).toMatch(/JOB_ID, JOB_TOKEN and API_URL/);
  });

  it('seed: a revoked token (the credential the pod holds no longer works)', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 2, counters: counters(0, 0), triggerFires: 0 });
    await s.api.jobs.rotateToken.mutate({ jobId: s.jobId });
    await expect(s.pod.writePredictions.mutate({ predictions: rows(2) })).rejects.toThrow(/revoked/);
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('token_rejections');
    expect(result.rootCause).toMatch(/revoked job token/);
  });

  it('seed: an expired token', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 2, counters: counters(0, 0), triggerFires: 0 });
    const expired = await craftJobToken(server.deps.secrets.jobToken, { jobId: s.jobId, userId: s.user.id, expiresInSeconds: -5 });
    await expect(server.client(expired).pod.writePredictions.mutate({ predictions: rows(1) })).rejects.toThrow(/expired/);
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('token_rejections');
    expect(result.rootCause).toMatch(/token expired at/);
    expect(result.checks.find((c) => c.id === 'token_rejections')?.fix).toMatch(/Rotate the token/);
  });

  it('seed: predictions generated but not persisted (server unreachable, spooled)', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 10, counters: counters(10, 4, 6), triggerFires: 2 });
    await s.pod.writePredictions.mutate({ predictions: rows(4) });
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('writes_persisted');
    expect(result.rootCause).toMatch(/6 predictions could not reach the server and were spooled/);
  });

  it("counts a spool uploaded after the pod's last report (sync, upload token) as accounted for, not missing", async () => {
    const s = await scenario();
    // The pod's last word: 10 generated, 4 stored, 6 spooled; then it was cancelled.
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 10, counters: counters(10, 4, 6), triggerFires: 2 });
    await s.pod.writePredictions.mutate({ predictions: rows(4) });
    await s.api.jobs.cancel.mutate({ jobId: s.jobId });
    const before = await s.diagnose();
    expect(before.checks.find((c) => c.id === 'writes_persisted')?.status).toBe('fail');
    // The user uploads the spool with an upload token: no heartbeat follows a sync.
    const { env } = await s.api.jobs.rotateToken.mutate({ jobId: s.jobId });
    await server.client(env.JOB_TOKEN).pod.writePredictions.mutate({ predictions: rows(6).map((r, i) => ({ ...r, sampleIndex: 4 + i })) });
    const after = await s.diagnose();
    const check = after.checks.find((c) => c.id === 'writes_persisted');
    expect(check?.status).toBe('pass');
    expect(check?.message).toMatch(/10 predictions are stored now/);
  });

  it('seed: writes refused by the server, with the reason', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 7, counters: counters(3, 0, 0, 3), triggerFires: 1 });
    const bad = rows(3).map((r) => ({ ...r, trigger: 'sometimes' }));
    const answer = await s.pod.writePredictions.mutate({ predictions: bad });
    expect(answer.rejected).toHaveLength(3);
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('rows_rejected');
    expect(result.rootCause).toMatch(/refused 3 prediction rows as invalid, for example: trigger:/);
  });

  it('seed: the job crashed, with its error', async () => {
    const s = await scenario();
    await s.pod.heartbeat.mutate({ mode: 'cloud', env: cloudEnv, step: 1, counters: counters(0, 0), triggerFires: 0 });
    await s.pod.finish.mutate({ status: 'failed', error: 'Traceback ...\nRuntimeError: CUDA out of memory' });
    const result = await s.diagnose();
    expect(result.rootCauseCheck).toBe('job_failure');
    expect(result.rootCause).toMatch(/The job failed: Traceback ...\nRuntimeError: CUDA out of memory/);
  });

  it("answers another user's job id like a missing one", async () => {
    const s = await scenario();
    const bob = server.client((await createUser(server.deps)).token);
    expect(errorDetails(await bob.diagnostics.job.query({ jobId: s.jobId }).catch((e: unknown) => e))).toMatchObject({ httpStatus: 404 });
  });
});

describe('diagnose()', () => {
  const base = (overrides: Partial<JobFacts> = {}): JobFacts => ({
    now: new Date('2026-01-01T00:01:00Z'),
    status: 'pending',
    launcher: 'manual',
    config: jobConfig.parse({ datasetId: '00000000-0000-4000-8000-000000000000' }),
    datasetRows: 40,
    createdAt: new Date('2026-01-01T00:00:30Z'),
    finishedAt: null,
    error: null,
    podReport: null,
    lastHeartbeatAt: null,
    stored: { count: 0, lastWriteAt: null },
    events: [],
    connectGraceSeconds: 60,
    ...overrides,
  });

  it('waits (a warning, not a failure) while a fresh pod is still within its grace period', () => {
    const result = diagnose(base());
    expect(result.status).toBe('warning');
    expect(result.rootCauseCheck).toBe('pod_connected');
    expect(result.rootCause).toMatch(/^Waiting for the pod to connect/);
  });

  it('says a pod has gone quiet when heartbeats stop', () => {
    const result = diagnose(
      base({
        status: 'running',
        lastHeartbeatAt: new Date('2025-12-31T23:55:00Z'),
        podReport: { mode: 'cloud', env: { JOB_ID: true }, counters: { generated: 0, persisted: 0, spooled: 0, rejected: 0 }, triggerFires: 0, step: 1 },
      }),
    );
    expect(result.checks.find((c) => c.id === 'pod_connected')).toMatchObject({ status: 'warn', title: 'The pod has gone quiet' });
  });
});
