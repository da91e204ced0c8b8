import { describe, expect, it } from 'vitest';
import { predictionsConfig, trainingConfig, type PredictionsConfig, type TrainingConfig } from '#contract/job-config';
import { epochOfStep, expectedPredictionKeys, expectedPredictionPoints, predictionTriggerAt, shouldEvaluate } from './schedule';

const training = (overrides: Partial<TrainingConfig> = {}) => trainingConfig.parse(overrides);
const predictions = (overrides: Partial<PredictionsConfig> = {}) => predictionsConfig.parse(overrides);

// 100 rows: 90 train, 10 eval; batch 8 → 12 steps per epoch; 3 epochs → 36 steps.
const ROWS = 100;

describe('shouldEvaluate', () => {
  it('never evaluates with evalStrategy "no"', () => {
    for (let step = 1; step <= 40; step++) {
      expect(shouldEvaluate(training({ evalStrategy: 'no' }), 'stepEnd', step)).toBe(false);
      expect(shouldEvaluate(training({ evalStrategy: 'no' }), 'epochEnd', step)).toBe(false);
    }
  });
  it('evaluates at epoch ends only with "epoch", and on multiples of evalSteps with "steps"', () => {
    expect(shouldEvaluate(training({ evalStrategy: 'epoch' }), 'epochEnd', 12)).toBe(true);
    expect(shouldEvaluate(training({ evalStrategy: 'epoch' }), 'stepEnd', 12)).toBe(false);
    const steps = training({ evalStrategy: 'steps', evalSteps: 5 });
    expect([5, 10, 11, 0].map((s) => shouldEvaluate(steps, 'stepEnd', s))).toEqual([true, true, false, false]);
    expect(shouldEvaluate(steps, 'epochEnd', 10)).toBe(false);
  });
});

describe('predictionTriggerAt', () => {
  it('fires "eval" after evaluations, "epoch" at epoch ends, "steps" on multiples of stepInterval', () => {
    expect(predictionTriggerAt(predictions({ sampleFrequency: 'eval' }), 'evaluate', 7)).toBe('eval');
    expect(predictionTriggerAt(predictions({ sampleFrequency: 'eval' }), 'epochEnd', 12)).toBeNull();
    expect(predictionTriggerAt(predictions({ sampleFrequency: 'epoch' }), 'epochEnd', 12)).toBe('epoch');
    expect(predictionTriggerAt(predictions({ sampleFrequency: 'epoch' }), 'evaluate', 12)).toBeNull();
    const steps = predictions({ sampleFrequency: 'steps', stepInterval: 4 });
    expect([4, 6, 8].map((s) => predictionTriggerAt(steps, 'stepEnd', s))).toEqual(['steps', null, 'steps']);
    expect(predictionTriggerAt(steps, 'evaluate', 8)).toBeNull();
  });
  it('never fires when disabled or without a step interval', () => {
    expect(predictionTriggerAt(predictions({ enabled: false }), 'evaluate', 12)).toBeNull();
    expect(predictionTriggerAt(predictions({ sampleFrequency: 'steps' }), 'stepEnd', 12)).toBeNull();
  });
});

describe('epochOfStep', () => {
  it('puts the last step of epoch k in epoch k', () => {
    expect([0, 1, 12, 13, 24, 25, 36].map((s) => epochOfStep(s, 12))).toEqual([1, 1, 1, 2, 2, 3, 3]);
  });
});

describe('expectedPredictionPoints', () => {
  const points = (t: Partial<TrainingConfig>, p: Partial<PredictionsConfig>) =>
    expectedPredictionPoints({ training: training(t), predictions: predictions(p) }, ROWS).map(({ epoch, step }) => [epoch, step]);

  it('eval + evalStrategy epoch: each epoch end', () => {
    expect(points({}, {})).toEqual([[1, 12], [2, 24], [3, 36]]);
  });
  it('eval + evalStrategy steps: each multiple of evalSteps, with fractional epochs rounded up', () => {
    expect(points({ evalStrategy: 'steps', evalSteps: 10 }, {})).toEqual([[1, 10], [2, 20], [3, 30]]);
    expect(points({ evalStrategy: 'steps', evalSteps: 12 }, {})).toEqual([[1, 12], [2, 24], [3, 36]]);
  });
  it('eval + evalStrategy no: nothing', () => {
    expect(points({ evalStrategy: 'no' }, {})).toEqual([]);
  });
  it('epoch: each epoch end, whatever the evaluation', () => {
    expect(points({ evalStrategy: 'no', epochs: 2 }, { sampleFrequency: 'epoch' })).toEqual([[1, 12], [2, 24]]);
  });
  it('steps: each multiple of stepInterval up to the last step', () => {
    expect(points({}, { sampleFrequency: 'steps', stepInterval: 7 })).toEqual([[1, 7], [2, 14], [2, 21], [3, 28], [3, 35]]);
    expect(points({}, { sampleFrequency: 'steps', stepInterval: 37 })).toEqual([]);
  });
  it('disabled: nothing', () => {
    expect(points({}, { enabled: false })).toEqual([]);
  });
});

describe('expectedPredictionKeys', () => {
  it('crosses each point with min(sampleCount, held-out rows) samples', () => {
    const config = { training: training({ epochs: 1 }), predictions: predictions({ sampleCount: 3 }) };
    expect(expectedPredictionKeys(config, ROWS)).toEqual([0, 1, 2].map((sampleIndex) => ({ epoch: 1, step: 12, trigger: 'eval', sampleIndex })));
    const many = { training: training({ epochs: 1 }), predictions: predictions({ sampleCount: 50 }) };
    expect(expectedPredictionKeys(many, ROWS)).toHaveLength(10);
  });
});
