// A word-level diff of a prediction against its ground truth (longest common subsequence),
// so the compare view can show which words the model got, added or missed. Words are compared
// as the scorer normalises them (case and punctuation do not count), but shown as written.
import { normaliseTokens } from '#contract/scoring';

export type DiffPart = { kind: 'same' | 'extra' | 'missing'; text: string };

/** Past this many words each side the table would be large; fall back to a plain comparison. */
const MAX_WORDS = 400;

function words(text: string): { text: string; key: string }[] {
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map((word) => ({ text: word, key: normaliseTokens(word).join(' ') }));
}

/**
 * The prediction's words in order, each marked "same" (also in the truth, in order), "extra"
 * (only in the prediction), interleaved with the truth's "missing" words where they belong.
 */
export function wordDiff(prediction: string, truth: string): DiffPart[] {
  const a = words(prediction);
  const b = words(truth);
  if (a.length > MAX_WORDS || b.length > MAX_WORDS) {
    return [
      ...a.map((w) => ({ kind: 'extra' as const, text: w.text })),
      ...b.map((w) => ({ kind: 'missing' as const, text: w.text })),
    ];
  }
  // lengths[i][j]: the LCS length of a[i..] and b[j..].
  const width = b.length + 1;
  const lengths = new Uint16Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lengths[i * width + j] =
        a[i]?.key === b[j]?.key
          ? (lengths[(i + 1) * width + j + 1] ?? 0) + 1
          : Math.max(lengths[(i + 1) * width + j] ?? 0, lengths[i * width + j + 1] ?? 0);
    }
  }
  const parts: DiffPart[] = [];
  const push = (kind: DiffPart['kind'], text: string) => {
    const last = parts.at(-1);
    if (last && last.kind === kind) last.text += ` ${text}`;
    else parts.push({ kind, text });
  };
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const left = a[i];
    const right = b[j];
    if (left && right && left.key === right.key) {
      push('same', left.text);
      i++;
      j++;
    } else if (left && (!right || (lengths[(i + 1) * width + j] ?? 0) >= (lengths[i * width + j + 1] ?? 0))) {
      push('extra', left.text);
      i++;
    } else if (right) {
      push('missing', right.text);
      j++;
    }
  }
  return parts;
}
