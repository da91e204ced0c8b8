// The data outlives the process: register, stop the server, start it again on the same
// DATA_DIR (PGlite on disk) or DATABASE_URL, and sign in with the same password and secrets.
// An embedded data directory is held by one server at a time, released when it closes
// (data-dir-lock.test.ts proves the same across processes).
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiClient } from '../client/api/client';
import { DataDirLockedError, lockFileFor } from './data-dir-lock';
import { loadConfig } from './env';
import { startServer } from './server';
import { createTestDatabase, type TestDatabase } from './test-support/database';
import { TEST_PASSWORD, uniqueEmail } from './test-support/factories';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('a restart', () => {
  it('keeps users and sessions (embedded or Postgres, whichever this run uses)', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-restart-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    // On Postgres runs, a scratch database stands in for DATABASE_URL; otherwise PGlite under DATA_DIR.
    let scratch: TestDatabase | undefined = await createTestDatabase();
    if (!scratch.url) {
      await scratch.close();
      scratch = undefined;
    } else {
      const db = scratch;
      cleanups.push(() => db.close());
    }
    const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ...(scratch?.url ? { DATABASE_URL: scratch.url } : {}) };

    const first = await startServer(loadConfig(env));
    const email = uniqueEmail();
    const { token } = await createApiClient({ url: first.url }).auth.register.mutate({ email, password: TEST_PASSWORD });
    await first.close();

    const second = await startServer(loadConfig(env));
    try {
      const api = createApiClient({ url: second.url });
      const session = await api.auth.login.mutate({ email, password: TEST_PASSWORD });
      expect(session.user.email).toBe(email);
      // The signing key was kept too: the token from before the restart still works.
      expect((await createApiClient({ url: second.url, token }).auth.me.query()).email).toBe(email);
      const health = await (await fetch(`${second.url}/health`)).json();
      expect(health).toEqual({ status: 'ok', db: scratch ? 'postgres' : 'pglite' });
    } finally {
      await second.close();
    }
    // Generated secrets are private to the owner of the data directory.
    expect((await stat(path.join(dataDir, 'secrets.json'))).mode & 0o077).toBe(0);
  });

  it('holds an embedded data directory for one server at a time, and lets it go on close', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-held-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir };
    const first = await startServer(loadConfig(env));
    try {
      const refused = await startServer(loadConfig(env)).then(
        async (second) => {
          await second.close();
          return undefined;
        },
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(DataDirLockedError);
      expect((refused as Error).message).toContain(`pid ${process.pid}`);
    } finally {
      await first.close();
    }
    expect(existsSync(lockFileFor(path.join(dataDir, 'pglite')))).toBe(false);
    const again = await startServer(loadConfig(env));
    await again.close();
  });
});
