import { describe, expect, it } from 'vitest';
import { readExampleRows } from './example-rows';
import { BOS, BOS_ID, EOS, EOS_ID, Tokenizer, UNK, UNK_ID, splitWords } from './tokenizer';

describe('tokenizer', () => {
  it('splits lowercase words and punctuation marks', () => {
    expect(splitWords('What is the Capital of France?')).toEqual(['what', 'is', 'the', 'capital', 'of', 'france', '?']);
    expect(splitWords("one child , two  don't")).toEqual(['one', 'child', ',', 'two', "don't"]);
  });

  it('puts the special tokens first and orders words by frequency', () => {
    const tokenizer = Tokenizer.fromTexts(['b a a', 'c a b']);
    expect(tokenizer.vocab).toEqual([UNK, BOS, EOS, 'a', 'b', 'c']);
    expect([tokenizer.idOf(UNK), tokenizer.idOf(BOS), tokenizer.idOf(EOS)]).toEqual([UNK_ID, BOS_ID, EOS_ID]);
  });

  it('round-trips every row of the example dataset', () => {
    const rows = readExampleRows();
    const tokenizer = Tokenizer.fromRows(rows);
    for (const row of rows) {
      for (const text of [row.prompt, row.completion]) {
        const ids = tokenizer.encode(text);
        expect(ids).not.toContain(UNK_ID);
        expect(tokenizer.encode(tokenizer.decode(ids))).toEqual(ids);
        expect(splitWords(tokenizer.decode(ids))).toEqual(splitWords(text));
      }
    }
    expect(tokenizer.decode(tokenizer.encode('capital of france ?'))).toBe('capital of france?');
  });

  it('maps unknown words to <unk> and drops <bos>/<eos> when decoding', () => {
    const tokenizer = Tokenizer.fromTexts(['red fox']);
    expect(tokenizer.encode('red zebra')).toEqual([tokenizer.idOf('red'), UNK_ID]);
    expect(tokenizer.decode([BOS_ID, tokenizer.idOf('fox'), EOS_ID])).toBe('fox');
  });

  it('caps the vocabulary, keeping the most frequent words', () => {
    const tokenizer = Tokenizer.fromTexts(['a a a b b c'], { maxVocab: 2 });
    expect(tokenizer.vocab).toEqual([UNK, BOS, EOS, 'a', 'b']);
    expect(tokenizer.encode('c')).toEqual([UNK_ID]);
  });
});
