// The next-word model: a small MLP language model over the tokenizer's words, trained by
// hand-written backpropagation (no ML libraries). For each position of the completion it sees
//   the weighted mean embedding of the prompt's words (what is asked; see promptWordWeights),
//   the embeddings of the two previous tokens (where it is in the answer),
//   the position within the completion (when to stop),
// passes them through one tanh layer, and predicts the next word with a softmax.
// The sequence it models is: prompt words, <bos>, completion words, <eos>; loss is on the
// completion only (plus <eos>), as in completion-only fine-tuning.
import type { Rng } from './rng';
import { BOS_ID, EOS_ID } from './tokenizer';

export interface ModelShape {
  vocabSize: number;
  embedDim: number;
  hiddenDim: number;
  /** Positions in the completion with their own learned bias; later ones share the last. */
  positions: number;
}

export const DEFAULT_MODEL_SIZE = { embedDim: 32, hiddenDim: 128, positions: 8 } as const;

/** One training or evaluation row, already tokenized. */
export interface EncodedExample {
  prompt: readonly number[];
  /** The completion's ids followed by <eos>. */
  target: readonly number[];
}

interface Layout {
  embed: number;
  w1: number;
  wPos: number;
  b1: number;
  w2: number;
  b2: number;
  total: number;
}

function layoutOf(shape: ModelShape): Layout {
  const { vocabSize: v, embedDim: d, hiddenDim: h, positions: p } = shape;
  const embed = 0;
  const w1 = embed + v * d;
  const wPos = w1 + h * 3 * d;
  const b1 = wPos + h * p;
  const w2 = b1 + h;
  const b2 = w2 + v * h;
  return { embed, w1, wPos, b1, w2, b2, total: b2 + v };
}

export class NextWordModel {
  /** Every parameter in one flat buffer (so the optimizer and gradient clipping see one vector). */
  readonly params: Float64Array;
  /** Gradients, same layout as `params`; `accumulateGradients` adds to them. */
  readonly grads: Float64Array;
  private readonly layout: Layout;
  // Scratch buffers reused across positions: training allocates nothing per token.
  private readonly input: Float64Array;
  private readonly hidden: Float64Array;
  private readonly probs: Float64Array;
  private readonly dHidden: Float64Array;
  private readonly dInput: Float64Array;
  private readonly dPromptMean: Float64Array;

  /** Fixed weight of each word in the prompt average (see `promptWordWeights`). */
  private readonly wordWeights: Float64Array;

  constructor(
    readonly shape: ModelShape,
    rng: Rng,
    wordWeights?: Float64Array,
  ) {
    this.wordWeights = wordWeights ?? new Float64Array(shape.vocabSize).fill(1);
    this.layout = layoutOf(shape);
    this.params = new Float64Array(this.layout.total);
    this.grads = new Float64Array(this.layout.total);
    const { vocabSize: v, embedDim: d, hiddenDim: h } = shape;
    this.input = new Float64Array(3 * d);
    this.hidden = new Float64Array(h);
    this.probs = new Float64Array(v);
    this.dHidden = new Float64Array(h);
    this.dInput = new Float64Array(3 * d);
    this.dPromptMean = new Float64Array(d);

    const p = this.params;
    const L = this.layout;
    for (let i = 0; i < v * d; i++) p[L.embed + i] = rng.normal();
    const w1Scale = 1 / Math.sqrt(3 * d);
    for (let i = 0; i < h * 3 * d; i++) p[L.w1 + i] = rng.normal() * w1Scale;
    // Small output weights: the untrained model starts near the uniform distribution.
    const w2Scale = 0.1 / Math.sqrt(h);
    for (let i = 0; i < v * h; i++) p[L.w2 + i] = rng.normal() * w2Scale;
  }

  get parameterCount(): number {
    return this.layout.total;
  }

  zeroGradients(): void {
    this.grads.fill(0);
  }

  /**
   * Adds d(loss)/d(params) for the examples to `grads`, where loss is the summed token
   * cross-entropy times `scale` (pass 1 / tokens in the batch for a mean). Returns the
   * unscaled summed loss and the number of tokens.
   */
  accumulateGradients(examples: readonly EncodedExample[], scale: number): { lossSum: number; tokens: number } {
    let lossSum = 0;
    let tokens = 0;
    for (const example of examples) {
      const result = this.runExample(example, scale, true);
      lossSum += result.lossSum;
      tokens += result.tokens;
    }
    return { lossSum, tokens };
  }

  /** Summed cross-entropy and token count, without touching the gradients. */
  lossOf(example: EncodedExample): { lossSum: number; tokens: number } {
    return this.runExample(example, 0, false);
  }

  /** Greedy autoregressive generation after the prompt, stopping at <eos> or after maxNewTokens. */
  generate(prompt: readonly number[], maxNewTokens: number): number[] {
    const promptMean = this.promptMean(prompt);
    const out: number[] = [];
    let prev = BOS_ID;
    let prev2 = prompt.at(-1) ?? BOS_ID;
    for (let position = 0; position < maxNewTokens; position++) {
      this.forward(promptMean, prev, prev2, position);
      let best = -1;
      let bestProb = -1;
      for (let id = 0; id < this.shape.vocabSize; id++) {
        if (id === BOS_ID) continue; // never a word of the answer
        const prob = this.probs[id] as number;
        if (prob > bestProb) {
          bestProb = prob;
          best = id;
        }
      }
      if (best === EOS_ID || best < 0) break;
      out.push(best);
      prev2 = prev;
      prev = best;
    }
    return out;
  }

  private promptMean(prompt: readonly number[]): Float64Array {
    const d = this.shape.embedDim;
    const mean = new Float64Array(d);
    const total = this.promptWeight(prompt);
    if (total === 0) return mean;
    const p = this.params;
    for (const id of prompt) {
      const base = this.layout.embed + id * d;
      const w = (this.wordWeights[id] as number) / total;
      for (let k = 0; k < d; k++) mean[k] = (mean[k] as number) + w * (p[base + k] as number);
    }
    return mean;
  }

  private promptWeight(prompt: readonly number[]): number {
    let total = 0;
    for (const id of prompt) total += this.wordWeights[id] as number;
    return total;
  }

  /** Fills `input`, `hidden` and `probs` for one position. */
  private forward(promptMean: Float64Array, prev: number, prev2: number, position: number): void {
    const { vocabSize: v, embedDim: d, hiddenDim: h, positions } = this.shape;
    const p = this.params;
    const L = this.layout;
    const x = this.input;
    x.set(promptMean, 0);
    x.set(p.subarray(L.embed + prev * d, L.embed + prev * d + d), d);
    x.set(p.subarray(L.embed + prev2 * d, L.embed + prev2 * d + d), 2 * d);
    const inputSize = 3 * d;
    const pos = Math.min(position, positions - 1);
    for (let j = 0; j < h; j++) {
      let sum = (p[L.b1 + j] as number) + (p[L.wPos + j * positions + pos] as number);
      const row = L.w1 + j * inputSize;
      for (let i = 0; i < inputSize; i++) sum += (p[row + i] as number) * (x[i] as number);
      this.hidden[j] = Math.tanh(sum);
    }
    let max = -Infinity;
    for (let o = 0; o < v; o++) {
      let sum = p[L.b2 + o] as number;
      const row = L.w2 + o * h;
      for (let j = 0; j < h; j++) sum += (p[row + j] as number) * (this.hidden[j] as number);
      this.probs[o] = sum;
      if (sum > max) max = sum;
    }
    let total = 0;
    for (let o = 0; o < v; o++) {
      const e = Math.exp((this.probs[o] as number) - max);
      this.probs[o] = e;
      total += e;
    }
    const inv = 1 / total;
    for (let o = 0; o < v; o++) this.probs[o] = (this.probs[o] as number) * inv;
  }

  private runExample(example: EncodedExample, scale: number, backward: boolean): { lossSum: number; tokens: number } {
    const { vocabSize: v, embedDim: d, hiddenDim: h, positions } = this.shape;
    const p = this.params;
    const g = this.grads;
    const L = this.layout;
    const inputSize = 3 * d;
    const promptMean = this.promptMean(example.prompt);
    this.dPromptMean.fill(0);
    let lossSum = 0;
    let prev = BOS_ID;
    let prev2 = example.prompt.at(-1) ?? BOS_ID;
    for (let position = 0; position < example.target.length; position++) {
      const target = example.target[position] as number;
      this.forward(promptMean, prev, prev2, position);
      lossSum -= Math.log(Math.max(this.probs[target] as number, 1e-12));
      if (backward) {
        // d(loss)/d(logits) = probs - onehot(target); then back through both layers.
        this.dHidden.fill(0);
        for (let o = 0; o < v; o++) {
          const dLogit = ((this.probs[o] as number) - (o === target ? 1 : 0)) * scale;
          if (dLogit === 0) continue;
          g[L.b2 + o] = (g[L.b2 + o] as number) + dLogit;
          const row = L.w2 + o * h;
          for (let j = 0; j < h; j++) {
            g[row + j] = (g[row + j] as number) + dLogit * (this.hidden[j] as number);
            this.dHidden[j] = (this.dHidden[j] as number) + dLogit * (p[row + j] as number);
          }
        }
        this.dInput.fill(0);
        const pos = Math.min(position, positions - 1);
        for (let j = 0; j < h; j++) {
          const hj = this.hidden[j] as number;
          const dPre = (this.dHidden[j] as number) * (1 - hj * hj);
          if (dPre === 0) continue;
          g[L.b1 + j] = (g[L.b1 + j] as number) + dPre;
          g[L.wPos + j * positions + pos] = (g[L.wPos + j * positions + pos] as number) + dPre;
          const row = L.w1 + j * inputSize;
          for (let i = 0; i < inputSize; i++) {
            g[row + i] = (g[row + i] as number) + dPre * (this.input[i] as number);
            this.dInput[i] = (this.dInput[i] as number) + dPre * (p[row + i] as number);
          }
        }
        for (let k = 0; k < d; k++) {
          this.dPromptMean[k] = (this.dPromptMean[k] as number) + (this.dInput[k] as number);
          const prevAt = L.embed + prev * d + k;
          g[prevAt] = (g[prevAt] as number) + (this.dInput[d + k] as number);
          const prev2At = L.embed + prev2 * d + k;
          g[prev2At] = (g[prev2At] as number) + (this.dInput[2 * d + k] as number);
        }
      }
      prev2 = prev;
      prev = target;
    }
    const total = this.promptWeight(example.prompt);
    if (backward && total > 0) {
      // The prompt mean was shared by every position: spread its gradient over the prompt's words once.
      for (const id of example.prompt) {
        const base = L.embed + id * d;
        const w = (this.wordWeights[id] as number) / total;
        for (let k = 0; k < d; k++) g[base + k] = (g[base + k] as number) + (this.dPromptMean[k] as number) * w;
      }
    }
    return { lossSum, tokens: example.target.length };
  }
}
