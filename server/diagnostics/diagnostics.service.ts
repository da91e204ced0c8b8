// diagnostics.job: gathers what is known about one of the user's jobs and runs the checks.
import type { AppDeps } from '../app-deps';
import type { DiagnosticsOutput } from '#contract/diagnostics.schemas';
import { assertOwnsJob } from '../jobs/jobs.service';
import { summarizeJobEvents } from '../../db/queries/job-events';
import { predictionTotals } from '../../db/queries/prediction-stats';
import { diagnose } from './checks';

export async function diagnoseJob(deps: AppDeps, userId: string, jobId: string): Promise<DiagnosticsOutput> {
  const job = await assertOwnsJob(deps, userId, jobId);
  const db = deps.database.db;
  const [events, stored] = await Promise.all([summarizeJobEvents(db, { userId, jobId }), predictionTotals(db, { userId, jobId })]);
  const now = new Date();
  const result = diagnose({
    now,
    status: job.status,
    launcher: job.launcher,
    config: job.config,
    datasetRows: job.datasetRows,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt,
    error: job.error,
    podReport: job.podReport,
    lastHeartbeatAt: job.lastHeartbeatAt,
    stored,
    events,
    connectGraceSeconds: deps.config.connectGraceSeconds,
  });
  return { ...result, checkedAt: now.toISOString() };
}
