import { describe, expect, it } from 'vitest';
import { scoreByEpoch, scorePredictions, tokenF1 } from './metrics';

describe('scorePredictions', () => {
  it('averages token F1 and exact match over normalised words', () => {
    const score = scorePredictions([
      { prediction: 'Paris', groundTruth: 'paris' },
      { prediction: 'a cat says woof', groundTruth: 'a cat says meow' },
      { prediction: '', groundTruth: 'blue' },
    ]);
    expect(tokenF1('a cat says woof', 'a cat says meow')).toBeCloseTo(0.75);
    expect(score.count).toBe(3);
    expect(score.meanF1).toBeCloseTo((1 + 0.75 + 0) / 3);
    expect(score.exactMatchRate).toBeCloseTo(1 / 3);
    expect(scorePredictions([])).toEqual({ count: 0, meanF1: 0, exactMatchRate: 0 });
  });

  it('groups scores by epoch in ascending order', () => {
    const byEpoch = scoreByEpoch([
      { epoch: 2, prediction: 'cold', groundTruth: 'cold' },
      { epoch: 1, prediction: 'hot', groundTruth: 'cold' },
    ]);
    expect([...byEpoch.keys()]).toEqual([1, 2]);
    expect(byEpoch.get(1)?.meanF1).toBe(0);
    expect(byEpoch.get(2)?.meanF1).toBe(1);
  });
});
