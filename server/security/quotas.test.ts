// How much one account may use of this server (audit F8), over real HTTP with
// the real local launcher running a stand-in trainer: a user's jobs beyond LOCAL_MAX_JOBS_PER_USER
// wait without holding a slot, so another user's job starts while the first user's are queued;
// the queue takes turns between users; each queued job's log says why it waits; a local job
// planning more than LOCAL_MAX_STEPS_PER_JOB steps is refused at deploy, naming the field and the
// limit, before anything is stored.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../client/api/client';
import { EXAMPLE_DATASET_NAME } from '../datasets/datasets.service';
import { configProblems } from '../test-support/config';
import { createUser } from '../test-support/factories';
import { startTestServer, type TestServer } from '../test-support/server';
import { isAlive } from '../test-support/processes';
import { until } from '../test-support/wait';

/**
 * Stands in for the trainer: records `<dir>/<JOB_ID>.started` (its pid) and then idles until it is
 * signalled (cancel) or this test process is gone, so it never outlives the test.
 */
const STAND_IN = `
const fs = require('node:fs');
const path = require('node:path');
const file = path.join(process.argv[1], process.env.JOB_ID + '.started');
fs.writeFileSync(file + '.tmp', JSON.stringify({ pid: process.pid }));
fs.renameSync(file + '.tmp', file);
setInterval(() => { try { process.kill(Number(process.argv[2]), 0); } catch { process.exit(1); } }, 200);
`;

const SECRETS = { SESSION_SECRET: 'session-secret-'.padEnd(40, 's'), JOB_TOKEN_SECRET: 'job-token-secret-'.padEnd(40, 'j') };

let dir: string;
let server: TestServer | undefined;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'quotas-'));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  // Closing a server leaves its trainers running (a restart adopts them): end this file's stand-ins.
  const pids = readdirSync(dir)
    .filter((name) => name.endsWith('.started'))
    .map((name) => (JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as { pid: number }).pid);
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await until(() => pids.filter((pid) => isAlive(pid)), (alive) => alive.length === 0, 'the stand-in trainers to be gone');
  for (const name of readdirSync(dir)) rmSync(path.join(dir, name), { force: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(env: Record<string, string>): Promise<TestServer> {
  server = await startTestServer({
    ...SECRETS,
    LOCAL_TRAINER_COMMAND: JSON.stringify([process.execPath, '-e', STAND_IN, dir, String(process.pid)]),
    ...env,
  });
  return server;
}

async function account(s: TestServer) {
  const user = await createUser(s.deps);
  const api = s.client(user.token);
  const example = (await api.datasets.list.query()).find((dataset) => dataset.name === EXAMPLE_DATASET_NAME);
  if (!example) throw new Error('a new account has no example dataset');
  const deploy = async (name: string) =>
    (await api.jobs.deploy.mutate({ name, config: { datasetId: example.id, launcher: 'local', predictions: { sampleFrequency: 'epoch' } } })).job;
  return { api, example, deploy };
}

const hasStarted = (jobId: string) => existsSync(path.join(dir, `${jobId}.started`));
const startedJob = (jobId: string) => until(() => hasStarted(jobId), Boolean, `the trainer of ${jobId} to start`);
const logOf = async (api: ApiClient, jobId: string) => (await api.jobs.logs.query({ jobId })).lines.map((line) => line.message);

describe('the fair local queue', () => {
  it("with LOCAL_MAX_JOBS_PER_USER=1 and LOCAL_MAX_CONCURRENT=2: user B's job starts while user A's are queued", { timeout: 60_000 }, async () => {
    const s = await start({ LOCAL_MAX_CONCURRENT: '2', LOCAL_MAX_JOBS_PER_USER: '1' });
    const a = await account(s);
    const b = await account(s);
    const a1 = await a.deploy('a1');
    await startedJob(a1.id);
    const a2 = await a.deploy('a2');
    const a3 = await a.deploy('a3');
    const b1 = await b.deploy('b1');

    // B's job starts at once: A's waiting jobs hold no slot.
    await startedJob(b1.id);
    expect(hasStarted(a2.id)).toBe(false);
    expect(hasStarted(a3.id)).toBe(false);
    expect(await logOf(b.api, b1.id)).not.toContainEqual(expect.stringMatching(/Queued/));
    expect(await logOf(a.api, a2.id)).toContainEqual(
      expect.stringMatching(/^Queued: this account has 1 local job running, the most one account may run at once \(LOCAL_MAX_JOBS_PER_USER=1\); this one is number 1 of its waiting jobs/),
    );
    expect(await logOf(a.api, a3.id)).toContainEqual(expect.stringMatching(/this one is number 2 of its waiting jobs/));

    // B's job ending frees a slot, but A is at its own limit: nothing of A's starts.
    await b.api.jobs.cancel.mutate({ jobId: b1.id });
    // A's first ending lets A's next start, in A's order.
    await a.api.jobs.cancel.mutate({ jobId: a1.id });
    await startedJob(a2.id);
    expect(hasStarted(a3.id)).toBe(false);
  });

  it('takes turns between users: when a slot frees, the user with fewer running jobs goes first, and a queued job says it waits for a slot', { timeout: 60_000 }, async () => {
    const s = await start({ LOCAL_MAX_CONCURRENT: '3', LOCAL_MAX_JOBS_PER_USER: '3' });
    const a = await account(s);
    const b = await account(s);
    const c = await account(s);
    const a1 = await a.deploy('a1');
    const a2 = await a.deploy('a2');
    const c1 = await c.deploy('c1');
    await Promise.all([a1, a2, c1].map((job) => startedJob(job.id)));
    const a3 = await a.deploy('a3'); // waits first
    expect(await logOf(a.api, a3.id)).toContain('Queued: all 3 local job slots of this server are in use (LOCAL_MAX_CONCURRENT=3); this one is number 1 in line.');
    const b1 = await b.deploy('b1'); // waits after it, but B runs nothing, A runs two
    expect(await logOf(b.api, b1.id)).toContain('Queued: all 3 local job slots of this server are in use (LOCAL_MAX_CONCURRENT=3); this one is number 1 in line.');

    // A plain first-come queue would start a3 here.
    await c.api.jobs.cancel.mutate({ jobId: c1.id });
    await startedJob(b1.id);
    expect(hasStarted(a3.id)).toBe(false);
    await a.api.jobs.cancel.mutate({ jobId: a1.id });
    await startedJob(a3.id);
  });
});

describe('LOCAL_MAX_STEPS_PER_JOB', () => {
  it('refuses a local deploy that plans more steps, naming the field and the limit, and stores nothing', async () => {
    const s = await start({ LOCAL_MAX_STEPS_PER_JOB: '1000' });
    const { api, example } = await account(s);
    // The example dataset trains on 334 rows: batchSize 1 is 334 steps per epoch, 3 epochs 1002 steps.
    const config = { datasetId: example.id, launcher: 'local' as const, training: { epochs: 3, batchSize: 1 }, predictions: { sampleFrequency: 'epoch' as const } };
    const own = await api.jobs.deploy.mutate({ name: 'too long', config }).then(
      () => null,
      (error: unknown) => error as { message: string; data?: { httpStatus: number; field: string | null } },
    );
    expect(own?.data?.httpStatus).toBe(400);
    expect(own?.data?.field).toBe('config.training.epochs');
    expect(own?.message).toMatch(/plans 1002 training steps.*at most 1000 \(LOCAL_MAX_STEPS_PER_JOB\)/);
    expect((await api.jobs.list.query({ limit: 10 })).items).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);

    // validateConfig says the same before deploy; at the limit, or on another launcher, it runs.
    const checked = await api.jobs.validateConfig.query(config);
    expect(checked.problems).toContainEqual(expect.objectContaining({ severity: 'error', field: 'training.epochs' }));
    const { job } = await api.jobs.deploy.mutate({ name: 'short enough', config: { ...config, training: { epochs: 2, batchSize: 1 } } });
    await startedJob(job.id);
    await api.jobs.deploy.mutate({ name: 'elsewhere', config: { ...config, launcher: 'manual' } });
  });
});

describe('the limits themselves are bounded', () => {
  it('refuses zero, negative and absurd values naming the variable, rather than reading them as "no limit"', () => {
    for (const value of ['0', '-1', '65', 'many']) {
      expect(configProblems({ LOCAL_MAX_JOBS_PER_USER: value }).join('\n'), value).toMatch(/^LOCAL_MAX_JOBS_PER_USER: /);
    }
    for (const value of ['0', '100000001', '1.5']) {
      expect(configProblems({ LOCAL_MAX_STEPS_PER_JOB: value }).join('\n'), value).toMatch(/^LOCAL_MAX_STEPS_PER_JOB: /);
    }
    expect(configProblems({ SIGNUP: 'anyone' }).join('\n')).toMatch(/^SIGNUP: /);
    expect(configProblems({ LOCAL_MAX_JOBS_PER_USER: '64', LOCAL_MAX_STEPS_PER_JOB: '1', SIGNUP: 'closed' })).toEqual([]);
  });
});
