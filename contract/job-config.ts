// The job configuration, one schema for server, SPA and trainer (zod only; no server imports),
// and the rules that say when a configuration can never produce predictions.
import { z } from 'zod';
import { PREDICTION_TRIGGERS } from './triggers';

export const LAUNCHERS = ['local', 'manual', 'kubernetes', 'runpod'] as const;
export type LauncherName = (typeof LAUNCHERS)[number];

export const EVAL_STRATEGIES = ['no', 'epoch', 'steps'] as const;
export type EvalStrategy = (typeof EVAL_STRATEGIES)[number];
/** When predictions are sampled: the trigger a row records is the frequency that sampled it. */
export const SAMPLE_FREQUENCIES = PREDICTION_TRIGGERS;
export type SampleFrequency = (typeof SAMPLE_FREQUENCIES)[number];

/** A whole-number setting whose refusals name the setting and its bounds. */
function wholeNumber(field: string, min: number, max: number) {
  return z
    .number({ error: `${field} must be a number` })
    .int(`${field} must be a whole number`)
    .min(min, `${field} must be at least ${min}`)
    .max(max, `${field} must be at most ${max}`);
}

export const trainingConfig = z.object({
  epochs: wholeNumber('epochs', 1, 1000).default(3),
  batchSize: wholeNumber('batchSize', 1, 4096).default(8),
  learningRate: z
    .number({ error: 'learningRate must be a number' })
    .positive('learningRate must be more than 0')
    .max(10, 'learningRate must be at most 10')
    .default(0.5),
  /** Hugging Face `eval_strategy`: "no" means evaluation never runs. */
  evalStrategy: z.enum(EVAL_STRATEGIES).default('epoch'),
  /** With evalStrategy "steps": evaluate every this many optimizer steps. */
  evalSteps: wholeNumber('evalSteps', 1, 10_000_000).optional(),
  seed: wholeNumber('seed', 0, 2 ** 31 - 1).default(42),
});

export const predictionsConfig = z.object({
  enabled: z.boolean().default(true),
  /** When predictions are sampled: after each evaluation, at each epoch end, or every stepInterval steps. */
  sampleFrequency: z.enum(SAMPLE_FREQUENCIES).default('eval'),
  sampleCount: wholeNumber('sampleCount', 1, 100).default(5),
  stepInterval: wholeNumber('stepInterval', 1, 10_000_000).optional(),
  maxNewTokens: wholeNumber('maxNewTokens', 1, 512).default(24),
});

export const jobConfig = z.object({
  datasetId: z.uuid('datasetId must be a UUID'),
  launcher: z.enum(LAUNCHERS).default('local'),
  training: trainingConfig.default(() => trainingConfig.parse({})),
  predictions: predictionsConfig.default(() => predictionsConfig.parse({})),
});
/** What a client sends (defaults may be omitted). */
export type JobConfigInput = z.input<typeof jobConfig>;
/** What is stored and what the pod receives (every default filled in). */
export type JobConfig = z.output<typeof jobConfig>;
export type TrainingConfig = z.output<typeof trainingConfig>;
export type PredictionsConfig = z.output<typeof predictionsConfig>;

export interface ConfigProblem {
  severity: 'error' | 'warning';
  /** Dotted path of the setting concerned, e.g. "predictions.sampleFrequency". */
  field: string;
  message: string;
  fix: string;
}

/** Optimizer steps per epoch, as Hugging Face Trainer counts them (no gradient accumulation). */
export function stepsPerEpoch(trainRows: number, batchSize: number): number {
  return Math.max(1, Math.ceil(trainRows / batchSize));
}

/**
 * The rows the trainer trains on and the rows it evaluates (and samples predictions) on:
 * a tenth of the dataset, at least one row, is held out when there are at least 10 rows.
 */
export function splitSizes(datasetRows: number): { train: number; eval: number } {
  if (datasetRows < 10) return { train: datasetRows, eval: datasetRows };
  const evalRows = Math.max(1, Math.floor(datasetRows / 10));
  return { train: datasetRows - evalRows, eval: evalRows };
}

export function totalSteps(config: Pick<JobConfig, 'training'>, datasetRows: number): number {
  return config.training.epochs * stepsPerEpoch(splitSizes(datasetRows).train, config.training.batchSize);
}

/**
 * Every problem with a configuration, given the dataset's size when known. Errors mean the job
 * could run but never produce what was asked for; deploy refuses them.
 */
export function checkJobConfig(config: JobConfig, dataset: { rows: number } | null): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const { training, predictions } = config;
  const steps = dataset ? totalSteps(config, dataset.rows) : null;

  if (training.evalStrategy === 'steps' && training.evalSteps === undefined) {
    problems.push({
      severity: 'error',
      field: 'training.evalSteps',
      message: 'Evaluation is set to run every N steps, but N (evalSteps) is not set.',
      fix: 'Set evalSteps, or set evalStrategy to "epoch".',
    });
  }
  if (training.evalStrategy === 'steps' && training.evalSteps !== undefined && steps !== null && training.evalSteps > steps) {
    problems.push({
      severity: predictions.enabled && predictions.sampleFrequency === 'eval' ? 'error' : 'warning',
      field: 'training.evalSteps',
      message: `Evaluation runs every ${training.evalSteps} steps, but the whole job is ${steps} steps, so evaluation never runs.`,
      fix: `Set evalSteps to at most ${steps}.`,
    });
  }

  if (!predictions.enabled) {
    problems.push({
      severity: 'warning',
      field: 'predictions.enabled',
      message: 'Predictions are disabled: nothing will be sampled during training.',
      fix: 'Enable predictions to see what the model generates as it trains.',
    });
    return problems;
  }

  if (predictions.sampleFrequency === 'eval' && training.evalStrategy === 'no') {
    problems.push({
      severity: 'error',
      field: 'predictions.sampleFrequency',
      message: 'Predictions are sampled after each evaluation, but evaluation is disabled (evalStrategy "no"), so they would never be sampled.',
      fix: 'Set evalStrategy to "epoch" or "steps", or sample at each epoch end (sampleFrequency "epoch").',
    });
  }
  if (predictions.sampleFrequency === 'steps') {
    if (predictions.stepInterval === undefined) {
      problems.push({
        severity: 'error',
        field: 'predictions.stepInterval',
        message: 'Predictions are sampled every N steps, but N (stepInterval) is not set.',
        fix: steps ? `Set stepInterval between 1 and ${steps}.` : 'Set stepInterval.',
      });
    } else if (steps !== null && predictions.stepInterval > steps) {
      problems.push({
        severity: 'error',
        field: 'predictions.stepInterval',
        message: `Predictions are sampled every ${predictions.stepInterval} steps, but the whole job is ${steps} steps, so they would never be sampled.`,
        fix: `Set stepInterval to at most ${steps}.`,
      });
    }
  }
  if (predictions.sampleFrequency !== 'steps' && predictions.stepInterval !== undefined) {
    problems.push({
      severity: 'warning',
      field: 'predictions.stepInterval',
      message: `stepInterval is ignored because predictions are sampled ${predictions.sampleFrequency === 'eval' ? 'after each evaluation' : 'at each epoch end'}.`,
      fix: 'Remove stepInterval, or set sampleFrequency to "steps".',
    });
  }
  if (dataset) {
    const evalRows = splitSizes(dataset.rows).eval;
    if (predictions.sampleCount > evalRows) {
      problems.push({
        severity: 'warning',
        field: 'predictions.sampleCount',
        message: `sampleCount is ${predictions.sampleCount}, but only ${evalRows} held-out rows exist; ${evalRows} will be sampled.`,
        fix: `Set sampleCount to at most ${evalRows}, or use a larger dataset.`,
      });
    }
  }
  return problems;
}
