// Datasets: upload (JSONL), list, and the example dataset every new account starts with.
import { readFileSync } from 'node:fs';
import type { AppDeps } from '../app-deps';
import type { DatasetSummary, UploadDatasetInput } from '#contract/datasets.schemas';
import { insertDataset, listDatasets } from '../../db/queries/datasets';
import { DatasetParseError, parseDatasetJsonl, type DatasetRow } from '#contract/dataset-jsonl';
import { AppError } from '../errors';

export const EXAMPLE_DATASET_NAME = 'Example: everyday facts';
const EXAMPLE_FILE = new URL('./example.jsonl', import.meta.url);

let exampleRows: ReturnType<typeof parseDatasetJsonl> | undefined;
function loadExample() {
  exampleRows ??= parseDatasetJsonl(readFileSync(EXAMPLE_FILE, 'utf8'));
  return exampleRows;
}

function toSummary(row: { id: string; name: string; rowCount: number; createdAt: Date }): DatasetSummary {
  return { id: row.id, name: row.name, rowCount: row.rowCount, createdAt: row.createdAt.toISOString() };
}

/** Parses an uploaded file, turning a bad one into a 400 (413 past the row limit) naming the field `jsonl`. */
function parseUpload(jsonl: string) {
  try {
    return parseDatasetJsonl(jsonl);
  } catch (error) {
    if (error instanceof DatasetParseError) throw new AppError(error.tooLarge ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST', error.message, { field: 'jsonl' });
    throw error;
  }
}

export async function uploadDataset(deps: AppDeps, userId: string, input: UploadDatasetInput): Promise<DatasetSummary> {
  const rows = parseUpload(input.jsonl);
  return toSummary(await insertDataset(deps.database.db, { userId, name: input.name, rows }));
}

/** The dataset every new account starts with, to be stored with the account (auth.register). */
export function exampleDataset(): { name: string; rows: DatasetRow[] } {
  return { name: EXAMPLE_DATASET_NAME, rows: loadExample() };
}


export async function listUserDatasets(deps: AppDeps, userId: string): Promise<DatasetSummary[]> {
  return (await listDatasets(deps.database.db, { userId })).map(toSummary);
}
