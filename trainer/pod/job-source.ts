// Where a run's job comes from: the server (`pod.config`, retried while the server is
// unreachable, refused at once on a 4xx), or, offline, a config file and a JSONL dataset. Both
// give the same plan, checked by the same rules as deploy, so an offline run can no more
// train with a trigger that never fires than a deployed one.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { checkJobConfig, predictionsConfig, trainingConfig, type PredictionsConfig, type TrainingConfig } from '#contract/job-config';
import { parseDatasetJsonl } from '#contract/dataset-jsonl';
import { backoffDelay, classifyPodError, sleep } from './api';
import type { PodConnection, PodLogger } from './connection';

export interface JobPlan {
  /** The job the token names (from the server), or null offline. */
  jobId: string | null;
  name: string;
  training: TrainingConfig;
  predictions: PredictionsConfig;
  rows: { prompt: string; completion: string }[];
  source: 'server' | 'files';
}

export class JobSourceError extends Error {
  override name = 'JobSourceError';
}

/** pod.config, retried with backoff (capped at `capMs`) while the server is unreachable or failing. */
export async function fetchJobPlan(args: { connection: PodConnection; log: PodLogger; signal: AbortSignal; capMs?: number }): Promise<JobPlan> {
  const { connection, log, signal } = args;
  const api = connection.api;
  if (!api) throw new JobSourceError('There is no server to fetch the job from');
  for (let attempt = 0; ; attempt++) {
    try {
      const config = await api.pod.config.query(undefined, { signal });
      return {
        jobId: config.jobId,
        name: config.name,
        training: config.config.training,
        predictions: config.config.predictions,
        rows: config.dataset.rows,
        source: 'server',
      };
    } catch (error) {
      if (signal.aborted) throw new JobSourceError('Stopped while fetching the job configuration');
      const failure = classifyPodError(error);
      if (failure.action === 'unauthorized') {
        connection.refuse(failure.message, failure.reason);
        throw new JobSourceError(`The server refused the job token: ${failure.message}`);
      }
      if (failure.action === 'rejected') throw new JobSourceError(`The server refused to give the job configuration (HTTP ${failure.httpStatus}): ${failure.message}`);
      const delay = Math.max(1000, backoffDelay(attempt, 1000, args.capMs ?? 30_000), failure.retryAfterMs ?? 0);
      log.warn(`Cannot fetch the job configuration yet (${failure.message}); retrying in ${(delay / 1000).toFixed(1)}s (attempt ${attempt + 1}).`);
      await sleep(delay, signal);
    }
  }
}

/** What `--config FILE` may hold: a job config as deployed (other keys such as datasetId are ignored). */
const offlineConfig = z.object({
  training: trainingConfig.default(() => trainingConfig.parse({})),
  predictions: predictionsConfig.default(() => predictionsConfig.parse({})),
});

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new JobSourceError(`Cannot read the ${what} ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function loadJobPlanFromFiles(configFile: string, datasetFile: string): JobPlan {
  let json: unknown;
  try {
    json = JSON.parse(readText(configFile, 'config file'));
  } catch (error) {
    if (error instanceof JobSourceError) throw error;
    throw new JobSourceError(`The config file ${configFile} is not valid JSON`);
  }
  const parsed = offlineConfig.safeParse(json);
  if (!parsed.success) {
    throw new JobSourceError(`The config file ${configFile} is not a job configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  let rows: JobPlan['rows'];
  try {
    rows = parseDatasetJsonl(readText(datasetFile, 'dataset'));
  } catch (error) {
    if (error instanceof JobSourceError) throw error;
    throw new JobSourceError(`The dataset ${datasetFile} cannot be used: ${error instanceof Error ? error.message : String(error)}`);
  }
  // The same rules deploy applies; the dataset id and launcher play no part in them.
  const problems = checkJobConfig({ datasetId: '00000000-0000-0000-0000-000000000000', launcher: 'manual', ...parsed.data }, { rows: rows.length });
  const errors = problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) {
    throw new JobSourceError(`The configuration cannot work: ${errors.map((p) => `${p.field}: ${p.message} Fix: ${p.fix}`).join(' | ')}`);
  }
  return { jobId: null, name: configFile, ...parsed.data, rows, source: 'files' };
}

/** Warnings deploy would show, for the log. */
export function configWarnings(plan: JobPlan): string[] {
  return checkJobConfig({ datasetId: '00000000-0000-0000-0000-000000000000', launcher: 'manual', training: plan.training, predictions: plan.predictions }, { rows: plan.rows.length })
    .filter((p) => p.severity === 'warning')
    .map((p) => `${p.field}: ${p.message}`);
}
