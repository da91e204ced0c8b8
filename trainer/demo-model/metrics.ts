// Scores for predictions against their ground truth. The per-row scores are the shared ones
// (contract/scoring.ts), so the trainer, the compare view and the tests measure alike.
import { exactMatch, tokenF1 } from '#contract/scoring';

export { exactMatch, normaliseTokens, tokenF1 } from '#contract/scoring';

export interface PredictionScore {
  count: number;
  meanF1: number;
  exactMatchRate: number;
}

export function scorePredictions(rows: readonly { prediction: string; groundTruth: string }[]): PredictionScore {
  if (rows.length === 0) return { count: 0, meanF1: 0, exactMatchRate: 0 };
  let f1 = 0;
  let exact = 0;
  for (const row of rows) {
    f1 += tokenF1(row.prediction, row.groundTruth);
    if (exactMatch(row.prediction, row.groundTruth)) exact++;
  }
  return { count: rows.length, meanF1: f1 / rows.length, exactMatchRate: exact / rows.length };
}

/** Scores grouped by epoch, ascending — "are later epochs closer?" in one call. */
export function scoreByEpoch(rows: readonly { epoch: number; prediction: string; groundTruth: string }[]): Map<number, PredictionScore> {
  const groups = new Map<number, { prediction: string; groundTruth: string }[]>();
  for (const row of rows) {
    const group = groups.get(row.epoch) ?? [];
    group.push(row);
    groups.set(row.epoch, group);
  }
  return new Map([...groups.entries()].sort((a, b) => a[0] - b[0]).map(([epoch, group]) => [epoch, scorePredictions(group)]));
}
