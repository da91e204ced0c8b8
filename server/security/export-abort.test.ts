// Audit F15: an export download abandoned by its client left the handler waiting for ever (it
// waited for 'drain', which a destroyed socket never emits; six aborted downloads, six handlers
// still running). Downloads of a large export are cut after their first chunk; every handler
// must end, and a whole download must still arrive complete.
import { request } from 'node:http';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { useTestServer, type TestServer } from '../test-support/server';
import { createManualJob, createUser } from '../test-support/factories';
import { until } from '../test-support/wait';
import { unsafeRebuildEpochStats } from '../../db/queries/predictions';
import { activeExports } from '../predictions/predictions.service';

let server: TestServer;
useTestServer((started) => (server = started));

const ROWS = 3_000;
// ~30 MB of JSONL: far more than the socket buffers hold, so the handler must wait for the client.
const TEXT_CHARS = 10_000;

/** A job holding ROWS large predictions, stored in one statement (the export is what is tested, not the writes). */
async function largeJob() {
  const user = await createUser(server.deps);
  const { jobId } = await createManualJob(server.deps, user.id);
  await server.database.db.execute(sql`
    insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction, altered)
    select ${jobId}::uuid, ${user.id}::uuid, 1, 10, i, 'eval', 'prompt ' || i, 'truth ' || i, repeat('x', ${TEXT_CHARS}), false
    from generate_series(0, ${ROWS - 1}) as i`);
  await unsafeRebuildEpochStats(server.database.db, { jobId });
  const { url } = await server.client(user.token).predictions.exportLink.mutate({ jobId, format: 'jsonl' });
  return `${server.url}${url}`;
}

/** Starts a download, reads its first chunk, then cuts the connection as a closed browser tab does. */
function abandonAfterFirstChunk(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      res.once('data', (chunk: Buffer) => {
        req.destroy();
        resolve(chunk.length);
      });
      res.once('error', () => undefined);
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET') reject(error);
    });
    req.end();
  });
}

describe('export downloads whose client goes away (F15)', () => {
  it('end their handlers: six downloads cut after the first chunk leave no export running', async () => {
    const url = await largeJob();
    const firstChunks = await Promise.all(Array.from({ length: 6 }, () => abandonAfterFirstChunk(url)));
    expect(firstChunks.every((bytes) => bytes > 0)).toBe(true);
    await until(() => activeExports(server.deps), (running) => running === 0, 'every abandoned export handler to end', 20_000);
  });

  it('still deliver a whole export to a client that reads it all', async () => {
    const url = await largeJob();
    const response = await fetch(url);
    expect(response.status).toBe(200);
    const lines = (await response.text()).split('\n').filter(Boolean);
    expect(lines).toHaveLength(ROWS);
    expect(activeExports(server.deps)).toBe(0);
  });
});
