// Live updates across server instances through Postgres LISTEN/NOTIFY (PGlite's own notify on
// the embedded default). Writers send one small notification per stored batch or job change
// (ids only, far below NOTIFY's 8 KB limit; a prediction write sends its own from inside its
// transaction, see predictionsChannel); every instance listens once and fans the
// notification out in-process to its subscribers, who then read the rows from the table.
import { EventEmitter } from 'node:events';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../../db/client';
import { describeError } from '../log-safe';
import { AppError } from '../errors';

const PREDICTIONS_CHANNEL = 'predictions_stored';
const JOBS_CHANNEL = 'jobs_changed';
const SESSIONS_CHANNEL = 'sessions_ended';
const SESSION_IDS_PER_NOTICE_MAX = 100;

const predictionsPayload = z.object({ jobId: z.uuid(), userId: z.uuid(), maxId: z.number().int() });
const jobPayload = z.object({ jobId: z.uuid(), userId: z.uuid() });
const sessionsPayload = z.object({ sessionIds: z.array(z.uuid()).max(SESSION_IDS_PER_NOTICE_MAX) });

export interface LiveHub {
  start(): Promise<void>;
  close(): Promise<void>;
  /**
   * The channel a prediction write notifies from inside its own transaction (insertPredictions'
   * `notifyChannel`), payload `{"jobId","userId","maxId"}`: delivered at commit, it wakes the job's
   * prediction subscribers and, since its counts moved, the owner's job subscribers.
   */
  readonly predictionsChannel: string;
  /**
   * The same notification as its own statement, after the write committed: the path before
   * issue 19, kept for the bench's before/after (server/pod/pod.service.ts writePathForBench).
   */
  predictionsStored(jobId: string, userId: string, maxId: number): Promise<void>;
  jobChanged(jobId: string, userId: string): Promise<void>;
  /** Calls back with the highest stored id each time a batch for the job is stored anywhere. */
  onPredictions(jobId: string, listener: (maxId: number) => void): () => void;
  /** Calls back with the job id each time one of the user's jobs changes anywhere. */
  onJobChange(userId: string, listener: (jobId: string) => void): () => void;
  /**
   * Takes one of the user's live-stream slots on this instance, for as long as one stream is open
   * (each holds a socket and a re-read timer; 300 idle ones cost 61 MB and 23 queries/s, audit F16).
   * Returns the release, which is idempotent: call it when the stream ends, however it ends.
   * @throws AppError TOO_MANY_REQUESTS when the user already holds `maxStreamsPerUser` streams here.
   */
  holdStream(userId: string): () => void;
  /** How many streams the user holds open on this instance (what the cap counts). */
  openStreams(userId: string): number;
  /**
   * Tells every instance that these sessions were revoked (sign-out, sign-out everywhere, a
   * password change), so streams they opened end at once instead of at their next reconnect.
   */
  sessionsEnded(sessionIds: readonly string[]): Promise<void>;
  /**
   * Watches one session for a stream it opened: `ended` resolves when any instance says the
   * session was revoked, or when `stillLive` (asked every SESSION_RECHECK_MS, in case a
   * notification was lost) says it is gone. Call `dispose` when the stream ends.
   */
  watchSession(sessionId: string, stillLive: () => Promise<boolean>): { ended: Promise<void>; dispose(): void };
}

/** How often an open stream re-reads its session, as a backstop for a lost revocation notice (ms). */
export const SESSION_RECHECK_MS = 60_000;
/** Session ids per notification: a NOTIFY payload holds at most 8 000 bytes. */
const SESSION_IDS_PER_NOTICE = SESSION_IDS_PER_NOTICE_MAX;

export function createLiveHub(database: Database, options: { maxStreamsPerUser: number }): LiveHub {
  const emitter = new EventEmitter();
  // Every open subscription adds a listener; thousands are expected, not a leak.
  emitter.setMaxListeners(0);
  const stops: Array<() => Promise<void>> = [];
  const streamsByUser = new Map<string, number>();

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
        await database.listen(SESSIONS_CHANNEL, (payload) => {
          const message = parse(sessionsPayload, payload);
          for (const id of message?.sessionIds ?? []) emitter.emit(`session:${id}`);
        }),
      );
    },
    async close() {
      await Promise.all(stops.splice(0).map((stop) => stop()));
      emitter.removeAllListeners();
    },
    predictionsChannel: PREDICTIONS_CHANNEL,
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
    async sessionsEnded(sessionIds) {
      for (let i = 0; i < sessionIds.length; i += SESSION_IDS_PER_NOTICE) {
        const chunk = sessionIds.slice(i, i + SESSION_IDS_PER_NOTICE);
        // This instance's own streams end even if the notification is lost on the way back.
        for (const id of chunk) emitter.emit(`session:${id}`);
        await notify(SESSIONS_CHANNEL, { sessionIds: chunk });
      }
    },
    watchSession(sessionId, stillLive) {
      let resolveEnded: () => void = () => undefined;
      const ended = new Promise<void>((resolve) => {
        resolveEnded = resolve;
      });
      const onEnded = () => resolveEnded();
      emitter.once(`session:${sessionId}`, onEnded);
      const timer = setInterval(() => {
        stillLive().then(
          (live) => {
            if (!live) resolveEnded();
          },
          // An unreachable database says nothing about the session; the next check will.
          () => undefined,
        );
      }, SESSION_RECHECK_MS);
      timer.unref();
      return {
        ended,
        dispose() {
          clearInterval(timer);
          emitter.off(`session:${sessionId}`, onEnded);
        },
      };
    },
    holdStream(userId) {
      const open = streamsByUser.get(userId) ?? 0;
      if (open >= options.maxStreamsPerUser) {
        throw new AppError(
          'TOO_MANY_REQUESTS',
          `You have ${open} live updates open, the most this server allows per user (MAX_LIVE_STREAMS_PER_USER = ${options.maxStreamsPerUser}); close other tabs or windows of this app and try again`,
          { retryAfterSeconds: 10 },
        );
      }
      streamsByUser.set(userId, open + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (streamsByUser.get(userId) ?? 1) - 1;
        if (left > 0) streamsByUser.set(userId, left);
        else streamsByUser.delete(userId);
      };
    },
    openStreams: (userId) => streamsByUser.get(userId) ?? 0,
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

/**
 * Hands back `stream` so that `release` runs once when it ends, however it ends: its last item
 * was read, it threw, the consumer stopped it (return/throw: the client went away), or `signal`
 * aborted (the request closed, or the server shut down) even if it was never read at all. A
 * generator never started does not run its `finally`, so the release cannot live there.
 */
export function releaseWhenEnded<T>(stream: AsyncIterable<T>, release: () => void, signal: AbortSignal | undefined): AsyncIterable<T> {
  if (signal?.aborted) release();
  else signal?.addEventListener('abort', release, { once: true });
  const done = () => {
    signal?.removeEventListener('abort', release);
    release();
  };
  return {
    [Symbol.asyncIterator]() {
      const inner = stream[Symbol.asyncIterator]();
      const settle = async (step: Promise<IteratorResult<T>>) => {
        try {
          const result = await step;
          if (result.done) done();
          return result;
        } catch (error) {
          done();
          throw error;
        }
      };
      return {
        next: () => settle(inner.next()),
        return: (value?: unknown) => settle(inner.return ? inner.return(value) : Promise.resolve({ done: true as const, value: undefined })),
        throw: (error?: unknown) => settle(inner.throw ? inner.throw(error) : Promise.reject(error)),
      };
    },
  };
}
