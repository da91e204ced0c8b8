// Which held-out rows get predictions, and generating them. The rows are chosen once per job
// from the seed, so every trigger fire predicts the same samples with the same sampleIndex and
// epochs line up row by row for comparison.
import type { PredictionsConfig } from '#contract/job-config';
import type { PredictionRowInput } from '#contract/pod.schemas';
import type { PromptCompletion } from './data';
import { shuffledIndices, streamRng } from './rng';
import { epochOfStep, predictionTriggerAt, type TrainerEvent } from './schedule';
import type { TextGenerator, TrainerState } from './trainer-loop';

export interface PredictionSample {
  /** Position in the chosen list: stable across every fire of the job. */
  sampleIndex: number;
  /** Position in the held-out split. */
  evalIndex: number;
  prompt: string;
  groundTruth: string;
}

export interface SamplePrediction {
  sampleIndex: number;
  prompt: string;
  groundTruth: string;
  prediction: string;
}

/** min(sampleCount, held-out rows) rows of the held-out split, chosen by the seed, in split order. */
export function choosePredictionSamples(evalRows: readonly PromptCompletion[], sampleCount: number, seed: number): PredictionSample[] {
  const count = Math.min(sampleCount, evalRows.length);
  const chosen = shuffledIndices(evalRows.length, streamRng(seed, 'samples'))
    .slice(0, count)
    .sort((a, b) => a - b);
  return chosen.map((evalIndex, sampleIndex) => {
    const row = evalRows[evalIndex] as PromptCompletion;
    return { sampleIndex, evalIndex, prompt: row.prompt, groundTruth: row.completion };
  });
}

/** Real generation (greedy, autoregressive) on each sample's prompt. */
export function generatePredictions(
  generator: TextGenerator,
  samples: readonly PredictionSample[],
  maxNewTokens: number,
): SamplePrediction[] {
  return samples.map(({ sampleIndex, prompt, groundTruth }) => ({
    sampleIndex,
    prompt,
    groundTruth,
    prediction: generator.generate(prompt, maxNewTokens),
  }));
}

/**
 * The samples and the trigger of one job together: ask `rowsAt` at every trainer event and it
 * returns the prediction rows to ship (ready for pod.writePredictions), or an empty list when
 * the trigger does not fire there.
 */
export class PredictionSampler {
  readonly samples: PredictionSample[];

  constructor(
    evalRows: readonly PromptCompletion[],
    private readonly config: PredictionsConfig,
    seed: number,
  ) {
    this.samples = config.enabled ? choosePredictionSamples(evalRows, config.sampleCount, seed) : [];
  }

  firesAt(event: TrainerEvent, globalStep: number): boolean {
    return predictionTriggerAt(this.config, event, globalStep) !== null;
  }

  rowsAt(event: TrainerEvent, state: TrainerState, generator: TextGenerator): PredictionRowInput[] {
    const trigger = predictionTriggerAt(this.config, event, state.globalStep);
    if (trigger === null) return [];
    const epoch = epochOfStep(state.globalStep, state.stepsPerEpoch);
    return generatePredictions(generator, this.samples, this.config.maxNewTokens).map((prediction) => ({
      epoch,
      step: state.globalStep,
      trigger,
      ...prediction,
    }));
  }
}
