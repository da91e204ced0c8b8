// Queries on training predictions. Writes are scoped by the job of a verified job token;
// reads (issue 5) by the owner.
import { and, asc, desc, eq, gt, ilike, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../client';
import { trainingPredictions } from '../schema';
import type { PredictionRowInput } from '../../server/contract/pod.schemas';
import type { PredictionTrigger } from '../../server/contract/triggers';

/**
 * Inserts a batch in one statement. Rows whose (job, step, sampleIndex) is already stored are
 * skipped, so a replayed batch changes nothing. Returns how many rows were new and the highest id.
 */
export async function insertPredictions(
  db: Db,
  params: { jobId: string; userId: string; rows: PredictionRowInput[] },
): Promise<{ inserted: number; maxId: number | null }> {
  if (params.rows.length === 0) return { inserted: 0, maxId: null };
  const inserted = await db
    .insert(trainingPredictions)
    .values(params.rows.map((row) => ({ jobId: params.jobId, userId: params.userId, ...row })))
    .onConflictDoNothing({ target: [trainingPredictions.jobId, trainingPredictions.step, trainingPredictions.sampleIndex] })
    .returning({ id: trainingPredictions.id });
  const maxId = inserted.reduce<number | null>((max, row) => (max === null || row.id > max ? row.id : max), null);
  return { inserted: inserted.length, maxId };
}

export async function countPredictions(db: Db, params: { jobId: string }): Promise<number> {
  const [row] = await db
    .select({ count: sql<number>`count(*)::int` })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, params.jobId));
  return row?.count ?? 0;
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
  createdAt: trainingPredictions.createdAt,
};
export type PredictionRecord = { id: number; epoch: number; step: number; sampleIndex: number; trigger: PredictionTrigger; prompt: string; groundTruth: string; prediction: string; createdAt: Date };

/** LIKE treats % _ and \ specially; a user's search text is matched literally. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function filterClause(f: PredictionFilters): SQL | undefined {
  return and(
    eq(trainingPredictions.jobId, f.jobId),
    eq(trainingPredictions.userId, f.userId),
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
  const afterClause = after
    ? or(
        gt(trainingPredictions.step, after.step),
        and(eq(trainingPredictions.step, after.step), gt(trainingPredictions.sampleIndex, after.sampleIndex)),
      )
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

export async function countMatchingPredictions(db: Db, params: PredictionFilters): Promise<number> {
  const [row] = await db.select({ count: sql<number>`count(*)::int` }).from(trainingPredictions).where(filterClause(params));
  return row?.count ?? 0;
}

export function predictionEpochs(db: Db, params: { jobId: string; userId: string }) {
  return db
    .select({
      epoch: trainingPredictions.epoch,
      count: sql<number>`count(*)::int`,
      minStep: sql<number>`min(${trainingPredictions.step})::int`,
      maxStep: sql<number>`max(${trainingPredictions.step})::int`,
      lastWriteAt: sql<string>`max(${trainingPredictions.createdAt})`,
    })
    .from(trainingPredictions)
    .where(and(eq(trainingPredictions.jobId, params.jobId), eq(trainingPredictions.userId, params.userId)))
    .groupBy(trainingPredictions.epoch)
    .orderBy(trainingPredictions.epoch);
}

/** For each chosen epoch and sample, the latest prediction made in that epoch. */
export function latestPerEpochAndSample(db: Db, params: { jobId: string; userId: string; epochs: number[] }) {
  return db
    .selectDistinctOn([trainingPredictions.epoch, trainingPredictions.sampleIndex], listColumns)
    .from(trainingPredictions)
    .where(
      and(
        eq(trainingPredictions.jobId, params.jobId),
        eq(trainingPredictions.userId, params.userId),
        inArray(trainingPredictions.epoch, params.epochs),
      ),
    )
    .orderBy(trainingPredictions.epoch, trainingPredictions.sampleIndex, desc(trainingPredictions.step))
    .limit(100 * params.epochs.length);
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

export async function latestPredictionId(db: Db, params: { jobId: string }): Promise<number> {
  const [row] = await db
    .select({ id: trainingPredictions.id })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, params.jobId))
    .orderBy(desc(trainingPredictions.id))
    .limit(1);
  return row?.id ?? 0;
}
