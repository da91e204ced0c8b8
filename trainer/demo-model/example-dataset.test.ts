// The example dataset every new account gets: parseable by the server, a few hundred varied
// rows, short lowercase completions a tiny word-level model can learn.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDatasetJsonl } from '#contract/dataset-jsonl';
import { EXAMPLE_DATASET_FILE, readExampleRows } from './example-rows';

describe('example dataset', () => {
  const rows = readExampleRows();

  it('parses with the server’s own JSONL parser and has 300–400 rows', () => {
    expect(parseDatasetJsonl(readFileSync(EXAMPLE_DATASET_FILE, 'utf8'))).toEqual(rows);
    expect(rows.length).toBeGreaterThanOrEqual(300);
    expect(rows.length).toBeLessThanOrEqual(400);
  });

  it('has distinct prompts, lowercase text and completions of 1–6 words', () => {
    expect(new Set(rows.map((row) => row.prompt)).size).toBe(rows.length);
    for (const row of rows) {
      expect(row.prompt).toBe(row.prompt.toLowerCase());
      expect(row.completion).toBe(row.completion.toLowerCase());
      const words = row.completion.trim().split(/\s+/).length;
      expect(words).toBeGreaterThanOrEqual(1);
      expect(words).toBeLessThanOrEqual(6);
    }
  });

  it('is varied: many different answers and no answer dominating', () => {
    const counts = new Map<string, number>();
    for (const row of rows) counts.set(row.completion, (counts.get(row.completion) ?? 0) + 1);
    expect(counts.size).toBeGreaterThan(100);
    expect(Math.max(...counts.values())).toBeLessThan(rows.length / 20);
  });
});
