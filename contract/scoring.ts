// How close a prediction is to its ground truth: token-level F1 and exact match over
// normalised words. Shared by the server (compare), the SPA (diffs) and the trainer (eval).
export function normaliseTokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s']/gu, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

export function exactMatch(prediction: string, truth: string): boolean {
  return normaliseTokens(prediction).join(' ') === normaliseTokens(truth).join(' ');
}

/** SQuAD-style token F1: harmonic mean of precision and recall over the multiset of words. */
export function tokenF1(prediction: string, truth: string): number {
  const predicted = normaliseTokens(prediction);
  const expected = normaliseTokens(truth);
  if (predicted.length === 0 || expected.length === 0) return predicted.length === expected.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const token of expected) counts.set(token, (counts.get(token) ?? 0) + 1);
  let overlap = 0;
  for (const token of predicted) {
    const left = counts.get(token) ?? 0;
    if (left > 0) {
      overlap++;
      counts.set(token, left - 1);
    }
  }
  if (overlap === 0) return 0;
  const precision = overlap / predicted.length;
  const recall = overlap / expected.length;
  return (2 * precision * recall) / (precision + recall);
}
