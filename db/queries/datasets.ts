// Queries on datasets; every one takes the owner and puts it in the where clause.
import { and, desc, eq } from 'drizzle-orm';
import type { Db } from '../client';
import { datasets, type DatasetRow } from '../schema';

const summaryColumns = { id: datasets.id, name: datasets.name, rowCount: datasets.rowCount, createdAt: datasets.createdAt };

export async function insertDataset(db: Db, params: { userId: string; name: string; rows: DatasetRow[] }) {
  const [row] = await db
    .insert(datasets)
    .values({ userId: params.userId, name: params.name, rows: params.rows, rowCount: params.rows.length })
    .returning(summaryColumns);
  if (!row) throw new Error('insert into datasets returned no row');
  return row;
}

export function listDatasets(db: Db, params: { userId: string }) {
  return db.select(summaryColumns).from(datasets).where(eq(datasets.userId, params.userId)).orderBy(desc(datasets.createdAt)).limit(500);
}

export async function getDatasetSummary(db: Db, params: { userId: string; datasetId: string }) {
  const rows = await db
    .select(summaryColumns)
    .from(datasets)
    .where(and(eq(datasets.id, params.datasetId), eq(datasets.userId, params.userId)))
    .limit(1);
  return rows[0];
}

export async function getDatasetRows(db: Db, params: { userId: string; datasetId: string }) {
  const rows = await db
    .select({ ...summaryColumns, rows: datasets.rows })
    .from(datasets)
    .where(and(eq(datasets.id, params.datasetId), eq(datasets.userId, params.userId)))
    .limit(1);
  return rows[0];
}
