// The stdlib-only Python callback (trainer/python/predictions_callback.py), checked two ways:
// its own unittest suite (against a fake pod server), and the fake Hugging Face training loop
// writing to the REAL server over HTTP, asserting exactly which rows land in the database.
// Skipped, with the reason, on machines without python3.
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trainingJobs, trainingPredictions } from '../../db/schema';
import { FIELD_LIMITS, LOG_LINE_MAX, NON_FINITE_VALUES, POD_ENV_VARS, PREDICTION_BATCH_MAX } from '../../server/contract/pod.schemas';
import { PREDICTION_TRIGGERS } from '../../server/contract/triggers';
import { createManualJob, createUser } from '../../server/test-support/factories';
import { useTestServer, type TestServer } from '../../server/test-support/server';
import { PYTHON_DIR as HERE, PYTHON_MISSING, python, REPO } from './python-runner';

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
      'print(json.dumps([[pc.FIELD_LIMIT] * 3, pc.BATCH_MAX_ROWS, pc.LOG_LINE_MAX, list(pc.TRIGGERS), list(pc.ENV_VARS), list(pc.NON_FINITE_VALUES)]))',
    ].join('\n');
    const run = await python(['-c', script], {}, HERE);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual([[FIELD_LIMITS.prompt, FIELD_LIMITS.groundTruth, FIELD_LIMITS.prediction], PREDICTION_BATCH_MAX, LOG_LINE_MAX, [...PREDICTION_TRIGGERS], [...POD_ENV_VARS], [...NON_FINITE_VALUES]]);
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
    // The pod reported its accounting, then finished the job (which revokes its token).
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
    const spooled = (await readFile(spool, 'utf8')).trim().split('\n');
    expect(spooled).toHaveLength(9);

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
