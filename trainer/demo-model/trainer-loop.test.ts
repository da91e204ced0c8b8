// The trainer end to end on the example dataset: it learns (loss and F1), it is deterministic,
// its lifecycle follows Hugging Face Trainer, and every predictions trigger fires exactly where
// `expectedPredictionKeys` says.
import { describe, expect, it } from 'vitest';
import {
  jobConfig,
  splitSizes,
  stepsPerEpoch,
  type JobConfig,
  type PredictionsConfig,
  type TrainingConfig,
} from '#contract/job-config';
import type { PredictionRowInput } from '#contract/pod.schemas';
import { readExampleRows } from './example-rows';
import { scoreByEpoch, scorePredictions } from './metrics';
import { choosePredictionSamples, generatePredictions, PredictionSampler } from './sampler';
import { expectedPredictionKeys, type TrainerEvent } from './schedule';
import { Trainer, type TrainerState } from './trainer-loop';

const ROWS = readExampleRows();
const TRAIN_ROWS = splitSizes(ROWS.length).train;
const STEPS_PER_EPOCH = stepsPerEpoch(TRAIN_ROWS, 8);

function config(training: Partial<TrainingConfig> = {}, predictions: Partial<PredictionsConfig> = {}): JobConfig {
  return jobConfig.parse({ datasetId: '00000000-0000-4000-8000-000000000000', training, predictions });
}

interface Run {
  events: { event: TrainerEvent | 'trainEnd'; state: TrainerState }[];
  stepLosses: number[];
  predictions: PredictionRowInput[];
  trainer: Trainer;
  epochTrainLosses: number[];
  evalLosses: number[];
  completed: boolean;
}

/** Trains like the pod program does: the sampler asked at every lifecycle point. */
async function runJob(job: JobConfig, rows = ROWS, signal?: AbortSignal): Promise<Run> {
  const trainer = new Trainer(rows, job.training);
  const sampler = new PredictionSampler(trainer.split.eval, job.predictions, job.training.seed);
  const run: Run = { events: [], stepLosses: [], predictions: [], trainer, epochTrainLosses: [], evalLosses: [], completed: false };
  const at = (event: TrainerEvent, state: TrainerState) => {
    run.events.push({ event, state });
    run.predictions.push(...sampler.rowsAt(event, state, trainer));
  };
  const result = await trainer.train(
    {
      onStepEnd: (state, logs) => {
        run.stepLosses.push(logs.loss);
        at('stepEnd', state);
      },
      onEvaluate: (state, metrics) => {
        run.evalLosses.push(metrics.evalLoss);
        at('evaluate', state);
      },
      onEpochEnd: (state) => at('epochEnd', state),
      onTrainEnd: (state) => run.events.push({ event: 'trainEnd', state }),
    },
    signal,
  );
  run.epochTrainLosses = result.epochTrainLosses;
  run.completed = result.completed;
  return run;
}

const keysOf = (rows: PredictionRowInput[]) => rows.map(({ epoch, step, sampleIndex, trigger }) => ({ epoch, step, trigger, sampleIndex }));
const pointsOf = (rows: PredictionRowInput[]) => [...new Set(rows.map((row) => `${row.epoch}:${row.step}`))];

describe('Trainer on the example dataset with the default config', () => {
  it('learns: loss falls every epoch and later predictions are closer to the ground truth', async () => {
    const job = config();
    const started = performance.now();
    const run = await runJob(job);
    const seconds = (performance.now() - started) / 1000;

    const [train1, train2, train3] = run.epochTrainLosses as [number, number, number];
    expect(train2).toBeLessThan(train1);
    expect(train3).toBeLessThan(train2 * 0.8);
    const [eval1, eval2, eval3] = run.evalLosses as [number, number, number];
    expect(eval2).toBeLessThan(eval1);
    expect(eval3).toBeLessThan(eval2);

    // The five sampled predictions per epoch (what the UI shows).
    const byEpoch = scoreByEpoch(run.predictions);
    const f1 = [1, 2, 3].map((epoch) => byEpoch.get(epoch)?.meanF1 ?? NaN);
    expect(f1[2]).toBeGreaterThan((f1[0] as number) + 0.1);

    // Every held-out row, for a less noisy measure of the final model.
    const all = choosePredictionSamples(run.trainer.split.eval, 1000, job.training.seed);
    const finalScore = scorePredictions(generatePredictions(run.trainer, all, job.predictions.maxNewTokens));
    expect(finalScore.meanF1).toBeGreaterThan(0.45);

    expect(seconds).toBeLessThan(15);
    console.info(
      `example dataset, defaults: ${seconds.toFixed(2)} s; train loss per epoch ${run.epochTrainLosses.map((l) => l.toFixed(3)).join(' → ')}; ` +
        `eval loss ${run.evalLosses.map((l) => l.toFixed(3)).join(' → ')}; sampled F1 per epoch ${f1.map((v) => v.toFixed(3)).join(' → ')}; ` +
        `final F1 on all ${finalScore.count} held-out rows ${finalScore.meanF1.toFixed(3)}, exact match ${finalScore.exactMatchRate.toFixed(3)}`,
    );
  });
});

describe('Trainer determinism', () => {
  it('repeats losses and predictions exactly for a seed, and differs for another seed', async () => {
    const job = (seed: number) => config({ epochs: 1, seed }, { sampleFrequency: 'steps', stepInterval: 10 });
    const first = await runJob(job(7));
    const again = await runJob(job(7));
    const other = await runJob(job(8));
    expect(again.stepLosses).toEqual(first.stepLosses);
    expect(again.evalLosses).toEqual(first.evalLosses);
    expect(again.predictions).toEqual(first.predictions);
    expect(other.stepLosses).not.toEqual(first.stepLosses);
    expect(other.predictions.map((row) => row.prompt)).not.toEqual(first.predictions.map((row) => row.prompt));
  });
});

describe('Trainer lifecycle (Hugging Face semantics)', () => {
  it('counts optimizer steps, exposes fractional and integer epochs, and orders epoch end → evaluate for epoch evaluation', async () => {
    const run = await runJob(config({ epochs: 2 }));
    const steps = run.events.filter((e) => e.event === 'stepEnd').map((e) => e.state);
    expect(steps.map((s) => s.globalStep)).toEqual(Array.from({ length: 2 * STEPS_PER_EPOCH }, (_, i) => i + 1));
    expect(steps[0]).toEqual({
      globalStep: 1,
      epoch: 1 / STEPS_PER_EPOCH,
      epochNumber: 1,
      stepsPerEpoch: STEPS_PER_EPOCH,
      totalSteps: 2 * STEPS_PER_EPOCH,
      numEpochs: 2,
    });
    expect(steps[STEPS_PER_EPOCH]?.epochNumber).toBe(2);

    const around = (step: number) => run.events.filter((e) => e.state.globalStep === step).map((e) => e.event);
    expect(around(STEPS_PER_EPOCH)).toEqual(['stepEnd', 'epochEnd', 'evaluate']);
    expect(around(2 * STEPS_PER_EPOCH)).toEqual(['stepEnd', 'epochEnd', 'evaluate', 'trainEnd']);
    expect(run.events.find((e) => e.event === 'epochEnd')?.state.epoch).toBe(1);
  });

  it('evaluates right after the step with step-based evaluation, before the epoch ends', async () => {
    const run = await runJob(config({ epochs: 1, evalStrategy: 'steps', evalSteps: STEPS_PER_EPOCH }));
    const around = (step: number) => run.events.filter((e) => e.state.globalStep === step).map((e) => e.event);
    expect(around(STEPS_PER_EPOCH)).toEqual(['stepEnd', 'evaluate', 'epochEnd', 'trainEnd']);
  });

  it('never evaluates with evalStrategy "no"', async () => {
    const run = await runJob(config({ epochs: 1, evalStrategy: 'no' }, { sampleFrequency: 'epoch' }));
    expect(run.events.filter((e) => e.event === 'evaluate')).toEqual([]);
  });

  it('hands the event loop back while training', async () => {
    let ticks = 0;
    let longestGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      ticks++;
    }, 1);
    await runJob(config({ epochs: 1 }));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(10);
    expect(longestGap).toBeLessThan(100);
  });

  it('stops between steps when aborted, and reports that it did not complete', async () => {
    const controller = new AbortController();
    const trainer = new Trainer(ROWS, config().training);
    const ends: boolean[] = [];
    const result = await trainer.train(
      {
        onStepEnd: (state) => {
          if (state.globalStep === 5) controller.abort();
        },
        onTrainEnd: (_state, { completed }) => ends.push(completed),
      },
      controller.signal,
    );
    expect(result.completed).toBe(false);
    expect(result.state.globalStep).toBe(5);
    expect(ends).toEqual([false]);
    await expect(trainer.train()).rejects.toThrow(/runs once/);
  });

  it('trains on a dataset smaller than one batch (one step per epoch)', async () => {
    const tiny = [
      { prompt: 'a', completion: 'b' },
      { prompt: 'c', completion: 'd' },
    ];
    const run = await runJob(config({ epochs: 2 }, { sampleCount: 5 }), tiny);
    expect(run.events.filter((e) => e.event === 'stepEnd')).toHaveLength(2);
    expect(keysOf(run.predictions)).toEqual(expectedPredictionKeys(config({ epochs: 2 }, { sampleCount: 5 }), tiny.length));
  });
});

describe('predictions triggers fire exactly where expected', () => {
  const E = STEPS_PER_EPOCH;
  const cases: { name: string; job: JobConfig; points: string[] }[] = [
    { name: 'eval with evalStrategy "epoch"', job: config(), points: [`1:${E}`, `2:${2 * E}`, `3:${3 * E}`] },
    {
      name: 'eval with evalStrategy "steps"',
      job: config({ evalStrategy: 'steps', evalSteps: 50 }),
      points: ['2:50', '3:100'],
    },
    { name: 'epoch (evaluation off)', job: config({ evalStrategy: 'no' }, { sampleFrequency: 'epoch' }), points: [`1:${E}`, `2:${2 * E}`, `3:${3 * E}`] },
    {
      name: 'steps, with an interval that lands on an epoch end',
      job: config({}, { sampleFrequency: 'steps', stepInterval: E }),
      points: [`1:${E}`, `2:${2 * E}`, `3:${3 * E}`],
    },
    { name: 'steps', job: config({}, { sampleFrequency: 'steps', stepInterval: 30 }), points: ['1:30', '2:60', '3:90', '3:120'] },
    { name: 'eval with evalStrategy "no" (never)', job: config({ evalStrategy: 'no' }), points: [] },
    { name: 'predictions disabled (never)', job: config({}, { enabled: false }), points: [] },
  ];

  it.each(cases)('$name', async ({ job, points }) => {
    expect(E).toBe(42); // the hand-written points above assume the example's 334 training rows
    const run = await runJob(job);
    expect(pointsOf(run.predictions)).toEqual(points);
    expect(keysOf(run.predictions)).toEqual(expectedPredictionKeys(job, ROWS.length));
    for (const row of run.predictions) expect(row.trigger).toBe(job.predictions.sampleFrequency);
  });

  it('predicts the same held-out samples, with the same sampleIndex, at every fire', async () => {
    const job = config({}, { sampleFrequency: 'steps', stepInterval: 20, sampleCount: 7 });
    const run = await runJob(job);
    const fires = new Map<number, PredictionRowInput[]>();
    for (const row of run.predictions) fires.set(row.step, [...(fires.get(row.step) ?? []), row]);
    expect(fires.size).toBe(6);
    const firstFire = [...fires.values()][0]?.map(({ sampleIndex, prompt, groundTruth }) => ({ sampleIndex, prompt, groundTruth }));
    expect(firstFire?.map((s) => s.sampleIndex)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (const rows of fires.values()) {
      expect(rows.map(({ sampleIndex, prompt, groundTruth }) => ({ sampleIndex, prompt, groundTruth }))).toEqual(firstFire);
    }
    const heldOut = new Set(run.trainer.split.eval.map((row) => row.prompt));
    for (const sample of firstFire ?? []) expect(heldOut.has(sample.prompt)).toBe(true);
  });
});
