// pod.config, pod.heartbeat, pod.writePredictions, pod.writeMetrics, pod.log, pod.finish:
// the only procedures a job token can call, each acting on the token's own job.
import {
  finishInput,
  heartbeatInput,
  podLogInput,
  writeMetricsInput,
  writeMetricsOutput,
  writePredictionsInput,
  writePredictionsOutput,
} from '#contract/pod.schemas';
import { podConfig, podFinish, podHeartbeat, podLog, podWriteMetrics, podWritePredictions } from '../pod/pod.service';
import { podProcedure, router } from '../trpc/init';

export const podRouter = router({
  config: podProcedure.query(({ ctx }) => podConfig(ctx.deps, ctx.pod)),
  heartbeat: podProcedure.input(heartbeatInput).mutation(({ ctx, input }) => podHeartbeat(ctx.deps, ctx.pod, input)),
  writePredictions: podProcedure
    .input(writePredictionsInput)
    .output(writePredictionsOutput)
    .mutation(({ ctx, input }) => podWritePredictions(ctx.deps, ctx.pod, input, ctx.inputAltered)),
  writeMetrics: podProcedure.input(writeMetricsInput).output(writeMetricsOutput).mutation(({ ctx, input }) => podWriteMetrics(ctx.deps, ctx.pod, input)),
  log: podProcedure.input(podLogInput).mutation(({ ctx, input }) => podLog(ctx.deps, ctx.pod, input)),
  finish: podProcedure.input(finishInput).mutation(({ ctx, input }) => podFinish(ctx.deps, ctx.pod, input)),
});
