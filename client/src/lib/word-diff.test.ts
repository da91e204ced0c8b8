import { describe, expect, it } from 'vitest';
import { wordDiff } from './word-diff';

describe('wordDiff', () => {
  it('marks every word the same when prediction and truth agree, ignoring case and punctuation', () => {
    expect(wordDiff('Paris, France.', 'paris france')).toEqual([{ kind: 'same', text: 'Paris, France.' }]);
  });

  it('names the extra and the missing words in reading order', () => {
    expect(wordDiff('the cat sat on a mat', 'the cat sat on the mat')).toEqual([
      { kind: 'same', text: 'the cat sat on' },
      { kind: 'extra', text: 'a' },
      { kind: 'missing', text: 'the' },
      { kind: 'same', text: 'mat' },
    ]);
  });

  it('handles an empty prediction and an empty truth', () => {
    expect(wordDiff('', 'blue')).toEqual([{ kind: 'missing', text: 'blue' }]);
    expect(wordDiff('blue', '')).toEqual([{ kind: 'extra', text: 'blue' }]);
    expect(wordDiff('', '')).toEqual([]);
  });
});
