// Wire schemas for reading predictions (zod only; shared by server and SPA).
import { z } from 'zod';
import { PREDICTION_TRIGGERS } from './triggers';
import { epochNumber } from './pod.schemas';

export const PREDICTIONS_PAGE_MAX = 200;

export const listPredictionsInput = z.object({
  jobId: z.uuid('jobId must be a UUID'),
  epoch: epochNumber.optional(),
  trigger: z.enum(PREDICTION_TRIGGERS).optional(),
  search: z.string().trim().max(200, 'search must be at most 200 characters').optional(),
  cursor: z.string().max(100).nullish(),
  limit: z.number().int().min(1).max(PREDICTIONS_PAGE_MAX, `limit must be at most ${PREDICTIONS_PAGE_MAX}`).default(50),
});
export type ListPredictionsInput = z.input<typeof listPredictionsInput>;

export const predictionItem = z.object({
  id: z.number().int(),
  epoch: z.number().int(),
  step: z.number().int(),
  sampleIndex: z.number().int(),
  trigger: z.enum(PREDICTION_TRIGGERS),
  prompt: z.string(),
  groundTruth: z.string(),
  prediction: z.string(),
  /** True when a character PostgreSQL cannot store (U+0000, half of an emoji) was replaced by U+FFFD. */
  altered: z.boolean(),
  createdAt: z.string(),
});
export type PredictionItem = z.infer<typeof predictionItem>;

export const listPredictionsOutput = z.object({
  items: z.array(predictionItem),
  nextCursor: z.string().nullable(),
  totalCount: z.number().int(),
  /** True when a search matched more rows than were counted: show totalCount as "1000+". */
  totalCountIsLowerBound: z.boolean(),
  epochCount: z.number().int(),
  /** The highest prediction id of the job now: subscribe to onNew from here to miss nothing. */
  latestId: z.number().int(),
});

export const epochsOutput = z.array(
  z.object({ epoch: z.number().int(), count: z.number().int(), minStep: z.number().int(), maxStep: z.number().int(), lastWriteAt: z.string() }),
);

export const compareInput = z.object({
  jobId: z.uuid('jobId must be a UUID'),
  epochs: z.array(epochNumber).min(1, 'choose at least one epoch').max(10, 'compare at most 10 epochs at once'),
});
const scored = z.object({ prediction: z.string(), step: z.number().int(), f1: z.number(), exact: z.boolean() });
export const compareOutput = z.object({
  epochs: z.array(z.number().int()),
  samples: z.array(
    z.object({
      sampleIndex: z.number().int(),
      prompt: z.string(),
      groundTruth: z.string(),
      /** One entry per chosen epoch, in the same order; null where that epoch has no prediction for the sample. */
      predictions: z.array(scored.nullable()),
    }),
  ),
  /** Mean F1 per chosen epoch over the samples it has. */
  meanF1: z.array(z.number().nullable()),
});
export type CompareOutput = z.infer<typeof compareOutput>;

export const onNewInput = z.object({ jobId: z.uuid('jobId must be a UUID'), lastEventId: z.string().regex(/^\d{1,15}$/, 'lastEventId must be an event id this server sent').nullish() });

export const exportLinkInput = z.object({ jobId: z.uuid('jobId must be a UUID'), format: z.enum(['jsonl', 'csv']) });
