import { describe, expect, it } from 'vitest';
import { predictionsConfig } from '#contract/job-config';
import { choosePredictionSamples, generatePredictions, PredictionSampler } from './sampler';
import type { TrainerState } from './trainer-loop';

const evalRows = Array.from({ length: 20 }, (_, i) => ({ prompt: `prompt ${i}`, completion: `answer ${i}` }));
const state = (globalStep: number): TrainerState => ({
  globalStep,
  epoch: globalStep / 10,
  epochNumber: Math.max(1, Math.ceil(globalStep / 10)),
  stepsPerEpoch: 10,
  totalSteps: 30,
  numEpochs: 3,
});
/** A stand-in model that echoes, so these tests are about choosing and labelling only. */
const echo = { generate: (prompt: string, maxNewTokens: number) => `${prompt} (${maxNewTokens})` };

describe('choosePredictionSamples', () => {
  it('chooses min(sampleCount, rows) distinct held-out rows by the seed, numbered in order', () => {
    const samples = choosePredictionSamples(evalRows, 5, 42);
    expect(samples.map((s) => s.sampleIndex)).toEqual([0, 1, 2, 3, 4]);
    expect(new Set(samples.map((s) => s.evalIndex)).size).toBe(5);
    for (const sample of samples) {
      expect(sample.prompt).toBe(evalRows[sample.evalIndex]?.prompt);
      expect(sample.groundTruth).toBe(evalRows[sample.evalIndex]?.completion);
    }
    expect(choosePredictionSamples(evalRows, 5, 42)).toEqual(samples);
    expect(choosePredictionSamples(evalRows, 5, 43)).not.toEqual(samples);
    expect(choosePredictionSamples(evalRows, 100, 42)).toHaveLength(20);
  });

  it('is not simply the first rows', () => {
    expect(choosePredictionSamples(evalRows, 5, 42).map((s) => s.evalIndex)).not.toEqual([0, 1, 2, 3, 4]);
  });
});

describe('generatePredictions', () => {
  it('generates for each sample with maxNewTokens', () => {
    const samples = choosePredictionSamples(evalRows, 2, 1);
    expect(generatePredictions(echo, samples, 9)).toEqual(
      samples.map((s) => ({ sampleIndex: s.sampleIndex, prompt: s.prompt, groundTruth: s.groundTruth, prediction: `${s.prompt} (9)` })),
    );
  });
});

describe('PredictionSampler', () => {
  it('labels rows with the step, its 1-based epoch and the trigger, and returns nothing when it does not fire', () => {
    const sampler = new PredictionSampler(evalRows, predictionsConfig.parse({ sampleFrequency: 'steps', stepInterval: 10, sampleCount: 3 }), 42);
    expect(sampler.rowsAt('stepEnd', state(5), echo)).toEqual([]);
    expect(sampler.rowsAt('evaluate', state(10), echo)).toEqual([]);
    const rows = sampler.rowsAt('stepEnd', state(10), echo);
    expect(rows.map(({ epoch, step, trigger, sampleIndex }) => ({ epoch, step, trigger, sampleIndex }))).toEqual(
      [0, 1, 2].map((sampleIndex) => ({ epoch: 1, step: 10, trigger: 'steps', sampleIndex })),
    );
    expect(sampler.rowsAt('stepEnd', state(20), echo).map((r) => [r.epoch, r.prompt])).toEqual(rows.map((r) => [2, r.prompt]));
  });

  it('samples nothing when predictions are disabled', () => {
    const sampler = new PredictionSampler(evalRows, predictionsConfig.parse({ enabled: false }), 42);
    expect(sampler.samples).toEqual([]);
    expect(sampler.firesAt('evaluate', 10)).toBe(false);
  });
});
