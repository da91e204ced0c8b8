// jobs.validateConfig, jobs.deploy, jobs.list, jobs.get, jobs.cancel, jobs.rotateToken, jobs.logs, jobs.metrics
import {
  deployJobInput,
  deployJobOutput,
  jobDetail,
  jobIdInput,
  jobLogsInput,
  jobLogsOutput,
  jobMetricsOutput,
  jobSummary,
  listJobsInput,
  listJobsOutput,
  podEnvOutput,
  validateConfigInput,
  validateConfigOutput,
} from '#contract/jobs.schemas';
import {
  cancelJob,
  deployJob,
  getJobDetail,
  jobLogs,
  jobMetrics,
  listUserJobs,
  rotateJobToken,
  openJobUpdates,
  validateConfig,
} from '../jobs/jobs.service';
import { z } from 'zod';
import { router, userProcedure } from '../trpc/init';

export const jobsRouter = router({
  validateConfig: userProcedure
    .input(validateConfigInput)
    .output(validateConfigOutput)
    .query(({ ctx, input }) => validateConfig(ctx.deps, ctx.userId, input)),
  deploy: userProcedure
    .input(deployJobInput)
    .output(deployJobOutput)
    .mutation(({ ctx, input }) => deployJob(ctx.deps, ctx.userId, input)),
  list: userProcedure
    .input(listJobsInput)
    .output(listJobsOutput)
    .query(({ ctx, input }) => listUserJobs(ctx.deps, ctx.userId, input)),
  get: userProcedure.input(jobIdInput).output(jobDetail).query(({ ctx, input }) => getJobDetail(ctx.deps, ctx.userId, input.jobId)),
  cancel: userProcedure.input(jobIdInput).output(jobSummary).mutation(({ ctx, input }) => cancelJob(ctx.deps, ctx.userId, input.jobId)),
  rotateToken: userProcedure
    .input(jobIdInput)
    .output(podEnvOutput)
    .mutation(({ ctx, input }) => rotateJobToken(ctx.deps, ctx.userId, input.jobId)),
  logs: userProcedure.input(jobLogsInput).output(jobLogsOutput).query(({ ctx, input }) => jobLogs(ctx.deps, ctx.userId, input)),
  onUpdate: userProcedure
    .input(z.object({ jobId: z.uuid('jobId must be a UUID').optional() }))
    .subscription(({ ctx, input, signal }) => openJobUpdates(ctx.deps, ctx.userId, input, signal)),
  metrics: userProcedure.input(jobIdInput).output(jobMetricsOutput).query(({ ctx, input }) => jobMetrics(ctx.deps, ctx.userId, input.jobId)),
});
