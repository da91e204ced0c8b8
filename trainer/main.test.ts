// The pod program end to end: `trainer/main.ts` as a child process with only the pod's
// variables, against a real server (startTestServer), for each trigger, through a server
// outage (a TCP proxy that goes dark mid-run), and in local mode followed by `sync`; and the
// pod-durability faults: kill -9 while the server hangs, a revoked token, a small body limit
// (413), a token with a trailing newline, a console whose reader died, and no credential in
// anything the trainer printed or logged.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobConfig, type JobConfig } from '#contract/job-config';
import { uploadDataset } from '../server/datasets/datasets.service';
import { createManualJob, createUser } from '../server/test-support/factories';
import { startTestServer, useTestServer, type TestServer } from '../server/test-support/server';
import { expectedKeysFor, storedPredictionKeys } from '../server/test-support/prediction-keys';
import { until } from '../server/test-support/wait';

const ROOT = path.resolve(import.meta.dirname, '..');
const EXAMPLE = path.join(ROOT, 'server', 'datasets', 'example.jsonl');
const EXAMPLE_ROWS = readFileSync(EXAMPLE, 'utf8').split('\n').filter((l) => l.trim()).length;

let server: TestServer;
useTestServer((s) => (server = s));

let spoolDir: string;
beforeEach(() => {
  spoolDir = mkdtempSync(path.join(tmpdir(), 'trainer-spool-'));
});
afterEach(() => rmSync(spoolDir, { recursive: true, force: true }));

interface RunResult {
  code: number | null;
  output: string;
}

/** Runs the trainer with exactly these variables (plus PATH), to its exit. */
function runTrainer(env: Record<string, string>, args: string[] = [], timeoutMs = 60_000): Promise<RunResult> {
  return spawnTrainer(env, args, timeoutMs).done;
}

function spawnTrainer(env: Record<string, string>, args: string[] = [], timeoutMs = 60_000) {
  let child!: ReturnType<typeof spawn>;
  const done = new Promise<RunResult>((resolve, reject) => {
    child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'trainer', 'main.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TRAINER_HEARTBEAT_MS: '500', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the trainer did not exit within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
  return { child, done };
}

async function exampleJob(config: { training?: Partial<JobConfig['training']>; predictions?: Partial<JobConfig['predictions']> }, on: TestServer = server) {
  const user = await createUser(on.deps);
  const dataset = await uploadDataset(on.deps, user.id, { name: 'example', jsonl: readFileSync(EXAMPLE, 'utf8') });
  const job = await createManualJob(on.deps, user.id, { datasetId: dataset.id, config });
  return { user, ...job, config: jobConfig.parse({ datasetId: dataset.id, launcher: 'manual', ...config }) };
}

const storedKeys = (jobId: string, on: TestServer = server) => storedPredictionKeys(on.database.db, jobId);
const expectedKeys = (config: JobConfig) => expectedKeysFor(config, EXAMPLE_ROWS);

function meanBy<T>(items: T[], key: (item: T) => number, value: (item: T) => number): Map<number, number> {
  const sums = new Map<number, { sum: number; n: number }>();
  for (const item of items) {
    const k = key(item);
    const entry = sums.get(k) ?? { sum: 0, n: 0 };
    entry.sum += value(item);
    entry.n++;
    sums.set(k, entry);
  }
  return new Map([...sums.entries()].sort((a, b) => a[0] - b[0]).map(([k, { sum, n }]) => [k, sum / n]));
}

describe('trainer/main.ts against the real server', () => {
  const triggers = [
    { name: 'eval after each epoch evaluation', config: { training: { epochs: 2, evalStrategy: 'epoch' as const }, predictions: { sampleFrequency: 'eval' as const } } },
    { name: 'eval every evalSteps steps', config: { training: { epochs: 2, evalStrategy: 'steps' as const, evalSteps: 10 }, predictions: { sampleFrequency: 'eval' as const } } },
    { name: 'epoch end', config: { training: { epochs: 2, evalStrategy: 'no' as const }, predictions: { sampleFrequency: 'epoch' as const } } },
    { name: 'steps every stepInterval', config: { training: { epochs: 2 }, predictions: { sampleFrequency: 'steps' as const, stepInterval: 15 } } },
  ];

  it.each(triggers)('trigger: $name — stores exactly the expected predictions, metrics and a completed job', async ({ config }) => {
    const job = await exampleJob(config);
    const run = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    expect(run.code, run.output).toBe(0);

    const expected = expectedKeys(job.config);
    expect(expected.length).toBeGreaterThan(0);
    expect(await storedKeys(job.jobId)).toEqual(expected);

    const api = server.client(job.user.token);
    const detail = await api.jobs.get.query({ jobId: job.jobId });
    expect(detail.status).toBe('completed');
    expect(detail.podReport).toMatchObject({
      mode: 'cloud',
      env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true },
      counters: { generated: expected.length, persisted: expected.length, spooled: 0, rejected: 0 },
      triggerFires: expected.length / 5,
    });

    const { points } = await api.jobs.metrics.query({ jobId: job.jobId });
    const trainLoss = points.filter((p) => p.name === 'train/loss');
    // jobs.metrics names a non-finite value ('NaN'…); this run's losses are all numbers.
    expect(trainLoss.filter((p) => typeof p.value !== 'number')).toEqual([]);
    const perEpoch = [...meanBy(trainLoss, (p) => Math.max(1, Math.ceil(p.epoch)), (p) => Number(p.value)).values()];
    expect(perEpoch).toHaveLength(2);
    expect(perEpoch[1]).toBeLessThan(perEpoch[0] ?? 0);
    if (job.config.training.evalStrategy !== 'no') {
      expect(points.some((p) => p.name === 'eval/loss')).toBe(true);
      expect(points.some((p) => p.name === 'eval/f1')).toBe(true);
    }
    const logs = await api.jobs.logs.query({ jobId: job.jobId });
    expect(logs.lines.some((l) => l.message.startsWith('SUMMARY status=completed mode=cloud missing=none'))).toBe(true);
    expect(run.output).toMatch(new RegExp(`SUMMARY status=completed mode=cloud missing=none generated=${expected.length} persisted=${expected.length} spooled=0 rejected=0 replaced=0 altered=0 metricsRefused=0 `));
  });

  it('survives the server going away for ten seconds mid-run: every prediction is stored exactly once', async () => {
    const job = await exampleJob({ training: { epochs: 14, evalStrategy: 'no' }, predictions: { sampleFrequency: 'steps', stepInterval: 7 } });
    const proxy = await startProxy(new URL(server.url).port);
    try {
      const running = runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: proxy.url, TRAINER_SPOOL_DIR: spoolDir }, [], 150_000);
      // Go dark once predictions are flowing, for long enough that the writer gives up and spools.
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions');
      await proxy.cut();
      const storedAtCut = (await storedKeys(job.jobId)).length;
      await new Promise((r) => setTimeout(r, 10_000)); // ten seconds dark, as if the server were down
      expect((await storedKeys(job.jobId)).length).toBe(storedAtCut); // nothing got through the outage
      await proxy.restore();
      const run = await running;
      expect(run.code, run.output).toBe(0);

      const expected = expectedKeys(job.config);
      const stored = await storedKeys(job.jobId);
      expect(stored).toHaveLength(expected.length);
      expect(new Set(stored).size).toBe(expected.length);
      expect(stored).toEqual(expected);
      expect(run.output).toMatch(/unreachable after \d+ attempts/);
      expect(run.output).toMatch(/reachable again; uploading \d+ spooled/);
      const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
      expect(detail.status).toBe('completed');
      expect(detail.podReport?.counters).toEqual({ generated: expected.length, persisted: expected.length, spooled: 0, rejected: 0 });
      expect(existsSync(path.join(spoolDir, `${job.jobId}.jsonl`))).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 180_000);

  it('without API_URL: names it, spools everything, and `sync` uploads it (a second sync stores nothing new)', async () => {
    const job = await exampleJob({ training: { epochs: 2 }, predictions: { sampleFrequency: 'epoch' } });
    const configFile = path.join(spoolDir, 'config.json');
    writeFileSync(configFile, JSON.stringify(job.config));

    const refused = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, TRAINER_SPOOL_DIR: spoolDir });
    expect(refused.code).toBe(1);
    expect(refused.output).toMatch(/LOCAL MODE: API_URL is not set/);
    expect(refused.output).toMatch(/--config FILE --dataset FILE/);

    const run = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, TRAINER_SPOOL_DIR: spoolDir }, ['--config', configFile, '--dataset', EXAMPLE]);
    const expected = expectedKeys(job.config);
    expect(run.code, run.output).toBe(2);
    expect(run.output).toMatch(/LOCAL MODE: API_URL is not set/);
    expect(run.output).toMatch(new RegExp(`SUMMARY status=completed mode=local missing=API_URL generated=${expected.length} persisted=0 spooled=${expected.length} rejected=0`));
    expect(run.output).not.toContain(job.token);
    const spoolFile = path.join(spoolDir, `${job.jobId}.jsonl`);
    expect(run.output).toContain(`API_URL=<the server URL> npm run trainer -- sync --spool ${spoolFile} --finish`);
    expect(await storedKeys(job.jobId)).toEqual([]);

    const syncEnv = { JOB_TOKEN: job.token, API_URL: server.url };
    const first = await runTrainer(syncEnv, ['sync', '--spool', spoolFile]);
    expect(first.code, first.output).toBe(0);
    expect(first.output).toContain(`SYNC SUMMARY rows=${expected.length} stored=${expected.length} (new=${expected.length} already-stored=0 replaced=0) altered=0 rejected=0 not-sent=0`);
    expect(await storedKeys(job.jobId)).toEqual(expected);

    const second = await runTrainer(syncEnv, ['sync', '--spool', spoolFile, '--finish']);
    expect(second.code, second.output).toBe(0);
    expect(second.output).toContain(`(new=0 already-stored=${expected.length} replaced=0)`);
    expect(await storedKeys(job.jobId)).toEqual(expected);
    const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
    expect(detail.status).toBe('completed');
  }, 60_000);

  it('without JOB_ID but with the token and URL: still stores everything, and the job page names JOB_ID', async () => {
    const job = await exampleJob({ training: { epochs: 1 }, predictions: { sampleFrequency: 'epoch' } });
    const run = await runTrainer({ JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    expect(run.code, run.output).toBe(0);
    expect(run.output).toMatch(/LOCAL MODE: JOB_ID is not set/);
    expect(await storedKeys(job.jobId)).toEqual(expectedKeys(job.config));
    const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
    expect(detail.podReport).toMatchObject({ mode: 'local', env: { JOB_ID: false, JOB_TOKEN: true, API_URL: true } });
  });

  it('on SIGTERM stops training, stores what it generated, and reports the job failed with the reason', async () => {
    const job = await exampleJob({ training: { epochs: 30, evalStrategy: 'no' }, predictions: { sampleFrequency: 'steps', stepInterval: 5 } });
    const { child, done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions');
    child.kill('SIGTERM');
    const run = await done;
    expect(run.code, run.output).toBe(143);
    const summary = /SUMMARY status=failed mode=cloud missing=none generated=(\d+) persisted=(\d+) spooled=0 rejected=0/.exec(run.output);
    expect(summary, run.output).not.toBeNull();
    expect(summary?.[1]).toBe(summary?.[2]);
    expect((await storedKeys(job.jobId)).length).toBe(Number(summary?.[1]));
    const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
    expect(detail.status).toBe('failed');
    expect(detail.error).toMatch(/stopped by SIGTERM at step \d+\/1260/);
  });

  it('stops training when the job is cancelled on the server, and exits 3 saying why', async () => {
    const job = await exampleJob({ training: { epochs: 30, evalStrategy: 'no' }, predictions: { sampleFrequency: 'epoch' } });
    const { done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir, TRAINER_HEARTBEAT_MS: '200' });
    await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions');
    await server.client(job.user.token).jobs.cancel.mutate({ jobId: job.jobId });
    const run = await done;
    expect(run.code, run.output).toBe(3);
    expect(run.output).toMatch(/Stopping: the job has ended on the server/);
    const step = /SUMMARY status=failed .* step=(\d+)\/(\d+)/.exec(run.output);
    expect(step, run.output).not.toBeNull();
    expect(Number(step?.[1])).toBeLessThan(Number(step?.[2])); // it did not train on to the end
    // The old token cannot sync to an ended job: any hint to sync must name the upload token it needs.
    if (/sync --spool/.test(run.output)) expect(run.output).toMatch(/upload token|new token/);
    expect((await server.client(job.user.token).jobs.get.query({ jobId: job.jobId })).status).toBe('cancelled');
  });

  it('stops when the process named by TRAINER_PARENT_PID dies', async () => {
    const job = await exampleJob({ training: { epochs: 30, evalStrategy: 'no' }, predictions: { sampleFrequency: 'epoch' } });
    const parent = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    const { done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir, TRAINER_PARENT_PID: String(parent.pid) });
    await until(() => server.client(job.user.token).jobs.get.query({ jobId: job.jobId }), (detail) => detail.podReport?.status === 'running', 'the pod to report running');
    parent.kill('SIGKILL');
    const run = await done;
    expect(run.code, run.output).toBe(1);
    expect(run.output).toMatch(/the server that launched this trainer \(pid \d+\) is gone/);
  });

  it('refuses a JOB_ID that is not the job its token was issued for', async () => {
    const job = await exampleJob({ training: { epochs: 1 } });
    const run = await runTrainer({ JOB_ID: '00000000-0000-4000-8000-000000000000', JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    expect(run.code).toBe(1);
    expect(run.output).toMatch(/JOB_ID does not match the job this JOB_TOKEN was issued for/);
  });
});

describe('nothing generated is lost, every answer handled, no credential printed', () => {
  const FIRED = /Trigger "\w+" fired at step (\d+) /g;
  const firedSteps = (output: string) => new Set([...output.matchAll(FIRED)].map((m) => Number(m[1])));
  const keyStep = (key: string) => Number(key.split('/')[1]);
  const spoolOf = (jobId: string) => path.join(spoolDir, `${jobId}.jsonl`);

  /** No token, nor any 20-character piece of one, in `text`. */
  function expectNoCredential(text: string, tokens: readonly string[]) {
    for (const token of tokens) {
      expect(text.includes(token), 'the whole token was printed').toBe(false);
      for (let i = 0; i + 20 <= token.length; i++) {
        const piece = token.slice(i, i + 20);
        if (text.includes(piece)) throw new Error(`a 20-character piece of a token (at offset ${i}) was printed or logged`);
      }
    }
  }

  async function podLog(on: TestServer, userToken: string, jobId: string): Promise<string> {
    const logs = await on.client(userToken).jobs.logs.query({ jobId });
    return logs.lines.map((l) => l.message).join('\n');
  }

  it('kill -9 while the server hangs loses nothing: sync stores every generated row exactly once, and a second run resumes from the spool', async () => {
    const job = await exampleJob({ training: { epochs: 30, evalStrategy: 'no' }, predictions: { sampleFrequency: 'steps', stepInterval: 5 } });
    const proxy = await startProxy(new URL(server.url).port);
    try {
      const { child, done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: proxy.url, TRAINER_SPOOL_DIR: spoolDir }, [], 120_000);
      let output = '';
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions');
      proxy.hang();
      const firedAtHang = firedSteps(output).size;
      // Rows generated while every request hangs: the old writer held them in memory for ~75 s.
      await until(() => firedSteps(output).size, (n) => n >= firedAtHang + 5, 'five more trigger fires while the server hangs');
      child.kill('SIGKILL');
      const killed = await done;
      expect(killed.code, killed.output).toBeNull();

      const steps = firedSteps(killed.output);
      const expected = expectedKeys(job.config);
      const generated = expected.filter((key) => steps.has(keyStep(key)));
      const storedAtKill = await storedKeys(job.jobId);
      expect(storedAtKill.length, 'rows were generated but not acknowledged when the pod died').toBeLessThan(generated.length);

      const sync = await runTrainer({ JOB_TOKEN: job.token, API_URL: server.url }, ['sync', '--spool', spoolOf(job.jobId)]);
      expect(sync.code, sync.output).toBe(0);
      const stored = await storedKeys(job.jobId);
      expect(stored.filter((key) => !expected.includes(key))).toEqual([]);
      expect(generated.filter((key) => !stored.includes(key)), 'generated rows missing after sync').toEqual([]);
      // At most the fire being written at the kill (on disk, not yet logged) comes on top.
      const perFire = expected.length / new Set(expected.map(keyStep)).size;
      expect(stored.length - generated.length).toBeLessThanOrEqual(perFire);
      const summary = /SYNC SUMMARY rows=(\d+) stored=(\d+) \(new=(\d+) already-stored=(\d+) replaced=0\) altered=0 rejected=0 not-sent=0/.exec(sync.output);
      expect(summary, sync.output).not.toBeNull();
      expect(Number(summary?.[3])).toBe(stored.length - storedAtKill.length);

      // The same job again (same spool directory): it uploads what the killed run left first,
      // each row once (already stored ones come back as duplicates), then trains to the end.
      const rerun = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir }, [], 120_000);
      expect(rerun.code, rerun.output).toBe(0);
      expect(rerun.output).toMatch(/recoveredFromSpool=\d+/);
      expect(await storedKeys(job.jobId)).toEqual(expected);
      expect(existsSync(spoolOf(job.jobId))).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 240_000);

  it('revoked mid-run behind a 16 KiB body limit: rows stay in the spool, one line says how to rotate and sync; after jobs.rotateToken, sync splits on 413 and stores each row once; no token printed or logged', async () => {
    const small = await startTestServer({ MAX_BODY_BYTES: String(16 * 1024) });
    try {
      const job = await exampleJob({ training: { epochs: 30, evalStrategy: 'no' }, predictions: { sampleFrequency: 'steps', stepInterval: 3 } }, small);
      const user = small.client(job.user.token);
      const { done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: small.url, TRAINER_SPOOL_DIR: spoolDir }, [], 120_000);
      await until(() => storedKeys(job.jobId, small), (keys) => keys.length > 0, 'the first stored predictions');
      const rotated = await user.jobs.rotateToken.mutate({ jobId: job.jobId });
      const run = await done;
      expect(run.code, run.output).toBe(2);
      const refusals = run.output.split('\n').filter((line) => /refused the job token \(HTTP 401, token_revoked/.test(line));
      expect(refusals, run.output).toHaveLength(1);
      expect(refusals[0]).toMatch(/rotate the token on the job page \(or jobs\.rotateToken\) and run: JOB_TOKEN=<the new token> API_URL=http:\/\/127\.0\.0\.1:\d+ npm run trainer -- sync --spool /);
      const summary = /SUMMARY status=completed mode=cloud missing=none generated=(\d+) persisted=(\d+) spooled=(\d+) rejected=0/.exec(run.output);
      expect(summary, run.output).not.toBeNull();
      const [generated, persisted, spooled] = (summary ?? []).slice(1).map(Number);
      expect(spooled).toBeGreaterThan(0);
      expect(generated).toBe((persisted ?? 0) + (spooled ?? 0));
      const expected = expectedKeys(job.config);
      expect(generated).toBe(expected.length);

      // The spool is one batch far over 16 KiB: the sync must split it, not drop it.
      const sync = await runTrainer({ JOB_TOKEN: `${rotated.env.JOB_TOKEN}\n`, API_URL: small.url }, ['sync', '--spool', spoolOf(job.jobId), '--finish', '--verbose']);
      expect(sync.code, sync.output).toBe(0);
      expect(sync.output).toMatch(/too large \(HTTP 413\); sending it in halves/);
      expect(sync.output).toContain(`SYNC SUMMARY rows=${spooled} stored=${spooled} (new=${spooled} already-stored=0 replaced=0) altered=0 rejected=0 not-sent=0`);
      expect(await storedKeys(job.jobId, small)).toEqual(expected);
      expect((await user.jobs.get.query({ jobId: job.jobId })).status).toBe('completed');

      const tokens = [job.token, rotated.env.JOB_TOKEN];
      expectNoCredential(run.output, tokens);
      expectNoCredential(sync.output, tokens);
      expectNoCredential(await podLog(small, job.user.token, job.jobId), tokens);
    } finally {
      await small.close();
    }
  }, 240_000);

  it('no credential in anything printed or logged with a token the server refuses (401) or a server that is down', async () => {
    const job = await exampleJob({ training: { epochs: 1 }, predictions: { sampleFrequency: 'epoch' } });
    const [head, payload, signature] = job.token.split('.');
    // A well-formed token with another signature: the server answers 401.
    const forged = `${head}.${payload}.${signature?.slice(0, -6)}AAAAAA`;
    const refused = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: forged, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    expect(refused.code, refused.output).toBe(1);
    expect(refused.output).toMatch(/refused the job token/);

    const local = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, TRAINER_SPOOL_DIR: spoolDir }, ['--config', writeConfig(job.config), '--dataset', EXAMPLE]);
    expect(local.code, local.output).toBe(2);
    const down = await closedPort();
    const unreachable = await runTrainer({ JOB_TOKEN: job.token, API_URL: `http://127.0.0.1:${down}` }, ['sync', '--spool', spoolOf(job.jobId), '--drain-timeout', '1']);
    expect(unreachable.code, unreachable.output).toBe(2);
    expect(unreachable.output).toMatch(/could not be reached in time/);

    const tokens = [job.token, forged];
    for (const output of [refused.output, local.output, unreachable.output]) expectNoCredential(output, tokens);
    expectNoCredential(await podLog(server, job.user.token, job.jobId), tokens);
  }, 120_000);

  it('a malformed JOB_TOKEN is a configuration error naming JOB_TOKEN (never its value), and the run goes to local mode with a spool', async () => {
    const job = await exampleJob({ training: { epochs: 1 }, predictions: { sampleFrequency: 'epoch' } });
    const broken = job.token.replaceAll('.', '');
    const run = await runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: broken, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir }, ['--config', writeConfig(job.config), '--dataset', EXAMPLE]);
    expect(run.code, run.output).toBe(2);
    expect(run.output).toMatch(/ERROR JOB_TOKEN is set but is not a job token/);
    expect(run.output).toMatch(/LOCAL MODE: JOB_TOKEN is set but unusable/);
    expect(run.output).toMatch(/SUMMARY status=completed mode=local missing=JOB_TOKEN generated=(\d+) persisted=0 spooled=\1 rejected=0/);
    expectNoCredential(run.output, [broken, job.token]);
    expect(await storedKeys(job.jobId)).toEqual([]);
  });

  it('a JOB_TOKEN read from a file, trailing newline and all, works', async () => {
    const job = await exampleJob({ training: { epochs: 1 }, predictions: { sampleFrequency: 'epoch' } });
    const run = await runTrainer({ JOB_ID: `${job.jobId}\n`, JOB_TOKEN: `${job.token}\n`, API_URL: `${server.url}\n`, TRAINER_SPOOL_DIR: spoolDir });
    expect(run.code, run.output).toBe(0);
    expect(await storedKeys(job.jobId)).toEqual(expectedKeys(job.config));
  });

  it('keeps training and storing when the reader of its stdout and stderr dies (EPIPE)', async () => {
    const job = await exampleJob({ training: { epochs: 10, evalStrategy: 'no' }, predictions: { sampleFrequency: 'steps', stepInterval: 5 } });
    const { child, done } = spawnTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url, TRAINER_SPOOL_DIR: spoolDir });
    await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions');
    child.stdout?.destroy();
    child.stderr?.destroy();
    const run = await done;
    expect(run.code, run.output).toBe(0);
    expect(await storedKeys(job.jobId)).toEqual(expectedKeys(job.config));
    const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
    expect(detail.status).toBe('completed');
  });
});

function writeConfig(config: JobConfig): string {
  const file = path.join(spoolDir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** A loopback port with nothing listening (bound, then closed). */
async function closedPort(): Promise<number> {
  const probe = createTcpServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * A TCP proxy that can go dark (refuse and drop every connection) and come back on the same
 * port, or hang (accept connections and never answer, as a stuck server or load balancer does).
 */
async function startProxy(targetPort: string) {
  const sockets = new Set<Socket>();
  let listener: TcpServer | null = null;
  let port = 0;
  let hanging = false;
  const listen = async () => {
    listener = createTcpServer((client) => {
      if (hanging) {
        sockets.add(client);
        client.once('close', () => sockets.delete(client));
        client.on('error', () => undefined);
        client.resume(); // read and ignore: the request is taken, no answer ever comes
        return;
      }
      const upstream = connect(Number(targetPort), '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => listener?.listen(port, '127.0.0.1', resolve));
    port = (listener.address() as AddressInfo).port;
  };
  const cut = async () => {
    const closing = listener;
    listener = null;
    for (const s of sockets) s.destroy();
    if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
  };
  const hang = () => {
    hanging = true;
    // Open keep-alive connections go silent too: drop them so the next request meets the hang.
    for (const s of sockets) s.destroy();
  };
  await listen();
  return { url: `http://127.0.0.1:${port}`, cut, restore: listen, close: cut, hang };
}
