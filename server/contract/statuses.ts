// Job statuses, shared by the database schema, the wire schemas and the SPA.
export const JOB_STATUSES_LIST = ['pending', 'starting', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatusName = (typeof JOB_STATUSES_LIST)[number];
