// Parses a JSON Lines dataset into prompt/completion rows, naming the first bad lines by number
// so a user can fix the file instead of guessing.
import { AppError } from '../errors';
import { toStorableText } from '../contract/text';
import { DATASET_FIELD_MAX, DATASET_MAX_ROWS, DATASET_MIN_ROWS } from '../contract/datasets.schemas';
import type { DatasetRow } from '../../db/schema';

/** Accepted key pairs, in order of preference. */
const KEY_PAIRS = [
  ['prompt', 'completion'],
  ['prompt', 'response'],
  ['input', 'output'],
] as const;

const MAX_REPORTED = 5;

export function parseDatasetJsonl(text: string): DatasetRow[] {
  const rows: DatasetRow[] = [];
  const problems: string[] = [];
  let badLines = 0;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]?.trim();
    if (!line) continue;
    const problem = parseLine(line, rows);
    if (problem) {
      badLines++;
      if (problems.length < MAX_REPORTED) problems.push(`line ${i + 1}: ${problem}`);
    }
    if (rows.length > DATASET_MAX_ROWS) {
      throw new AppError('PAYLOAD_TOO_LARGE', `The dataset has more than ${DATASET_MAX_ROWS} rows; split it or sample it down`, {
        field: 'jsonl',
      });
    }
  }
  if (badLines > 0) {
    const more = badLines > problems.length ? ` (and ${badLines - problems.length} more bad lines)` : '';
    throw new AppError('BAD_REQUEST', `${problems.join('; ')}${more}`, { field: 'jsonl' });
  }
  if (rows.length < DATASET_MIN_ROWS) {
    throw new AppError('BAD_REQUEST', `A dataset needs at least ${DATASET_MIN_ROWS} rows; this one has ${rows.length}`, {
      field: 'jsonl',
    });
  }
  return rows;
}

function parseLine(line: string, rows: DatasetRow[]): string | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'expected a JSON object';
  const record = value as Record<string, unknown>;
  const pair = KEY_PAIRS.find(([p, c]) => p in record && c in record);
  if (!pair) return 'expected "prompt" and "completion" (or "prompt"/"response", "input"/"output")';
  const [promptKey, completionKey] = pair;
  const prompt = record[promptKey];
  const completion = record[completionKey];
  if (typeof prompt !== 'string' || typeof completion !== 'string') return `"${promptKey}" and "${completionKey}" must be strings`;
  if (!prompt.trim()) return `"${promptKey}" is empty`;
  if (prompt.length > DATASET_FIELD_MAX || completion.length > DATASET_FIELD_MAX) {
    return `a field is longer than ${DATASET_FIELD_MAX} characters`;
  }
  // A line may escape a NUL or half of an emoji (`"a\u0000b"`, `"\ud83d"`): JSON carries them,
  // jsonb refuses them (failing the whole upload). They become U+FFFD, as in every other input;
  // the tRPC middleware cannot do it here, as the escapes are still text inside the file.
  rows.push({ prompt: toStorableText(prompt), completion: toStorableText(completion) });
  return null;
}
