import { describe, expect, it } from 'vitest';
import { splitSizes } from '#contract/job-config';
import { MAX_COMPLETION_TOKENS, MAX_PROMPT_TOKENS, encodeExample, promptWordWeights, splitDataset } from './data';
import { readExampleRows } from './example-rows';
import { EOS_ID, Tokenizer } from './tokenizer';

const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ prompt: `p ${i}`, completion: `c ${i}` }));

describe('splitDataset', () => {
  it('holds out exactly the contract’s number of rows, disjoint from training, chosen by the seed', () => {
    const data = rows(123);
    const split = splitDataset(data, 42);
    expect(split.eval).toHaveLength(splitSizes(123).eval);
    expect(split.train).toHaveLength(splitSizes(123).train);
    expect(new Set([...split.trainIndices, ...split.evalIndices]).size).toBe(123);
    expect(split.eval).toEqual(split.evalIndices.map((i) => data[i]));
    expect(splitDataset(data, 42)).toEqual(split);
    expect(splitDataset(data, 43).evalIndices).not.toEqual(split.evalIndices);
    // Not simply the last rows.
    expect(split.evalIndices).not.toEqual(Array.from({ length: 12 }, (_, i) => 111 + i));
  });

  it('trains and evaluates on every row below 10 rows, as the contract says', () => {
    const split = splitDataset(rows(6), 1);
    expect(split.train).toHaveLength(6);
    expect(split.eval).toHaveLength(6);
  });
});

describe('encodeExample', () => {
  const tokenizer = Tokenizer.fromTexts(['a b c']);
  it('ends the target with <eos>', () => {
    expect(encodeExample(tokenizer, { prompt: 'a b', completion: 'c' })).toEqual({ prompt: [tokenizer.idOf('a'), tokenizer.idOf('b')], target: [tokenizer.idOf('c'), EOS_ID] });
  });
  it('keeps the end of a long prompt and the start of a long completion, without <eos>', () => {
    const long = Array.from({ length: 100 }, (_, i) => (i % 2 ? 'a' : 'b')).join(' ');
    const example = encodeExample(tokenizer, { prompt: `${long} c`, completion: long });
    expect(example.prompt).toHaveLength(MAX_PROMPT_TOKENS);
    expect(example.prompt.at(-1)).toBe(tokenizer.idOf('c'));
    expect(example.target).toHaveLength(MAX_COMPLETION_TOKENS);
    expect(example.target).not.toContain(EOS_ID);
  });
});

describe('promptWordWeights', () => {
  it('weighs the rare words of a prompt above the template words', () => {
    const data = readExampleRows();
    const tokenizer = Tokenizer.fromRows(data);
    const weights = promptWordWeights(tokenizer, data);
    const weight = (word: string) => weights[tokenizer.idOf(word)] as number;
    expect(weight('france')).toBeGreaterThan(3 * weight('the'));
    expect(weight('capital')).toBeGreaterThan(weight('of'));
    expect(Math.min(...weights)).toBeGreaterThanOrEqual(1);
  });
});
