// Queries on training jobs (training_jobs; its logs, metrics and ledger are in their own
// modules, one per table). User-facing functions take the owner and put it in the where
// clause, so another user's job id finds nothing. Pod-facing functions take the job id from a
// verified job token. The lookups that skip the owner are named unsafe…, each with one caller.
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../client';
import type { Column, SQL } from 'drizzle-orm';
import { datasets, predictionEpochStats, trainingJobs, type JobStatus, type PodReport } from '../schema';
import type { JobConfig } from '#contract/job-config';
import { isEndedStatus, LIVE_JOB_STATUSES, type EndedJobStatus } from '#contract/statuses';

const LIVE: JobStatus[] = [...LIVE_JOB_STATUSES];

/**
 * The owner condition for rows of another table that belong to a job (logs, metrics, events):
 * true only when the job is the user's, so a read keyed by a job id carries its owner itself.
 */
export function jobOwnedBy(jobId: Column, userId: string): SQL {
  return sql`exists (select 1 from ${trainingJobs} where ${trainingJobs.id} = ${jobId} and ${trainingJobs.userId} = ${userId})`;
}

/**
 * The columns a job gets when it ends, written once for every way of ending (endJob,
 * setJobStatus, failLiveJobsOwnedBy): the status, the error, the end stamped with the clock when
 * the row is written (clock_timestamp(), not the statement's start: a pod write that locked the
 * row first is stamped before the end, see endJob), and, unless it completed, its tokens revoked
 * (a completed job's token lives on for the write grace period).
 */
function endedColumns(status: EndedJobStatus, error: string | null | undefined) {
  return {
    status,
    ...(error !== undefined ? { error } : {}),
    finishedAt: sql`clock_timestamp()`,
    updatedAt: sql`clock_timestamp()`,
    ...(status === 'completed' ? {} : { tokenVersion: sql`${trainingJobs.tokenVersion} + 1` }),
  };
}

const jobColumns = {
  id: trainingJobs.id,
  userId: trainingJobs.userId,
  datasetId: trainingJobs.datasetId,
  name: trainingJobs.name,
  status: trainingJobs.status,
  launcher: trainingJobs.launcher,
  config: trainingJobs.config,
  podReport: trainingJobs.podReport,
  lastHeartbeatAt: trainingJobs.lastHeartbeatAt,
  error: trainingJobs.error,
  createdAt: trainingJobs.createdAt,
  updatedAt: trainingJobs.updatedAt,
  startedAt: trainingJobs.startedAt,
  finishedAt: trainingJobs.finishedAt,
};

const predictionCount = sql<number>`(select coalesce(sum(${predictionEpochStats.count}), 0)::int from ${predictionEpochStats} where ${predictionEpochStats.jobId} = ${trainingJobs.id})`;

export type JobRecord = Awaited<ReturnType<typeof getJob>> & object;

export async function insertJob(
  db: Db,
  params: { userId: string; datasetId: string; name: string; launcher: string; config: JobConfig; status: JobStatus; launcherOwner?: string | null },
) {
  const [row] = await db
    .insert(trainingJobs)
    .values(params)
    .returning({ id: trainingJobs.id, tokenVersion: trainingJobs.tokenVersion, createdAt: trainingJobs.createdAt });
  if (!row) throw new Error('insert into training_jobs returned no row');
  return row;
}

export async function getJob(db: Db, params: { userId: string; jobId: string }) {
  const rows = await db
    .select({ ...jobColumns, datasetName: datasets.name, datasetRows: datasets.rowCount, predictionCount })
    .from(trainingJobs)
    .leftJoin(datasets, eq(datasets.id, trainingJobs.datasetId))
    .where(and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId)))
    .limit(1);
  return rows[0];
}

/** Whether the job exists and is the user's: the cheap check in front of reads that only need that. */
export async function isJobOwnedBy(db: Db, params: { userId: string; jobId: string }): Promise<boolean> {
  const rows = await db
    .select({ id: trainingJobs.id })
    .from(trainingJobs)
    .where(and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId)))
    .limit(1);
  return rows.length > 0;
}

// The cursor carries a JavaScript date (milliseconds) while PostgreSQL keeps microseconds: order
// and compare on the millisecond, or two jobs created within one millisecond (a sweep deployed at
// once) straddle a page boundary and the older one is never listed.
const createdAtMs = sql`date_trunc('milliseconds', ${trainingJobs.createdAt})`;

/** The part of the pod report a job list shows (progress); the rest (env, counters) is the job page's. */
export type PodProgress = Pick<PodReport, 'epoch' | 'step' | 'totalSteps'>;
// Only the progress leaves the database: the whole report (env, counters) is for one job's page,
// and a large one made every listing pay for it (audit F16: 1 s with a 7 MB report).
const podProgress = sql<PodProgress | null>`case when ${trainingJobs.podReport} is null then null else jsonb_strip_nulls(jsonb_build_object('epoch', ${trainingJobs.podReport}->'epoch', 'step', ${trainingJobs.podReport}->'step', 'totalSteps', ${trainingJobs.podReport}->'totalSteps')) end`;

/** Newest first, keyset-paginated on (created_at to the millisecond, id); `podReport` holds the progress only. */
export async function listJobs(db: Db, params: { userId: string; limit: number; before?: { createdAt: Date; id: string } }) {
  const { before } = params;
  return db
    .select({ ...jobColumns, podReport: podProgress, datasetName: datasets.name, datasetRows: datasets.rowCount, predictionCount })
    .from(trainingJobs)
    .leftJoin(datasets, eq(datasets.id, trainingJobs.datasetId))
    .where(
      and(
        eq(trainingJobs.userId, params.userId),
        before ? sql`(${createdAtMs}, ${trainingJobs.id}) < (${before.createdAt.toISOString()}::timestamptz, ${before.id}::uuid)` : undefined,
      ),
    )
    .orderBy(desc(createdAtMs), desc(trainingJobs.id))
    .limit(params.limit);
}

/**
 * Ends a live job in one statement; returns undefined when the job is not the user's or not live
 * any more. A failed or cancelled job's token is revoked at once; a completed job keeps its
 * token version, so that token may still upload late rows for the write grace period (the
 * status and finished_at decide that, in server/pod/pod-auth.ts).
 *
 * The row is locked before finished_at is taken, and finished_at is the clock at that moment: a
 * pod write in flight holds the same lock (server/pod/pod-auth.ts), so every row it stored is
 * stamped before the job's end. now() (the statement's start) could precede a write that began
 * a moment later yet locked first, and so stamp the end before rows stored under the live job.
 */
export async function endJob(
  db: Db,
  params: { jobId: string; userId: string; status: 'completed' | 'failed' | 'cancelled'; error?: string | null },
) {
  const owned = and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId), inArray(trainingJobs.status, LIVE));
  return db.transaction(async (tx) => {
    const [live] = await tx.select({ id: trainingJobs.id }).from(trainingJobs).where(owned).for('no key update');
    if (!live) return undefined;
    const rows = await tx
      .update(trainingJobs)
      .set(endedColumns(params.status, params.error ?? null))
      .where(owned)
      .returning({ id: trainingJobs.id, launcher: trainingJobs.launcher, launcherRef: trainingJobs.launcherRef, status: trainingJobs.status });
    return rows[0];
  });
}

/**
 * Revokes every token issued so far for the user's job and returns the new version with the
 * job's status (a live job gets a pod token, an ended one an upload token); undefined when the
 * job is not the user's. As in endJob, updated_at is the clock once the row is locked, after
 * every write of the old token that got the lock first.
 */
export async function bumpTokenVersion(db: Db, params: { jobId: string; userId: string; onlyIf?: JobStatus[] }) {
  const owned = and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId), params.onlyIf ? inArray(trainingJobs.status, params.onlyIf) : undefined);
  return db.transaction(async (tx) => {
    const [found] = await tx.select({ id: trainingJobs.id }).from(trainingJobs).where(owned).for('no key update');
    if (!found) return undefined;
    const rows = await tx
      .update(trainingJobs)
      .set({ tokenVersion: sql`${trainingJobs.tokenVersion} + 1`, updatedAt: sql`clock_timestamp()` })
      .where(owned)
      .returning({ tokenVersion: trainingJobs.tokenVersion, status: trainingJobs.status });
    return rows[0];
  });
}

export async function setJobStatus(
  db: Db,
  params: { jobId: string; userId: string; from: JobStatus[]; to: JobStatus; error?: string | null; launcherRef?: string | null; launcherOwner?: string | null },
) {
  const rows = await db
    .update(trainingJobs)
    .set({
      ...(isEndedStatus(params.to)
        ? endedColumns(params.to, params.error)
        : { status: params.to, updatedAt: sql`now()`, ...(params.error !== undefined ? { error: params.error } : {}) }),
      ...(params.to === 'running' ? { startedAt: sql`coalesce(${trainingJobs.startedAt}, now())` } : {}),
      ...(params.launcherRef !== undefined ? { launcherRef: params.launcherRef } : {}),
      ...(params.launcherOwner !== undefined ? { launcherOwner: params.launcherOwner } : {}),
    })
    .where(and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId), inArray(trainingJobs.status, params.from)))
    .returning({ id: trainingJobs.id, status: trainingJobs.status });
  return rows[0];
}

export async function setLauncherRef(db: Db, params: { jobId: string; userId: string; launcherRef: string; launcherOwner: string }) {
  await db
    .update(trainingJobs)
    .set({ launcherRef: params.launcherRef, launcherOwner: params.launcherOwner, updatedAt: sql`now()` })
    .where(and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId)));
}

/**
 * The live jobs of one launcher that one server instance launched, oldest first, with the
 * launcher's handle on each: what a restarted instance takes back. Its one caller is
 * adoptLocalJobs (server/jobs/jobs.service.ts); the owner of each job comes back with it.
 */
export function unsafeListLiveJobsLaunchedBy(db: Db, params: { launcher: string; owner: string }) {
  return db
    .select({ jobId: trainingJobs.id, userId: trainingJobs.userId, ref: trainingJobs.launcherRef })
    .from(trainingJobs)
    .where(and(eq(trainingJobs.launcher, params.launcher), eq(trainingJobs.launcherOwner, params.owner), inArray(trainingJobs.status, LIVE)))
    .orderBy(trainingJobs.createdAt, trainingJobs.id);
}

/** Fails every live job of one launcher run by one server instance; returns their ids. */
export async function failLiveJobsOwnedBy(db: Db, params: { launcher: string; owner: string; error: string }) {
  const rows = await db
    .update(trainingJobs)
    .set(endedColumns('failed', params.error))
    .where(
      and(
        eq(trainingJobs.launcher, params.launcher),
        eq(trainingJobs.launcherOwner, params.owner),
        inArray(trainingJobs.status, LIVE),
      ),
    )
    .returning({ id: trainingJobs.id });
  return rows.map((r) => r.id);
}

// ---- pod side: scoped by the job id of a verified job token ----

/**
 * The job as a pod token's check needs it. Only podProcedure calls this, with a verified token's
 * job id. `inWriteGrace`: the job completed less than `graceSeconds` ago (by the database's
 * clock, which also wrote finished_at, so app and database clocks cannot disagree). `lock`
 * locks the row FOR NO KEY UPDATE (inside a transaction; see server/pod/pod-auth.ts for why).
 */
export async function unsafeGetJobForToken(db: Db, params: { jobId: string; graceSeconds: number; lock?: boolean }) {
  const query = db
    .select({
      id: trainingJobs.id,
      userId: trainingJobs.userId,
      status: trainingJobs.status,
      tokenVersion: trainingJobs.tokenVersion,
      inWriteGrace: sql<boolean>`coalesce(${trainingJobs.status} = 'completed' and ${trainingJobs.finishedAt} > now() - make_interval(secs => ${params.graceSeconds}), false)`,
    })
    .from(trainingJobs)
    .where(eq(trainingJobs.id, params.jobId))
    .limit(1);
  // Inside a pod write's transaction the row is locked: jobs.cancel, pod.finish and
  // jobs.rotateToken update this row, so they wait for the write to commit, and a write that
  // locks after them reads their committed state (server/pod/pod-auth.ts, runGuardedWrite).
  const rows = await (params.lock ? query.for('no key update') : query);
  return rows[0];
}

export async function recordHeartbeat(db: Db, params: { jobId: string; report: PodReport }) {
  const rows = await db
    .update(trainingJobs)
    .set({
      podReport: params.report,
      lastHeartbeatAt: sql`now()`,
      updatedAt: sql`now()`,
      status: sql`case when ${trainingJobs.status} in ('pending', 'starting') then 'running' else ${trainingJobs.status} end`,
      startedAt: sql`coalesce(${trainingJobs.startedAt}, now())`,
    })
    .where(eq(trainingJobs.id, params.jobId))
    .returning({ status: trainingJobs.status });
  return rows[0];
}

/**
 * Every live job of one launcher, whoever owns it: for a launcher whose pods outlive the server
 * instance that created them, so any instance can follow them. Its one caller is the launcher
 * registry (server/launchers/registry.ts); nothing here is shown to a user.
 */
export function unsafeListLiveJobsOfLauncher(db: Db, params: { launcher: string }) {
  return db
    .select({ jobId: trainingJobs.id, userId: trainingJobs.userId, ref: trainingJobs.launcherRef })
    .from(trainingJobs)
    .where(and(eq(trainingJobs.launcher, params.launcher), inArray(trainingJobs.status, LIVE)));
}
