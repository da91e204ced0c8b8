// One protocol, two clients: the TypeScript pod (PredictionWriter and MetricsReporter, as
// trainer/main.ts runs them) and the Python callback (driven by fake_training.py) play the same
// scenario against the real server, and the same assertions hold for both. The scenario is what
// real trainers send (issue 12): model output with a NUL and half an emoji, a NaN loss, an
// evaluator's `eval_precision@5`, and a metric name the server must refuse by row.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trainingPredictions } from '../db/schema';
import { hasUnstorableText, toStorableText } from '../server/contract/text';
import { createManualJob, createUser } from '../server/test-support/factories';
import { useTestServer, type TestServer } from '../server/test-support/server';
import { createPodApi } from './pod/api';
import { PodConnection, type PodLogger } from './pod/connection';
import { MetricsReporter } from './pod/metrics';
import { Spool } from './pod/spool';
import { PredictionWriter } from './pod/writer';
import { PYTHON_DIR, PYTHON_MISSING, python } from './python/python-runner';

/** The completion the model writes for the sample at each index (the same at every step). */
const OUTPUTS = ['NUL \u0000 inside', 'half an emoji \ud83d', 'a whole emoji \u{1F600}'];
const STEPS_PER_EPOCH = 2;
/** Trainer's logs per step; JSON has no NaN, so non-finite values are written by name here. */
const LOGS: Record<number, Record<string, number | 'NaN'>> = {
  1: { loss: 'NaN' },
  2: { loss: 0.5, 'eval_precision@5': 0.25, 'bad\u0007name': 1 },
};
const ROWS = STEPS_PER_EPOCH * OUTPUTS.length;
const ALTERED = STEPS_PER_EPOCH * OUTPUTS.filter(hasUnstorableText).length;

interface ClientRun {
  counters: { generated: number; persisted: number; spooled: number; rejected: number };
  pending: number;
  altered: number;
  metricsRefused: number;
  output: string;
  spoolFile: string;
}

interface Client {
  name: string;
  skip: string | null;
  run(job: { jobId: string; token: string }): Promise<ClientRun>;
}

let server: TestServer;
useTestServer((s) => (server = s));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pod-clients-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const typescriptPod: Client = {
  name: 'the TypeScript trainer',
  skip: null,
  async run(job) {
    const lines: string[] = [];
    const log: PodLogger = {
      debug: (m) => lines.push(`debug ${m}`),
      info: (m) => lines.push(`info ${m}`),
      warn: (m) => lines.push(`warn ${m}`),
      error: (m) => lines.push(`error ${m}`),
    };
    const connection = new PodConnection(createPodApi({ apiUrl: server.url, token: job.token }));
    const spool = new Spool(path.join(dir, `${job.jobId}.jsonl`));
    const writer = new PredictionWriter({ connection, spool, log });
    const metrics = new MetricsReporter({ connection, log, intervalMs: 50 });
    metrics.start();
    for (let step = 1; step <= STEPS_PER_EPOCH; step++) {
      const at = { step, epoch: step / STEPS_PER_EPOCH };
      for (const [name, value] of Object.entries(LOGS[step] ?? {})) metrics.record(at, name, Number(value));
      writer.enqueue(
        OUTPUTS.map((prediction, sampleIndex) => ({ epoch: 1, step, sampleIndex, trigger: 'steps' as const, prompt: `question ${sampleIndex}`, groundTruth: `answer ${sampleIndex}`, prediction })),
      );
    }
    const counters = await writer.close(20_000);
    await metrics.close(20_000);
    return { counters, pending: writer.pending + metrics.pending, altered: writer.altered, metricsRefused: metrics.answered.rejected, output: lines.join('\n'), spoolFile: spool.file };
  },
};

const pythonCallback: Client = {
  name: 'the Python callback',
  skip: PYTHON_MISSING,
  async run(job) {
    const scenario = path.join(dir, 'scenario.json');
    writeFileSync(scenario, JSON.stringify({ outputs: OUTPUTS, logs: LOGS }));
    const spoolFile = path.join(dir, 'spool.jsonl');
    const args = ['--epochs', '1', '--steps-per-epoch', String(STEPS_PER_EPOCH), '--sample-frequency', 'steps', '--step-interval', '1', '--eval-strategy', 'no'];
    const run = await python(
      [path.join(PYTHON_DIR, 'fake_training.py'), ...args, '--samples', String(OUTPUTS.length), '--sample-count', String(OUTPUTS.length), '--scenario', scenario, '--spool', spoolFile],
      { JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: server.url },
      dir,
    );
    expect(run.code, run.stderr).toBe(0);
    const summary = /generated=(\d+) persisted=(\d+) spooled=(\d+) rejected=(\d+) replaced=(\d+) altered=(\d+) metrics_refused=(\d+)/.exec(run.stderr);
    expect(summary, run.stderr).not.toBeNull();
    const [generated, persisted, spooled, rejected, , altered, metricsRefused] = (summary ?? []).slice(1).map(Number);
    return {
      counters: { generated: generated ?? NaN, persisted: persisted ?? NaN, spooled: spooled ?? NaN, rejected: rejected ?? NaN },
      pending: 0, // the callback has closed: nothing is left in memory
      altered: altered ?? NaN,
      metricsRefused: metricsRefused ?? NaN,
      output: run.stderr,
      spoolFile,
    };
  },
};

describe.each([typescriptPod, pythonCallback])('$name against the real server', (client) => {
  it('fed a model output with a NUL and half an emoji, stores every prediction (marked altered) and leaves an empty spool', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const user = await createUser(server.deps);
    const job = await createManualJob(server.deps, user.id);
    const run = await client.run(job);

    const c = run.counters;
    expect(c.generated).toBe(c.persisted + c.rejected + c.spooled + run.pending);
    expect(c).toEqual({ generated: ROWS, persisted: ROWS, spooled: 0, rejected: 0 });
    expect(existsSync(run.spoolFile), 'the spool file is gone').toBe(false);

    const stored = await server.database.db
      .select({ step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex, prediction: trainingPredictions.prediction, altered: trainingPredictions.altered })
      .from(trainingPredictions)
      .where(eq(trainingPredictions.jobId, job.jobId))
      .orderBy(trainingPredictions.step, trainingPredictions.sampleIndex);
    const expected = Array.from({ length: STEPS_PER_EPOCH }, (_, s) =>
      OUTPUTS.map((output, sampleIndex) => ({ step: s + 1, sampleIndex, prediction: toStorableText(output), altered: hasUnstorableText(output) })),
    ).flat();
    expect(stored).toEqual(expected);
    expect(run.altered).toBe(ALTERED);
    expect(run.output).toMatch(/prediction\(s\) had characters PostgreSQL cannot store \(NUL, half an emoji\) replaced by U\+FFFD/);
  }, 120_000);

  it('sends a NaN loss and an evaluator metric named eval_precision@5, and reports a refused metric row with its reason', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const user = await createUser(server.deps);
    const job = await createManualJob(server.deps, user.id);
    const run = await client.run(job);

    const { points } = await server.client(user.token).jobs.metrics.query({ jobId: job.jobId });
    expect(points.map((p) => [p.name, p.step, p.value]).sort()).toEqual(
      [
        ['eval_precision@5', 2, 0.25],
        ['loss', 1, 'NaN'],
        ['loss', 2, 0.5],
      ].sort(),
    );
    expect(run.metricsRefused).toBe(1);
    expect(run.output).toMatch(/"bad\\u0007name" at step 2: .*printable characters only/);
    // A refused metric is not a lost prediction: the run's accounting is untouched.
    expect(run.counters.rejected).toBe(0);
  }, 120_000);
});
