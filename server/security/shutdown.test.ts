// Audit F14: close() cut every connection at once, so a pod write in flight on SIGTERM was
// stored but never acknowledged (the pod retried or spooled it). Now a shutdown stops accepting,
// ends live streams (they never end by themselves), lets requests in flight finish for up to
// SHUTDOWN_GRACE_SECONDS, and only then closes what is left.
import { request } from 'node:http';
import { eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../test-support/server';
import { createTestDatabase } from '../test-support/database';
import { createManualJob, createUser } from '../test-support/factories';
import { predictionRow } from '../test-support/pod-writes';
import { until } from '../test-support/wait';
import { trainingPredictions } from '../../db/schema';

const GRACE_SECONDS = 5;

/** POSTs `body` in two parts; the second is sent only when `between()` resolves. Resolves to the status and body. */
function postInTwoParts(url: string, token: string, body: string, between: () => Promise<void>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    const half = Math.floor(body.length / 2);
    req.write(body.slice(0, half));
    between().then(
      () => req.end(body.slice(half)),
      (error: unknown) => {
        req.destroy();
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

async function withServer(work: (server: TestServer, database: Awaited<ReturnType<typeof createTestDatabase>>) => Promise<void>) {
  const database = await createTestDatabase();
  try {
    const started = await startTestServer({ SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS) }, { database });
    // The tests close the server themselves; a failing one must not leave it running.
    let closing: Promise<void> | undefined;
    const server: TestServer = { ...started, close: () => (closing ??= started.close()) };
    try {
      await work(server, database);
    } finally {
      await server.close();
    }
  } finally {
    await database.close();
  }
}

describe('graceful shutdown (F14)', () => {
  it('answers a large pod write in flight with 200 and stores it, while refusing new connections', async () => {
    await withServer(async (server, database) => {
      const user = await createUser(server.deps);
      const { jobId, token } = await createManualJob(server.deps, user.id);
      const rows = Array.from({ length: 1000 }, (_, i) => predictionRow(1, 10, i, `guess ${i} `.repeat(100)));
      let closing: Promise<void> | undefined;
      let newConnection: Promise<unknown> | undefined;
      const answer = await postInTwoParts(`${server.url}/trpc/pod.writePredictions`, token, JSON.stringify({ predictions: rows }), async () => {
        // The write has reached the server (its headers and half its body): now the shutdown starts.
        await until(() => server.requestsInFlight(), (n) => n >= 1, 'the write to reach the server');
        closing = server.close();
        newConnection = fetch(`${server.url}/health`).then(
          (res) => `answered ${res.status}`,
          (error: unknown) => error,
        );
      });
      expect(answer.status, answer.body).toBe(200);
      expect((JSON.parse(answer.body) as { result: { data: { inserted: number } } }).result.data.inserted).toBe(1000);
      await closing;
      // A connection opened after the shutdown began is refused, not answered.
      const refused = await newConnection;
      expect(refused).toBeInstanceOf(Error);
      const [stored] = await database.db.select({ n: sql<number>`count(*)::int` }).from(trainingPredictions).where(eq(trainingPredictions.jobId, jobId));
      expect(Number(stored?.n)).toBe(1000);
    });
  });

  it('ends open live streams at once instead of waiting for them, and releases their slots', async () => {
    await withServer(async (server) => {
      const user = await createUser(server.deps);
      const { jobId } = await createManualJob(server.deps, user.id);
      const input = encodeURIComponent(JSON.stringify({ jobId }));
      const stream = await fetch(`${server.url}/trpc/predictions.onNew?input=${input}`, {
        headers: { accept: 'text/event-stream', authorization: `Bearer ${user.token}` },
      });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(server.deps.live.openStreams(user.id)).toBe(1);
      const reading = stream.text().then(
        () => 'ended',
        () => 'cut',
      );
      const started = Date.now();
      await server.close();
      // Well inside the grace: nothing else was in flight, and a stream is not waited for.
      expect(Date.now() - started).toBeLessThan(GRACE_SECONDS * 1000);
      expect(await reading).toMatch(/ended|cut/);
      expect(server.deps.live.openStreams(user.id)).toBe(0);
    });
  });

  it('cuts a request that overruns the grace, and then closes', async () => {
    // An export that never completes: its client reads nothing, so the handler stays in flight.
    await withServer(async (server) => {
      const user = await createUser(server.deps);
      const { jobId } = await createManualJob(server.deps, user.id);
      await server.database.db.execute(sql`
        insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction, altered)
        select ${jobId}::uuid, ${user.id}::uuid, 1, 10, i, 'eval', 'p', 't', repeat('x', 10000), false from generate_series(0, 1999) as i`);
      const { url } = await server.client(user.token).predictions.exportLink.mutate({ jobId, format: 'jsonl' });
      // The client reads nothing (a paused response: the kernel buffers fill and the server's writes wait).
      const stalled = request(`${server.url}${url}`, (res) => {
        res.pause();
        res.once('error', () => undefined);
      });
      stalled.on('error', () => undefined);
      stalled.end();
      await until(() => server.requestsInFlight(), (n) => n >= 1, 'the export to start');
      const started = Date.now();
      await server.close();
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(GRACE_SECONDS * 1000 - 100);
      expect(took).toBeLessThan(GRACE_SECONDS * 1000 + 5_000);
      stalled.destroy();
    });
  });
});
