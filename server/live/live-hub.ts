// Live updates across server instances through Postgres LISTEN/NOTIFY (PGlite's own notify on
// the embedded default). Writers send one small notification per stored batch or job change
// (ids only, far below NOTIFY's 8 KB limit); every instance listens once and fans the
// notification out in-process to its subscribers, who then read the rows from the table.
import { EventEmitter } from 'node:events';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../../db/client';
import { describeError } from '../log-safe';

const PREDICTIONS_CHANNEL = 'predictions_stored';
const JOBS_CHANNEL = 'jobs_changed';

const predictionsPayload = z.object({ jobId: z.uuid(), userId: z.uuid(), maxId: z.number().int() });
const jobPayload = z.object({ jobId: z.uuid(), userId: z.uuid() });

export interface LiveHub {
  start(): Promise<void>;
  close(): Promise<void>;
  /** A batch was stored: wakes the job's prediction subscribers and, since its counts moved, the owner's job subscribers. */
  predictionsStored(jobId: string, userId: string, maxId: number): Promise<void>;
  jobChanged(jobId: string, userId: string): Promise<void>;
  /** Calls back with the highest stored id each time a batch for the job is stored anywhere. */
  onPredictions(jobId: string, listener: (maxId: number) => void): () => void;
  /** Calls back with the job id each time one of the user's jobs changes anywhere. */
  onJobChange(userId: string, listener: (jobId: string) => void): () => void;
}

export function createLiveHub(database: Database): LiveHub {
  const emitter = new EventEmitter();
  // Every open subscription adds a listener; thousands are expected, not a leak.
  emitter.setMaxListeners(0);
  const stops: Array<() => Promise<void>> = [];

  const notify = async (channel: string, payload: object) => {
    try {
      await database.db.execute(sql`select pg_notify(${channel}, ${JSON.stringify(payload)})`);
    } catch (error) {
      // The data is stored either way; subscribers also re-read on a timer, so a lost
      // notification delays an update rather than losing it.
      console.error(`[live] notify on ${channel} failed: ${describeError(error)}`);
    }
  };

  const parse = <T>(schema: z.ZodType<T>, payload: string): T | undefined => {
    try {
      const result = schema.safeParse(JSON.parse(payload));
      return result.success ? result.data : undefined;
    } catch {
      return undefined;
    }
  };

  return {
    async start() {
      stops.push(
        await database.listen(PREDICTIONS_CHANNEL, (payload) => {
          const message = parse(predictionsPayload, payload);
          if (!message) return;
          emitter.emit(`predictions:${message.jobId}`, message.maxId);
          emitter.emit(`jobs:${message.userId}`, message.jobId);
        }),
        await database.listen(JOBS_CHANNEL, (payload) => {
          const message = parse(jobPayload, payload);
          if (message) emitter.emit(`jobs:${message.userId}`, message.jobId);
        }),
      );
    },
    async close() {
      await Promise.all(stops.splice(0).map((stop) => stop()));
      emitter.removeAllListeners();
    },
    predictionsStored: (jobId, userId, maxId) => notify(PREDICTIONS_CHANNEL, { jobId, userId, maxId }),
    jobChanged: (jobId, userId) => notify(JOBS_CHANNEL, { jobId, userId }),
    onPredictions(jobId, listener) {
      emitter.on(`predictions:${jobId}`, listener);
      return () => emitter.off(`predictions:${jobId}`, listener);
    },
    onJobChange(userId, listener) {
      emitter.on(`jobs:${userId}`, listener);
      return () => emitter.off(`jobs:${userId}`, listener);
    },
  };
}

/**
 * A latch for "something may have changed": wake() marks it and releases a waiter; wait()
 * returns at once when marked since the last reset(), else on wake, timeout or abort.
 */
export class Waker {
  private marked = false;
  private release: (() => void) | null = null;

  wake(): void {
    this.marked = true;
    this.release?.();
  }

  reset(): void {
    this.marked = false;
  }

  wait(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.marked || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.release = null;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      this.release = done;
    });
  }
}
