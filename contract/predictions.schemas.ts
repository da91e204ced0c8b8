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

/** Most epochs one comparison lines up side by side. */
export const COMPARE_EPOCHS_MAX = 10;
/** Samples per compare page when the caller does not say (each with one prediction per chosen epoch). */
export const COMPARE_PAGE_DEFAULT = 100;
/** Most samples one compare page holds; more come page by page, never cut silently. */
export const COMPARE_PAGE_MAX = 500;
/** Compare cursors this server issues are far shorter; anything longer is not one of them. */
export const COMPARE_CURSOR_MAX_LENGTH = 64;

export const compareInput = z.object({
  jobId: z.uuid('jobId must be a UUID'),
  epochs: z
    .array(epochNumber)
    .min(1, 'choose at least one epoch')
    .max(COMPARE_EPOCHS_MAX, `compare at most ${COMPARE_EPOCHS_MAX} epochs at once`),
  /** Where the previous page ended (its nextCursor); absent for the first page. */
  cursor: z.string().max(COMPARE_CURSOR_MAX_LENGTH, `cursor must be at most ${COMPARE_CURSOR_MAX_LENGTH} characters`).nullish(),
  /** Samples on this page. */
  limit: z
    .number()
    .int('limit must be a whole number')
    .min(1, 'limit must be at least 1')
    .max(COMPARE_PAGE_MAX, `limit must be at most ${COMPARE_PAGE_MAX}`)
    .default(COMPARE_PAGE_DEFAULT),
});
export type CompareInput = z.input<typeof compareInput>;
const scored = z.object({
  prediction: z.string(),
  step: z.number().int(),
  f1: z.number(),
  exact: z.boolean(),
  /** True when a character PostgreSQL cannot store was replaced by U+FFFD (see predictionItem). */
  altered: z.boolean(),
});
export const compareOutput = z.object({
  epochs: z.array(z.number().int()),
  /** This page's samples in sampleIndex order: at most `limit` of them. */
  samples: z.array(
    z.object({
      sampleIndex: z.number().int(),
      prompt: z.string(),
      groundTruth: z.string(),
      /** One entry per chosen epoch, in the same order; null where that epoch has no prediction for the sample. */
      predictions: z.array(scored.nullable()),
    }),
  ),
  /** How many distinct samples the chosen epochs have in all, on every page together. */
  sampleCount: z.number().int(),
  /** Per chosen epoch, in the same order: how many samples it has a prediction for, on every page together. */
  epochSampleCounts: z.array(z.number().int()),
  /** Mean F1 per chosen epoch over ALL the samples it has (not only this page's); null for an epoch with none. */
  meanF1: z.array(z.number().nullable()),
  /** The most samples this page could hold (the limit asked for, or COMPARE_PAGE_DEFAULT). */
  limit: z.number().int(),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: z.string().nullable(),
});
export type CompareOutput = z.infer<typeof compareOutput>;

export const onNewInput = z.object({ jobId: z.uuid('jobId must be a UUID'), lastEventId: z.string().regex(/^\d{1,15}$/, 'lastEventId must be an event id this server sent').nullish() });

export const exportLinkInput = z.object({ jobId: z.uuid('jobId must be a UUID'), format: z.enum(['jsonl', 'csv']) });
