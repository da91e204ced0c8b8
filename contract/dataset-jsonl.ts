// Parses a JSON Lines dataset into prompt/completion rows, naming the first bad lines by number
// so a user can fix the file instead of guessing. Shared: the server parses uploads with it, the
// trainer parses --dataset files, the database stores its rows.
import { toStorableText } from './text';
import { DATASET_FIELD_MAX, DATASET_MAX_ROWS, DATASET_MIN_ROWS } from './datasets.schemas';

/** One training example as a dataset holds it. */
export interface DatasetRow {
  prompt: string;
  completion: string;
}

/** Why a dataset cannot be used: `tooLarge` past DATASET_MAX_ROWS, otherwise a bad file; the message names lines and limits. */
export class DatasetParseError extends Error {
  constructor(
    message: string,
    readonly tooLarge = false,
  ) {
    super(message);
    this.name = 'DatasetParseError';
  }
}

/** Accepted key pairs, in order of preference. */
const KEY_PAIRS = [
  ['prompt', 'completion'],
  ['prompt', 'response'],
  ['input', 'output'],
] as const;

const MAX_REPORTED = 5;

/** The rows of a JSON Lines dataset; throws DatasetParseError naming the first bad lines (at most five) or the row limits. */
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
      throw new DatasetParseError(`The dataset has more than ${DATASET_MAX_ROWS} rows; split it or sample it down`, true);
    }
  }
  if (badLines > 0) {
    const more = badLines > problems.length ? ` (and ${badLines - problems.length} more bad lines)` : '';
    throw new DatasetParseError(`${problems.join('; ')}${more}`);
  }
  if (rows.length < DATASET_MIN_ROWS) {
    throw new DatasetParseError(`A dataset needs at least ${DATASET_MIN_ROWS} rows; this one has ${rows.length}`);
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
