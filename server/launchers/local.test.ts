// The local launcher through the real API over HTTP: jobs deployed with `launcher: 'local'` run
// the bundled trainer as a child process and store exactly the predictions their trigger
// schedules; with a stand-in trainer (LOCAL_TRAINER_COMMAND), the queue beyond
// LOCAL_MAX_CONCURRENT, cancel killing the process, a failing process failing its job with the
// exit code and the tail of its output, the child's environment holding only the pod variables,
// its output going to a file rather than a pipe, and a restarted server adopting the trainers
// (and the queue) of the one before. (A kill -9 of a real server mid-training is
// server/local-survives.test.ts.)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../client/api/client';
import { expectedPredictionPoints } from '../../trainer/demo-model/schedule';
import { jobConfig, type JobConfigInput } from '#contract/job-config';
import type { JobStatusName } from '#contract/statuses';
import { EXAMPLE_DATASET_NAME } from '../datasets/datasets.service';
import { createTestDatabase, type TestDatabase } from '../test-support/database';
import { createUser } from '../test-support/factories';
import { startTestServer, useTestServer, type TestServer } from '../test-support/server';
import { until } from '../test-support/wait';
import { expectedKeysFor, storedPredictionKeys } from '../test-support/prediction-keys';
import { insertJob, setLauncherRef } from '../../db/queries/jobs';
import { fairOrder, formatLocalRef, readLocalProcess } from './local';
import { isAlive } from '../test-support/processes';

const ENDED: JobStatusName[] = ['completed', 'failed', 'cancelled'];

function endOf(api: ApiClient, jobId: string, timeoutMs = 30_000) {
  return until(() => api.jobs.get.query({ jobId }), (job) => ENDED.includes(job.status), `job ${jobId} to end`, timeoutMs);
}

/** A new account and its example dataset, which every account starts with. */
async function signedIn(server: TestServer) {
  const user = await createUser(server.deps);
  const api = server.client(user.token);
  const example = (await api.datasets.list.query()).find((dataset) => dataset.name === EXAMPLE_DATASET_NAME);
  if (!example) throw new Error('a new account has no example dataset');
  return { api, example, user };
}

describe('the bundled trainer under the local launcher', () => {
  let server: TestServer;
  useTestServer((started) => (server = started));

  // Two epochs each, so the step-based triggers also cross an epoch boundary (42 steps per epoch).
  const triggers = [
    { name: 'eval after each epoch evaluation', training: { epochs: 2, evalStrategy: 'epoch' }, predictions: { sampleFrequency: 'eval' } },
    { name: 'eval every evalSteps steps', training: { epochs: 2, evalStrategy: 'steps', evalSteps: 10 }, predictions: { sampleFrequency: 'eval' } },
    { name: 'epoch end', training: { epochs: 2, evalStrategy: 'no' }, predictions: { sampleFrequency: 'epoch' } },
    { name: 'steps every stepInterval', training: { epochs: 2 }, predictions: { sampleFrequency: 'steps', stepInterval: 15 } },
  ] satisfies Array<{ name: string } & Pick<JobConfigInput, 'training' | 'predictions'>>;

  it.each(triggers)(
    'trigger $name: the job completes with exactly the scheduled predictions, all persisted',
    { timeout: 120_000 },
    async ({ name, training, predictions }) => {
      const { api, example } = await signedIn(server);
      const input = { datasetId: example.id, launcher: 'local' as const, training, predictions };
      const { job, pod } = await api.jobs.deploy.mutate({ name: `local: ${name}`, config: input });
      expect(pod).toBeNull(); // the token went to the child process, never to the browser
      expect(job).toMatchObject({ launcher: 'local', status: 'starting' });

      const ended = await endOf(api, job.id, 100_000);
      expect(ended.status, ended.error ?? '').toBe('completed');

      const config = jobConfig.parse(input);
      const expected = expectedKeysFor(config, example.rowCount);
      expect(expected.length).toBeGreaterThan(0);
      expect(await storedPredictionKeys(server.database.db, job.id)).toEqual(expected);
      expect(ended.podReport).toMatchObject({
        mode: 'cloud',
        env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true },
        counters: { generated: expected.length, persisted: expected.length, spooled: 0, rejected: 0 },
        triggerFires: expectedPredictionPoints(config, example.rowCount).length,
      });
    },
  );
});

/**
 * Stands in for the trainer: records its start (pid, time, whole environment) in
 * `<dir>/<JOB_ID>.started`, then waits for an order in `<JOB_ID>.order`: exit with a code
 * (after writing some stderr and recording `<JOB_ID>.ended`), or ignore SIGTERM from now on
 * (until then a SIGTERM is recorded in `<JOB_ID>.terminated` and ends it).
 * It never outlives this test process (whose pid is its second argument): trainers outlive the
 * server that started them now, so the test's own lifetime bounds them instead.
 */
const STAND_IN = `
const fs = require('node:fs');
const path = require('node:path');
const base = path.join(process.argv[1], process.env.JOB_ID);
function record(suffix, value) {
  fs.writeFileSync(base + suffix + '.tmp', JSON.stringify(value));
  fs.renameSync(base + suffix + '.tmp', base + suffix);
}
record('.started', { pid: process.pid, at: Date.now(), env: process.env });
// As the real trainer does, a SIGTERM is a request to stop, which it acknowledges.
process.on('SIGTERM', () => { record('.terminated', { at: Date.now() }); process.exit(143); });
const timer = setInterval(() => {
  try { process.kill(Number(process.argv[2]), 0); } catch { process.exit(1); }
  let order;
  try { order = JSON.parse(fs.readFileSync(base + '.order', 'utf8')); } catch { return; }
  if (order.ignoreSigterm) process.removeAllListeners('SIGTERM').on('SIGTERM', () => {});
  fs.rmSync(base + '.order');
  if (order.ignoreSigterm) return;
  clearInterval(timer);
  record('.ended', { at: Date.now() });
  process.stderr.write(order.stderr ?? '', () => process.exit(order.exit));
}, 50);
`;

interface StandInStart {
  pid: number;
  at: number;
  env: Record<string, string>;
}
type Order = { exit: number; stderr?: string } | { ignoreSigterm: true };

const SECRETS = { SESSION_SECRET: 'session-secret-'.padEnd(40, 's'), JOB_TOKEN_SECRET: 'job-token-secret-'.padEnd(40, 'j') };

/** This process's living children, from the process table (zombies and the `ps` itself left out). */
function livingChildren(): number[] {
  return execFileSync('ps', ['-A', '-o', 'ppid=,pid=,stat=,comm='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([ppid, , stat, comm]) => Number(ppid) === process.pid && !stat?.startsWith('Z') && comm !== 'ps')
    .map(([, pid]) => Number(pid))
    // Only this file's stand-ins (their argv names the test's directory): the worker has other
    // children too, such as esbuild's service process once anything was transpiled.
    .filter((pid) => isStandIn(pid));
}

function isStandIn(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('local-launcher-');
  } catch {
    return false;
  }
}

describe('the local launcher with a stand-in trainer', () => {
  let database: TestDatabase;
  let dir: string;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(tmpdir(), 'local-launcher-'));
  });
  afterAll(async () => {
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // A server per test, so closing it (which ends every child it started) leaves the next test an
  // empty queue; the database is shared and emptied.
  beforeEach(async () => {
    await database.truncate();
    server = await startTestServer(
      { ...SECRETS, ...standInEnv() },
      { database },
    );
  });
  afterEach(async () => {
    await server?.close();
    // Closing a server leaves its trainers running (the next start adopts them): end this test's.
    for (const pid of livingChildren()) process.kill(-pid, 'SIGKILL');
    await until(() => livingChildren(), (pids) => pids.length === 0, 'the stand-ins of this test to be gone');
  });

  function standInEnv(): Record<string, string> {
    return { LOCAL_MAX_CONCURRENT: '1', LOCAL_TRAINER_COMMAND: JSON.stringify([process.execPath, '-e', STAND_IN, dir, String(process.pid)]) };
  }

  async function deploy(api: ApiClient, datasetId: string, name: string) {
    const { job } = await api.jobs.deploy.mutate({ name, config: { datasetId, launcher: 'local', predictions: { sampleFrequency: 'epoch' } } });
    return job;
  }

  function started(jobId: string): Promise<StandInStart> {
    const file = path.join(dir, `${jobId}.started`);
    return until(() => existsSync(file), Boolean, `the trainer of ${jobId} to start`).then(
      () => JSON.parse(readFileSync(file, 'utf8')) as StandInStart,
    );
  }

  function endedAt(jobId: string): number {
    return (JSON.parse(readFileSync(path.join(dir, `${jobId}.ended`), 'utf8')) as { at: number }).at;
  }

  /** Hands the stand-in of a job an order, and waits until it has taken it. */
  async function order(jobId: string, what: Order): Promise<void> {
    const file = path.join(dir, `${jobId}.order`);
    writeFileSync(`${file}.tmp`, JSON.stringify(what));
    renameSync(`${file}.tmp`, file);
    await until(() => existsSync(file), (present) => !present, `the trainer of ${jobId} to take its order`);
  }

  async function logMessages(api: ApiClient, jobId: string): Promise<string[]> {
    return (await api.jobs.logs.query({ jobId })).lines.map((line) => line.message);
  }

  /** Acts as the pod with the token the child was given: reports running, then completed. */
  async function finishAsPod(start: StandInStart) {
    const pod = server.client(start.env.JOB_TOKEN).pod;
    await pod.heartbeat.mutate({ status: 'running' });
    await pod.finish.mutate({ status: 'completed' });
  }

  it('with LOCAL_MAX_CONCURRENT=1 runs one job at a time: the others wait in line, say so, and start in order', { timeout: 60_000 }, async () => {
    const { api, example } = await signedIn(server);
    const first = await deploy(api, example.id, 'first');
    const firstStart = await started(first.id);
    const second = await deploy(api, example.id, 'second');
    const third = await deploy(api, example.id, 'third');

    // Spawning happens inside deploy: had a queued job been started, its process would exist now.
    expect(livingChildren()).toEqual([firstStart.pid]);
    expect(await logMessages(api, first.id)).not.toContainEqual(expect.stringMatching(/Queued/));
    // One account: its own limit (LOCAL_MAX_JOBS_PER_USER, default 1) is why its jobs wait.
    expect(await logMessages(api, second.id)).toContain(
      'Queued: this account has 1 local job running, the most one account may run at once (LOCAL_MAX_JOBS_PER_USER=1); this one is number 1 of its waiting jobs and starts when one of them ends.',
    );
    expect(await logMessages(api, third.id)).toContainEqual(expect.stringMatching(/^Queued: this account has 1 local job running, .* this one is number 2 of its waiting jobs/));
    expect((await api.jobs.get.query({ jobId: second.id })).status).toBe('starting');

    await finishAsPod(firstStart);
    await order(first.id, { exit: 0 });
    const secondStart = await started(second.id);
    expect(secondStart.at).toBeGreaterThanOrEqual(endedAt(first.id));
    expect(livingChildren()).toEqual([secondStart.pid]);
    expect(existsSync(path.join(dir, `${third.id}.started`))).toBe(false);

    // The second runs as any job does: its token works and its end is recorded.
    await finishAsPod(secondStart);
    await order(second.id, { exit: 0 });
    const thirdStart = await started(third.id);
    expect(thirdStart.at).toBeGreaterThanOrEqual(endedAt(second.id));
    await finishAsPod(thirdStart);
    await order(third.id, { exit: 0 });

    for (const job of [first, second, third]) expect((await endOf(api, job.id)).status).toBe('completed');
  });

  it('a job cancelled while queued leaves the line and never starts', { timeout: 60_000 }, async () => {
    const { api, example } = await signedIn(server);
    const first = await deploy(api, example.id, 'first');
    const firstStart = await started(first.id);
    const queued = await deploy(api, example.id, 'queued');
    expect((await api.jobs.cancel.mutate({ jobId: queued.id })).status).toBe('cancelled');

    // Had the cancelled job stayed in line, this one would be number 2, and would start after it.
    const next = await deploy(api, example.id, 'next');
    expect(await logMessages(api, next.id)).toContainEqual(expect.stringMatching(/^Queued: .* this one is number 1 of its waiting jobs/));
    expect(livingChildren()).toEqual([firstStart.pid]);
    await order(first.id, { exit: 0 });
    const nextStart = await started(next.id);
    expect(existsSync(path.join(dir, `${queued.id}.started`))).toBe(false);
    expect(livingChildren()).toEqual([nextStart.pid]);
    expect((await api.jobs.get.query({ jobId: queued.id })).status).toBe('cancelled');
    await order(next.id, { exit: 0 });
    await endOf(api, next.id);
  });

  it('cancel kills the running trainer process, and the job ends cancelled, not failed', { timeout: 60_000 }, async () => {
    const { api, example } = await signedIn(server);
    const job = await deploy(api, example.id, 'to cancel');
    const start = await started(job.id);
    await server.client(start.env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect((await api.jobs.get.query({ jobId: job.id })).status).toBe('running');
    expect(isAlive(start.pid)).toBe(true);

    expect((await api.jobs.cancel.mutate({ jobId: job.id })).status).toBe('cancelled');
    await until(() => isAlive(start.pid), (alive) => !alive, `process ${start.pid} to be gone`, 10_000);
    expect(existsSync(path.join(dir, `${job.id}.terminated`))).toBe(true); // asked to stop, not killed outright
    expect(livingChildren()).toEqual([]);
    const detail = await api.jobs.get.query({ jobId: job.id });
    expect(detail.status).toBe('cancelled');
    expect(detail.error).toBeNull();
  });

  it('cancel kills a trainer that ignores SIGTERM once the grace period is over', { timeout: 60_000 }, async () => {
    const { api, example } = await signedIn(server);
    const job = await deploy(api, example.id, 'stubborn');
    const start = await started(job.id);
    await order(job.id, { ignoreSigterm: true });

    expect((await api.jobs.cancel.mutate({ jobId: job.id })).status).toBe('cancelled');
    expect(isAlive(start.pid)).toBe(true); // SIGTERM alone did not stop it
    await until(() => isAlive(start.pid), (alive) => !alive, `process ${start.pid} to be killed`, 20_000);
    expect((await api.jobs.get.query({ jobId: job.id })).status).toBe('cancelled');
  });

  it('cancel reaches every process a wrapper command started, so the next job in line starts', { timeout: 60_000 }, async () => {
    // `sh -c` as the trainer command: the shell is the child, the long-running work its child.
    await server.close();
    const wrapper = `sleep 30 & echo $! > "${dir}/$JOB_ID.grandchild"; wait`;
    server = await startTestServer({ ...SECRETS, LOCAL_MAX_CONCURRENT: '1', LOCAL_TRAINER_COMMAND: JSON.stringify(['sh', '-c', wrapper]) }, { database });
    const { api, example } = await signedIn(server);
    const job = await deploy(api, example.id, 'wrapped');
    const pidFile = (jobId: string) => path.join(dir, `${jobId}.grandchild`);
    const grandchild = await until(() => (existsSync(pidFile(job.id)) ? Number(readFileSync(pidFile(job.id), 'utf8')) : 0), (pid) => pid > 0, 'the wrapped work to start');
    const next = await deploy(api, example.id, 'next in line');

    expect((await api.jobs.cancel.mutate({ jobId: job.id })).status).toBe('cancelled');
    await until(() => isAlive(grandchild), (alive) => !alive, `the wrapped process ${grandchild} to be gone`, 10_000);
    await until(() => existsSync(pidFile(next.id)), Boolean, 'the next job in line to start', 10_000);
  });

  it('a trainer that exits with code 3 fails its job with the exit code and the tail of its stderr', { timeout: 60_000 }, async () => {
    const { api, example } = await signedIn(server);
    const job = await deploy(api, example.id, 'doomed');
    await started(job.id);
    const stderr = `first line of a long stderr\n${'progress...\n'.repeat(800)}Error: the dataset exploded at step 7\n`;
    await order(job.id, { exit: 3, stderr });

    const ended = await endOf(api, job.id);
    expect(ended.status).toBe('failed');
    expect(ended.error).toContain('exit code 3');
    expect(ended.error).toMatch(/Error: the dataset exploded at step 7$/);
    expect(ended.error).not.toContain('first line of a long stderr'); // the tail, not the whole of it
  });

  it.each([
    { how: 'exits 0 without reporting the end of training', end: { exit: 0 } as const, error: /^The trainer exited without reporting the end of training$/ },
    { how: 'is killed by a signal from outside', end: 'SIGKILL' as const, error: /The trainer process ended \(killed by SIGKILL\)/ },
  ])('a trainer that $how fails its job, saying so', { timeout: 60_000 }, async ({ end, error }) => {
    const { api, example } = await signedIn(server);
    const job = await deploy(api, example.id, 'gone quiet');
    const start = await started(job.id);
    if (end === 'SIGKILL') process.kill(start.pid, 'SIGKILL');
    else await order(job.id, end);

    const ended = await endOf(api, job.id);
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatch(error);
  });

  it("gives the child the three pod variables and nothing of the server's environment", { timeout: 60_000 }, async () => {
    // Put secrets where a launcher that passed its own environment through would leak them.
    const canaries = { SESSION_SECRET: SECRETS.SESSION_SECRET, DATABASE_URL: 'postgres://canary:hunter2@db.invalid/predictions', LOCAL_LAUNCHER_CANARY: 'canary-value-7f3a9c' };
    const saved = Object.fromEntries(Object.keys(canaries).map((name) => [name, process.env[name]]));
    Object.assign(process.env, canaries);
    let start: StandInStart;
    let jobId: string;
    const { api, example } = await signedIn(server);
    try {
      jobId = (await deploy(api, example.id, 'environment')).id;
      start = await started(jobId);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }

    const { env } = start;
    expect(Object.keys(env).filter((name) => !/^(JOB_ID|JOB_TOKEN|API_URL|PATH|HOME|TRAINER_[A-Z_]+)$/.test(name))).toEqual([]);
    expect(env).toMatchObject({ JOB_ID: jobId, JOB_TOKEN: expect.any(String), API_URL: server.deps.config.publicUrl });
    // Nothing ties the trainer's life to this server's any more.
    expect(env.TRAINER_PARENT_PID).toBeUndefined();
    const values = JSON.stringify(env);
    for (const secret of [...Object.values(canaries), SECRETS.JOB_TOKEN_SECRET]) expect(values).not.toContain(secret);

    // The token it was given is this job's: acting with it marks the job running.
    await server.client(env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect((await api.jobs.get.query({ jobId })).status).toBe('running');
    await order(jobId, { exit: 0 });
    await endOf(api, jobId);
  });
  describe('across a restart of the server (same data directory, so the same instance)', () => {
    let dataDir: string;
    let env: Record<string, string>;
    beforeEach(async () => {
      await server.close();
      dataDir = mkdtempSync(path.join(tmpdir(), 'local-adopt-'));
      env = { ...SECRETS, ...standInEnv(), DATA_DIR: dataDir };
      server = await startTestServer(env, { database });
    });
    afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

    async function restart(): Promise<void> {
      await server.close();
      server = await startTestServer(env, { database });
    }

    it('the trainer writes to a file, not a pipe, outlives the server, and the next start follows it: its token still works and its end is recorded', { timeout: 60_000 }, async () => {
      const { example, user } = await signedIn(server);
      const job = await deploy(server.client(user.token), example.id, 'survivor');
      const start = await started(job.id);
      const logFile = path.join(dataDir, 'local-jobs', `${job.id}.log`);
      for (const fd of [1, 2]) expect(readlinkSync(`/proc/${start.pid}/fd/${fd}`)).toBe(logFile);
      await server.client(start.env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });

      await restart();
      expect(isAlive(start.pid)).toBe(true);
      const api = server.client(user.token);
      expect((await api.jobs.get.query({ jobId: job.id })).status).toBe('running');
      await server.client(start.env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' }); // not revoked

      await order(job.id, { exit: 3, stderr: 'Error: the dataset exploded after the restart\n' });
      const ended = await endOf(api, job.id);
      expect(ended.status).toBe('failed');
      expect(ended.error).toMatch(/^The trainer process ended \(its exit status is unknown: it was started before the server restarted\):\n/);
      expect(ended.error).toMatch(/Error: the dataset exploded after the restart$/);
    });

    it('cancel reaches an adopted trainer, and the queue of waiting jobs carries on after the restart, in order, each with a working token', { timeout: 60_000 }, async () => {
      const { example, user } = await signedIn(server);
      const before = server.client(user.token);
      const first = await deploy(before, example.id, 'first');
      const firstStart = await started(first.id);
      const second = await deploy(before, example.id, 'second');
      const third = await deploy(before, example.id, 'third');

      await restart();
      const api = server.client(user.token);
      // The running one is followed, the waiting ones wait again: nothing new was started.
      expect(livingChildren()).toEqual([firstStart.pid]);
      expect(existsSync(path.join(dir, `${second.id}.started`))).toBe(false);

      expect((await api.jobs.cancel.mutate({ jobId: first.id })).status).toBe('cancelled');
      await until(() => isAlive(firstStart.pid), (alive) => !alive, `the adopted process ${firstStart.pid} to be gone`, 20_000);
      expect(existsSync(path.join(dir, `${first.id}.terminated`))).toBe(true);

      const secondStart = await started(second.id);
      expect(existsSync(path.join(dir, `${third.id}.started`))).toBe(false);
      await finishAsPod(secondStart); // a token issued by the restarted server, accepted
      await order(second.id, { exit: 0 });
      const thirdStart = await started(third.id);
      await finishAsPod(thirdStart);
      await order(third.id, { exit: 0 });
      for (const job of [second, third]) expect((await endOf(api, job.id)).status).toBe('completed');
      expect((await api.jobs.get.query({ jobId: first.id })).status).toBe('cancelled');
    });

    it('a recorded pid now used by another process (another start time) is not adopted: the job ends, saying its trainer ended while the server was down', { timeout: 60_000 }, async () => {
      const { example, user } = await signedIn(server);
      const config = jobConfig.parse({ datasetId: example.id, launcher: 'local' });
      const { id: jobId } = await insertJob(server.database.db, { userId: user.id, datasetId: example.id, name: 'reused pid', launcher: 'local', config, status: 'running', launcherOwner: server.deps.instanceId });
      // This test process is alive, but it is not the process that was started for the job.
      const impostor = readLocalProcess(process.pid);
      expect(impostor.startTime).not.toBeNull();
      await setLauncherRef(server.database.db, { jobId, userId: user.id, launcherRef: formatLocalRef({ pid: process.pid, startTime: `${impostor.startTime}0` }), launcherOwner: server.deps.instanceId });

      await restart();
      const ended = await endOf(server.client(user.token), jobId);
      expect(ended.status).toBe('failed');
      expect(ended.error).toMatch(/^The trainer process ended while the server was down/);
    });
  });
});

describe('fairOrder: who starts next when a local slot frees', () => {
  const job = (userId: string, n: number) => ({ userId, jobId: `${userId}${n}` });
  const ids = (jobs: Array<{ jobId: string }>) => jobs.map((j) => j.jobId);

  it('takes turns between users, the one with the fewest running first, each user in their own order', () => {
    const queue = [job('a', 1), job('a', 2), job('a', 3), job('b', 1), job('c', 1), job('b', 2)];
    expect(ids(fairOrder(queue, new Map()))).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
    // A already runs two, B one: C and then B go before A's jobs, although A's waited longest;
    // once B runs as many as A, the longer wait breaks the tie.
    expect(ids(fairOrder(queue, new Map([['a', 2], ['b', 1]])))).toEqual(['c1', 'b1', 'a1', 'b2', 'a2', 'a3']);
  });

  it('is first come, first served for one user, and empty for an empty queue', () => {
    expect(ids(fairOrder([job('a', 1), job('a', 2)], new Map([['a', 5]])))).toEqual(['a1', 'a2']);
    expect(fairOrder([], new Map([['a', 1]]))).toEqual([]);
  });
});
