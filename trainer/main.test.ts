// The pod program end to end: `trainer/main.ts` as a child process with only the pod's
// variables, against a real server (startTestServer), for each trigger, through a server
// outage (a TCP proxy that goes dark mid-run), and in local mode followed by `sync`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobConfig, type JobConfig } from '../server/contract/job-config';
import { uploadDataset } from '../server/datasets/datasets.service';
import { createManualJob, createUser } from '../server/test-support/factories';
import { useTestServer, type TestServer } from '../server/test-support/server';
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

async function exampleJob(config: { training?: Partial<JobConfig['training']>; predictions?: Partial<JobConfig['predictions']> }) {
  const user = await createUser(server.deps);
  const dataset = await uploadDataset(server.deps, user.id, { name: 'example', jsonl: readFileSync(EXAMPLE, 'utf8') });
  const job = await createManualJob(server.deps, user.id, { datasetId: dataset.id, config });
  return { user, ...job, config: jobConfig.parse({ datasetId: dataset.id, launcher: 'manual', ...config }) };
}

const storedKeys = (jobId: string) => storedPredictionKeys(server.database.db, jobId);
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
      const running = runTrainer({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: proxy.url, TRAINER_SPOOL_DIR: spoolDir });
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
  }, 60_000);

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
    expect(run.output).not.toMatch(/upload them with|sync --spool/i); // a sync to an ended job would be refused
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

/** A TCP proxy that can go dark (refuse and drop every connection) and come back on the same port. */
async function startProxy(targetPort: string) {
  const sockets = new Set<Socket>();
  let listener: TcpServer | null = null;
  let port = 0;
  const listen = async () => {
    listener = createTcpServer((client) => {
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
  await listen();
  return { url: `http://127.0.0.1:${port}`, cut, restore: listen, close: cut };
}
