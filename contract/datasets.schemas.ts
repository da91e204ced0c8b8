// Wire schemas for datasets (zod only; shared by server and SPA).
import { z } from 'zod';

export const DATASET_MAX_BYTES = 5 * 1024 * 1024;
export const DATASET_MAX_ROWS = 20_000;
export const DATASET_MIN_ROWS = 2;
export const DATASET_FIELD_MAX = 16_000;

export const uploadDatasetInput = z.object({
  name: z.string().trim().min(1, 'Give the dataset a name').max(120, 'name must be at most 120 characters'),
  jsonl: z
    .string()
    .min(1, 'The file is empty')
    .max(DATASET_MAX_BYTES, `jsonl must be at most ${DATASET_MAX_BYTES / 1024 / 1024} MB`),
});
export type UploadDatasetInput = z.infer<typeof uploadDatasetInput>;

export const datasetSummary = z.object({
  id: z.uuid(),
  name: z.string(),
  rowCount: z.number().int(),
  createdAt: z.string(),
});
export type DatasetSummary = z.infer<typeof datasetSummary>;
