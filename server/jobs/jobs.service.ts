// Jobs: validate a configuration, deploy (issue a job token and hand it to a launcher), list,
// read, cancel, rotate the token, read logs and metrics. Every read and change is scoped to
// the signed-in owner; another user's job id is answered exactly like a missing one.
import { AppError, notFound } from '../errors';
import type { AppDeps } from '../app-deps';
import { checkJobConfig, jobConfig, totalSteps, type ConfigProblem, type JobConfig } from '#contract/job-config';
import type { DeployJobInput, JobDetail, JobSummary, PodEnvOutput } from '#contract/jobs.schemas';
import { metricValueToWire } from '#contract/pod.schemas';
import { toStorableText } from '#contract/text';
import { signJobToken } from '../auth/tokens';
import { getDatasetSummary } from '../../db/queries/datasets';
import { bumpTokenVersion, endJob, failLiveJobsOwnedBy, getJob, insertJob, isJobOwnedBy, listJobs, setJobStatus, setLauncherRef, unsafeListLiveJobsLaunchedBy, type JobRecord, type PodProgress } from '../../db/queries/jobs';
import { insertJobEvent } from '../../db/queries/job-events';
import { insertLogLines, listLogLines } from '../../db/queries/job-logs';
import { listMetrics } from '../../db/queries/metrics';
import { isLiveStatus, LIVE_JOB_STATUSES } from '#contract/statuses';
import type { ExitOutcome, LauncherEvents, PodEnv } from '../launchers/types';
import { Waker } from '../live/live-hub';

export function toJobSummary(job: Omit<JobRecord, 'podReport'> & { podReport: PodProgress | null }): JobSummary {
  const config = job.config;
  const report = job.podReport;
  const plannedSteps = job.datasetRows ? totalSteps(config, job.datasetRows) : null;
  return {
    id: job.id,
    name: job.name,
    status: job.status,
    launcher: config.launcher,
    datasetId: job.datasetId,
    datasetName: job.datasetName,
    predictionsEnabled: config.predictions.enabled,
    trigger: config.predictions.sampleFrequency,
    predictionCount: job.predictionCount,
    progress: { epoch: report?.epoch ?? null, step: report?.step ?? null, totalSteps: report?.totalSteps ?? plannedSteps },
    error: job.error,
    createdAt: job.createdAt.toISOString(),
    updatedAt: job.updatedAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    lastHeartbeatAt: job.lastHeartbeatAt?.toISOString() ?? null,
  };
}

function toJobDetail(job: JobRecord): JobDetail {
  return { ...toJobSummary(job), config: job.config, podReport: job.podReport ?? null };
}

/** Every problem with a configuration as the user has it so far, from shape errors to triggers that can never fire. */
export async function validateConfig(
  deps: AppDeps,
  userId: string,
  raw: Record<string, unknown>,
): Promise<{ ok: boolean; problems: ConfigProblem[]; totalSteps: number | null }> {
  const parsed = jobConfig.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue): ConfigProblem => ({
        severity: 'error',
        field: issue.path.join('.') || 'config',
        message: issue.message,
        fix: 'Correct this value.',
      }),
    );
    return { ok: false, problems, totalSteps: null };
  }
  const { problems, totalSteps: steps } = await checkWithDataset(deps, userId, parsed.data);
  return { ok: !problems.some((p) => p.severity === 'error'), problems, totalSteps: steps };
}

async function checkWithDataset(deps: AppDeps, userId: string, config: JobConfig) {
  const dataset = await getDatasetSummary(deps.database.db, { userId, datasetId: config.datasetId });
  const problems: ConfigProblem[] = [];
  if (!dataset) {
    problems.push({
      severity: 'error',
      field: 'datasetId',
      message: 'Dataset not found.',
      fix: 'Pick one of your datasets or upload a new one.',
    });
  }
  if (!deps.launchers[config.launcher]) {
    const available = Object.keys(deps.launchers).join(', ');
    problems.push({
      severity: 'error',
      field: 'launcher',
      message: `The "${config.launcher}" launcher is not configured on this server.`,
      fix: `Choose one of: ${available}.`,
    });
  }
  problems.push(...checkJobConfig(config, dataset ? { rows: dataset.rowCount } : null));
  const steps = dataset ? totalSteps(config, dataset.rowCount) : null;
  // The local launcher trains on this server's CPU: a job planning more steps than the operator
  // allows (LOCAL_MAX_STEPS_PER_JOB) is refused before it is stored, not stopped halfway.
  const maxSteps = deps.config.localMaxStepsPerJob;
  if (config.launcher === 'local' && steps !== null && steps > maxSteps) {
    problems.push({
      severity: 'error',
      field: 'training.epochs',
      message: `This job plans ${steps} training steps (epochs × steps per epoch); jobs on this server's local launcher may plan at most ${maxSteps} (LOCAL_MAX_STEPS_PER_JOB).`,
      fix: `Lower epochs or raise batchSize so that the job is at most ${maxSteps} steps, or choose another launcher.`,
    });
  }
  return { problems, totalSteps: steps, dataset };
}

export async function deployJob(
  deps: AppDeps,
  userId: string,
  input: DeployJobInput,
): Promise<{ job: JobSummary; pod: PodEnvOutput | null }> {
  const { problems, dataset } = await checkWithDataset(deps, userId, input.config);
  const errors = problems.filter((p) => p.severity === 'error');
  const first = errors[0];
  if (first || !dataset) {
    const text = errors.map((e) => `${e.message} ${e.fix}`).join(' ');
    throw new AppError('BAD_REQUEST', `This configuration cannot run: ${text}`, { field: `config.${first?.field ?? 'datasetId'}` });
  }
  const launcher = deps.launchers[input.config.launcher];
  if (!launcher) throw new AppError('BAD_REQUEST', `The "${input.config.launcher}" launcher is not configured`, { field: 'config.launcher' });

  const db = deps.database.db;
  const created = await insertJob(db, {
    userId,
    datasetId: dataset.id,
    name: input.name,
    launcher: launcher.name,
    config: input.config,
    status: launcher.name === 'manual' ? 'pending' : 'starting',
    // A local trainer belongs to this instance from the start: one still queued when the server
    // restarts is queued again by this instance (adoptLocalJobs), and by no other.
    launcherOwner: launcher.name === 'local' ? deps.instanceId : null,
  });
  const pod = await podEnv(deps, { jobId: created.id, userId, tokenVersion: created.tokenVersion });
  await insertJobEvent(db, { jobId: created.id, kind: 'deployed', detail: { launcher: launcher.name } });

  let revealEnv = false;
  try {
    const result = await launcher.start({ jobId: created.id, userId, env: pod.env });
    revealEnv = result.revealEnv;
    if (result.ref) {
      await setLauncherRef(db, { jobId: created.id, userId, launcherRef: result.ref, launcherOwner: deps.instanceId });
    }
  } catch (error) {
    // The job exists and says why it never started; the deploy itself is not an error.
    const message = toStorableText(error instanceof Error ? error.message : String(error));
    await setJobStatus(db, { jobId: created.id, userId, from: ['pending', 'starting'], to: 'failed', error: `Launcher ${launcher.name} failed: ${message}` });
    await insertJobEvent(db, { jobId: created.id, kind: 'launcher_error', detail: { launcher: launcher.name, message } });
  }
  const job = await getJob(db, { userId, jobId: created.id });
  if (!job) throw notFound('Job');
  await deps.live.jobChanged(job.id, userId);
  return { job: toJobSummary(job), pod: revealEnv ? pod : null };
}

/**
 * A signed job token and the commands that use it. An upload token (for an ended job) comes
 * with the `sync` commands instead of the training ones: uploading a kept spool is all it can do.
 */
async function podEnv(deps: AppDeps, claims: { jobId: string; userId: string; tokenVersion: number; upload?: boolean }): Promise<PodEnvOutput> {
  const { token, expiresAt } = await signJobToken(deps.secrets.jobToken, claims, deps.config.jobTokenTtlSeconds);
  const env: PodEnv = { JOB_ID: claims.jobId, JOB_TOKEN: token, API_URL: deps.config.publicUrl };
  const assignments = `JOB_ID=${env.JOB_ID} JOB_TOKEN=${env.JOB_TOKEN} API_URL=${env.API_URL}`;
  return {
    env,
    command: claims.upload ? `${assignments} npm run trainer -- sync --spool <the spool file>` : `${assignments} npm run trainer`,
    pythonCommand: claims.upload
      ? `${assignments} python3 predictions_callback.py sync --spool <the spool file>`
      : `${assignments} python3 your_training_script.py`,
    tokenExpiresAt: expiresAt.toISOString(),
  };
}

export async function getJobDetail(deps: AppDeps, userId: string, jobId: string): Promise<JobDetail> {
  const job = await getJob(deps.database.db, { userId, jobId });
  if (!job) throw notFound('Job');
  return toJobDetail(job);
}

export async function listUserJobs(deps: AppDeps, userId: string, input: { cursor?: string | undefined; limit: number }) {
  const before = input.cursor ? decodeCursor(input.cursor) : undefined;
  const rows = await listJobs(deps.database.db, { userId, limit: input.limit + 1, ...(before ? { before } : {}) });
  const page = rows.slice(0, input.limit);
  const last = page.at(-1);
  return {
    items: page.map(toJobSummary),
    nextCursor: rows.length > input.limit && last ? encodeCursor(last.createdAt, last.id) : null,
  };
}

export async function cancelJob(deps: AppDeps, userId: string, jobId: string): Promise<JobSummary> {
  const db = deps.database.db;
  const ended = await endJob(db, { jobId, userId, status: 'cancelled' });
  if (!ended) {
    const job = await getJob(db, { userId, jobId });
    if (!job) throw notFound('Job');
    throw new AppError('PRECONDITION_FAILED', `The job has already ended (${job.status}); there is nothing to cancel`);
  }
  await insertJobEvent(db, { jobId, kind: 'cancelled', detail: { by: 'user' } });
  await deps.live.jobChanged(jobId, userId);
  const launcher = deps.launchers[ended.launcher as keyof typeof deps.launchers];
  await launcher?.cancel({ jobId, ref: ended.launcherRef }).catch(async (error: unknown) => {
    const message = toStorableText(error instanceof Error ? error.message : String(error));
    await insertJobEvent(db, { jobId, kind: 'launcher_error', detail: { launcher: ended.launcher, message, during: 'cancel' } });
  });
  const job = await getJob(db, { userId, jobId });
  if (!job) throw notFound('Job');
  return toJobSummary(job);
}

/**
 * Revokes the job's tokens and issues a new one: a pod token for a live job; for an ended job
 * an upload token (predictions, metrics and logs only), so a spool a pod kept can always be
 * synced (docs/decisions/0005-upload-tokens.md).
 */
export async function rotateJobToken(deps: AppDeps, userId: string, jobId: string): Promise<PodEnvOutput> {
  const db = deps.database.db;
  const bumped = await bumpTokenVersion(db, { jobId, userId });
  if (!bumped) throw notFound('Job');
  const upload = !isLiveStatus(bumped.status);
  await insertJobEvent(db, { jobId, kind: 'token_rotated', detail: { tokenVersion: bumped.tokenVersion, ...(upload ? { upload: true, status: bumped.status } : {}) } });
  return podEnv(deps, { jobId, userId, tokenVersion: bumped.tokenVersion, upload });
}

export async function jobLogs(deps: AppDeps, userId: string, input: { jobId: string; afterId: number; limit: number }) {
  await assertJobVisible(deps, userId, input.jobId);
  const lines = await listLogLines(deps.database.db, { ...input, userId });
  return {
    lines: lines.map((l) => ({ ...l, createdAt: l.createdAt.toISOString() })),
    lastId: lines.at(-1)?.id ?? input.afterId,
  };
}

export async function jobMetrics(deps: AppDeps, userId: string, jobId: string) {
  await assertJobVisible(deps, userId, jobId);
  const points = await listMetrics(deps.database.db, { userId, jobId });
  return { points: points.map((p) => ({ ...p, value: metricValueToWire(p.value) })) };
}

/** Throws NOT_FOUND unless the job is the user's; for reads that need nothing else of the job. */
export async function assertJobVisible(deps: AppDeps, userId: string, jobId: string): Promise<void> {
  if (!(await isJobOwnedBy(deps.database.db, { userId, jobId }))) throw notFound('Job');
}

export async function assertOwnsJob(deps: AppDeps, userId: string, jobId: string): Promise<JobRecord> {
  const job = await getJob(deps.database.db, { userId, jobId });
  if (!job) throw notFound('Job');
  return job;
}

function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url');
}

// Exactly what encodeCursor writes: a four-digit year from 1 on (JavaScript dates reach years
// PostgreSQL's timestamps cannot hold, 0 or -271821, which failed the query with a 500) and a UUID.
const CURSOR_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const CURSOR_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [iso, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(iso ?? '');
  if (!id || rest.length > 0 || !CURSOR_ISO.test(iso ?? '') || !(createdAt.getUTCFullYear() >= 1) || !CURSOR_ID.test(id)) {
    throw new AppError('BAD_REQUEST', 'cursor is not one this server issued', { field: 'cursor' });
  }
  return { createdAt, id };
}

/**
 * How a job whose pod process ended, while the job was still live, ends: completed when the pod
 * said it completed training (it could not reach the server to finish) and every row it left in
 * its spool is stored; failed otherwise, saying why.
 */
function endOfExitedJob(outcome: ExitOutcome): { status: 'completed' | 'failed'; error: string | null } {
  const upload = outcome.spoolUpload;
  const uploaded = upload ? ` The server uploaded the spool the trainer left: ${upload.summary}.` : '';
  if (outcome.reported === 'completed' && (upload?.ok ?? true)) return { status: 'completed', error: null };
  if (outcome.reported === 'completed' && upload) {
    return {
      status: 'failed',
      error: `Training completed, but not every prediction the trainer spooled could be stored.${uploaded} Issue a new upload token on the job page and run the sync command again: stored rows are skipped.`,
    };
  }
  const base = outcome.ok ? 'The trainer exited without reporting the end of training' : (outcome.error ?? 'The trainer failed');
  return { status: 'failed', error: `${base}${uploaded}` };
}

/** How launchers report back: a process that ends while its job is live ends the job, with why. */
export function launcherEvents(getDeps: () => AppDeps): LauncherEvents {
  return {
    async started(jobId, userId, ref) {
      const deps = getDeps();
      await setLauncherRef(deps.database.db, { jobId, userId, launcherRef: ref, launcherOwner: deps.instanceId });
    },
    async exited(jobId, userId, outcome) {
      const deps = getDeps();
      const db = deps.database.db;
      const end = endOfExitedJob(outcome);
      // A child's output is bytes from outside: it may hold NUL, and slicing may halve an emoji.
      const error = end.error === null ? null : toStorableText(end.error);
      const ended = await setJobStatus(db, { jobId, userId, from: [...LIVE_JOB_STATUSES], to: end.status, error });
      if (ended) {
        await insertJobEvent(db, {
          jobId,
          kind: 'pod_exited',
          detail: {
            ok: outcome.ok,
            status: end.status,
            ...(outcome.reported ? { reported: outcome.reported } : {}),
            ...(outcome.spoolUpload ? { spoolUpload: { ok: outcome.spoolUpload.ok, summary: toStorableText(outcome.spoolUpload.summary.slice(0, 500)) } } : {}),
            ...(error ? { error: toStorableText(error.slice(-2000)) } : {}),
          },
        });
        await deps.live.jobChanged(jobId, userId);
      }
    },
    async renewEnv(jobId, userId) {
      const deps = getDeps();
      const bumped = await bumpTokenVersion(deps.database.db, { jobId, userId, onlyIf: [...LIVE_JOB_STATUSES] });
      if (!bumped) return null;
      await insertJobEvent(deps.database.db, { jobId, kind: 'token_rotated', detail: { tokenVersion: bumped.tokenVersion, by: 'launcher' } });
      return (await podEnv(deps, { jobId, userId, tokenVersion: bumped.tokenVersion })).env;
    },
    async log(jobId, level, message) {
      await insertLogLines(getDeps().database.db, { jobId, lines: [{ level, message: toStorableText(message) }] });
    },
  };
}

/**
 * After a restart, takes back the live local jobs this instance launched
 * (docs/decisions/0006-local-trainers-outlive-the-server.md): trainers still running are
 * followed again, one that died meanwhile has its spool uploaded and its job ended by what it
 * reported, and jobs that were waiting in the queue wait again. Without a local launcher any
 * more (LAUNCHERS changed), nothing can follow them: they fail, saying so.
 */
export async function adoptLocalJobs(deps: AppDeps): Promise<{ following: number; ended: number; queued: number; failed: number }> {
  const db = deps.database.db;
  const launcher = deps.launchers.local;
  if (!launcher?.adopt) {
    const failed = await failLiveJobsOwnedBy(db, {
      launcher: 'local',
      owner: deps.instanceId,
      error: 'The server restarted without the local launcher (LAUNCHERS), so nothing follows this job\'s trainer any more. Deploy it again.',
    });
    for (const jobId of failed) await insertJobEvent(db, { jobId, kind: 'orphaned', detail: { owner: deps.instanceId } });
    return { following: 0, ended: 0, queued: 0, failed: failed.length };
  }
  const jobs = await unsafeListLiveJobsLaunchedBy(db, { launcher: 'local', owner: deps.instanceId });
  const counts = await launcher.adopt(jobs);
  for (const job of jobs) await insertJobEvent(db, { jobId: job.jobId, kind: 'adopted', detail: { owner: deps.instanceId } });
  return { ...counts, failed: 0 };
}


/**
 * The user's jobs as they change (status, progress, heartbeats), from any server instance.
 * With a jobId, starts with that job's current state and follows only it. Ownership is
 * checked before the stream opens.
 */
export async function openJobUpdates(deps: AppDeps, userId: string, input: { jobId?: string | undefined }, signal: AbortSignal | undefined) {
  const first = input.jobId ? await assertOwnsJob(deps, userId, input.jobId) : undefined;
  return streamJobUpdates(deps, userId, input, first, signal);
}

async function* streamJobUpdates(
  deps: AppDeps,
  userId: string,
  input: { jobId?: string | undefined },
  first: JobRecord | undefined,
  signal: AbortSignal | undefined,
) {
  const db = deps.database.db;
  const changed = new Set<string>();
  const waker = new Waker();
  const stop = deps.live.onJobChange(userId, (jobId) => {
    if (input.jobId && jobId !== input.jobId) return;
    changed.add(jobId);
    waker.wake();
  });
  try {
    if (first) yield toJobSummary(first);
    while (!signal?.aborted) {
      await waker.wait(60_000, signal);
      waker.reset();
      const ids = [...changed];
      changed.clear();
      for (const jobId of ids) {
        const job = await getJob(db, { userId, jobId });
        if (job) yield toJobSummary(job);
      }
    }
  } finally {
    stop();
  }
}
