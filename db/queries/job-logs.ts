// The job's log (job_logs): lines from its pod and its launcher. Pods append by job id; reads take the owner.
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { jobLogs } from '../schema';
import { jobOwnedBy } from './jobs';

/** Log lines kept per job: the newest, where a failure explains itself. */
export const LOG_LINES_KEPT_PER_JOB = 20_000;

/** Appends a pod's (or the launcher's) lines to its job's log and drops the oldest past the bound. */

export async function insertLogLines(db: Db, params: { jobId: string; lines: Array<{ level: string; message: string }> }) {
  await db.insert(jobLogs).values(params.lines.map((l) => ({ jobId: params.jobId, level: l.level, line: l.message })));
  // Keep the newest lines: the end of a log is where a failure explains itself.
  await db.execute(sql`
    delete from ${jobLogs} where ${jobLogs.jobId} = ${params.jobId} and ${jobLogs.id} <= (
      select ${jobLogs.id} from ${jobLogs} where ${jobLogs.jobId} = ${params.jobId}
      order by ${jobLogs.id} desc offset ${LOG_LINES_KEPT_PER_JOB} limit 1)`);
}

/** The user's job's log lines after `afterId`, oldest first; another user's job has none. */
export function listLogLines(db: Db, params: { userId: string; jobId: string; afterId: number; limit: number }) {
  return db
    .select({ id: jobLogs.id, level: jobLogs.level, message: jobLogs.line, createdAt: jobLogs.createdAt })
    .from(jobLogs)
    .where(and(eq(jobLogs.jobId, params.jobId), jobOwnedBy(jobLogs.jobId, params.userId), sql`${jobLogs.id} > ${params.afterId}`))
    .orderBy(jobLogs.id)
    .limit(params.limit);
}
