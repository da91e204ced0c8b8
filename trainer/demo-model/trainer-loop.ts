// The training loop, with Hugging Face Trainer's lifecycle: one optimizer step per batch of
// `batchSize` rows (global_step counts them), evaluation per the eval strategy, and callbacks
// in HF's order: step-based evaluation runs right after on_step_end (so before on_epoch_end on
// an epoch's last step), epoch-based evaluation right after on_epoch_end. The loop is async and hands the event loop back every few milliseconds, so the
// pod's uploads and heartbeats keep flowing while it trains; it never waits on them.
import { stepsPerEpoch as countStepsPerEpoch, type TrainingConfig } from '#contract/job-config';
import { encodeExample, encodePrompt, promptWordWeights, splitDataset, type DatasetSplit, type PromptCompletion } from './data';
import { DEFAULT_MODEL_SIZE, NextWordModel, type EncodedExample, type ModelShape } from './model';
import { DEFAULT_SGD, Sgd, type SgdOptions } from './optimizer';
import { shuffledIndices, streamRng } from './rng';
import { epochOfStep, shouldEvaluate } from './schedule';
import { Tokenizer } from './tokenizer';

/** A snapshot handed to callbacks (a fresh object each time, safe to keep). */
export interface TrainerState {
  /** Optimizer steps taken so far (HF `state.global_step`). */
  globalStep: number;
  /** Fractional epochs completed (HF `state.epoch`): globalStep / stepsPerEpoch. */
  epoch: number;
  /** The 1-based epoch the current step belongs to. */
  epochNumber: number;
  stepsPerEpoch: number;
  totalSteps: number;
  numEpochs: number;
}

export interface StepLogs {
  /** Mean token cross-entropy of this step's batch, before the update. */
  loss: number;
  learningRate: number;
  gradNorm: number;
}

export interface EvalMetrics {
  /** Mean token cross-entropy on the held-out split. */
  evalLoss: number;
  evalRows: number;
}

export interface EpochLogs {
  /** Mean token cross-entropy over the epoch's batches. */
  trainLoss: number;
}

export interface TrainResult {
  /** False when the abort signal stopped training early. */
  completed: boolean;
  state: TrainerState;
  /** Mean train loss per completed epoch. */
  epochTrainLosses: number[];
  /** Every evaluation, in order. */
  evaluations: { state: TrainerState; metrics: EvalMetrics }[];
}

/**
 * Callbacks run synchronously inside the loop: keep them quick and queue any network work
 * (the loop does not await them, by design: training never waits on the network).
 */
export interface TrainerCallbacks {
  onStepEnd?(state: TrainerState, logs: StepLogs): void;
  onEvaluate?(state: TrainerState, metrics: EvalMetrics): void;
  onEpochEnd?(state: TrainerState, logs: EpochLogs): void;
  onTrainEnd?(state: TrainerState, result: { completed: boolean }): void;
}

export interface TrainerOptions {
  model?: Partial<Omit<ModelShape, 'vocabSize'>>;
  optimizer?: Partial<SgdOptions>;
  /** Hand the event loop back at least this often (milliseconds of computing). */
  yieldEveryMs?: number;
}

/** Something that can answer a prompt; the predictions sampler needs only this. */
export interface TextGenerator {
  generate(prompt: string, maxNewTokens: number): string;
}

export class Trainer implements TextGenerator {
  readonly split: DatasetSplit;
  readonly tokenizer: Tokenizer;
  readonly model: NextWordModel;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  private readonly optimizer: Sgd;
  private readonly trainExamples: EncodedExample[];
  private readonly evalExamples: EncodedExample[];
  private readonly yieldEveryMs: number;
  private lastYield = performance.now();
  private globalStep = 0;

  constructor(
    rows: readonly PromptCompletion[],
    readonly training: TrainingConfig,
    options: TrainerOptions = {},
  ) {
    if (rows.length === 0) throw new Error('Cannot train on an empty dataset');
    this.split = splitDataset(rows, training.seed);
    this.tokenizer = Tokenizer.fromRows(rows);
    this.model = new NextWordModel(
      { ...DEFAULT_MODEL_SIZE, ...options.model, vocabSize: this.tokenizer.size },
      streamRng(training.seed, 'init'),
      promptWordWeights(this.tokenizer, rows),
    );
    this.optimizer = new Sgd(this.model.parameterCount, { ...DEFAULT_SGD, ...options.optimizer });
    this.trainExamples = this.split.train.map((row) => encodeExample(this.tokenizer, row));
    this.evalExamples = this.split.eval.map((row) => encodeExample(this.tokenizer, row));
    this.stepsPerEpoch = countStepsPerEpoch(this.split.train.length, training.batchSize);
    this.totalSteps = training.epochs * this.stepsPerEpoch;
    this.yieldEveryMs = options.yieldEveryMs ?? 5;
  }

  generate(prompt: string, maxNewTokens: number): string {
    return this.tokenizer.decode(this.model.generate(encodePrompt(this.tokenizer, prompt), maxNewTokens));
  }

  /** Mean token loss on the held-out split. */
  async evaluate(): Promise<EvalMetrics> {
    let lossSum = 0;
    let tokens = 0;
    for (const example of this.evalExamples) {
      const result = this.model.lossOf(example);
      lossSum += result.lossSum;
      tokens += result.tokens;
      await this.maybeYield();
    }
    return { evalLoss: tokens > 0 ? lossSum / tokens : 0, evalRows: this.evalExamples.length };
  }

  /** Runs every epoch (or until `signal` aborts, checked between steps). Call once per Trainer. */
  async train(callbacks: TrainerCallbacks = {}, signal?: AbortSignal): Promise<TrainResult> {
    if (this.globalStep !== 0) throw new Error('Trainer.train() runs once; create a new Trainer to train again');
    const { batchSize, epochs, learningRate, seed } = this.training;
    const shuffleRng = streamRng(seed, 'shuffle');
    const epochTrainLosses: number[] = [];
    const evaluations: TrainResult['evaluations'] = [];
    const runEvaluation = async () => {
      const metrics = await this.evaluate();
      const state = this.state();
      evaluations.push({ state, metrics });
      callbacks.onEvaluate?.(state, metrics);
    };
    let completed = true;

    training: for (let epoch = 0; epoch < epochs; epoch++) {
      // HF reshuffles the train sampler every epoch.
      const order = shuffledIndices(this.trainExamples.length, shuffleRng);
      let epochLoss = 0;
      for (let step = 0; step < this.stepsPerEpoch; step++) {
        if (signal?.aborted) {
          completed = false;
          break training;
        }
        const batch = order.slice(step * batchSize, (step + 1) * batchSize).map((i) => this.trainExamples[i] as EncodedExample);
        // HF's default schedule: linear decay from the configured rate to zero, no warmup.
        const rate = learningRate * (1 - this.globalStep / this.totalSteps);
        const logs = await this.optimizerStep(batch, rate);
        epochLoss += logs.loss;
        this.globalStep++;
        callbacks.onStepEnd?.(this.state(), logs);
        if (shouldEvaluate(this.training, 'stepEnd', this.globalStep)) await runEvaluation();
        await this.maybeYield();
      }
      const trainLoss = epochLoss / this.stepsPerEpoch;
      epochTrainLosses.push(trainLoss);
      callbacks.onEpochEnd?.(this.state(), { trainLoss });
      if (shouldEvaluate(this.training, 'epochEnd', this.globalStep)) await runEvaluation();
    }
    const state = this.state();
    callbacks.onTrainEnd?.(state, { completed });
    return { completed, state, epochTrainLosses, evaluations };
  }

  private async optimizerStep(batch: EncodedExample[], learningRate: number): Promise<StepLogs> {
    const tokens = batch.reduce((sum, example) => sum + example.target.length, 0);
    this.model.zeroGradients();
    let lossSum = 0;
    for (const example of batch) {
      lossSum += this.model.accumulateGradients([example], 1 / Math.max(1, tokens)).lossSum;
      await this.maybeYield(); // a huge batch must not starve the event loop either
    }
    const gradNorm = this.optimizer.step(this.model.params, this.model.grads, learningRate);
    return { loss: lossSum / Math.max(1, tokens), learningRate, gradNorm };
  }

  private state(): TrainerState {
    return {
      globalStep: this.globalStep,
      epoch: this.globalStep / this.stepsPerEpoch,
      epochNumber: epochOfStep(this.globalStep, this.stepsPerEpoch),
      stepsPerEpoch: this.stepsPerEpoch,
      totalSteps: this.totalSteps,
      numEpochs: this.training.epochs,
    };
  }

  private async maybeYield(): Promise<void> {
    if (performance.now() - this.lastYield < this.yieldEveryMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.lastYield = performance.now();
  }
}
