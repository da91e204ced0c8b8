import { describe, expect, it } from 'vitest';
import { createRng, shuffledIndices, streamRng } from './rng';

const draw = (seed: number, n: number) => {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.next());
};

describe('rng', () => {
  it('repeats exactly for a seed and differs between seeds', () => {
    expect(draw(42, 100)).toEqual(draw(42, 100));
    expect(draw(42, 100)).not.toEqual(draw(43, 100));
  });

  it('draws uniform values in [0, 1) and integers in [0, n)', () => {
    const rng = createRng(7);
    const values = Array.from({ length: 20_000 }, () => rng.next());
    const ints = Array.from({ length: 20_000 }, () => rng.int(5));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    expect(values.reduce((a, b) => a + b, 0) / values.length).toBeCloseTo(0.5, 1);
    expect(new Set(ints)).toEqual(new Set([0, 1, 2, 3, 4]));
  });

  it('draws normals with mean 0 and variance 1', () => {
    const rng = createRng(3);
    const values = Array.from({ length: 20_000 }, () => rng.normal());
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(variance).toBeGreaterThan(0.95);
    expect(variance).toBeLessThan(1.05);
  });

  it('gives each purpose its own stream', () => {
    expect(streamRng(42, 'split').next()).not.toBe(streamRng(42, 'shuffle').next());
    expect(streamRng(42, 'split').next()).toBe(streamRng(42, 'split').next());
  });

  it('shuffles into a permutation', () => {
    const order = shuffledIndices(50, createRng(1));
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(order).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});
