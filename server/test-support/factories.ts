// Small factories for test data. Users are created through the real service so their
// password hashes and tokens are the real thing.
import { randomBytes } from 'node:crypto';
import type { AppDeps } from '../app-deps';
import { register } from '../auth/signup';
import { uploadDataset } from '../datasets/datasets.service';
import { deployJob } from '../jobs/jobs.service';
import { jobConfig, type PredictionsConfig, type TrainingConfig } from '#contract/job-config';

export const TEST_PASSWORD = 'correct horse battery staple';

export function uniqueEmail(prefix = 'user'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}@example.test`;
}

/**
 * A new account, created as on a server with open sign-up whatever SIGNUP says (tests of the
 * sign-up policy itself go through auth.register), so setup never needs an invitation.
 */
export async function createUser(deps: AppDeps, overrides: { email?: string; password?: string } = {}) {
  const email = overrides.email ?? uniqueEmail();
  const openDeps: AppDeps = { ...deps, config: { ...deps.config, signup: 'open' } };
  const session = await register(openDeps, { email, password: overrides.password ?? TEST_PASSWORD });
  return { ...session.user, token: session.token, password: overrides.password ?? TEST_PASSWORD };
}

/** A dataset of `count` simple rows, uploaded through the real service. */
export async function createDataset(deps: AppDeps, userId: string, options: { count?: number; name?: string } = {}) {
  const count = options.count ?? 40;
  const jsonl = Array.from({ length: count }, (_, i) => JSON.stringify({ prompt: `question ${i}`, completion: `answer ${i}` })).join('\n');
  return uploadDataset(deps, userId, { name: options.name ?? `dataset-${randomBytes(3).toString('hex')}`, jsonl });
}

/**
 * A job deployed with the manual launcher, as a user would: returns its id and the pod's job
 * token and environment. `config` overrides parts of the default configuration.
 */
export async function createManualJob(
  deps: AppDeps,
  userId: string,
  options: { datasetId?: string; name?: string; config?: { training?: Partial<TrainingConfig>; predictions?: Partial<PredictionsConfig> } } = {},
) {
  const datasetId = options.datasetId ?? (await createDataset(deps, userId)).id;
  const config = jobConfig.parse({
    datasetId,
    launcher: 'manual',
    training: options.config?.training ?? {},
    predictions: options.config?.predictions ?? {},
  });
  const { job, pod } = await deployJob(deps, userId, { name: options.name ?? 'test job', config });
  if (!pod) throw new Error('the manual launcher did not reveal the pod environment');
  return { jobId: job.id, token: pod.env.JOB_TOKEN, env: pod.env, job };
}
