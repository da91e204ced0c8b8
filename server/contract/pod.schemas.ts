// The pod's wire contract (pod.* procedures): what a training pod sends, in TypeScript or in
// any language posting JSON. zod only, shared by server and trainer.
import { z } from 'zod';
import { PREDICTION_TRIGGERS } from './triggers';

export const PREDICTION_BATCH_MAX = 1000;
export const FIELD_LIMITS = { prompt: 16_000, groundTruth: 16_000, prediction: 16_000 } as const;

/** One prediction row as a pod sends it. `epoch` is the 1-based epoch the step falls in. */
export const predictionRow = z.object({
  epoch: z.number().int().min(0).max(1_000_000),
  step: z.number().int().min(0).max(2_000_000_000),
  sampleIndex: z.number().int().min(0).max(1_000_000),
  trigger: z.enum(PREDICTION_TRIGGERS),
  prompt: z.string().max(FIELD_LIMITS.prompt),
  groundTruth: z.string().max(FIELD_LIMITS.groundTruth),
  prediction: z.string().max(FIELD_LIMITS.prediction),
});
export type PredictionRowInput = z.infer<typeof predictionRow>;

/**
 * The batch is checked for shape and size here; each row is validated on its own by the
 * service, so one bad row is reported by index while the good ones are stored.
 */
export const writePredictionsInput = z.object({
  predictions: z
    .array(z.unknown())
    .min(1, 'predictions must hold at least one row')
    .max(PREDICTION_BATCH_MAX, `predictions holds at most ${PREDICTION_BATCH_MAX} rows per batch; split the batch`),
});
export const writePredictionsOutput = z.object({
  inserted: z.number().int(),
  duplicates: z.number().int(),
  rejected: z.array(z.object({ index: z.number().int(), reason: z.string() })),
});
export type WritePredictionsOutput = z.infer<typeof writePredictionsOutput>;

export const metricRow = z.object({
  step: z.number().int().min(0).max(2_000_000_000),
  epoch: z.number().min(0).max(1_000_000),
  name: z.string().min(1).max(64).regex(/^[\w./-]+$/, 'metric names use letters, digits and . / - _'),
  value: z.number().refine(Number.isFinite, 'value must be a finite number'),
});
export const writeMetricsInput = z.object({ metrics: z.array(metricRow).min(1).max(PREDICTION_BATCH_MAX) });

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export const LOG_LINE_MAX = 4_000;
export const podLogInput = z.object({
  lines: z
    .array(z.object({ level: z.enum(LOG_LEVELS).default('info'), message: z.string().max(LOG_LINE_MAX) }))
    .min(1)
    .max(500),
});

export const POD_ENV_VARS = ['JOB_ID', 'JOB_TOKEN', 'API_URL'] as const;
const counter = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const heartbeatInput = z.object({
  status: z.enum(['starting', 'running', 'finishing']).default('running'),
  mode: z.enum(['cloud', 'local']).default('cloud'),
  /** Which expected variables were present: names and booleans, never values. */
  env: z.record(z.string().max(64), z.boolean()).default({}),
  epoch: z.number().min(0).max(1_000_000).optional(),
  step: z.number().int().min(0).optional(),
  totalSteps: z.number().int().min(0).optional(),
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
