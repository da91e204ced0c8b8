// predictions.list, predictions.epochs, predictions.compare, predictions.onNew, predictions.exportLink
import { z } from 'zod';
import {
  compareInput,
  compareOutput,
  epochsOutput,
  exportLinkInput,
  listPredictionsInput,
  listPredictionsOutput,
  onNewInput,
} from '#contract/predictions.schemas';
import { jobIdInput } from '#contract/jobs.schemas';
import { comparePredictions, createExportLink, listEpochs, listPredictions, openPredictionStream } from '../predictions/predictions.service';
import { router, userProcedure } from '../trpc/init';

export const predictionsRouter = router({
  list: userProcedure
    .input(listPredictionsInput)
    .output(listPredictionsOutput)
    .query(({ ctx, input }) => listPredictions(ctx.deps, ctx.userId, input)),
  epochs: userProcedure.input(jobIdInput).output(epochsOutput).query(({ ctx, input }) => listEpochs(ctx.deps, ctx.userId, input.jobId)),
  compare: userProcedure
    .input(compareInput)
    .output(compareOutput)
    .query(({ ctx, input }) => comparePredictions(ctx.deps, ctx.userId, input)),
  onNew: userProcedure
    .input(onNewInput)
    .subscription(({ ctx, input, signal }) => openPredictionStream(ctx.deps, ctx.userId, input, signal)),
  exportLink: userProcedure
    .input(exportLinkInput)
    .output(z.object({ url: z.string(), expiresInSeconds: z.number() }))
    .mutation(({ ctx, input }) => createExportLink(ctx.deps, ctx.userId, input)),
});
