// A real server on a real port over a test database, for wire tests that go through HTTP
// exactly as the SPA, a pod or another service would.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createApiClient } from '../../client/api/client';
import { loadConfig, type AppConfig } from '../env';
import { startServer, type RunningServer, type StartOptions } from '../server';
import { createTestDatabase, type TestDatabase } from './database';

export interface TestServer extends RunningServer {
  database: TestDatabase;
  dataDir: string;
  /** A typed client, optionally carrying a token. */
  client(token?: string): ReturnType<typeof createApiClient>;
  /** POST/GET a raw tRPC procedure, for malformed inputs no typed client can produce. */
  raw(procedure: string, init?: RequestInit & { token?: string; query?: string }): Promise<{ status: number; body: unknown; headers: Headers }>;
}

export async function startTestServer(
  env: Record<string, string> = {},
  options: { spaDir?: string; database?: TestDatabase; launchers?: StartOptions['launchers'] } = {},
): Promise<TestServer> {
  const database = options.database ?? (await createTestDatabase());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-test-'));
  // Open sign-up unless a test says otherwise: most tests register several accounts over HTTP.
  const config: AppConfig = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, SIGNUP: 'open', ...env });
  const running = await startServer(config, {
    database,
    ...(options.spaDir ? { spaDir: options.spaDir } : {}),
    ...(options.launchers ? { launchers: options.launchers } : {}),
  });
  return {
    ...running,
    database,
    dataDir,
    client: (token) => createApiClient({ url: running.url, EventSource, ...(token ? { token } : {}) }),
    async raw(procedure, init = {}) {
      const { token, query, headers, ...rest } = init;
      const response = await fetch(`${running.url}/trpc/${procedure}${query ?? ''}`, {
        ...rest,
        headers: {
          ...(rest.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(headers as Record<string, string> | undefined),
        },
      });
      const text = await response.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // Not JSON: the test asserts on the text.
      }
      return { status: response.status, body, headers: response.headers };
    },
    async close() {
      await running.close();
      if (!options.database) await database.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The usual lifecycle for a test file: one server for the file, every table emptied before each
 * test. `onStart` receives the server (assign it to the file's variable).
 */
export function useTestServer(
  onStart: (server: TestServer) => void,
  env: Record<string, string> = {},
  options: Parameters<typeof startTestServer>[1] = {},
): void {
  let server: TestServer | undefined;
  beforeAll(async () => {
    server = await startTestServer(env, options);
    onStart(server);
  });
  afterAll(async () => {
    await server?.close();
  });
  beforeEach(async () => {
    await server?.database.truncate();
  });
}
