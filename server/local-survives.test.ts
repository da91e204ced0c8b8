// The default local launcher survives its server: a real server process on the
// embedded database runs a real trainer; `kill -9` of the server mid-training leaves the trainer
// training and spooling, and the server started again on the same DATA_DIR takes the job back,
// which completes with every generated prediction stored and diagnostics healthy. With the
// trainer killed too, the restarted server uploads the spool the trainer left and ends the job,
// saying why. (docs/decisions/0006-local-trainers-outlive-the-server.md)
//
// Always on PGlite: this is about the embedded default, whose database lives in the server's
// own process and dies with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import { createApiClient, type ApiClient } from '../client/api/client';
import { openDatabase } from '../db/client';
import { jobConfig, type JobConfigInput } from '#contract/job-config';
import type { JobStatusName } from '#contract/statuses';
import { EXAMPLE_DATASET_NAME } from './datasets/datasets.service';
import { PROJECT_ROOT } from './paths';
import { ensureSpaBuilt } from './spa';
import { expectedKeysFor, predictionKey, storedPredictionKeys } from './test-support/prediction-keys';
import { until } from './test-support/wait';
import { freePort, isAlive } from './test-support/processes';

const SECRETS = { SESSION_SECRET: 'survives-session-'.padEnd(40, 's'), JOB_TOKEN_SECRET: 'survives-job-token-'.padEnd(40, 'j') };
const ENDED: JobStatusName[] = ['completed', 'failed', 'cancelled'];

// About 6 300 steps (150 epochs of the example dataset's 42) with 10 predictions every 50 steps:
// 20–40 s of training on this machine, long enough to kill the server in the middle of it.
const TRAINING: Pick<JobConfigInput, 'training' | 'predictions'> = {
  training: { epochs: 150, evalStrategy: 'no' },
  predictions: { sampleFrequency: 'steps', stepInterval: 50, sampleCount: 10 },
};

interface ServerProcess {
  url: string;
  child: ChildProcess;
  output(): string;
}

const processes = new Set<ChildProcess>();
const trainers = new Set<number>();
const dirs: string[] = [];

beforeAll(async () => {
  // Every start builds the SPA when it is stale; once here, not inside a timed restart.
  await ensureSpaBuilt(() => undefined);
}, 300_000);

afterEach(() => {
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const pid of trainers) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  trainers.clear();
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** `npm start` as a person runs it, in one process (tsx as a loader, so kill -9 hits the server itself). */
async function startServerProcess(dataDir: string, port: number): Promise<ServerProcess> {
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('server', 'main.ts')], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), ...SECRETS, DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  processes.add(child);
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`the server exited while starting:\n${output}`);
      return fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
    },
    Boolean,
    'the server to answer /health',
    120_000,
  );
  return { url, child, output: () => output };
}

async function kill9(server: ServerProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => server.child.once('exit', () => resolve()));
  server.child.kill('SIGKILL');
  await exited;
}

async function signUp(url: string): Promise<{ api: ApiClient; token: string; datasetId: string; rowCount: number }> {
  const anonymous = createApiClient({ url, EventSource });
  const { token } = await anonymous.auth.register.mutate({ email: `survivor-${Date.now()}@example.com`, password: 'correct horse battery staple' });
  const api = createApiClient({ url, EventSource, token });
  const example = (await api.datasets.list.query()).find((dataset) => dataset.name === EXAMPLE_DATASET_NAME);
  if (!example) throw new Error('a new account has no example dataset');
  return { api, token, datasetId: example.id, rowCount: example.rowCount };
}

/** The prediction keys in a spool file: the trainer's write-ahead records, or bare rows of an older spool. */
function spooledKeys(file: string): string[] {
  const keys = new Set<string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a line cut short by the kill was never sent
    }
    const row = (record.prediction ?? (typeof record.sampleIndex === 'number' ? record : null)) as { epoch: number; step: number; sampleIndex: number; trigger: 'eval' | 'epoch' | 'steps' } | null;
    if (row) keys.add(predictionKey(row));
  }
  return [...keys].sort();
}

/** Stops the server for good and reads what it stored, from its embedded database. */
async function storedKeysAfterStop(server: ServerProcess, dataDir: string, jobId: string): Promise<string[]> {
  const exited = new Promise<void>((resolve) => server.child.once('exit', () => resolve()));
  server.child.kill('SIGTERM');
  await exited;
  const database = await openDatabase({ kind: 'pglite', dataDir: path.join(dataDir, 'pglite') });
  try {
    return await storedPredictionKeys(database.db, jobId);
  } finally {
    await database.close();
  }
}

describe('a local job when its server is killed with kill -9', () => {
  it('keeps training while the server is down, and the restarted server takes it back: completed, every prediction stored, diagnostics healthy', { timeout: 300_000 }, async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'local-survives-'));
    dirs.push(dataDir);
    const port = await freePort();
    let server = await startServerProcess(dataDir, port);
    const { api, datasetId, rowCount, token } = await signUp(server.url);
    const input = { datasetId, launcher: 'local' as const, ...TRAINING };
    const { job } = await api.jobs.deploy.mutate({ name: 'survives kill -9', config: input });

    // Mid-training: predictions are arriving and most of the run is still ahead.
    const running = await until(
      () => api.jobs.get.query({ jobId: job.id }),
      (j) => j.predictionCount > 0 || ENDED.includes(j.status),
      'the first predictions to be stored',
      120_000,
    );
    expect(running.status).toBe('running');
    const stepAtKill = running.progress.step ?? 0;
    expect(stepAtKill).toBeLessThan((running.progress.totalSteps ?? 0) / 2);
    const logFile = path.join(dataDir, 'local-jobs', `${job.id}.log`);
    const trainerPid = await until(() => trainerPidOf(dataDir, job.id), (pid) => pid !== null, 'the trainer pid');
    if (trainerPid === null) throw new Error('no trainer pid');
    trainers.add(trainerPid);

    await kill9(server);
    // The trainer goes on without the server: its output still grows (it trains and spools).
    const sizeAfterKill = readFileSync(logFile).length;
    await until(() => readFileSync(logFile).length, (size) => size > sizeAfterKill, 'the trainer to keep writing while the server is down', 20_000);
    expect(isAlive(trainerPid)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 15_000)); // the outage itself, as the issue asks: 15 s dark

    server = await startServerProcess(dataDir, port);
    const after = createApiClient({ url: server.url, EventSource, token });
    const ended = await until(() => after.jobs.get.query({ jobId: job.id }), (j) => ENDED.includes(j.status), 'the job to end', 200_000);
    expect(ended.status, `${ended.error ?? ''}\n${server.output()}`).toBe('completed');
    console.info(`[local-survives] killed at step ${stepAtKill}/${running.progress.totalSteps} with ${running.predictionCount} stored; ended with ${ended.predictionCount}`);
    const expected = expectedKeysFor(jobConfig.parse(input), rowCount);
    expect(ended.podReport?.counters).toMatchObject({ generated: expected.length, persisted: expected.length, rejected: 0 });
    const diagnostics = await after.diagnostics.job.query({ jobId: job.id });
    expect(diagnostics.status, JSON.stringify(diagnostics.checks.filter((c) => c.status !== 'pass'))).toBe('healthy');

    expect(await storedKeysAfterStop(server, dataDir, job.id)).toEqual(expected);
  });

  it('with its trainer killed too, the restarted server uploads the spool the trainer left and ends the job, saying why', { timeout: 300_000 }, async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'local-survives-'));
    dirs.push(dataDir);
    const port = await freePort();
    let server = await startServerProcess(dataDir, port);
    const { api, datasetId, token } = await signUp(server.url);
    const { job } = await api.jobs.deploy.mutate({ name: 'both killed', config: { datasetId, launcher: 'local', ...TRAINING } });
    const beforeKill = await until(() => api.jobs.get.query({ jobId: job.id }), (j) => j.predictionCount > 0 || ENDED.includes(j.status), 'the first predictions', 120_000);
    expect(beforeKill.status).toBe('running');
    const trainerPid = await until(() => trainerPidOf(dataDir, job.id), (pid) => pid !== null, 'the trainer pid');
    if (trainerPid === null) throw new Error('no trainer pid');
    trainers.add(trainerPid);

    await kill9(server);
    // Rows generated while the server is away go to the spool; then the trainer dies too.
    const spool = path.join(dataDir, 'spool', `${job.id}.jsonl`);
    await until(() => (existsSync(spool) ? spooledKeys(spool).length : 0), (n) => n > 0, 'rows in the spool', 30_000);
    await new Promise((resolve) => setTimeout(resolve, 3_000)); // a few more trigger fires while nobody listens
    process.kill(-trainerPid, 'SIGKILL');
    await until(() => isAlive(trainerPid), (alive) => !alive, 'the trainer to be gone');
    const spooled = spooledKeys(spool);
    // More than the server had stored when it was killed: the upload below has work to do.
    expect(spooled.length).toBeGreaterThan(beforeKill.predictionCount);
    console.info(`[local-survives] stored before the kill: ${beforeKill.predictionCount}; in the spool after both kills: ${spooled.length}`);

    server = await startServerProcess(dataDir, port);
    const after = createApiClient({ url: server.url, EventSource, token });
    const ended = await until(() => after.jobs.get.query({ jobId: job.id }), (j) => ENDED.includes(j.status), 'the job to end', 120_000);
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatch(/^The trainer process ended while the server was down/);
    expect(ended.error).toMatch(/The server uploaded the spool the trainer left: SYNC SUMMARY rows=\d+ stored=\d+/);
    const logs = (await after.jobs.logs.query({ jobId: job.id, limit: 1000 })).lines.map((l) => l.message);
    expect(logs).toContainEqual(expect.stringMatching(/The trainer left rows in its spool .*; this server is uploading them\./));

    const stored = await storedKeysAfterStop(server, dataDir, job.id);
    // Every row the trainer had generated (all of them went through its spool) is stored, once.
    expect(stored.filter((key) => !spooled.includes(key))).toEqual([]);
    expect(spooled.filter((key) => !stored.includes(key))).toEqual([]);
  });
});

/** The trainer's pid: the process whose stdout is the job's log file (the launcher points it there). */
function trainerPidOf(dataDir: string, jobId: string): number | null {
  const logFile = path.join(dataDir, 'local-jobs', `${jobId}.log`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/fd/1`) === logFile) return Number(entry);
    } catch {
      // A process that ended meanwhile, or one this user may not look into.
    }
  }
  return null;
}
