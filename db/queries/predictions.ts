// Queries on training predictions. Writes are scoped by the job of a verified job token;
// reads by the owner.
import { and, asc, desc, eq, gt, ilike, inArray, or, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../client';
import { predictionEpochStats, trainingPredictions } from '../schema';
import type { PredictionRowInput } from '#contract/pod.schemas';
import type { PredictionTrigger } from '#contract/triggers';

/** A prediction row ready to store: validated, text made storable, `altered` when that changed it. */
export type StorablePredictionRow = PredictionRowInput & { altered: boolean };

/** What one batch did; every row of it lands in exactly one of these. */
export interface InsertPredictionsResult {
  inserted: number;
  /** Keys already stored with identical content (a retried batch). */
  duplicates: number;
  /** Keys already stored with different content, now holding the newer row, and their step range. */
  replaced: { count: number; minStep: number | null; maxStep: number | null };
  /** Stored rows (inserted or replaced) whose text was altered to be storable. */
  altered: number;
  /** Rows whose (step, sampleIndex) is stored under another epoch or trigger: by index in `rows`, with what is stored. */
  conflicts: Array<{ index: number; storedEpoch: number; storedTrigger: PredictionTrigger }>;
  /** The highest id written by this batch, for live subscribers; null when nothing was written. */
  maxId: number | null;
}

/**
 * Stores a batch of one job's predictions. Per (step, sampleIndex): a new key is inserted; a key
 * stored with identical content is a duplicate (a retried batch changes nothing); a key stored
 * with different content in the same epoch and trigger is replaced (a run resumed from a
 * checkpoint re-predicts those steps) and gets a new id, so live subscribers see the new text;
 * a key stored under another epoch or trigger is left alone and returned as a conflict (steps
 * must be global, as Hugging Face's `global_step` is). A key sent twice in one batch is treated as
 * if its rows had come in separate batches, in order.
 * The per-epoch totals move in the same statement.
 *
 * Ordering for live delivery: the write holds a per-job transaction lock from before its ids are
 * drawn until it commits, so one job's rows become visible in id order and a subscriber reading
 * "after id N" can never pass over a row that commits later with a lower id (two overlapping
 * writes used to do exactly that on PostgreSQL). Writes to different jobs do not wait for each other.
 * `guard` runs first in the transaction and throws to store nothing: the pod token's re-check
 * with the job row locked FOR NO KEY UPDATE (server/pod/pod-auth.ts). That row lock already
 * queues the job's guarded writes one at a time, so with a guard the advisory lock is taken
 * inside the first insert statement, before any row reaches the insert (no round trip of its
 * own): it still orders the write against writers that hold only the advisory lock. Without a
 * guard the advisory lock is its own statement, first, as it always was.
 *
 * `notifyChannel`: the batch is announced from inside its last statement, as
 * `pg_notify(channel, '{"jobId","userId","maxId"}')` (server/live/live-hub.ts reads it).
 * PostgreSQL delivers a notification at commit and drops it on rollback, so a subscriber is
 * woken only for rows it can read, and a write costs no separate statement and commit for it.
 * Nothing is sent when the batch wrote nothing (all duplicates or conflicts).
 *
 * @param params.rows validated rows; may be empty (then nothing runs at all).
 * @returns the counts of the batch, see InsertPredictionsResult.
 * @throws whatever `guard` throws (the transaction is rolled back, nothing is stored or sent).
 */
export async function insertPredictions(
  db: Db,
  params: {
    jobId: string;
    userId: string;
    rows: StorablePredictionRow[];
    guard?: (tx: Db) => Promise<void>;
    notifyChannel?: string;
    /** Bench only (issue 19's before/after in one run): the advisory lock as its own first statement even with a guard, as before. */
    lockStatement?: boolean;
  },
): Promise<InsertPredictionsResult> {
  const total: InsertPredictionsResult = { inserted: 0, duplicates: 0, replaced: { count: 0, minStep: null, maxStep: null }, altered: 0, conflicts: [], maxId: null };
  if (params.rows.length === 0) return total;
  const rounds = splitIntoRounds(params.rows);
  const lockInStatement = params.guard !== undefined && params.lockStatement !== true;
  await db.transaction(async (tx) => {
    if (!lockInStatement) await tx.execute(sql`select pg_advisory_xact_lock(${PREDICTIONS_LOCK_CLASS}, hashtext(${params.jobId}))`);
    // Before the rows are written, and waiting on the job's row lock when another write holds it:
    // the job's state is read as it is when the rows are written, not as it was when the write queued.
    await params.guard?.(tx);
    for (const [k, round] of rounds.entries()) {
      const last = k === rounds.length - 1;
      const part = await insertRound(tx, params.jobId, params.userId, round, {
        lock: lockInStatement && k === 0,
        notice: last && params.notifyChannel !== undefined ? { channel: params.notifyChannel, priorMaxId: total.maxId } : null,
      });
      total.inserted += part.inserted;
      total.duplicates += round.length - part.inserted - part.replaced - part.conflicts.length;
      total.altered += part.altered;
      total.conflicts.push(...part.conflicts);
      if (part.replaced > 0) {
        total.replaced.count += part.replaced;
        total.replaced.minStep = Math.min(total.replaced.minStep ?? Infinity, part.replacedMinStep ?? Infinity);
        total.replaced.maxStep = Math.max(total.replaced.maxStep ?? -Infinity, part.replacedMaxStep ?? -Infinity);
      }
      if (part.maxId !== null) total.maxId = Math.max(total.maxId ?? 0, part.maxId);
    }
  });
  total.conflicts.sort((x, y) => x.index - y.index);
  return total;
}

/**
 * A batch that holds one key more than once is stored as if its rows had come in that order in
 * separate batches: round k holds the k-th row of each key. (Keeping only the last row of a key
 * dropped the earlier one as a "duplicate", which lost a whole epoch when steps restarted each
 * epoch within one batch.) Nearly every batch is one round.
 */
function splitIntoRounds(rows: StorablePredictionRow[]): Array<Array<StorablePredictionRow & { index: number }>> {
  const rounds: Array<Array<StorablePredictionRow & { index: number }>> = [];
  const seen = new Map<string, number>();
  rows.forEach((row, index) => {
    const key = `${row.step}:${row.sampleIndex}`;
    const round = seen.get(key) ?? 0;
    seen.set(key, round + 1);
    (rounds[round] ??= []).push({ ...row, index });
  });
  return rounds;
}

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/**
 * One statement over rows with distinct keys; see insertPredictions. `lock`: take the job's
 * advisory lock in this statement; every row flows from `input`, which cannot yield a row before
 * the one-row `job_lock` has, so the lock is held before any id is drawn. `notice`: send the
 * batch's notification (highest id of this round and of the earlier ones) from this statement.
 */
async function insertRound(
  tx: Tx,
  jobId: string,
  userId: string,
  rows: Array<StorablePredictionRow & { index: number }>,
  options: { lock: boolean; notice: { channel: string; priorMaxId: number | null } | null },
) {
  const { lock, notice } = options;
  const lockCte = lock ? sql`job_lock as materialized (select pg_advisory_xact_lock(${PREDICTIONS_LOCK_CLASS}, hashtext(${jobId})) is null as locked), ` : sql``;
  const lockFrom = lock ? sql`job_lock, ` : sql``;
  // A CTE runs only when referenced, hence the count in the final select.
  const noticeCte = notice
    ? sql`, notice as materialized (
        select pg_notify(${notice.channel}, json_build_object('jobId', ${jobId}::uuid, 'userId', ${userId}::uuid, 'maxId', m)::text)
        from (select greatest(max(id), ${notice.priorMaxId}::bigint) as m from (select id from inserted union all select id from replaced) w) top
        where m is not null
      )`
    : sql``;
  const noticeColumn = notice ? sql`, (select count(*)::int from notice) as notified` : sql``;
  const result = await tx.execute(sql`
      with ${lockCte}input as (
        select r.* from ${lockFrom}json_to_recordset(${JSON.stringify(rows)}::json)
          as r(index int, epoch int, step int, "sampleIndex" int, trigger text, prompt text, "groundTruth" text, prediction text, altered boolean)
      ), matched as (
        select i.index, p.id, p.epoch as stored_epoch, p.trigger as stored_trigger,
               p.epoch = i.epoch and p.trigger = i.trigger as same_place,
               (p.prompt, p.ground_truth, p.prediction) = (i.prompt, i."groundTruth", i.prediction) as same_content
        from input i join ${trainingPredictions} p
          on p.job_id = ${jobId}::uuid and p.step = i.step and p.sample_index = i."sampleIndex"
      ), inserted as (
        insert into ${trainingPredictions} (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction, altered)
        select ${jobId}::uuid, ${userId}::uuid, i.epoch, i.step, i."sampleIndex", i.trigger, i.prompt, i."groundTruth", i.prediction, i.altered
        from input i where not exists (select 1 from matched m where m.index = i.index)
        on conflict (job_id, step, sample_index) do nothing
        returning id, epoch, step, trigger, altered, created_at
      ), replaced as (
        update ${trainingPredictions} p
        set prompt = i.prompt, ground_truth = i."groundTruth", prediction = i.prediction, altered = i.altered,
            id = default, created_at = now()
        from matched m join input i on i.index = m.index
        where p.id = m.id and m.same_place and not m.same_content
        returning p.id, p.epoch, p.step, p.trigger, p.altered, p.created_at
      ), stats as (
        insert into ${predictionEpochStats} as s (job_id, user_id, epoch, trigger, count, min_step, max_step, last_write_at)
        select ${jobId}::uuid, ${userId}::uuid, epoch, trigger, sum(added), min(step), max(step), max(created_at)
        from (select epoch, step, trigger, created_at, 1 as added from inserted
              union all select epoch, step, trigger, created_at, 0 from replaced) written
        group by epoch, trigger
        on conflict (job_id, epoch, trigger) do update set
          count = s.count + excluded.count,
          min_step = least(s.min_step, excluded.min_step),
          max_step = greatest(s.max_step, excluded.max_step),
          last_write_at = greatest(s.last_write_at, excluded.last_write_at)
      )${noticeCte}
      select
        (select count(*)::int from inserted) as inserted,
        (select count(*)::int from replaced) as replaced,
        (select min(step) from replaced) as replaced_min_step,
        (select max(step) from replaced) as replaced_max_step,
        (select count(*)::int from (select altered from inserted union all select altered from replaced) w where altered) as altered,
        (select coalesce(json_agg(json_build_array(index, stored_epoch, stored_trigger) order by index), '[]'::json)
           from matched where not same_place) as conflicts,
        (select max(id) from (select id from inserted union all select id from replaced) w)::bigint as max_id${noticeColumn}`);
  const [row] = rowsOf<{
    inserted: number;
    replaced: number;
    replaced_min_step: number | null;
    replaced_max_step: number | null;
    altered: number;
    conflicts: Array<[number, number, PredictionTrigger]> | string;
    max_id: string | number | null;
  }>(result);
  const conflicts = (typeof row?.conflicts === 'string' ? (JSON.parse(row.conflicts) as Array<[number, number, PredictionTrigger]>) : (row?.conflicts ?? [])).map(
    ([index, storedEpoch, storedTrigger]) => ({ index, storedEpoch, storedTrigger }),
  );
  return {
    inserted: Number(row?.inserted ?? 0),
    replaced: Number(row?.replaced ?? 0),
    replacedMinStep: row?.replaced_min_step ?? null,
    replacedMaxStep: row?.replaced_max_step ?? null,
    altered: Number(row?.altered ?? 0),
    conflicts,
    maxId: row?.max_id === null || row?.max_id === undefined ? null : Number(row.max_id),
  };
}

// The first key of the per-job write lock (pg_advisory_xact_lock(int, int)); the second is the job id's hash.
// Any constant works; it keeps these locks apart from the migration lock and from other users of advisory locks.
const PREDICTIONS_LOCK_CLASS = 727_274_102;

/** Recomputes a job's per-epoch totals from its rows, whoever owns it: for bulk loads that bypass insertPredictions (test and bench seeding only). */
export async function unsafeRebuildEpochStats(db: Db, params: { jobId: string }): Promise<void> {
  await db.execute(sql`
    insert into ${predictionEpochStats} as s (job_id, user_id, epoch, trigger, count, min_step, max_step, last_write_at)
    select job_id, user_id, epoch, trigger, count(*), min(step), max(step), max(created_at)
    from ${trainingPredictions} where job_id = ${params.jobId}
    group by job_id, user_id, epoch, trigger
    on conflict (job_id, epoch, trigger) do update set
      count = excluded.count, min_step = excluded.min_step, max_step = excluded.max_step, last_write_at = excluded.last_write_at`);
}


export interface PredictionFilters {
  jobId: string;
  userId: string;
  epoch?: number | undefined;
  trigger?: PredictionTrigger | undefined;
  search?: string | undefined;
}

const listColumns = {
  id: trainingPredictions.id,
  epoch: trainingPredictions.epoch,
  step: trainingPredictions.step,
  sampleIndex: trainingPredictions.sampleIndex,
  trigger: trainingPredictions.trigger,
  prompt: trainingPredictions.prompt,
  groundTruth: trainingPredictions.groundTruth,
  prediction: trainingPredictions.prediction,
  altered: trainingPredictions.altered,
  createdAt: trainingPredictions.createdAt,
};
export type PredictionRecord = { id: number; epoch: number; step: number; sampleIndex: number; trigger: PredictionTrigger; prompt: string; groundTruth: string; prediction: string; altered: boolean; createdAt: Date };

/** LIKE treats % _ and \ specially; a user's search text is matched literally. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function filterClause(f: PredictionFilters): SQL | undefined {
  return and(
    eq(trainingPredictions.jobId, f.jobId),
    // The owner check, kept as a filter only (`is true` is not an index condition): with the job
    // fixed it removes nothing, yet as an index condition PostgreSQL ANDed a bitmap of all the
    // user's rows (280 000 at 1 M rows) into every trigram search, doubling a rare word's cost.
    sql`(${trainingPredictions.userId} = ${f.userId}) is true`,
    f.epoch !== undefined ? eq(trainingPredictions.epoch, f.epoch) : undefined,
    f.trigger ? eq(trainingPredictions.trigger, f.trigger) : undefined,
    f.search
      ? or(
          ilike(trainingPredictions.prompt, likePattern(f.search)),
          ilike(trainingPredictions.groundTruth, likePattern(f.search)),
          ilike(trainingPredictions.prediction, likePattern(f.search)),
        )
      : undefined,
  );
}

/** One page in (step, sampleIndex) order after the cursor position; the indexes serve this order. */
export function listPredictionsPage(db: Db, params: PredictionFilters & { after?: { step: number; sampleIndex: number }; limit: number }) {
  const { after } = params;
  // A row comparison, not `step > a OR (step = a AND …)`: Postgres starts the index scan at the
  // cursor instead of reading and discarding every earlier row (page 1000: 16 ms → 0.4 ms).
  const afterClause = after
    ? sql`(${trainingPredictions.step}, ${trainingPredictions.sampleIndex}) > (${after.step}, ${after.sampleIndex})`
    : undefined;
  const orderBy =
    params.epoch !== undefined
      ? [asc(trainingPredictions.epoch), asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex)]
      : [asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex)];
  return db
    .select(listColumns)
    .from(trainingPredictions)
    .where(and(filterClause(params), afterClause))
    .orderBy(...orderBy)
    .limit(params.limit);
}

/** Searches count their matches up to this many; "1000+" is as useful as an exact figure and far cheaper. */
export const SEARCH_COUNT_CAP = 1000;

/** Where a search match sits: its id and its place in listing order. */
export interface SearchMatchKey {
  id: number;
  step: number;
  sampleIndex: number;
}

/**
 * The first `limit` rows matching the filters (a search among them), in listing order (step,
 * sampleIndex), keys only. Asking for the order lets PostgreSQL weigh its two plans as it does for
 * a page: for a rare word (or none) the trigram indexes (migration 0004) and a sort of the few
 * matches; for a common one the listing index, read in order until `limit` matches. A caller that
 * receives fewer than `limit` keys holds every match, so it has the exact count and can take any
 * page from the keys (predictionsByIds) without searching twice.
 */
export function searchMatchKeys(db: Db, params: PredictionFilters & { limit: number }) {
  const key: { [K in keyof SearchMatchKey]: (typeof trainingPredictions)[K] } = { id: trainingPredictions.id, step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex };
  return db
    .select(key)
    .from(trainingPredictions)
    .where(filterClause(params))
    .orderBy(asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex))
    .limit(params.limit);
}

/**
 * The rows with these ids that still match the filters, in listing order. The filters are
 * applied again so a row replaced or re-scoped since its id was read is left out, never shown
 * out of scope; at most a page of ids is expected (the primary key serves each).
 */
export function predictionsByIds(db: Db, params: PredictionFilters & { ids: number[] }) {
  const orderBy =
    params.epoch !== undefined
      ? [asc(trainingPredictions.epoch), asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex)]
      : [asc(trainingPredictions.step), asc(trainingPredictions.sampleIndex)];
  return db
    .select(listColumns)
    .from(trainingPredictions)
    .where(and(filterClause(params), inArray(trainingPredictions.id, params.ids.length > 0 ? params.ids : [-1])))
    .orderBy(...orderBy);
}

/**
 * How many rows match; without a search this reads the per-epoch totals, not the rows, and is
 * exact. A search counts at most SEARCH_COUNT_CAP matches and says when there are more.
 */
export async function countMatchingPredictions(db: Db, params: PredictionFilters): Promise<{ count: number; isLowerBound: boolean }> {
  if (params.search) {
    const matches = db.select({ one: sql`1` }).from(trainingPredictions).where(filterClause(params)).limit(SEARCH_COUNT_CAP + 1).as('matches');
    const [row] = await db.select({ count: sql<number>`count(*)::int` }).from(matches);
    const count = row?.count ?? 0;
    return count > SEARCH_COUNT_CAP ? { count: SEARCH_COUNT_CAP, isLowerBound: true } : { count, isLowerBound: false };
  }
  const [row] = await db
    .select({ count: sql<number>`coalesce(sum(${predictionEpochStats.count}), 0)::int` })
    .from(predictionEpochStats)
    .where(
      and(
        eq(predictionEpochStats.jobId, params.jobId),
        eq(predictionEpochStats.userId, params.userId),
        params.epoch !== undefined ? eq(predictionEpochStats.epoch, params.epoch) : undefined,
        params.trigger ? eq(predictionEpochStats.trigger, params.trigger) : undefined,
      ),
    );
  return { count: row?.count ?? 0, isLowerBound: false };
}

export function predictionEpochs(db: Db, params: { jobId: string; userId: string }) {
  return db
    .select({
      epoch: predictionEpochStats.epoch,
      count: sql<number>`sum(${predictionEpochStats.count})::int`,
      minStep: sql<number>`min(${predictionEpochStats.minStep})::int`,
      maxStep: sql<number>`max(${predictionEpochStats.maxStep})::int`,
      lastWriteAt: sql<string>`max(${predictionEpochStats.lastWriteAt})`,
    })
    .from(predictionEpochStats)
    .where(and(eq(predictionEpochStats.jobId, params.jobId), eq(predictionEpochStats.userId, params.userId)))
    .groupBy(predictionEpochStats.epoch)
    .orderBy(predictionEpochStats.epoch);
}

/**
 * For each chosen epoch and each sample in the range, the latest prediction made in that epoch
 * (its highest step), in (sampleIndex, epoch) order. The range is one compare page, taken from
 * nextComparedSamples, so nothing here is cut: every step of those samples is read.
 */
export function latestPerEpochAndSample(db: Db, params: ComparedSampleRange) {
  return db
    .selectDistinctOn([trainingPredictions.sampleIndex, trainingPredictions.epoch], listColumns)
    .from(trainingPredictions)
    .where(comparedRangeClause(params))
    .orderBy(trainingPredictions.sampleIndex, trainingPredictions.epoch, desc(trainingPredictions.step));
}

/** Rows of a job stored after a given id, in id order: what a live subscriber has not seen yet. */
export function predictionsAfterId(db: Db, params: { jobId: string; userId: string; afterId: number; limit: number }) {
  return db
    .select(listColumns)
    .from(trainingPredictions)
    .where(and(eq(trainingPredictions.jobId, params.jobId), eq(trainingPredictions.userId, params.userId), gt(trainingPredictions.id, params.afterId)))
    .orderBy(asc(trainingPredictions.id))
    .limit(params.limit);
}

/** The id of the user's job's newest prediction (0 when it has none, or is not the user's): where a live stream starts. */
export async function latestPredictionId(db: Db, params: { jobId: string; userId: string }): Promise<number> {
  const [row] = await db
    .select({ id: trainingPredictions.id })
    .from(trainingPredictions)
    .where(and(eq(trainingPredictions.jobId, params.jobId), eq(trainingPredictions.userId, params.userId)))
    .orderBy(desc(trainingPredictions.id))
    .limit(1);
  return row?.id ?? 0;
}

// ---- compare: pages by sample, nothing cut ----

export interface ComparedSamples {
  jobId: string;
  userId: string;
  epochs: number[];
}
/** Samples fromSampleIndex..toSampleIndex (both included) of the chosen epochs. */
export type ComparedSampleRange = ComparedSamples & { fromSampleIndex: number; toSampleIndex: number };

function comparedRangeClause(params: ComparedSampleRange): SQL | undefined {
  return and(
    eq(trainingPredictions.jobId, params.jobId),
    eq(trainingPredictions.userId, params.userId),
    inArray(trainingPredictions.epoch, params.epochs),
    sql`${trainingPredictions.sampleIndex} between ${params.fromSampleIndex} and ${params.toSampleIndex}`,
  );
}

/**
 * The first `limit` sample indexes above afterSampleIndex that any chosen epoch has a prediction
 * for, ascending: one compare page's samples, keyset by sampleIndex. Each epoch is read on its
 * own (a lateral join), so each stops after `limit` distinct samples instead of the whole job
 * being collected and sorted.
 */
export async function nextComparedSamples(db: Db, params: ComparedSamples & { afterSampleIndex: number; limit: number }): Promise<number[]> {
  if (params.epochs.length === 0) return [];
  const epochs = sql.join(
    params.epochs.map((epoch) => sql`${epoch}::int`),
    sql`, `,
  );
  const result = await db.execute(sql`
    select distinct page.sample_index from unnest(array[${epochs}]) as chosen(epoch)
    cross join lateral (
      select distinct ${trainingPredictions.sampleIndex} as sample_index from ${trainingPredictions}
      where ${trainingPredictions.jobId} = ${params.jobId} and ${trainingPredictions.userId} = ${params.userId}
        and ${trainingPredictions.epoch} = chosen.epoch and ${trainingPredictions.sampleIndex} > ${params.afterSampleIndex}
      order by ${trainingPredictions.sampleIndex} limit ${params.limit}
    ) as page
    order by page.sample_index limit ${params.limit}`);
  return rowsOf<{ sample_index: number }>(result).map((row) => Number(row.sample_index));
}

/** What scoring needs of the latest prediction per epoch and sample in a range (no prompt: it can be long). */
export function latestScoringTexts(db: Db, params: ComparedSampleRange) {
  return db
    .selectDistinctOn([trainingPredictions.sampleIndex, trainingPredictions.epoch], {
      epoch: trainingPredictions.epoch,
      sampleIndex: trainingPredictions.sampleIndex,
      groundTruth: trainingPredictions.groundTruth,
      prediction: trainingPredictions.prediction,
    })
    .from(trainingPredictions)
    .where(comparedRangeClause(params))
    .orderBy(trainingPredictions.sampleIndex, trainingPredictions.epoch, desc(trainingPredictions.step));
}
