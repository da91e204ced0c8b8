// Seeded pseudo-random numbers for the trainer. Every random choice in a job (split, weight
// init, batch order, prediction samples) draws from a stream derived from `training.seed`, so a
// job rerun with the same seed trains, evaluates and samples exactly the same way.

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

/** Independent purposes get independent streams, so changing one setting never reshuffles another. */
export const RNG_STREAMS = { split: 1, init: 2, shuffle: 3, samples: 4 } as const;
export type RngStream = keyof typeof RNG_STREAMS;

/** A 32-bit integer mix (from the murmur3 finaliser), used to derive stream seeds. */
function mix32(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** mulberry32: tiny, fast, and good enough for shuffling and initialisation. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  let spareNormal: number | null = null;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    normal: () => {
      if (spareNormal !== null) {
        const value = spareNormal;
        spareNormal = null;
        return value;
      }
      const u = 1 - next(); // (0, 1]: log stays finite
      const v = next();
      const radius = Math.sqrt(-2 * Math.log(u));
      spareNormal = radius * Math.sin(2 * Math.PI * v);
      return radius * Math.cos(2 * Math.PI * v);
    },
  };
}

/** The generator for one purpose within a job. */
export function streamRng(seed: number, stream: RngStream): Rng {
  return createRng(mix32(mix32(seed) ^ Math.imul(RNG_STREAMS[stream], 0x9e3779b9)));
}

/** Fisher–Yates shuffle of 0..n-1. */
export function shuffledIndices(n: number, rng: Rng): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const held = order[i] as number;
    order[i] = order[j] as number;
    order[j] = held;
  }
  return order;
}
