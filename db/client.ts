// Opens the database the server runs on and brings it to the latest migration:
// PGlite (embedded, persisted under a directory) when no DATABASE_URL is given, a `pg` pool
// when it is. Both expose the same Drizzle API, plus LISTEN/NOTIFY for live updates.
import { fileURLToPath } from 'node:url';
import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { btree_gin } from '@electric-sql/pglite/contrib/btree_gin';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import pg from 'pg';
import * as schema from './schema';

export type Schema = typeof schema;
/** The Drizzle handle every query function takes; the same type on PGlite and Postgres. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type DatabaseKind = 'pglite' | 'postgres';

export interface Database {
  db: Db;
  kind: DatabaseKind;
  /** Subscribes to a NOTIFY channel; resolves once listening, to a function that stops it. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export type DatabaseOptions =
  | { kind: 'pglite'; dataDir?: string }
  | { kind: 'postgres'; url: string; poolSize?: number };

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

const CONNECT_TIMEOUT_MS = 5_000;
const LISTEN_RETRY_CAP_MS = 10_000;

// Any constant works; it only has to be the same for every instance migrating one database.
const MIGRATION_LOCK_KEY = 727_274_101;

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.kind === 'pglite' ? openPglite(options.dataDir) : openPostgres(options.url, options.poolSize);
}

async function openPglite(dataDir: string | undefined): Promise<Database> {
  if (dataDir) await mkdir(dataDir, { recursive: true });
  // The extensions the migrations create (0004: search's trigram indexes) must be bundled here:
  // PGlite loads an extension's files only when it is passed in at start.
  const client = await PGlite.create(dataDir, { extensions: { pg_trgm, btree_gin } });
  const db = drizzlePglite({ client, schema });
  await migratePglite(db, { migrationsFolder: MIGRATIONS_DIR });
  return {
    db,
    kind: 'pglite',
    async listen(channel, onPayload) {
      const unsubscribe = await client.listen(channel, onPayload);
      return async () => unsubscribe();
    },
    close: () => client.close(),
  };
}

async function openPostgres(url: string, poolSize = 10): Promise<Database> {
  // A connect that hangs (a database dropping packets instead of refusing) fails after a bound,
  // so requests answer 503 instead of waiting for the operating system's timeout.
  const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', (error) => console.error(`[db] idle client error: ${error.message}`));
  await migrateUnderLock(pool);
  const db = drizzlePg({ client: pool, schema });
  const listeners = new Set<pg.Client>();
  return {
    db,
    kind: 'postgres',
    async listen(channel, onPayload) {
      // LISTEN needs its own session for as long as it listens, so it cannot borrow from the pool.
      // When that session drops (a database restart, a network cut) it is opened again, with
      // backoff, for as long as the listener is wanted: without this, live updates fell back to
      // the subscribers' slow re-read timer for good after the first outage.
      let stopped = false;
      let current: pg.Client | null = null;
      let retryTimer: NodeJS.Timeout | null = null;
      let failures = 0;
      const open = async (): Promise<void> => {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
        const lost = (why: string) => {
          if (current !== client) return;
          current = null;
          listeners.delete(client);
          client.end().catch(() => undefined);
          if (stopped) return;
          console.error(`[db] listener on ${channel} lost (${why}); reconnecting`);
          scheduleReopen();
        };
        client.on('error', (error) => lost(error.message));
        client.on('end', () => lost('connection ended'));
        client.on('notification', (message) => {
          if (message.channel === channel && message.payload !== undefined) onPayload(message.payload);
        });
        current = client;
        listeners.add(client);
        await client.connect();
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
        failures = 0;
      };
      const scheduleReopen = () => {
        if (stopped || retryTimer) return;
        const delay = Math.min(LISTEN_RETRY_CAP_MS, 250 * 2 ** failures++);
        retryTimer = setTimeout(() => {
          retryTimer = null;
          open().catch((error: unknown) => {
            const failed = current;
            current = null;
            if (failed) {
              listeners.delete(failed);
              failed.end().catch(() => undefined);
            }
            if (!stopped) {
              console.error(`[db] listener on ${channel} could not reconnect: ${error instanceof Error ? error.message : 'unknown error'}`);
              scheduleReopen();
            }
          });
        }, delay);
        retryTimer.unref();
      };
      await open();
      return async () => {
        stopped = true;
        if (retryTimer) clearTimeout(retryTimer);
        const client = current;
        current = null;
        if (client) {
          listeners.delete(client);
          await client.end().catch(() => undefined);
        }
      };
    },
    async close() {
      await Promise.all([...listeners].map((client) => client.end().catch(() => undefined)));
      await pool.end();
    },
  };
}

/** Several server instances may start at once against one database: only one migrates at a time. */
async function migrateUnderLock(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await migratePg(drizzlePg({ client, schema }), { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}

/**
 * The rows of a raw `db.execute(sql…)` result. node-postgres and PGlite both answer with
 * `{ rows }`, but Drizzle types the result per driver; this is the one place that says so.
 */
export function rowsOf<T>(result: unknown): T[] {
  const rows = (result as { rows?: unknown }).rows;
  if (!Array.isArray(rows)) throw new Error('database result has no rows array');
  return rows as T[];
}
