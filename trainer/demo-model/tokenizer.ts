// Word-level tokenizer built from a dataset: lowercase words and single punctuation marks,
// plus <unk>, <bos> and <eos>. Small on purpose: the model predicts whole words, which keeps
// the vocabulary (and the softmax) tiny on the example dataset.

export const UNK = '<unk>';
export const BOS = '<bos>';
export const EOS = '<eos>';
const SPECIALS = [UNK, BOS, EOS] as const;
export const UNK_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;

const WORD_OR_MARK = /[\p{L}\p{N}']+|[^\s\p{L}\p{N}']/gu;

/** Splits text into lowercase words and punctuation marks. */
export function splitWords(text: string): string[] {
  return text.toLowerCase().match(WORD_OR_MARK) ?? [];
}

export interface TokenizerOptions {
  /** At most this many words (besides the special tokens); rarer words become <unk>. */
  maxVocab?: number;
}

export class Tokenizer {
  private readonly ids: Map<string, number>;

  private constructor(readonly vocab: readonly string[]) {
    this.ids = new Map(vocab.map((word, id) => [word, id]));
  }

  /** Vocabulary from the texts, most frequent words first (ties alphabetical, so it is deterministic). */
  static fromTexts(texts: Iterable<string>, options: TokenizerOptions = {}): Tokenizer {
    const counts = new Map<string, number>();
    for (const text of texts) {
      for (const word of splitWords(text)) counts.set(word, (counts.get(word) ?? 0) + 1);
    }
    for (const special of SPECIALS) counts.delete(special);
    const words = [...counts.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, options.maxVocab ?? 5000)
      .map(([word]) => word);
    return new Tokenizer([...SPECIALS, ...words]);
  }

  static fromRows(rows: readonly { prompt: string; completion: string }[], options: TokenizerOptions = {}): Tokenizer {
    return Tokenizer.fromTexts(
      rows.flatMap((row) => [row.prompt, row.completion]),
      options,
    );
  }

  get size(): number {
    return this.vocab.length;
  }

  idOf(word: string): number {
    return this.ids.get(word) ?? UNK_ID;
  }

  encode(text: string): number[] {
    return splitWords(text).map((word) => this.idOf(word));
  }

  /** Words joined by spaces, with no space before closing punctuation; special tokens dropped. */
  decode(ids: readonly number[]): string {
    const words: string[] = [];
    for (const id of ids) {
      if (id === BOS_ID || id === EOS_ID) continue;
      words.push(this.vocab[id] ?? UNK);
    }
    return words.join(' ').replace(/ ([.,!?;:])/g, '$1');
  }
}
