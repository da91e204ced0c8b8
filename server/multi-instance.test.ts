// Several server instances on one database: all state is in Postgres, so a job deployed on one
// instance takes pod writes on another, live updates reach subscribers of every instance with
// nothing lost or doubled, and a local trainer process belongs to the instance that started it
// (another instance's restart leaves it alone; its own restart fails the job, exactly once).
//
// On Postgres (TEST_DATABASE_URL) the instances are real processes, started as in production
// with `node --import tsx server/main.ts`, sharing DATABASE_URL and the signing secrets, each with
// its own DATA_DIR. On the PGlite run that is impossible: an embedded database lives inside one
// process and cannot be opened by two. There the same scenario runs with two in-process servers
// sharing one database handle (the same code paths above the driver: NOTIFY fan-out through the
// live hub, ownership of local jobs by instance id), and restarts are close-and-start-again.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiClient } from '../client/api/client';
import { listJobEvents } from '../db/queries/job-events';
import { PROJECT_ROOT } from './paths';
import { ensureSpaBuilt } from './spa';
import { createTestDatabase, type TestDatabase } from './test-support/database';
import { startTestServer } from './test-support/server';
import { opened, until } from './test-support/wait';
import { freePort } from './test-support/processes';

const SHARED_SECRETS = { SESSION_SECRET: 's'.repeat(40), JOB_TOKEN_SECRET: 'j'.repeat(40) };

/**
 * Stands in for the trainer under the local launcher: records each start and its three
 * variables (so the test can act as the pod), then stays alive until stopped, or until the
 * test process is gone (a local trainer outlives the server that started it).
 */
const POD_STAND_IN = `
const fs = require('node:fs');
const path = require('node:path');
const dir = process.argv[1];
const testRunner = Number(process.argv[2]);
const file = path.join(dir, process.env.JOB_ID);
fs.appendFileSync(file + '.starts', 'started\\n');
fs.writeFileSync(file + '.tmp', JSON.stringify({ JOB_ID: process.env.JOB_ID, JOB_TOKEN: process.env.JOB_TOKEN, API_URL: process.env.API_URL }));
fs.renameSync(file + '.tmp', file + '.json');
// Local trainers outlive their server now; this one ends with the test run that started it.
setInterval(() => { try { process.kill(testRunner, 0); } catch { process.exit(1); } }, 500);
`;

interface Instance {
  name: string;
  url: string;
  stop(): Promise<void>;
}

let database: TestDatabase;
let podDir: string;
const dataDirs: string[] = [];
const running = new Set<Instance>();
/** Every server process this file spawned, so none outlives it, even after a failed start. */
const children = new Set<ChildProcess>();

beforeAll(async () => {
  database = await createTestDatabase();
  podDir = await mkdtemp(path.join(tmpdir(), 'multi-instance-pods-'));
  // A started server builds the SPA if it is stale; do it once here rather than in two processes at once.
  if (database.url) await ensureSpaBuilt(() => undefined);
}, 180_000);

afterAll(async () => {
  await Promise.all([...running].map((instance) => instance.stop()));
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await database?.close();
  await Promise.all([podDir, ...dataDirs].filter(Boolean).map((dir) => rm(dir, { recursive: true, force: true })));
});

function instanceEnv(dataDir: string): Record<string, string> {
  return {
    ...SHARED_SECRETS,
    DATA_DIR: dataDir,
    LOCAL_TRAINER_COMMAND: JSON.stringify([process.execPath, '-e', POD_STAND_IN, podDir, String(process.pid)]),
  };
}

/** A real server process, as `npm start` runs it, on the shared Postgres database. */
async function startProcess(name: string, dataDir: string, url: string): Promise<Instance> {
  const port = await freePort();
  let output = '';
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join('server', 'main.ts')], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? tmpdir(),
      ...instanceEnv(dataDir),
      DATABASE_URL: url,
      PORT: String(port),
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited while starting:\n${output}`);
    // Bounded: the port opens before the app is attached, and a request in between waits for nothing.
    const ok = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not become healthy:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  const instance: Instance = {
    name,
    url: base,
    async stop() {
      running.delete(instance);
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  running.add(instance);
  return instance;
}

/** The PGlite stand-in for a process: an in-process server on the shared database handle. */
async function startInProcess(name: string, dataDir: string): Promise<Instance> {
  const server = await startTestServer(instanceEnv(dataDir), { database });
  const instance: Instance = {
    name,
    url: server.url,
    async stop() {
      running.delete(instance);
      await server.close();
    },
  };
  running.add(instance);
  return instance;
}

/** Starts (or restarts, with the same DATA_DIR and so the same instance id) a named instance. */
async function start(name: string): Promise<Instance> {
  const existing = dataDirs.find((dir) => path.basename(dir).startsWith(`instance-${name}-`));
  const dataDir = existing ?? (await mkdtemp(path.join(tmpdir(), `instance-${name}-`)));
  if (!existing) dataDirs.push(dataDir);
  return database.url ? startProcess(name, dataDir, database.url) : startInProcess(name, dataDir);
}

async function restart(instance: Instance): Promise<Instance> {
  await instance.stop();
  return start(instance.name);
}

function client(instance: Instance, token?: string) {
  return createApiClient({ url: instance.url, EventSource, ...(token ? { token } : {}) });
}

function rows(step: number, count: number) {
  return Array.from({ length: count }, (_, i) => ({
    epoch: step,
    step,
    sampleIndex: i,
    trigger: 'eval' as const,
    prompt: `prompt ${i}`,
    groundTruth: `truth ${i}`,
    prediction: `step ${step} guess ${i}`,
  }));
}

async function podEnvOf(jobId: string): Promise<{ JOB_ID: string; JOB_TOKEN: string; API_URL: string }> {
  const file = path.join(podDir, `${jobId}.json`);
  await until(async () => existsSync(file), Boolean);
  return JSON.parse(await readFile(file, 'utf8')) as { JOB_ID: string; JOB_TOKEN: string; API_URL: string };
}

async function startsOf(jobId: string): Promise<number> {
  const files = await readdir(podDir);
  if (!files.includes(`${jobId}.starts`)) return 0;
  return (await readFile(path.join(podDir, `${jobId}.starts`), 'utf8')).trim().split('\n').length;
}

describe(`two server instances on one database (${process.env.TEST_DATABASE_URL ? 'separate processes on Postgres' : 'in-process on PGlite'})`, () => {
  it('deploy on one, pod writes to the other, live updates on both, and local jobs stay with their instance', { timeout: 240_000 }, async () => {
    let a = await start('a');
    let b = await start('b');

    // Accounts and datasets are rows, not instance state: register on A, work on B.
    const session = await client(a).auth.register.mutate({ email: 'multi@example.test', password: 'correct horse battery staple' });
    const userOn = (instance: Instance) => client(instance, session.token);
    const jsonl = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `q${i}`, completion: `a${i}` })).join('\n');
    const dataset = await userOn(b).datasets.upload.mutate({ name: 'shared', jsonl });

    // --- deploy on A, pod writes to B, subscribers on both ---
    const { job, pod } = await userOn(a).jobs.deploy.mutate({ name: 'manual', config: { datasetId: dataset.id, launcher: 'manual' } });
    if (!pod) throw new Error('the manual launcher shows the pod environment');
    const seen: Record<'a' | 'b', Array<{ id: string; key: string }>> = { a: [], b: [] };
    const subscriptions = await Promise.all(
      (['a', 'b'] as const).map((name) =>
        opened((onStarted) =>
          userOn(name === 'a' ? a : b).predictions.onNew.subscribe(
            { jobId: job.id },
            { onStarted, onData: (event) => seen[name].push({ id: event.id, key: `${event.data.step}/${event.data.sampleIndex}` }) },
          ),
        ),
      ),
    );
    const podOnB = client(b, pod.env.JOB_TOKEN).pod;
    const written = [];
    for (const step of [1, 2, 3]) written.push(await podOnB.writePredictions.mutate({ predictions: rows(step, 5) }));
    // A retry of a batch that did arrive (the pod never saw the answer): stored once.
    written.push(await podOnB.writePredictions.mutate({ predictions: rows(2, 5) }));
    expect(written.map((w) => [w.inserted, w.duplicates])).toEqual([[5, 0], [5, 0], [5, 0], [0, 5]]);

    // A last batch closes the stream's record: once it has arrived, a repeat of the retried batch would have too.
    await podOnB.writePredictions.mutate({ predictions: rows(4, 1) });
    const expected = [1, 2, 3].flatMap((step) => Array.from({ length: 5 }, (_, i) => `${step}/${i}`)).concat('4/0');
    for (const name of ['a', 'b'] as const) {
      await until(async () => seen[name].some((e) => e.key === '4/0'), Boolean, `the closing row on instance ${name}`);
      expect(seen[name].map((e) => e.key)).toEqual(expected);
      expect(new Set(seen[name].map((e) => e.id)).size).toBe(16);
    }
    for (const subscription of subscriptions) subscription.unsubscribe();
    const listedOnA = await userOn(a).predictions.list.query({ jobId: job.id, limit: 100 });
    expect(listedOnA.totalCount).toBe(16);

    // --- a local job run by A ---
    const local = await userOn(a).jobs.deploy.mutate({ name: 'local', config: { datasetId: dataset.id, launcher: 'local' } });
    const env = await podEnvOf(local.job.id);
    await client(b, env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect((await userOn(a).jobs.get.query({ jobId: local.job.id })).status).toBe('running');

    // Restarting B leaves A's job alone: not failed, not started again, its pod still accepted.
    b = await restart(b);
    await client(b, env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect((await userOn(b).jobs.get.query({ jobId: local.job.id })).status).toBe('running');
    expect(await startsOf(local.job.id)).toBe(1);
    const kinds = async () => (await listJobEvents(database.db, { userId: session.user.id, jobId: local.job.id })).map((e) => e.kind);
    expect(await kinds()).not.toContain('orphaned');

    // Restarting A leaves its trainer running: the restarted A takes the job back (no second
    // start, no failure), and the pod's token still works on either instance.
    a = await restart(a);
    await client(b, env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect((await userOn(b).jobs.get.query({ jobId: local.job.id })).status).toBe('running');
    a = await restart(a);
    b = await restart(b);
    await client(a, env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' });
    expect(await kinds()).not.toContain('orphaned');
    expect((await kinds()).filter((kind) => kind === 'adopted')).toHaveLength(2);
    expect(await startsOf(local.job.id)).toBe(1);
    // Cancel on the instance that runs it stops the trainer it adopted.
    await userOn(a).jobs.cancel.mutate({ jobId: local.job.id });
    await expect(client(b, env.JOB_TOKEN).pod.heartbeat.mutate({ status: 'running' })).rejects.toThrow();

    // The manual job, owned by no instance, went through all of it untouched.
    expect(['pending', 'running']).toContain((await userOn(a).jobs.get.query({ jobId: job.id })).status);
    await a.stop();
    await b.stop();
  });
});
