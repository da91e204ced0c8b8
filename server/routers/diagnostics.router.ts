// diagnostics.job
import { diagnosticsOutput } from '#contract/diagnostics.schemas';
import { jobIdInput } from '#contract/jobs.schemas';
import { diagnoseJob } from '../diagnostics/diagnostics.service';
import { router, userProcedure } from '../trpc/init';

export const diagnosticsRouter = router({
  job: userProcedure.input(jobIdInput).output(diagnosticsOutput).query(({ ctx, input }) => diagnoseJob(ctx.deps, ctx.userId, input.jobId)),
});
