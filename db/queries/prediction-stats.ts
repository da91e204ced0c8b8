// The running totals per job, epoch and trigger (prediction_epoch_stats), kept by the insert
// statement in predictions.ts; reads here take the owner.
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { predictionEpochStats } from '../schema';

/** How many predictions the user's job has stored and when the last arrived (zero and null for another user's job). */
export async function predictionTotals(db: Db, params: { userId: string; jobId: string }) {
  const [row] = await db
    .select({
      count: sql<number>`coalesce(sum(${predictionEpochStats.count}), 0)::int`,
      lastWriteAt: sql<string | null>`max(${predictionEpochStats.lastWriteAt})`,
    })
    .from(predictionEpochStats)
    .where(and(eq(predictionEpochStats.jobId, params.jobId), eq(predictionEpochStats.userId, params.userId)));
  return { count: row?.count ?? 0, lastWriteAt: row?.lastWriteAt ? new Date(row.lastWriteAt) : null };
}
