// The pod's wire contract (pod.* procedures): what a training pod sends, in TypeScript or in
// any language posting JSON. zod only, shared by server and trainer.
import { z } from 'zod';
import { PREDICTION_TRIGGERS } from './triggers';

export const PREDICTION_BATCH_MAX = 1000;
/**
 * What a pod's client keeps one batch's JSON under (before gzip): well below the server's default
 * body limit after inflating (MAX_BODY_BYTES, 8 MiB), so a 413 is rare; a 413 still splits the batch.
 */
export const POD_BATCH_MAX_BYTES = 2 * 1024 * 1024;

/**
 * Machine-readable causes of a refused pod call, in `error.data.reason`: the token expired or was
 * revoked (rotate it and sync), the job ended (stop training) or is gone, or the database is
 * unreachable for now (retry after Retry-After).
 */
export const POD_ERROR_REASONS = ['token_expired', 'token_revoked', 'job_ended', 'job_missing', 'database_unavailable'] as const;
export type PodErrorReason = (typeof POD_ERROR_REASONS)[number];
export const FIELD_LIMITS = { prompt: 16_000, groundTruth: 16_000, prediction: 16_000 } as const;
/** Bounds of the numbers that key a prediction; reads are bounded by the same figures. */
export const EPOCH_MAX = 1_000_000;
/** Hugging Face's `global_step`: counts optimizer steps from the start of training, across epochs. */
export const STEP_MAX = 2_000_000_000;
export const SAMPLE_INDEX_MAX = 1_000_000;

export const epochNumber = z.number().int('epoch must be a whole number').min(0, 'epoch must be 0 or more').max(EPOCH_MAX, `epoch must be at most ${EPOCH_MAX}`);
export const stepNumber = z.number().int('step must be a whole number').min(0, 'step must be 0 or more').max(STEP_MAX, `step must be at most ${STEP_MAX}`);

/** One prediction row as a pod sends it. `epoch` is the 1-based epoch the step falls in. */
export const predictionRow = z.object({
  epoch: epochNumber,
  step: stepNumber,
  sampleIndex: z.number().int().min(0).max(SAMPLE_INDEX_MAX, `sampleIndex must be at most ${SAMPLE_INDEX_MAX}`),
  trigger: z.enum(PREDICTION_TRIGGERS),
  prompt: z.string().max(FIELD_LIMITS.prompt),
  groundTruth: z.string().max(FIELD_LIMITS.groundTruth),
  prediction: z.string().max(FIELD_LIMITS.prediction),
});
export type PredictionRowInput = z.infer<typeof predictionRow>;

/** 1 to PREDICTION_BATCH_MAX rows of anything: the rows themselves are validated one by one. */
function rowBatch(field: string) {
  return z
    .array(z.unknown())
    .min(1, `${field} must hold at least one row`)
    .max(PREDICTION_BATCH_MAX, `${field} holds at most ${PREDICTION_BATCH_MAX} rows per batch; split the batch`);
}

/**
 * The batch is checked for shape and size here; each row is validated on its own by the
 * service, so one bad row is reported by index while the good ones are stored.
 */
export const writePredictionsInput = z.object({ predictions: rowBatch('predictions') });
/** The ledger reason of rows refused because their step is already stored under another epoch (steps must be global). */
export const STEP_NOT_GLOBAL = 'step_not_global';

/** A row the server refused, by its index in the batch, with the reason in words. */
export const rejectedRow = z.object({ index: z.number().int(), reason: z.string() });

/**
 * The answer to a batch; every row of it is counted exactly once among inserted, duplicates,
 * replaced and rejected. `altered` counts the stored rows (inserted or replaced) in which a
 * character PostgreSQL cannot store was replaced by U+FFFD; those rows carry `altered: true`.
 */
export const writePredictionsOutput = z.object({
  /** New (job, step, sampleIndex) keys stored. */
  inserted: z.number().int(),
  /** Keys already stored with identical content: a retried batch; nothing changed. */
  duplicates: z.number().int(),
  /** Keys already stored with different content (a run resumed from a checkpoint): the newer row replaced the older. */
  replaced: z.number().int(),
  altered: z.number().int(),
  rejected: z.array(rejectedRow),
});
export type WritePredictionsOutput = z.infer<typeof writePredictionsOutput>;

/** Non-finite metric values as they travel in JSON (which has no NaN): a JSON null is NaN. */
export const NON_FINITE_VALUES = ['NaN', 'Infinity', '-Infinity'] as const;
export type NonFiniteValue = (typeof NON_FINITE_VALUES)[number];
export const METRIC_NAME_MAX = 128;

/** A metric value as stored and read back: a finite number, or the name of a non-finite one. */
export const metricValueOutput = z.union([z.number(), z.enum(NON_FINITE_VALUES)]);
export type MetricValue = z.infer<typeof metricValueOutput>;

/** Turns a stored double into its wire form (JSON cannot carry NaN or ±Infinity). */
export function metricValueToWire(value: number): MetricValue {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return 'Infinity';
  if (value === -Infinity) return '-Infinity';
  return value;
}

export const metricRow = z.object({
  step: stepNumber,
  epoch: z.number().min(0).max(EPOCH_MAX, `epoch must be at most ${EPOCH_MAX}`),
  // Evaluators name metrics `eval_precision@5`, `rouge:L`, `exact match`: any printable text.
  name: z
    .string()
    .trim()
    .min(1, 'name must not be empty')
    .max(METRIC_NAME_MAX, `name must be at most ${METRIC_NAME_MAX} characters`)
    .regex(/^[^\p{Cc}\u2028\u2029]+$/u, 'name must hold printable characters only (no control characters or line breaks)'),
  // NaN losses are real and worth seeing: null (how JSON writes NaN) and the names of the
  // non-finite values are stored as the IEEE values they stand for.
  value: z.union([
    z.number(),
    z.null().transform(() => Number.NaN),
    z.enum(NON_FINITE_VALUES).transform((name) => (name === 'NaN' ? Number.NaN : name === 'Infinity' ? Infinity : -Infinity)),
  ], { error: 'value must be a number, null (NaN), "NaN", "Infinity" or "-Infinity"' }),
});
export type MetricRowInput = z.output<typeof metricRow>;
/** Like predictions, each metric row is validated on its own: one bad row never fails its batch. */
export const writeMetricsInput = z.object({ metrics: rowBatch('metrics') });
export const writeMetricsOutput = z.object({
  inserted: z.number().int(),
  /** Points already stored for (name, step) with the same value. */
  duplicates: z.number().int(),
  /** Points already stored for (name, step) with another value (a resumed run): the newer value is kept. */
  replaced: z.number().int(),
  rejected: z.array(rejectedRow),
});
export type WriteMetricsOutput = z.infer<typeof writeMetricsOutput>;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export const LOG_LINE_MAX = 4_000;
/** Lines per pod.log call. With LOG_LINE_MAX, one call holds at most 2 M characters (≤ 8 MB as UTF-8, the body limit's default). */
export const LOG_BATCH_MAX = 500;
export const podLogInput = z.object({
  lines: z
    .array(z.object({ level: z.enum(LOG_LEVELS).default('info'), message: z.string().max(LOG_LINE_MAX) }))
    .min(1)
    .max(LOG_BATCH_MAX),
});

export const POD_ENV_VARS = ['JOB_ID', 'JOB_TOKEN', 'API_URL'] as const;
/**
 * Bounds of a heartbeat's `env` report: it is stored in the job's pod report and read by every
 * job page (an unbounded one, 7 MB, made jobs.list take a second: audit F16). A pod reports the
 * few variables it expects (POD_ENV_VARS), so these leave ample room.
 */
export const POD_ENV_ENTRIES_MAX = 64;
export const POD_ENV_NAME_MAX = 64;
const POD_ENV_NAME = new RegExp(`^[\\x21-\\x7e]{1,${POD_ENV_NAME_MAX}}$`);
const counter = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * What the server keeps of a pod's last heartbeat (training_jobs.pod_report) and shows on the job
 * page; diagnostics read it. Written by pod.heartbeat from a checked heartbeatInput.
 */
export const podReport = z.object({
  mode: z.enum(['cloud', 'local']),
  env: z.record(z.string(), z.boolean()),
  status: z.string().optional(),
  epoch: z.number().optional(),
  step: z.number().optional(),
  totalSteps: z.number().optional(),
  counters: z.object({ generated: z.number(), persisted: z.number(), spooled: z.number(), rejected: z.number() }),
  triggerFires: z.number(),
});
export type PodReport = z.infer<typeof podReport>;

export const heartbeatInput = z.object({
  status: z.enum(['starting', 'running', 'finishing']).default('running'),
  mode: z.enum(['cloud', 'local']).default('cloud'),
  /** Which expected variables were present: names and booleans, never values. */
  env: z
    .record(z.string(), z.boolean())
    .superRefine((env, ctx) => {
      const names = Object.keys(env);
      if (names.length > POD_ENV_ENTRIES_MAX) {
        ctx.addIssue({ code: 'custom', message: `env holds at most ${POD_ENV_ENTRIES_MAX} variables (got ${names.length}); report only the ones the pod expects` });
        return;
      }
      const bad = names.find((name) => !POD_ENV_NAME.test(name));
      if (bad !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `env names must be 1 to ${POD_ENV_NAME_MAX} printable characters without spaces or line breaks (names of environment variables); got ${JSON.stringify(bad.slice(0, POD_ENV_NAME_MAX + 1))}`,
        });
      }
    })
    .default({}),
  epoch: z.number().min(0).max(EPOCH_MAX).optional(),
  step: stepNumber.optional(),
  totalSteps: stepNumber.optional(),
  counters: z
    .object({ generated: counter, persisted: counter, spooled: counter, rejected: counter })
    .default({ generated: 0, persisted: 0, spooled: 0, rejected: 0 }),
  /** How many times the predictions trigger has fired so far. */
  triggerFires: counter.default(0),
});
export type HeartbeatInput = z.input<typeof heartbeatInput>;

export const finishInput = z.object({
  status: z.enum(['completed', 'failed']),
  error: z.string().max(8_000).optional(),
});
