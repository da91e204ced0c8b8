// A real database for one test file: PGlite in memory by default, or a fresh Postgres database
// cloned from the migrated template when TEST_DATABASE_URL is set. Tests never mock the database.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { getTableName, is, sql } from 'drizzle-orm';
import { PgTable } from 'drizzle-orm/pg-core';
import * as schema from '../../db/schema';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../db/client';
import { testEnv } from './test-env';
import { withDatabase } from './global-setup';

export interface TestDatabase extends Database {
  /** The URL of this file's own Postgres database (undefined on PGlite). */
  url: string | undefined;
  /** Empties every table, for isolation between tests in one file. */
  truncate(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const template = inject('templateDatabase');
  if (!testEnv.databaseUrl || !template) {
    const database = await openDatabase({ kind: 'pglite' });
    return { ...database, url: undefined, truncate: () => truncateAll(database) };
  }
  const name = `predictions_t${process.ppid}_${randomBytes(6).toString('hex')}`;
  await withAdmin(testEnv.databaseUrl, (admin) => admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  const url = withDatabase(testEnv.databaseUrl, name);
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 5 });
  const adminUrl = testEnv.databaseUrl;
  return {
    ...database,
    url,
    truncate: () => truncateAll(database),
    async close() {
      await database.close();
      await withAdmin(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withAdmin<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

/** Every table the schema declares, so a new table is emptied between tests without a list to keep. */
const ALL_TABLES = (Object.values(schema) as unknown[]).flatMap((value) => (is(value, PgTable) ? [getTableName(value)] : []));

async function truncateAll(database: Database): Promise<void> {
  const names = sql.join(ALL_TABLES.map((name) => sql.identifier(name)), sql`, `);
  await database.db.execute(sql`TRUNCATE ${names} RESTART IDENTITY CASCADE`);
}
