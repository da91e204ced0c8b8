// A job's metric points (training_metrics): pods write by job id; reads take the owner.
import { and, eq, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../client';
import { trainingMetrics } from '../schema';
import { jobOwnedBy } from './jobs';

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

/** The user's job's metric points in (name, step) order; values may be NaN or ±Infinity. Another user's job has none. */
export function listMetrics(db: Db, params: { userId: string; jobId: string }) {
  return db
    .select({ step: trainingMetrics.step, epoch: trainingMetrics.epoch, name: trainingMetrics.name, value: trainingMetrics.value })
    .from(trainingMetrics)
    .where(and(eq(trainingMetrics.jobId, params.jobId), jobOwnedBy(trainingMetrics.jobId, params.userId)))
    .orderBy(trainingMetrics.name, trainingMetrics.step)
    .limit(100_000);
}
