import { describe, expect, it } from 'vitest';
import { NextWordModel, type EncodedExample } from './model';
import { Sgd } from './optimizer';
import { createRng } from './rng';
import { EOS_ID } from './tokenizer';

const shape = { vocabSize: 9, embedDim: 4, hiddenDim: 5, positions: 3 };
const examples: EncodedExample[] = [
  { prompt: [3, 4, 5], target: [6, 7, 3, 8, EOS_ID] },
  { prompt: [8], target: [4, EOS_ID] },
  { prompt: [5, 5, 6, 7], target: [EOS_ID] },
];
const weights = Float64Array.from({ length: 9 }, (_, i) => 1 + i / 3);

function totalLoss(model: NextWordModel): number {
  return examples.reduce((sum, example) => sum + model.lossOf(example).lossSum, 0);
}

describe('NextWordModel', () => {
  it('computes exact gradients (checked against finite differences on every parameter)', () => {
    const model = new NextWordModel(shape, createRng(5), weights);
    // Non-zero biases and position weights, so their gradients are checked away from zero too.
    const rng = createRng(9);
    for (let i = 0; i < model.params.length; i++) model.params[i] = (model.params[i] as number) + 0.1 * rng.normal();
    model.zeroGradients();
    const { tokens } = model.accumulateGradients(examples, 1);
    expect(tokens).toBe(8);
    const eps = 1e-5;
    let worst = 0;
    for (let i = 0; i < model.params.length; i++) {
      const original = model.params[i] as number;
      model.params[i] = original + eps;
      const up = totalLoss(model);
      model.params[i] = original - eps;
      const down = totalLoss(model);
      model.params[i] = original;
      const numeric = (up - down) / (2 * eps);
      const analytic = model.grads[i] as number;
      worst = Math.max(worst, Math.abs(numeric - analytic) / Math.max(1e-3, Math.abs(numeric) + Math.abs(analytic)));
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it('scales gradients by the given factor and leaves them alone when only measuring loss', () => {
    const model = new NextWordModel(shape, createRng(5));
    model.zeroGradients();
    model.accumulateGradients(examples, 1);
    const full = Float64Array.from(model.grads);
    model.zeroGradients();
    model.accumulateGradients(examples, 0.25);
    model.lossOf(examples[0] as EncodedExample);
    for (let i = 0; i < full.length; i += 7) expect(model.grads[i]).toBeCloseTo((full[i] as number) * 0.25, 12);
  });

  it('starts near the uniform distribution', () => {
    const model = new NextWordModel(shape, createRng(1));
    const { lossSum, tokens } = model.lossOf(examples[0] as EncodedExample);
    expect(lossSum / tokens).toBeGreaterThan(Math.log(9) - 0.3);
    expect(lossSum / tokens).toBeLessThan(Math.log(9) + 0.3);
  });

  it('learns to generate a completion autoregressively and stops at <eos>', () => {
    const model = new NextWordModel(shape, createRng(2));
    const optimizer = new Sgd(model.parameterCount);
    for (let step = 0; step < 300; step++) {
      model.zeroGradients();
      model.accumulateGradients(examples, 1 / 8);
      optimizer.step(model.params, model.grads, 0.5);
    }
    expect(model.generate([3, 4, 5], 10)).toEqual([6, 7, 3, 8]);
    expect(model.generate([8], 10)).toEqual([4]);
    expect(model.generate([5, 5, 6, 7], 10)).toEqual([]);
    expect(model.generate([3, 4, 5], 2)).toEqual([6, 7]);
  });
});
