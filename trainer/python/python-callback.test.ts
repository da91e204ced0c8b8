// The stdlib-only Python callback (trainer/python/predictions_callback.py), checked two ways:
// its own unittest suite (against a fake pod server), and the fake Hugging Face training loop
// writing to the REAL server over HTTP, asserting exactly which rows land in the database.
// Skipped, with the reason, on machines without python3.
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trainingJobs, trainingPredictions } from '../../db/schema';
import { FIELD_LIMITS, LOG_LINE_MAX, NON_FINITE_VALUES, POD_ENV_VARS, PREDICTION_BATCH_MAX } from '#contract/pod.schemas';
import { PREDICTION_TRIGGERS } from '#contract/triggers';
import { createManualJob, createUser } from '../../server/test-support/factories';
import { useTestServer, type TestServer } from '../../server/test-support/server';
import { until } from '../../server/test-support/wait';
import { PYTHON_DIR as HERE, PYTHON_MISSING, python, REPO, spawnPython, type PythonChild } from './python-runner';

type Key = [epoch: number, step: number, sampleIndex: number, trigger: string];
const sortKeys = (keys: Key[]) => [...keys].sort((a, b) => a[1] - b[1] || a[2] - b[2]);

/** Every (epoch, step, sampleIndex, trigger) a run is expected to produce, `count` samples per fire. */
function expected(fires: [epoch: number, step: number][], trigger: string, count = 3): Key[] {
  return sortKeys(fires.flatMap(([epoch, step]) => Array.from({ length: count }, (_, i): Key => [epoch, step, i, trigger])));
}

let server: TestServer;
useTestServer((started) => (server = started));

let workDir: string;
beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'python-callback-'));
});
afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function storedRows(jobId: string) {
  return server.database.db
    .select({
      epoch: trainingPredictions.epoch,
      step: trainingPredictions.step,
      sampleIndex: trainingPredictions.sampleIndex,
      trigger: trainingPredictions.trigger,
      prompt: trainingPredictions.prompt,
      groundTruth: trainingPredictions.groundTruth,
      prediction: trainingPredictions.prediction,
    })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, jobId));
}

async function storedKeys(jobId: string): Promise<Key[]> {
  return sortKeys((await storedRows(jobId)).map((r): Key => [r.epoch, r.step, r.sampleIndex, r.trigger]));
}

async function jobState(jobId: string) {
  const [job] = await server.database.db
    .select({ status: trainingJobs.status, podReport: trainingJobs.podReport })
    .from(trainingJobs)
    .where(eq(trainingJobs.id, jobId));
  return job;
}

describe('the Python callback', () => {
  it('passes its own unittest suite', async (ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const run = await python(['-m', 'unittest', '-v', path.join(HERE, 'test_predictions_callback.py')], {});
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^OK$/m);
  }, 180_000);

  it('mirrors the wire contract: the same limits, triggers, variables and non-finite value names', async (ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const script = [
      'import json, predictions_callback as pc',
      'print(json.dumps([pc.FIELD_LIMITS, pc.BATCH_MAX_ROWS, pc.LOG_LINE_MAX, list(pc.TRIGGERS), list(pc.ENV_VARS), list(pc.NON_FINITE_VALUES)]))',
    ].join('\n');
    const run = await python(['-c', script], {}, HERE);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual([FIELD_LIMITS, PREDICTION_BATCH_MAX, LOG_LINE_MAX, [...PREDICTION_TRIGGERS], [...POD_ENV_VARS], [...NON_FINITE_VALUES]]);
  });

  // 3 epochs of 4 steps (fractional state.epoch in between), 3 samples per fire.
  const triggers: { name: string; args: string[]; rows: Key[] }[] = [
    {
      // Evaluation every 3 steps, on two eval datasets: on_evaluate runs twice per step.
      name: 'eval, step-based evaluation with a dict of eval datasets',
      args: ['--sample-frequency', 'eval', '--eval-strategy', 'steps', '--eval-steps', '3', '--eval-datasets', '2'],
      rows: expected([[1, 3], [2, 6], [3, 9], [3, 12]], 'eval'),
    },
    {
      name: 'eval, per-epoch evaluation',
      args: ['--sample-frequency', 'eval', '--eval-strategy', 'epoch', '--eval-datasets', '1'],
      rows: expected([[1, 4], [2, 8], [3, 12]], 'eval'),
    },
    {
      name: 'epoch',
      args: ['--sample-frequency', 'epoch', '--eval-strategy', 'no'],
      rows: expected([[1, 4], [2, 8], [3, 12]], 'epoch'),
    },
    {
      name: 'steps every 5',
      args: ['--sample-frequency', 'steps', '--step-interval', '5', '--eval-strategy', 'no'],
      rows: expected([[2, 5], [3, 10]], 'steps'),
    },
  ];

  it.for(triggers)('stores exactly the expected rows in the real server: $name', { timeout: 120_000 }, async ({ args, rows }, ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);

    const run = await python(
      [path.join(HERE, 'fake_training.py'), '--epochs', '3', '--steps-per-epoch', '4', '--sample-count', '3', ...args],
      { JOB_ID: jobId, JOB_TOKEN: token, API_URL: server.url },
      workDir,
    );
    expect(run.code, run.stderr).toBe(0);

    expect(await storedKeys(jobId)).toEqual(rows);
    for (const row of await storedRows(jobId)) {
      expect(row.prediction).toBe(`prediction for ${row.prompt}`);
      expect(row.groundTruth).toBe(row.prompt.replace('question', 'answer'));
    }
    // The pod reported its accounting, then finished the job.
    const job = await jobState(jobId);
    expect(job?.status).toBe('completed');
    expect(job?.podReport).toMatchObject({
      mode: 'cloud',
      env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true },
      counters: { generated: rows.length, persisted: rows.length, spooled: 0, rejected: 0 },
      triggerFires: rows.length / 3,
    });
    expect(run.stderr).toContain(`generated=${rows.length} persisted=${rows.length} spooled=0 rejected=0`);
    expect(run.stderr).not.toContain(token);
  });

  it('spools everything in local mode (API_URL unset), then sync stores it all, and a second sync only finds duplicates', async (ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const spool = path.join(workDir, 'spool.jsonl');
    const args = ['--epochs', '3', '--steps-per-epoch', '4', '--sample-count', '3', '--sample-frequency', 'epoch', '--eval-strategy', 'no'];

    const local = await python([path.join(HERE, 'fake_training.py'), ...args, '--spool', spool], { JOB_ID: jobId, JOB_TOKEN: token }, REPO);
    expect(local.code, local.stderr).toBe(0);
    expect(local.stderr).toContain('LOCAL MODE: missing environment variable(s) API_URL');
    expect(local.stderr).toContain('sync --spool');
    expect(local.stderr).not.toContain(token);
    expect(await storedKeys(jobId)).toEqual([]);
    // One spool file in the TypeScript trainer's format: the 9 predictions and the 12 loss points.
    const records = (await readFile(spool, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.filter((record) => 'prediction' in record)).toHaveLength(9);
    expect(records.filter((record) => 'metric' in record)).toHaveLength(12);

    const again = path.join(workDir, 'again.jsonl');
    await copyFile(spool, again);
    const env = { JOB_TOKEN: token, API_URL: server.url };
    const sync = await python([path.join(HERE, 'predictions_callback.py'), 'sync', '--spool', spool], env);
    expect(sync.code, sync.stdout + sync.stderr).toBe(0);
    expect(sync.stdout).toContain('inserted=9 duplicates=0 replaced=0 altered=0 rejected=0 unsent=0');
    expect(await storedKeys(jobId)).toEqual(expected([[1, 4], [2, 8], [3, 12]], 'epoch'));

    const resync = await python([path.join(HERE, 'predictions_callback.py'), 'sync', '--spool', again, '--batch-size', '4'], env);
    expect(resync.code, resync.stdout + resync.stderr).toBe(0);
    expect(resync.stdout).toContain('inserted=0 duplicates=9 replaced=0 altered=0 rejected=0 unsent=0');
    expect(await storedKeys(jobId)).toHaveLength(9);
  }, 120_000);
});

/**
 * A loopback TCP proxy in front of the real server that can make it hang: while `hanging`, new
 * connections are accepted and read but never answered (what an overloaded server or a dead
 * backend behind a load balancer does). The real server itself is never touched.
 */
async function startHangingProxy(targetUrl: string): Promise<{ url: string; hanging: boolean; close(): Promise<void> }> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  const state = { hanging: false };
  const proxy: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (state.hanging) {
      client.resume(); // read and drop: the request arrives, the answer never comes
      return;
    }
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    get hanging() {
      return state.hanging;
    },
    set hanging(value: boolean) {
      state.hanging = value;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

/** The steps a fake training run has finished (its rows generated and on disk), from its `step N` lines. */
function finishedSteps(run: Pick<PythonChild, 'stdout'>): number[] {
  return [...run.stdout.matchAll(/^step (\d+)$/gm)].map((match) => Number(match[1]));
}

/** Every 20-character piece of each token: none may appear in anything printed or logged. */
function tokenPieces(...tokens: string[]): string[] {
  return tokens.flatMap((token) => Array.from({ length: token.length - 19 }, (_, i) => token.slice(i, i + 20)));
}

async function podLogText(userToken: string, jobId: string): Promise<string> {
  const { lines } = await server.client(userToken).jobs.logs.query({ jobId });
  return lines.map((line) => line.message).join('\n');
}

describe('the Python callback never loses a prediction', () => {
  const stepsRun = ['--sample-frequency', 'steps', '--step-interval', '1', '--eval-strategy', 'no', '--sample-count', '3', '--print-steps'];

  it.for([{ recovery: 'the next run of the job' }, { recovery: 'sync' }])(
    'kill -9 while the server hangs, then $recovery stores every generated row exactly once',
    { timeout: 180_000 },
    async ({ recovery }, ctx) => {
      ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
      const user = await createUser(server.deps);
      const { jobId, token } = await createManualJob(server.deps, user.id);
      const proxy = await startHangingProxy(server.url);
      try {
        const spool = path.join(workDir, 'spool.jsonl');
        const env = { JOB_ID: jobId, JOB_TOKEN: token, API_URL: proxy.url };
        const args = [path.join(HERE, 'fake_training.py'), '--epochs', '1', '--steps-per-epoch', '2000', '--step-seconds', '0.02', ...stepsRun];
        const pod = spawnPython([...args, '--spool', spool, '--http-timeout', '30'], env, workDir);

        await until(() => storedKeys(jobId), (keys) => keys.length >= 9, 'the first rows stored', 60_000);
        proxy.hanging = true;
        const hungAt = Math.max(...finishedSteps(pod));
        // Rows keep being generated while every request hangs: in flight, or queued behind it.
        await until(() => finishedSteps(pod), (steps) => Math.max(...steps) >= hungAt + 15, 'steps generated while the server hangs', 60_000);
        pod.child.kill('SIGKILL');
        const exit = await pod.exited;
        expect(exit.signal).toBe('SIGKILL');
        const generated = finishedSteps(pod);
        const lastPrinted = Math.max(...generated);
        proxy.hanging = false;

        const next =
          recovery === 'sync'
            ? await python([path.join(HERE, 'predictions_callback.py'), 'sync', '--spool', spool], { JOB_TOKEN: token, API_URL: server.url })
            : // The next run of the job with the same spool: its trigger never fires, it only uploads.
              await python([path.join(HERE, 'fake_training.py'), '--epochs', '1', '--steps-per-epoch', '1', '--sample-frequency', 'eval', '--eval-strategy', 'no', '--spool', spool], env, workDir);
        expect(next.code, next.stdout + next.stderr).toBe(0);

        const stored = await storedKeys(jobId);
        const storedSteps = new Set(stored.map((key) => key[1]));
        // Every step that finished before the kill has its three rows, stored once.
        for (const step of generated) expect(storedSteps.has(step), `step ${step}`).toBe(true);
        expect(stored).toEqual(expected([...storedSteps].map((step): [number, number] => [1, step]), 'steps'));
        // Nothing beyond what was generated: at most the step being finished when the kill came.
        expect(Math.max(...storedSteps)).toBeLessThanOrEqual(lastPrinted + 1);
        expect(next.stdout + next.stderr).not.toContain(token);
      } finally {
        await proxy.close();
      }
    },
  );

  it('a revoked token keeps every unsent row; after jobs.rotateToken, sync stores each row once', { timeout: 180_000 }, async (ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const spool = path.join(workDir, 'spool.jsonl');
    const args = [path.join(HERE, 'fake_training.py'), '--epochs', '1', '--steps-per-epoch', '60', '--step-seconds', '0.05', ...stepsRun, '--spool', spool];
    const pod = spawnPython(args, { JOB_ID: jobId, JOB_TOKEN: token, API_URL: server.url }, workDir);

    await until(() => storedKeys(jobId), (keys) => keys.length >= 9, 'the first rows stored', 60_000);
    const rotated = await server.client(user.token).jobs.rotateToken.mutate({ jobId }); // the pod's token is revoked now
    const exit = await pod.exited;
    expect(exit.code, pod.stderr).toBe(0);
    expect(finishedSteps(pod)).toHaveLength(60);
    const beforeSync = (await storedKeys(jobId)).length;
    expect(beforeSync).toBeLessThan(180);
    // One line says what happened and what to do.
    expect(pod.stderr.match(/rotate the token on the job page/g)).toHaveLength(1);
    expect(pod.stderr).toContain(`sync --spool ${spool}`);
    expect(pod.stderr).toMatch(/rejected=0/);

    const sync = await python([path.join(HERE, 'predictions_callback.py'), 'sync', '--spool', spool], { JOB_TOKEN: `${rotated.env.JOB_TOKEN}\n`, API_URL: server.url });
    expect(sync.code, sync.stdout + sync.stderr).toBe(0);
    expect(sync.stdout).toContain(`inserted=${180 - beforeSync} `);
    expect(await storedKeys(jobId)).toEqual(expected(Array.from({ length: 60 }, (_, i): [number, number] => [1, i + 1]), 'steps'));

    const everything = [pod.stdout, pod.stderr, sync.stdout, sync.stderr, await podLogText(user.token, jobId)].join('\n');
    for (const piece of tokenPieces(token, rotated.env.JOB_TOKEN)) expect(everything).not.toContain(piece);
  });

  it('a token with a trailing newline works, and no piece of it is printed or logged, faults included', { timeout: 120_000 }, async (ctx) => {
    ctx.skip(PYTHON_MISSING !== null, PYTHON_MISSING ?? '');
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const proxy = await startHangingProxy(server.url);
    try {
      const args = [path.join(HERE, 'fake_training.py'), '--epochs', '1', '--steps-per-epoch', '300', '--step-seconds', '0.05', ...stepsRun, '--http-timeout', '1'];
      const pod = spawnPython(args, { JOB_ID: `${jobId}\n`, JOB_TOKEN: `${token}\n`, API_URL: `${proxy.url}/\n` }, workDir);
      // A fault on the way: the server hangs for a while, then answers again.
      await until(() => storedKeys(jobId), (keys) => keys.length >= 6, 'the first rows stored', 60_000);
      proxy.hanging = true;
      await until(() => pod.stderr, (text) => text.includes('server unreachable'), 'the pod to give up on the hanging server', 60_000);
      proxy.hanging = false;
      const exit = await pod.exited;
      expect(exit.code, pod.stderr).toBe(0);
      expect(await storedKeys(jobId)).toEqual(expected(Array.from({ length: 300 }, (_, i): [number, number] => [1, i + 1]), 'steps'));
      expect(pod.stderr).toContain('generated=900 persisted=900 spooled=0 rejected=0');
      const logged = await podLogText(user.token, jobId);
      expect(logged).toContain('server unreachable');
      const everything = [pod.stdout, pod.stderr, logged].join('\n');
      for (const piece of tokenPieces(token)) expect(everything).not.toContain(piece);
    } finally {
      await proxy.close();
    }
  });
});
