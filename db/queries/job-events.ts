// The job's ledger (job_events): what happened to a job that a user or diagnostics may need to
// know (refusals, replacements, launcher exits). Pods and launchers append by job id; reads take
// the owner.
import { and, desc, eq, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../client';
import { jobEvents, trainingJobs } from '../schema';
import { jobOwnedBy } from './jobs';

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

/** The user's job's ledger, newest first; another user's job has none. */
export function listJobEvents(db: Db, params: { userId: string; jobId: string; limit?: number }) {
  return db
    .select({ id: jobEvents.id, kind: jobEvents.kind, detail: jobEvents.detail, createdAt: jobEvents.createdAt })
    .from(jobEvents)
    .where(and(eq(jobEvents.jobId, params.jobId), jobOwnedBy(jobEvents.jobId, params.userId)))
    .orderBy(desc(jobEvents.id))
    .limit(params.limit ?? 200);
}

/** The ledger summarised for diagnostics: per kind and reason, how often, when last, and the last detail. */
export async function summarizeJobEvents(db: Db, params: { userId: string; jobId: string }) {
  const rows = await db.execute(sql`
    select kind, coalesce(detail->>'reason', '') as reason, count(*)::int as count,
           coalesce(sum(case when jsonb_typeof(detail->'count') = 'number' then (detail->>'count')::int end), 0)::int as counted,
           max(created_at) as last_at,
           min(case when jsonb_typeof(detail->'minStep') = 'number' then (detail->>'minStep')::bigint end) as min_step,
           max(case when jsonb_typeof(detail->'maxStep') = 'number' then (detail->>'maxStep')::bigint end) as max_step,
           (array_agg(detail order by id desc))[1] as last_detail
    from ${jobEvents} where job_id = ${params.jobId} and ${jobOwnedBy(jobEvents.jobId, params.userId)}
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
