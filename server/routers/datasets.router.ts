// datasets.upload, datasets.list
import { z } from 'zod';
import { datasetSummary, uploadDatasetInput } from '#contract/datasets.schemas';
import { listUserDatasets, uploadDataset } from '../datasets/datasets.service';
import { router, userProcedure } from '../trpc/init';

export const datasetsRouter = router({
  upload: userProcedure
    .input(uploadDatasetInput)
    .output(datasetSummary)
    .mutation(({ ctx, input }) => uploadDataset(ctx.deps, ctx.userId, input)),
  list: userProcedure.output(z.array(datasetSummary)).query(({ ctx }) => listUserDatasets(ctx.deps, ctx.userId)),
});
