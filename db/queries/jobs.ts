// Queries on training jobs. User-facing functions take the owner and put it in the where
// clause, so another user's job id finds nothing. Pod-facing functions take the job id from a
// verified job token. The lookups that skip the owner are named unsafe…, each with one caller.
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../client';
import { datasets, jobEvents, jobLogs, predictionEpochStats, trainingJobs, trainingMetrics, type JobStatus, type PodReport } from '../schema';
import type { JobConfig } from '../../server/contract/job-config';

export const LIVE_STATUSES: JobStatus[] = ['pending', 'starting', 'running'];

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

/** Newest first, keyset-paginated on (created_at to the millisecond, id). */
export async function listJobs(db: Db, params: { userId: string; limit: number; before?: { createdAt: Date; id: string } }) {
  const { before } = params;
  return db
    .select({ ...jobColumns, datasetName: datasets.name, datasetRows: datasets.rowCount, predictionCount })
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
 */
export async function endJob(
  db: Db,
  params: { jobId: string; userId: string; status: 'completed' | 'failed' | 'cancelled'; error?: string | null },
) {
  const rows = await db
    .update(trainingJobs)
    .set({
      status: params.status,
      error: params.error ?? null,
      ...(params.status === 'completed' ? {} : { tokenVersion: sql`${trainingJobs.tokenVersion} + 1` }),
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(trainingJobs.id, params.jobId), eq(trainingJobs.userId, params.userId), inArray(trainingJobs.status, LIVE_STATUSES)))
    .returning({ id: trainingJobs.id, launcher: trainingJobs.launcher, launcherRef: trainingJobs.launcherRef, status: trainingJobs.status });
  return rows[0];
}

/**
 * Revokes every token issued so far for the user's job and returns the new version with the
 * job's status (a live job gets a pod token, an ended one an upload token); undefined when the
 * job is not the user's.
 */
export async function bumpTokenVersion(db: Db, params: { jobId: string; userId: string; onlyIf?: JobStatus[] }) {
  const rows = await db
    .update(trainingJobs)
    .set({ tokenVersion: sql`${trainingJobs.tokenVersion} + 1`, updatedAt: sql`now()` })
    .where(
      and(
        eq(trainingJobs.id, params.jobId),
        eq(trainingJobs.userId, params.userId),
        params.onlyIf ? inArray(trainingJobs.status, params.onlyIf) : undefined,
      ),
    )
    .returning({ tokenVersion: trainingJobs.tokenVersion, status: trainingJobs.status });
  return rows[0];
}

export async function setJobStatus(
  db: Db,
  params: { jobId: string; userId: string; from: JobStatus[]; to: JobStatus; error?: string | null; launcherRef?: string | null; launcherOwner?: string | null },
) {
  const rows = await db
    .update(trainingJobs)
    .set({
      status: params.to,
      updatedAt: sql`now()`,
      ...(params.to === 'running' ? { startedAt: sql`coalesce(${trainingJobs.startedAt}, now())` } : {}),
      ...(['completed', 'failed', 'cancelled'].includes(params.to) ? { finishedAt: sql`now()` } : {}),
      // As in endJob: only a completed job's token lives on, for the write grace period.
      ...(['failed', 'cancelled'].includes(params.to) ? { tokenVersion: sql`${trainingJobs.tokenVersion} + 1` } : {}),
      ...(params.error !== undefined ? { error: params.error } : {}),
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
    .where(and(eq(trainingJobs.launcher, params.launcher), eq(trainingJobs.launcherOwner, params.owner), inArray(trainingJobs.status, LIVE_STATUSES)))
    .orderBy(trainingJobs.createdAt, trainingJobs.id);
}

/** Fails every live job of one launcher run by one server instance; returns their ids. */
export async function failLiveJobsOwnedBy(db: Db, params: { launcher: string; owner: string; error: string }) {
  const rows = await db
    .update(trainingJobs)
    .set({
      status: 'failed',
      error: params.error,
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
      tokenVersion: sql`${trainingJobs.tokenVersion} + 1`,
    })
    .where(
      and(
        eq(trainingJobs.launcher, params.launcher),
        eq(trainingJobs.launcherOwner, params.owner),
        inArray(trainingJobs.status, LIVE_STATUSES),
      ),
    )
    .returning({ id: trainingJobs.id });
  return rows.map((r) => r.id);
}

// ---- pod side: scoped by the job id of a verified job token ----

/**
 * The job as a pod token's check needs it. Only podProcedure calls this, with a verified token's
 * job id. `inWriteGrace`: the job completed less than `graceSeconds` ago (by the database's
 * clock, which also wrote finished_at, so app and database clocks cannot disagree).
 */
export async function unsafeGetJobForToken(db: Db, params: { jobId: string; graceSeconds: number }) {
  const rows = await db
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

// ---- the job's ledger, logs and metrics ----

export async function insertJobEvent(db: Db, params: { jobId: string; kind: string; detail?: Record<string, unknown> }) {
  await db.insert(jobEvents).values({ jobId: params.jobId, kind: params.kind, detail: params.detail ?? {} });
}

/**
 * Records an event unless the same kind with the same reason was recorded for the job within
 * the window: a pod retrying with a dead token must not flood the ledger.
 */
export async function insertJobEventThrottled(
  db: Db,
  params: { jobId: string; kind: string; reason: string; detail?: Record<string, unknown>; windowSeconds?: number },
) {
  const detail = { reason: params.reason, ...params.detail };
  await db.execute(sql`
    insert into ${jobEvents} (job_id, kind, detail)
    select ${params.jobId}, ${params.kind}, ${JSON.stringify(detail)}::jsonb
    where exists (select 1 from ${trainingJobs} where ${trainingJobs.id} = ${params.jobId})
      and not exists (
        select 1 from ${jobEvents}
        where ${jobEvents.jobId} = ${params.jobId} and ${jobEvents.kind} = ${params.kind}
          and ${jobEvents.detail}->>'reason' = ${params.reason}
          and ${jobEvents.createdAt} > now() - make_interval(secs => ${params.windowSeconds ?? 30})
      )`);
}

export function listJobEvents(db: Db, params: { jobId: string; limit?: number }) {
  return db
    .select({ id: jobEvents.id, kind: jobEvents.kind, detail: jobEvents.detail, createdAt: jobEvents.createdAt })
    .from(jobEvents)
    .where(eq(jobEvents.jobId, params.jobId))
    .orderBy(desc(jobEvents.id))
    .limit(params.limit ?? 200);
}

export const LOG_LINES_KEPT_PER_JOB = 20_000;

export async function insertLogLines(db: Db, params: { jobId: string; lines: Array<{ level: string; message: string }> }) {
  await db.insert(jobLogs).values(params.lines.map((l) => ({ jobId: params.jobId, level: l.level, line: l.message })));
  // Keep the newest lines: the end of a log is where a failure explains itself.
  await db.execute(sql`
    delete from ${jobLogs} where ${jobLogs.jobId} = ${params.jobId} and ${jobLogs.id} <= (
      select ${jobLogs.id} from ${jobLogs} where ${jobLogs.jobId} = ${params.jobId}
      order by ${jobLogs.id} desc offset ${LOG_LINES_KEPT_PER_JOB} limit 1)`);
}

export function listLogLines(db: Db, params: { jobId: string; afterId: number; limit: number }) {
  return db
    .select({ id: jobLogs.id, level: jobLogs.level, message: jobLogs.line, createdAt: jobLogs.createdAt })
    .from(jobLogs)
    .where(and(eq(jobLogs.jobId, params.jobId), sql`${jobLogs.id} > ${params.afterId}`))
    .orderBy(jobLogs.id)
    .limit(params.limit);
}

/**
 * Stores metric points. A point already stored for (name, step) in the same epoch takes the new
 * value when it differs (a run resumed from a checkpoint logs those steps again); one stored under
 * another epoch is left alone and returned as a conflict (steps must be global, as predictions'
 * are: a pod counting steps within each epoch would otherwise overwrite every earlier epoch's
 * curve). NaN and ±Infinity are stored as the IEEE values (double precision holds them).
 * `metrics` must not hold a (name, step) twice.
 */
export async function insertMetrics(
  db: Db,
  params: { jobId: string; metrics: Array<{ step: number; epoch: number; name: string; value: number }> },
): Promise<{ inserted: number; replaced: number; conflicts: Array<{ index: number; storedEpoch: number }> }> {
  if (params.metrics.length === 0) return { inserted: 0, replaced: 0, conflicts: [] };
  // The values travel as text: JSON has no NaN, and 'NaN' / 'Infinity' are float8 literals.
  const rows = params.metrics.map((m, index) => ({ index, step: m.step, epoch: m.epoch, name: m.name, value: String(m.value) }));
  const result = await db.execute(sql`
    with input as (
      select r.index, r.step, r.epoch, r.name, r.value::float8 as value
      from json_to_recordset(${JSON.stringify(rows)}::json) as r(index int, step int, epoch float8, name text, value text)
    ), matched as (
      select i.index, m.id, m.epoch as stored_epoch, abs(m.epoch - i.epoch) <= 1e-6 as same_epoch, m.value is not distinct from i.value as same_value
      from input i join ${trainingMetrics} m on m.job_id = ${params.jobId}::uuid and m.name = i.name and m.step = i.step
    ), inserted as (
      insert into ${trainingMetrics} (job_id, step, epoch, name, value)
      select ${params.jobId}::uuid, i.step, i.epoch, i.name, i.value from input i
      where not exists (select 1 from matched m where m.index = i.index)
      on conflict (job_id, name, step) do nothing
      returning 1
    ), replaced as (
      update ${trainingMetrics} t set value = i.value, epoch = i.epoch
      from matched m join input i on i.index = m.index
      where t.id = m.id and m.same_epoch and not m.same_value
      returning 1
    )
    select (select count(*)::int from inserted) as inserted, (select count(*)::int from replaced) as replaced,
      (select coalesce(json_agg(json_build_array(index, stored_epoch) order by index), '[]'::json) from matched where not same_epoch) as conflicts`);
  const [row] = rowsOf<{ inserted: number; replaced: number; conflicts: Array<[number, number]> | string }>(result);
  const conflicts = typeof row?.conflicts === 'string' ? (JSON.parse(row.conflicts) as Array<[number, number]>) : (row?.conflicts ?? []);
  return {
    inserted: Number(row?.inserted ?? 0),
    replaced: Number(row?.replaced ?? 0),
    conflicts: conflicts.map(([index, storedEpoch]) => ({ index, storedEpoch })),
  };
}

/** A job's metric points in (name, step) order; values may be NaN or ±Infinity. */
export function listMetrics(db: Db, params: { jobId: string }) {
  return db
    .select({ step: trainingMetrics.step, epoch: trainingMetrics.epoch, name: trainingMetrics.name, value: trainingMetrics.value })
    .from(trainingMetrics)
    .where(eq(trainingMetrics.jobId, params.jobId))
    .orderBy(trainingMetrics.name, trainingMetrics.step)
    .limit(100_000);
}

/** The ledger summarised for diagnostics: per kind and reason, how often, when last, and the last detail. */
export async function summarizeJobEvents(db: Db, params: { jobId: string }) {
  const rows = await db.execute(sql`
    select kind, coalesce(detail->>'reason', '') as reason, count(*)::int as count,
           coalesce(sum(case when jsonb_typeof(detail->'count') = 'number' then (detail->>'count')::int end), 0)::int as counted,
           max(created_at) as last_at,
           min(case when jsonb_typeof(detail->'minStep') = 'number' then (detail->>'minStep')::bigint end) as min_step,
           max(case when jsonb_typeof(detail->'maxStep') = 'number' then (detail->>'maxStep')::bigint end) as max_step,
           (array_agg(detail order by id desc))[1] as last_detail
    from ${jobEvents} where job_id = ${params.jobId}
    group by kind, coalesce(detail->>'reason', '')`);
  type Row = { kind: string; reason: string; count: number; counted: number; last_at: string | Date; min_step: string | number | null; max_step: string | number | null; last_detail: Record<string, unknown> };
  return rowsOf<Row>(rows).map((r) => ({
    kind: r.kind,
    reason: r.reason,
    count: Number(r.count),
    /** The sum of the events' own `count` fields (e.g. rows refused across batches). */
    counted: Number(r.counted),
    lastAt: new Date(r.last_at),
    /** The step range the events' own `minStep` / `maxStep` fields span (e.g. replaced rows), null when none has one. */
    steps: r.min_step === null || r.max_step === null ? null : { min: Number(r.min_step), max: Number(r.max_step) },
    lastDetail: r.last_detail,
  }));
}

export async function predictionTotals(db: Db, params: { jobId: string }) {
  const [row] = await db
    .select({
      count: sql<number>`coalesce(sum(${predictionEpochStats.count}), 0)::int`,
      lastWriteAt: sql<string | null>`max(${predictionEpochStats.lastWriteAt})`,
    })
    .from(predictionEpochStats)
    .where(eq(predictionEpochStats.jobId, params.jobId));
  return { count: row?.count ?? 0, lastWriteAt: row?.lastWriteAt ? new Date(row.lastWriteAt) : null };
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
    .where(and(eq(trainingJobs.launcher, params.launcher), inArray(trainingJobs.status, LIVE_STATUSES)));
}
