// The demo model's half of `trainer train`: builds the model from a job plan, trains it with
// HF's callback order and samples predictions on the job's trigger. The pod's half (spool,
// writer, heartbeats, the end of the run) is commands/train.ts; it sees the run only through
// these hooks, which is the seam a real training script would take (the Python callback is
// that for Hugging Face's Trainer).
import type { PredictionRowInput } from '#contract/pod.schemas';
import type { JobPlan } from '../pod/job-source';
import type { ShippingLogger } from '../pod/logger';
import { scorePredictions } from './metrics';
import { generatePredictions, PredictionSampler } from './sampler';
import { Trainer, type TrainerState } from './trainer-loop';

export interface DemoRunHooks {
  log: ShippingLogger;
  /** The plan is understood and training is about to start, at step 0. */
  onStart(state: TrainerState): void;
  /** The trainer moved (after a step, an evaluation or an epoch end). */
  onState(state: TrainerState): void;
  /** Rows sampled by the trigger at `at`; never called with none. */
  ship(rows: PredictionRowInput[], at: TrainerState): void;
  /** One metric point; non-finite values are passed on too (a diverging loss is news). */
  metric(at: TrainerState, name: string, value: number): void;
  /** The pod's side of an epoch's log line (counters, fires), appended after the losses. */
  epochNote(at: TrainerState): string;
}

export interface DemoRunResult {
  state: TrainerState;
  /** False when `signal` stopped the run before its last step. */
  completed: boolean;
}

/**
 * Trains the demo model on `plan` until done or until `signal` aborts. `jobLabel` names the job in
 * the opening log line. Throws only for a plan the model cannot train on.
 */
export async function trainDemoModel(plan: JobPlan, jobLabel: string, hooks: DemoRunHooks, signal: AbortSignal): Promise<DemoRunResult> {
  const { log } = hooks;
  const trainer = new Trainer(plan.rows, plan.training);
  const sampler = new PredictionSampler(trainer.split.eval, plan.predictions, plan.training.seed);
  const { predictions, training } = plan;
  const triggerWords = !predictions.enabled
    ? 'predictions disabled'
    : predictions.sampleFrequency === 'eval'
      ? `after each evaluation (evalStrategy ${training.evalStrategy}${training.evalStrategy === 'steps' ? `, every ${training.evalSteps} steps` : ''})`
      : predictions.sampleFrequency === 'epoch'
        ? 'at each epoch end'
        : `every ${predictions.stepInterval} steps`;
  log.info(
    `Job ${jobLabel} "${plan.name}": ${plan.rows.length} rows (${trainer.split.train.length} train, ${trainer.split.eval.length} held out), ${training.epochs} epoch(s) × ${trainer.stepsPerEpoch} steps = ${trainer.totalSteps} steps; ${sampler.samples.length} prediction sample(s) ${triggerWords}.`,
  );
  hooks.onStart({ globalStep: 0, epoch: 0, epochNumber: 1, stepsPerEpoch: trainer.stepsPerEpoch, totalSteps: trainer.totalSteps, numEpochs: training.epochs });

  let lastEvalLoss: number | null = null;
  const fire = (rows: PredictionRowInput[], at: TrainerState) => {
    if (rows.length === 0) return rows;
    hooks.ship(rows, at);
    const score = scorePredictions(rows);
    hooks.metric(at, 'predictions/f1', score.meanF1);
    log.info(`Trigger "${rows[0]?.trigger}" fired at step ${at.globalStep} (epoch ${at.epochNumber}): ${rows.length} prediction(s), mean F1 ${score.meanF1.toFixed(3)}.`);
    return rows;
  };
  return trainer.train(
    {
      onStepEnd(at, logs) {
        hooks.onState(at);
        hooks.metric(at, 'train/loss', logs.loss);
        hooks.metric(at, 'train/learning_rate', logs.learningRate);
        fire(sampler.rowsAt('stepEnd', at, trainer), at);
      },
      onEvaluate(at, evalMetrics) {
        hooks.onState(at);
        lastEvalLoss = evalMetrics.evalLoss;
        hooks.metric(at, 'eval/loss', evalMetrics.evalLoss);
        const fired = fire(sampler.rowsAt('evaluate', at, trainer), at);
        // F1 of the sampled rows at every evaluation, whether or not predictions fire here.
        const scored = fired.length > 0 ? fired : generatePredictions(trainer, sampler.samples, predictions.maxNewTokens);
        if (scored.length > 0) hooks.metric(at, 'eval/f1', scorePredictions(scored).meanF1);
      },
      onEpochEnd(at, logs) {
        hooks.onState(at);
        hooks.metric(at, 'train/epoch_loss', logs.trainLoss);
        fire(sampler.rowsAt('epochEnd', at, trainer), at);
        log.info(
          `Epoch ${at.epochNumber}/${at.numEpochs} done (step ${at.globalStep}/${at.totalSteps}): train loss ${logs.trainLoss.toFixed(4)}${lastEvalLoss !== null ? `, last eval loss ${lastEvalLoss.toFixed(4)}` : ''}; ${hooks.epochNote(at)}`,
        );
      },
    },
    signal,
  );
}
