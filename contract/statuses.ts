// Job statuses, shared by the database schema (its check constraint), the wire schemas, the
// server, diagnostics and the SPA: which exist, which are live (a pod may still write), and
// which are ended (the job will not run again).
export const JOB_STATUSES_LIST = ['pending', 'starting', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatusName = (typeof JOB_STATUSES_LIST)[number];

/** A live job may still run and write with its pod token. */
export const LIVE_JOB_STATUSES = ['pending', 'starting', 'running'] as const satisfies readonly JobStatusName[];
/** An ended job has stopped for good; its end is stamped (finished_at) when it gets here. */
export const ENDED_JOB_STATUSES = ['completed', 'failed', 'cancelled'] as const satisfies readonly JobStatusName[];
export type LiveJobStatus = (typeof LIVE_JOB_STATUSES)[number];
export type EndedJobStatus = (typeof ENDED_JOB_STATUSES)[number];

export function isLiveStatus(status: JobStatusName): status is LiveJobStatus {
  return (LIVE_JOB_STATUSES as readonly JobStatusName[]).includes(status);
}

export function isEndedStatus(status: JobStatusName): status is EndedJobStatus {
  return (ENDED_JOB_STATUSES as readonly JobStatusName[]).includes(status);
}
