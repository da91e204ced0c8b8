// When the trainer evaluates and when the predictions trigger fires, as pure functions of the
// config and the step, with Hugging Face Trainer's semantics:
//   evaluation: never with evalStrategy "no"; at each epoch end with "epoch"; with "steps"
//     whenever global_step % eval_steps == 0 (eval_delay is 0 here);
//   predictions: "eval" after each evaluation, "epoch" at each epoch end, "steps" at every
//     step end where global_step % stepInterval == 0.
// `expectedPredictionPoints` computes the same schedule arithmetically, without running
// anything, so tests elsewhere can assert that stored predictions match exactly.
import { splitSizes, stepsPerEpoch, type JobConfig, type PredictionsConfig, type TrainingConfig } from '#contract/job-config';
import type { PredictionTrigger } from '#contract/triggers';

/** The lifecycle points at which a callback runs (onTrainEnd never triggers anything). */
export type TrainerEvent = 'stepEnd' | 'evaluate' | 'epochEnd';

/** Whether the trainer evaluates after this event (called at step end and at epoch end). */
export function shouldEvaluate(training: TrainingConfig, event: 'stepEnd' | 'epochEnd', globalStep: number): boolean {
  switch (training.evalStrategy) {
    case 'no':
      return false;
    case 'epoch':
      return event === 'epochEnd';
    case 'steps':
      return event === 'stepEnd' && training.evalSteps !== undefined && globalStep > 0 && globalStep % training.evalSteps === 0;
  }
}

/** The trigger that fires at this event, or null. Disabled predictions never fire. */
export function predictionTriggerAt(predictions: PredictionsConfig, event: TrainerEvent, globalStep: number): PredictionTrigger | null {
  if (!predictions.enabled) return null;
  switch (predictions.sampleFrequency) {
    case 'eval':
      return event === 'evaluate' ? 'eval' : null;
    case 'epoch':
      return event === 'epochEnd' ? 'epoch' : null;
    case 'steps': {
      const interval = predictions.stepInterval;
      const fires = event === 'stepEnd' && interval !== undefined && globalStep > 0 && globalStep % interval === 0;
      return fires ? 'steps' : null;
    }
  }
}

/** The 1-based epoch a step belongs to: the last step of epoch k is k * stepsPerEpoch. */
export function epochOfStep(globalStep: number, stepsInEpoch: number): number {
  return Math.max(1, Math.ceil(globalStep / stepsInEpoch));
}

export interface PredictionPoint {
  epoch: number;
  step: number;
  trigger: PredictionTrigger;
}

function multiplesUpTo(interval: number | undefined, last: number): number[] {
  if (interval === undefined || interval < 1) return [];
  const steps: number[] = [];
  for (let step = interval; step <= last; step += interval) steps.push(step);
  return steps;
}

/** Every (epoch, step) at which predictions are sampled for this config and dataset size, in order. */
export function expectedPredictionPoints(config: Pick<JobConfig, 'training' | 'predictions'>, datasetRows: number): PredictionPoint[] {
  const { training, predictions } = config;
  if (!predictions.enabled) return [];
  const perEpoch = stepsPerEpoch(splitSizes(datasetRows).train, training.batchSize);
  const total = training.epochs * perEpoch;
  const epochEnds = Array.from({ length: training.epochs }, (_, i) => (i + 1) * perEpoch);
  let steps: number[];
  switch (predictions.sampleFrequency) {
    case 'eval':
      steps =
        training.evalStrategy === 'epoch' ? epochEnds : training.evalStrategy === 'steps' ? multiplesUpTo(training.evalSteps, total) : [];
      break;
    case 'epoch':
      steps = epochEnds;
      break;
    case 'steps':
      steps = multiplesUpTo(predictions.stepInterval, total);
      break;
  }
  return steps.map((step) => ({ epoch: epochOfStep(step, perEpoch), step, trigger: predictions.sampleFrequency }));
}

export interface PredictionKey extends PredictionPoint {
  sampleIndex: number;
}

/** Every prediction row a job should store: each point times each sampled row. */
export function expectedPredictionKeys(config: Pick<JobConfig, 'training' | 'predictions'>, datasetRows: number): PredictionKey[] {
  const samples = Math.min(config.predictions.sampleCount, splitSizes(datasetRows).eval);
  return expectedPredictionPoints(config, datasetRows).flatMap((point) =>
    Array.from({ length: samples }, (_, sampleIndex) => ({ ...point, sampleIndex })),
  );
}
