// What a pod may do, always to the one job its verified token names: read its config and
// dataset, report heartbeats, write predictions / metrics / log lines, and finish.
import type { z } from 'zod';
import type { rejectedRow } from '#contract/pod.schemas';
import { AppError } from '../errors';
import type { AppDeps } from '../app-deps';
import { splitSizes, stepsPerEpoch, totalSteps, type JobConfig } from '#contract/job-config';
import { metricRow, predictionRow, STEP_NOT_GLOBAL, type WriteMetricsOutput, type WritePredictionsOutput } from '#contract/pod.schemas';
import type { heartbeatInput, finishInput, podLogInput, writeMetricsInput } from '#contract/pod.schemas';
import { getDatasetRows } from '../../db/queries/datasets';
import { endJob, getJob, recordHeartbeat } from '../../db/queries/jobs';
import { insertJobEvent, insertJobEventThrottled } from '../../db/queries/job-events';
import { insertLogLines } from '../../db/queries/job-logs';
import { insertMetrics } from '../../db/queries/metrics';
import { insertPredictions, type StorablePredictionRow } from '../../db/queries/predictions';
import { toStorableText, type AlteredPath } from '#contract/text';
import type { DatasetRow, PodReport } from '../../db/schema';
import { refuseUploadToken, runGuardedWrite, type PodScope } from './pod-auth';

export interface PodConfig {
  jobId: string;
  name: string;
  config: JobConfig;
  dataset: { name: string; rows: DatasetRow[] };
  plan: { trainRows: number; evalRows: number; stepsPerEpoch: number; totalSteps: number };
}

export async function podConfig(deps: AppDeps, pod: PodScope): Promise<PodConfig> {
  const db = deps.database.db;
  const job = await getJob(db, { userId: pod.userId, jobId: pod.jobId });
  if (!job) throw new AppError('UNAUTHORIZED', 'The job this token was issued for no longer exists');
  const dataset = job.datasetId ? await getDatasetRows(db, { userId: pod.userId, datasetId: job.datasetId }) : undefined;
  if (!dataset) throw new AppError('PRECONDITION_FAILED', "The job's dataset was deleted; deploy the job again with another dataset");
  const split = splitSizes(dataset.rowCount);
  return {
    jobId: job.id,
    name: job.name,
    config: job.config,
    dataset: { name: dataset.name, rows: dataset.rows },
    plan: {
      trainRows: split.train,
      evalRows: split.eval,
      stepsPerEpoch: stepsPerEpoch(split.train, job.config.training.batchSize),
      totalSteps: totalSteps(job.config, dataset.rowCount),
    },
  };
}

export async function podHeartbeat(deps: AppDeps, pod: PodScope, input: z.output<typeof heartbeatInput>) {
  refuseUploadToken(pod, 'pod.heartbeat');
  const db = deps.database.db;
  const report: PodReport = {
    mode: input.mode,
    env: input.env,
    status: input.status,
    counters: input.counters,
    triggerFires: input.triggerFires,
    ...(input.epoch !== undefined ? { epoch: input.epoch } : {}),
    ...(input.step !== undefined ? { step: input.step } : {}),
    ...(input.totalSteps !== undefined ? { totalSteps: input.totalSteps } : {}),
  };
  // In the write grace after a completed finish the report (its counters now counting late
  // rows) is kept, but the status stays completed: recordHeartbeat only moves pending/starting.
  await runGuardedWrite(deps, pod, (guard) =>
    db.transaction(async (tx) => {
      await guard(tx);
      await recordHeartbeat(tx, { jobId: pod.jobId, report });
    }),
  );
  await deps.live.jobChanged(pod.jobId, pod.userId);
  if (pod.status === 'pending' || pod.status === 'starting') {
    await insertJobEvent(db, { jobId: pod.jobId, kind: 'pod_connected', detail: { mode: input.mode, env: input.env } });
  }
  const missing = Object.entries(input.env).filter(([, present]) => !present).map(([name]) => name);
  if (input.mode === 'local' || missing.length > 0) {
    await insertJobEventThrottled(db, {
      jobId: pod.jobId,
      kind: 'pod_local_mode',
      reason: missing.sort().join(',') || 'local',
      detail: { missing },
      windowSeconds: 3600,
    });
  }
  return { ok: true as const };
}

type RejectedRow = z.infer<typeof rejectedRow>;

const MAX_REASONS_RECORDED = 10;
const STORED_TEXT_FIELDS = new Set(['prompt', 'groundTruth', 'prediction']);

/** Validates a batch row by row: one bad row is refused by index and reason, the rest go on. */
function validateRows<T>(schema: z.ZodType<T>, rows: unknown[]): { valid: Array<{ index: number; row: T }>; rejected: RejectedRow[] } {
  const valid: Array<{ index: number; row: T }> = [];
  const rejected: RejectedRow[] = [];
  rows.forEach((candidate, index) => {
    const parsed = schema.safeParse(candidate);
    if (parsed.success) valid.push({ index, row: parsed.data });
    else rejected.push({ index, reason: reasonOf(parsed.error) });
  });
  return { valid, rejected };
}

/**
 * Stores a batch for the token's job: rows are validated one by one (a bad row is refused by
 * index and reason, the others are stored), rows whose text had to be made storable are marked
 * altered (`inputAltered`: the paths the input middleware changed), and a row whose step is
 * already stored under another epoch is refused with the reason that steps must be global.
 * Refusals and replacements go on the job's ledger, which diagnostics read.
 */
export async function podWritePredictions(
  deps: AppDeps,
  pod: PodScope,
  input: { predictions: unknown[] },
  inputAltered: readonly AlteredPath[] = [],
): Promise<WritePredictionsOutput> {
  // Only a change to a stored text marks a row; a NUL in a key the schema drops changes nothing stored.
  const alteredRows = new Set(
    inputAltered.filter((path) => path[0] === 'predictions' && typeof path[1] === 'number' && path.length === 3 && STORED_TEXT_FIELDS.has(String(path[2]))).map((path) => path[1]),
  );
  const { valid, rejected } = validateRows(predictionRow, input.predictions);
  const parsed = valid.map(({ index, row }) => ({ index, row: { ...row, altered: alteredRows.has(index) } satisfies StorablePredictionRow }));
  const db = deps.database.db;
  const rows = parsed.map((p) => p.row);
  // The live notification goes out from the write's own transaction (delivered at its commit):
  // five round trips per batch instead of seven with the advisory lock folded in too (issue 19).
  const before19 = writePathForBench.before19;
  const stored = await oneAtATimePerJob(deps, pod.jobId, () =>
    runGuardedWrite(deps, pod, (guard) =>
      insertPredictions(db, before19 ? { jobId: pod.jobId, userId: pod.userId, rows, guard, lockStatement: true } : { jobId: pod.jobId, userId: pod.userId, rows, guard, notifyChannel: deps.live.predictionsChannel }),
    ),
  );
  if (before19 && stored.maxId !== null) await deps.live.predictionsStored(pod.jobId, pod.userId, stored.maxId);
  const stepConflicts = stored.conflicts.map((c) => {
    const { index, row } = parsed[c.index]!;
    const place = c.storedTrigger === row.trigger ? `epoch ${c.storedEpoch}` : `epoch ${c.storedEpoch} by the ${c.storedTrigger} trigger`;
    return {
      index,
      reason: `step: step ${row.step} (sampleIndex ${row.sampleIndex}) is already stored under ${place}; steps must keep growing across epochs (send Hugging Face's global_step, not the step within the epoch)`,
    };
  });
  if (rejected.length > 0) await recordRejected(db, pod.jobId, 'invalid', rejected);
  if (stepConflicts.length > 0) await recordRejected(db, pod.jobId, STEP_NOT_GLOBAL, stepConflicts);
  if (stored.replaced.count > 0) {
    await insertJobEvent(db, { jobId: pod.jobId, kind: 'predictions_replaced', detail: { count: stored.replaced.count, minStep: stored.replaced.minStep, maxStep: stored.replaced.maxStep } });
  }
  return {
    inserted: stored.inserted,
    duplicates: stored.duplicates,
    replaced: stored.replaced.count,
    altered: stored.altered,
    rejected: [...rejected, ...stepConflicts].sort((a, b) => a.index - b.index),
  };
}

/**
 * Bench only (bench/ingest.ts), never set by the app: `before19` takes the write path as it was
 * before issue 19 (the advisory lock as its own statement, the notification as its own statement
 * after the commit), so one bench run measures the server's CPU per row before and after.
 */
export const writePathForBench: { before19: boolean } = { before19: false };

// One job's prediction writes queue here, in this process, before they take a pool connection:
// queued inside the database (on the job's transaction lock) each held a connection, and a
// dozen writes to one busy job starved every other job's writes of the pool (503s for an
// unrelated job). The database lock still orders writers on other instances.
const writeQueues = new WeakMap<AppDeps['database'], Map<string, Promise<unknown>>>();

async function oneAtATimePerJob<T>(deps: AppDeps, jobId: string, work: () => Promise<T>): Promise<T> {
  let queues = writeQueues.get(deps.database);
  if (!queues) writeQueues.set(deps.database, (queues = new Map()));
  const before = queues.get(jobId) ?? Promise.resolve();
  const mine = before.catch(() => undefined).then(work);
  const tail = mine.catch(() => undefined);
  queues.set(jobId, tail);
  try {
    return await mine;
  } finally {
    if (queues.get(jobId) === tail) queues.delete(jobId);
  }
}

async function recordRejected(db: AppDeps['database']['db'], jobId: string, reason: string, rows: RejectedRow[]) {
  await insertJobEvent(db, { jobId, kind: 'predictions_rejected', detail: { reason, count: rows.length, examples: rows.slice(0, MAX_REASONS_RECORDED) } });
}

function reasonOf(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'row'}: ${i.message}`).join('; ');
}

export async function podWriteMetrics(deps: AppDeps, pod: PodScope, input: z.output<typeof writeMetricsInput>): Promise<WriteMetricsOutput> {
  const { valid, rejected } = validateRows(metricRow, input.metrics);
  // A (name, step) sent twice in one batch: the later value wins within the same epoch, as a later
  // log line would; under another epoch it is refused like a stored one (steps must be global).
  const byKey = new Map<string, { index: number; row: (typeof valid)[number]['row'] }>();
  const stepConflicts: RejectedRow[] = [];
  for (const point of valid) {
    const key = `${point.row.name}\u0000${point.row.step}`;
    const earlier = byKey.get(key);
    if (earlier && Math.abs(earlier.row.epoch - point.row.epoch) > 1e-6) stepConflicts.push({ index: point.index, reason: metricStepReason(point.row, earlier.row.epoch) });
    else byKey.set(key, earlier ? { index: earlier.index, row: point.row } : point);
  }
  const kept = [...byKey.values()];
  const stored = await runGuardedWrite(deps, pod, (guard) =>
    deps.database.db.transaction(async (tx) => {
      await guard(tx);
      return insertMetrics(tx, { jobId: pod.jobId, metrics: kept.map((k) => k.row) });
    }),
  );
  for (const conflict of stored.conflicts) {
    const { index, row } = kept[conflict.index]!;
    stepConflicts.push({ index, reason: metricStepReason(row, conflict.storedEpoch) });
  }
  if (stepConflicts.length > 0) await insertJobEvent(deps.database.db, { jobId: pod.jobId, kind: 'metrics_rejected', detail: { reason: STEP_NOT_GLOBAL, count: stepConflicts.length, examples: stepConflicts.slice(0, MAX_REASONS_RECORDED) } });
  const refused = [...rejected, ...stepConflicts].sort((a, b) => a.index - b.index);
  return { inserted: stored.inserted, replaced: stored.replaced, duplicates: valid.length - stored.inserted - stored.replaced - stepConflicts.length, rejected: refused };
}

function metricStepReason(row: { name: string; step: number }, storedEpoch: number): string {
  return `step: ${row.name} at step ${row.step} is already stored under epoch ${storedEpoch}; steps must keep growing across epochs (send Hugging Face's global_step, not the step within the epoch)`;
}

export async function podLog(deps: AppDeps, pod: PodScope, input: z.output<typeof podLogInput>) {
  await runGuardedWrite(deps, pod, (guard) =>
    deps.database.db.transaction(async (tx) => {
      await guard(tx);
      await insertLogLines(tx, { jobId: pod.jobId, lines: input.lines });
    }),
  );
  return { accepted: input.lines.length };
}

export async function podFinish(deps: AppDeps, pod: PodScope, input: z.output<typeof finishInput>) {
  refuseUploadToken(pod, 'pod.finish');
  // Again within the grace period (a second train(), a retried finish whose answer was lost):
  // the job is completed already, and says so; what this call reports changes nothing.
  if (pod.access === 'grace') return { ok: true as const, status: pod.status };
  const db = deps.database.db;
  const ended = await endJob(db, {
    jobId: pod.jobId,
    userId: pod.userId,
    status: input.status,
    error: input.status === 'failed' ? (input.error ?? 'The pod reported a failure without a message') : null,
  });
  if (!ended) throw new AppError('UNAUTHORIZED', 'The job has already ended');
  await deps.live.jobChanged(pod.jobId, pod.userId);
  await insertJobEvent(db, { jobId: pod.jobId, kind: 'pod_finished', detail: { status: input.status, ...(input.error ? { error: toStorableText(input.error.slice(0, 2000)) } : {}) } });
  return { ok: true as const, status: input.status };
}
