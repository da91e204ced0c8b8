// Database unavailable is 503 with Retry-After, not 500. A TCP proxy on the
// loopback sits between the server's pool and the test database; cutting it (every connection
// destroyed, no new one accepted) is PostgreSQL going away. Every procedure then answers 503
// with Retry-After, which pods and the web app retry; once the proxy is back the server serves
// again by itself, and nothing stored before the outage is lost.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../db/client';
import { createApiClient, errorDetails } from '../client/api/client';
import { DATABASE_RETRY_AFTER_SECONDS } from './errors';
import { loadConfig } from './env';
import { startServer, type RunningServer } from './server';
import { createTestDatabase, type TestDatabase } from './test-support/database';
import { createManualJob, createUser } from './test-support/factories';
import { testEnv } from './test-support/test-env';
import { until } from './test-support/wait';

/** A loopback TCP proxy to one upstream that can be cut and restored on the same port. */
class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly upstream: { host: string; port: number }) {}

  async listen(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.upstream.port, this.upstream.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        // A cut connection errors on both ends; the test provokes that on purpose.
        socket.on('error', () => socket.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    const address = server.address();
    if (address && typeof address === 'object') this.port = address.port;
  }

  /** PostgreSQL gone: open connections reset, new ones refused (nothing listens on the port). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

const onPostgres = Boolean(testEnv.databaseUrl);
const skipReason = 'PGlite runs in this process and cannot become unreachable; CI runs this file on PostgreSQL';

let database: TestDatabase | undefined;
let proxy: CuttableProxy | undefined;
let server: RunningServer | undefined;
let dataDir: string | undefined;

beforeAll(async () => {
  if (!onPostgres) return;
  database = await createTestDatabase();
  if (!database.url) throw new Error('a PostgreSQL test database has no URL');
  const target = new URL(database.url);
  proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
  await proxy.listen();
  const proxied = new URL(database.url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-db-unavailable-'));
  server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, DATABASE_URL: proxied.toString() }));
});

afterAll(async () => {
  await server?.close().catch(() => undefined);
  await proxy?.close();
  await database?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A query (GET, input {}) or, with a body, a mutation, straight over HTTP: the status and headers as sent. */
async function rawCall(url: string, procedure: string, init: { token: string; body?: unknown }) {
  const query = init.body === undefined ? `?input=${encodeURIComponent('{}')}` : '';
  const response = await fetch(`${url}/trpc/${procedure}${query}`, {
    method: init.body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${init.token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const body = (await response.json()) as { error?: { message?: string; data?: { code?: string; retryAfterSeconds?: number | null } } };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body };
}

function rows(count: number, step: number) {
  return Array.from({ length: count }, (_, sampleIndex) => ({
    epoch: 1,
    step,
    sampleIndex,
    trigger: 'steps' as const,
    prompt: `prompt ${sampleIndex}`,
    groundTruth: `truth ${sampleIndex}`,
    prediction: `prediction ${sampleIndex} at step ${step}`,
  }));
}

describe('the database unreachable', () => {
  it.skipIf(!onPostgres)(`answers 503 with Retry-After on every procedure, and recovers by itself (${skipReason})`, async () => {
    if (!server || !proxy) throw new Error('not started');
    const { url, deps } = server;
    const user = await createUser(deps);
    const { jobId, token: podToken } = await createManualJob(deps, user.id);
    const pod = createApiClient({ url, token: podToken });
    const web = createApiClient({ url, token: user.token });
    expect((await pod.pod.writePredictions.mutate({ predictions: rows(20, 1) })).inserted).toBe(20);

    const cutAt = new Date();
    await proxy.cut();

    const list = await rawCall(url, 'jobs.list', { token: user.token });
    expect(list.status).toBe(503);
    expect(list.retryAfter).toBe(String(DATABASE_RETRY_AFTER_SECONDS));
    expect(list.body.error?.message).toMatch(/database is unreachable/);
    expect(list.body.error?.data?.code).toBe('SERVICE_UNAVAILABLE');

    const write = await rawCall(url, 'pod.writePredictions', { token: podToken, body: { predictions: rows(5, 2) } });
    expect(write.status).toBe(503);
    expect(write.retryAfter).toBe(String(DATABASE_RETRY_AFTER_SECONDS));
    // What a pod's client sees: a retryable status and the pause the server asks for.
    const failed = await pod.pod.writePredictions.mutate({ predictions: rows(5, 2) }).catch((error: unknown) => errorDetails(error));
    expect(failed).toMatchObject({ httpStatus: 503, code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(503);
    expect(health.headers.get('retry-after')).toBe(String(DATABASE_RETRY_AFTER_SECONDS));

    await proxy.listen();

    // No restart, no intervention: the pool opens new connections once the database answers.
    await until(async () => (await rawCall(url, 'jobs.list', { token: user.token })).status, (status) => status === 200, 'the server to serve again');
    expect((await pod.pod.writePredictions.mutate({ predictions: rows(5, 2) })).inserted).toBe(5);
    const stored = await web.predictions.list.query({ jobId, limit: 100 });
    expect(stored.items).toHaveLength(25);
    expect(stored.items.filter((item) => item.step === 1)).toHaveLength(20);

    // Live updates listen again on new sessions (one per channel), instead of falling back to
    // the subscribers' slow re-read timer for good.
    if (!database) throw new Error('not started');
    const direct = database;
    await until(
      async () => {
        const result = await direct.db.execute(
          sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'LISTEN %' and backend_start > ${cutAt.toISOString()}::timestamptz`,
        );
        return Number(rowsOf<{ n: number }>(result)[0]?.n ?? 0);
      },
      (n) => n >= 2,
      'both LISTEN sessions to be opened again after the outage',
    );
  }, 120_000);
});
