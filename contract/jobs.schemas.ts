// Wire schemas for jobs (zod only; shared by server and SPA).
import { z } from 'zod';
import { jobConfig, LAUNCHERS } from './job-config';
import { JOB_STATUSES_LIST } from './statuses';
import { PREDICTION_TRIGGERS } from './triggers';
import { metricValueOutput, podReport } from './pod.schemas';

export const jobIdInput = z.object({ jobId: z.uuid('jobId must be a UUID') });

export const deployJobInput = z.object({
  name: z.string().trim().min(1, 'Give the job a name').max(120, 'name must be at most 120 characters'),
  config: jobConfig,
});
export type DeployJobInput = z.infer<typeof deployJobInput>;

/** validateConfig takes the config as the user has it so far: every problem comes back, none throws. */
export const validateConfigInput = z.record(z.string(), z.unknown());

export const configProblem = z.object({
  severity: z.enum(['error', 'warning']),
  field: z.string(),
  message: z.string(),
  fix: z.string(),
});
export const validateConfigOutput = z.object({
  ok: z.boolean(),
  problems: z.array(configProblem),
  totalSteps: z.number().int().nullable(),
});

export const JOBS_PAGE_MAX = 100;
export const listJobsInput = z.object({
  cursor: z.string().max(200, 'cursor must be at most 200 characters').optional(),
  limit: z
    .number()
    .int('limit must be a whole number')
    .min(1, 'limit must be at least 1')
    .max(JOBS_PAGE_MAX, `limit must be at most ${JOBS_PAGE_MAX}`)
    .default(20),
});

const progress = z.object({ epoch: z.number().nullable(), step: z.number().nullable(), totalSteps: z.number().nullable() });

export const jobSummary = z.object({
  id: z.uuid(),
  name: z.string(),
  status: z.enum(JOB_STATUSES_LIST),
  launcher: z.enum(LAUNCHERS),
  datasetId: z.uuid().nullable(),
  datasetName: z.string().nullable(),
  predictionsEnabled: z.boolean(),
  trigger: z.enum(PREDICTION_TRIGGERS),
  predictionCount: z.number().int(),
  progress,
  error: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  lastHeartbeatAt: z.string().nullable(),
});
export type JobSummary = z.infer<typeof jobSummary>;

export const podReportOutput = podReport;

export const jobDetail = jobSummary.extend({ config: jobConfig, podReport: podReportOutput.nullable() });
export type JobDetail = z.infer<typeof jobDetail>;

export const podEnvOutput = z.object({
  env: z.object({ JOB_ID: z.string(), JOB_TOKEN: z.string(), API_URL: z.string() }),
  command: z.string(),
  pythonCommand: z.string(),
  tokenExpiresAt: z.string(),
});
export type PodEnvOutput = z.infer<typeof podEnvOutput>;

export const deployJobOutput = z.object({ job: jobSummary, pod: podEnvOutput.nullable() });
export const listJobsOutput = z.object({ items: z.array(jobSummary), nextCursor: z.string().nullable() });

export const JOB_LOGS_PAGE_MAX = 1000;
export const jobLogsInput = z.object({
  jobId: z.uuid('jobId must be a UUID'),
  // Log ids are bigint; a safe integer is the most JSON can carry exactly.
  afterId: z
    .number()
    .int('afterId must be a whole number')
    .min(0, 'afterId must be 0 or more')
    .max(Number.MAX_SAFE_INTEGER, `afterId must be at most ${Number.MAX_SAFE_INTEGER}`)
    .default(0),
  limit: z
    .number()
    .int('limit must be a whole number')
    .min(1, 'limit must be at least 1')
    .max(JOB_LOGS_PAGE_MAX, `limit must be at most ${JOB_LOGS_PAGE_MAX}`)
    .default(500),
});
export const jobLogsOutput = z.object({
  lines: z.array(z.object({ id: z.number(), level: z.string(), message: z.string(), createdAt: z.string() })),
  lastId: z.number(),
});
export const jobMetricsOutput = z.object({
  /** `value` is a number, or 'NaN' / 'Infinity' / '-Infinity' for the values JSON cannot carry. */
  points: z.array(z.object({ step: z.number(), epoch: z.number(), name: z.string(), value: metricValueOutput })),
});
