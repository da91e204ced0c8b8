// Reads the example dataset that every new account starts with (server/datasets/example.jsonl),
// for the trainer's tests and for anyone trying the trainer locally without a server.
import { readFileSync } from 'node:fs';
import type { PromptCompletion } from './data';

export const EXAMPLE_DATASET_FILE = new URL('../../server/datasets/example.jsonl', import.meta.url);

export function readExampleRows(): PromptCompletion[] {
  return readFileSync(EXAMPLE_DATASET_FILE, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const { prompt, completion } = JSON.parse(line) as Partial<PromptCompletion>;
      if (typeof prompt !== 'string' || typeof completion !== 'string') throw new Error(`Bad example row: ${line}`);
      return { prompt, completion };
    });
}
