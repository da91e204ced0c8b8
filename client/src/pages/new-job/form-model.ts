// The deploy form's model, apart from its page: the form's state as the user types it (numbers
// kept as text, so a half-typed value is theirs), its defaults (the contract's), and the
// conversion into the job config the server checks, with the problems only the browser can see.
import type { RouterOutputs } from '../../../api/client';
import {
  predictionsConfig,
  trainingConfig,
  type EvalStrategy,
  type LauncherName,
  type SampleFrequency,
} from '#contract/job-config';

/** A problem with the configuration, from the server's jobs.validateConfig or from buildConfig. */
export type Problem = RouterOutputs['jobs']['validateConfig']['problems'][number];
export type LauncherInfo = RouterOutputs['launchers']['list']['items'][number];

const TRAINING_DEFAULTS = trainingConfig.parse({});
const PREDICTION_DEFAULTS = predictionsConfig.parse({});

export interface FormState {
  name: string;
  datasetId: string;
  launcher: LauncherName;
  epochs: string;
  batchSize: string;
  learningRate: string;
  evalStrategy: EvalStrategy;
  evalSteps: string;
  seed: string;
  predictionsEnabled: boolean;
  sampleFrequency: SampleFrequency;
  sampleCount: string;
  stepInterval: string;
  maxNewTokens: string;
}

export const INITIAL: FormState = {
  name: '',
  datasetId: '',
  launcher: 'local',
  epochs: String(TRAINING_DEFAULTS.epochs),
  batchSize: String(TRAINING_DEFAULTS.batchSize),
  learningRate: String(TRAINING_DEFAULTS.learningRate),
  evalStrategy: TRAINING_DEFAULTS.evalStrategy,
  evalSteps: '',
  seed: String(TRAINING_DEFAULTS.seed),
  predictionsEnabled: PREDICTION_DEFAULTS.enabled,
  sampleFrequency: PREDICTION_DEFAULTS.sampleFrequency,
  sampleCount: String(PREDICTION_DEFAULTS.sampleCount),
  stepInterval: '',
  maxNewTokens: String(PREDICTION_DEFAULTS.maxNewTokens),
};

/** How each launcher is named in the form; what it does comes from the server (launchers.list). */
export const LAUNCHER_TITLES: Record<LauncherName, string> = {
  local: 'On this server',
  manual: 'Manual',
  kubernetes: 'Kubernetes',
  runpod: 'RunPod',
};

/** The settings an operator chose for a launcher, in a line: "image ghcr.io/…, gpuCount 1". */
export function launcherSettings(launcher: LauncherInfo): string {
  return Object.entries(launcher.settings)
    .filter(([, value]) => value !== null && value !== '' && typeof value !== 'boolean')
    .map(([key, value]) => `${key} ${String(value)}`)
    .join(' · ');
}

/** Fields the form shows; a problem about any other path is listed at the top. */
export const FORM_FIELDS = new Set([
  'name',
  'datasetId',
  'launcher',
  'training.epochs',
  'training.batchSize',
  'training.learningRate',
  'training.evalStrategy',
  'training.evalSteps',
  'training.seed',
  'predictions.enabled',
  'predictions.sampleFrequency',
  'predictions.sampleCount',
  'predictions.stepInterval',
  'predictions.maxNewTokens',
]);

/** "run 2026-11-29 15:04": the name a new job gets unless the user types one, from `now` (local time). */
export function defaultName(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `run ${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}`;
}

/** The config as the server wants it, plus the problems only the browser can see (unparsable numbers). */
export function buildConfig(form: FormState): { config: Record<string, unknown>; local: Problem[] } {
  const local: Problem[] = [];
  const number = (field: string, raw: string, integer: boolean): number | undefined => {
    const text = raw.trim();
    const value = Number(text);
    if (text === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      local.push({
        severity: 'error',
        field,
        message: text === '' ? 'Enter a value.' : integer ? `"${text}" is not a whole number.` : `"${text}" is not a number.`,
        fix: '',
      });
      return undefined;
    }
    return value;
  };
  const training: Record<string, unknown> = {
    epochs: number('training.epochs', form.epochs, true),
    batchSize: number('training.batchSize', form.batchSize, true),
    learningRate: number('training.learningRate', form.learningRate, false),
    evalStrategy: form.evalStrategy,
    seed: number('training.seed', form.seed, true),
  };
  if (form.evalStrategy === 'steps' && form.evalSteps.trim() !== '') training.evalSteps = number('training.evalSteps', form.evalSteps, true);
  const predictions: Record<string, unknown> = {
    enabled: form.predictionsEnabled,
    sampleFrequency: form.sampleFrequency,
    sampleCount: number('predictions.sampleCount', form.sampleCount, true),
    maxNewTokens: number('predictions.maxNewTokens', form.maxNewTokens, true),
  };
  if (form.sampleFrequency === 'steps' && form.stepInterval.trim() !== '') {
    predictions.stepInterval = number('predictions.stepInterval', form.stepInterval, true);
  }
  const config = { datasetId: form.datasetId, launcher: form.launcher, training, predictions };
  // JSON drops the undefined values: the server then checks the rest with its defaults.
  return { config: JSON.parse(JSON.stringify(config)) as Record<string, unknown>, local };
}
