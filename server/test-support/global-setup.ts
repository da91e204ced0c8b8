// Runs once per test run. On Postgres it migrates a template database that each test file
// clones (CREATE DATABASE … TEMPLATE), which is much faster than migrating per file.
// When a browser is present it makes sure the SPA is built for the browser tests.
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../db/client';
import { rm } from 'node:fs/promises';
import { ensureSpaBuilt, SPA_DIR } from '../spa';
import { chromiumAvailable, testEnv } from './test-env';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string | null;
  }
}

export default async function setup(project: TestProject) {
  if (chromiumAvailable()) {
    try {
      await ensureSpaBuilt(() => undefined);
    } catch (error) {
      // Only the browser tests need the SPA: they fail on the missing build (and this says why),
      // while every other test still runs.
      await rm(SPA_DIR, { recursive: true, force: true });
      console.error(`[global-setup] the SPA does not build; browser tests will fail: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (!testEnv.databaseUrl) {
    project.provide('templateDatabase', null);
    return;
  }
  const admin = new pg.Client({ connectionString: testEnv.databaseUrl });
  await admin.connect();
  const template = `predictions_tmpl_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${template}`);
  await admin.query(`CREATE DATABASE ${template}`);
  const migrated = await openDatabase({ kind: 'postgres', url: withDatabase(testEnv.databaseUrl, template), poolSize: 1 });
  await migrated.close();
  project.provide('templateDatabase', template);

  return async () => {
    const leftovers = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE $1`,
      [`predictions_t${process.pid}_%`],
    );
    for (const { datname } of leftovers.rows) await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
    await admin.end();
  };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
