// The predictions writer: the trainer hands it rows and goes on training; one asynchronous loop
// ships them in bounded batches (gzipped by the client's fetch), retries network errors and 5xx
// with exponential backoff and full jitter, never retries a 4xx, and when the server stays
// unreachable it appends the batch to the fsync'd spool and keeps going. It drains the spool
// before anything newer whenever the server answers again (the server stores each
// (job, step, sampleIndex) once, so a replay can never duplicate).
//
// Counters, for every moment of the run:
//   generated = persisted + rejected + spooled + pending
// - generated: rows handed to the writer in this run, plus rows found in the spool at start.
// - persisted: rows the server confirmed are stored: `inserted` + `duplicates` + `replaced` of its
//   answers. A duplicate is a row the server already had, i.e. one of ours from an earlier attempt
//   whose answer was lost (or an earlier run of this job): it is stored, exactly once. A replaced
//   row had the key of a stored row with other content (a run resumed from a checkpoint): ours is
//   the one stored now.
// - rejected: rows the server refused for good (per-row `rejected`, or every row of a batch
//   answered with a 4xx other than 401); the reasons are logged, the rows are not resent.
// - spooled: rows in the spool file right now, waiting for the server (falls as it drains).
// - pending: rows queued in memory or in flight; zero once close() returns.
// `altered` (not a term of the sum) counts stored rows in which the server replaced characters
// PostgreSQL cannot store (U+0000, half an emoji) by U+FFFD: stored, marked, and said so.
import { PREDICTION_BATCH_MAX, type PredictionRowInput, type WritePredictionsOutput } from '../../server/contract/pod.schemas';
import { backoffDelay, classifyPodError, sleep, type PodCallFailure } from './api';
import type { PodConnection, PodLogger } from './connection';
import type { Spool } from './spool';

export interface WriterCounters {
  generated: number;
  persisted: number;
  spooled: number;
  rejected: number;
}

export interface WriterOptions {
  connection: PodConnection;
  spool: Spool;
  log: PodLogger;
  maxBatchRows?: number;
  /** Bound on one batch's JSON before compression (the server checks it after inflating). */
  maxBatchBytes?: number;
  /** Attempts per batch before it goes to the spool. */
  maxAttempts?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** While the server is unreachable, how often to try draining the spool. */
  probeIntervalMs?: number;
  random?: () => number;
}

export const DEFAULT_MAX_BATCH_BYTES = 2 * 1024 * 1024;
const MAX_REASONS_LOGGED = 5;

export type SendOutcome = { ok: true; answer: WritePredictionsOutput } | { ok: false; failure: PodCallFailure };

/**
 * One batch to pod.writePredictions: up to `attempts` tries, backing off (full jitter, at least
 * the server's Retry-After) after a network error, a deadline or a 5xx; a 4xx ends it at once.
 * An aborted `signal` stops the waiting (the outcome is then a retryable failure).
 */
export async function sendPredictionBatch(args: {
  connection: PodConnection;
  rows: readonly unknown[];
  attempts: number;
  retryBaseMs: number;
  retryCapMs: number;
  random?: () => number;
  signal?: AbortSignal;
  log: PodLogger;
}): Promise<SendOutcome> {
  const api = args.connection.api;
  let failure: PodCallFailure | null = null;
  for (let attempt = 0; attempt < args.attempts; attempt++) {
    if (!api || !args.connection.usable) break;
    if (attempt > 0) {
      const delay = Math.max(backoffDelay(attempt - 1, args.retryBaseMs, args.retryCapMs, args.random), failure?.retryAfterMs ?? 0);
      await sleep(Math.min(delay, args.retryCapMs), args.signal);
      if (args.signal?.aborted) break;
    }
    try {
      const answer = await api.pod.writePredictions.mutate({ predictions: [...args.rows] });
      return { ok: true, answer };
    } catch (error) {
      failure = classifyPodError(error);
      if (failure.action !== 'retry') return { ok: false, failure };
      args.log.debug(`Writing ${args.rows.length} prediction(s) failed (attempt ${attempt + 1}/${args.attempts}): ${failure.message}`);
    }
  }
  return { ok: false, failure: failure ?? { action: 'retry', httpStatus: undefined, message: 'not sent', retryAfterMs: null, reason: null } };
}

/** What a count of altered rows means, in words a user can act on. */
export function alteredNote(count: number): string {
  return `${count} prediction(s) had characters PostgreSQL cannot store (NUL, half an emoji) replaced by U+FFFD; they are stored and marked altered.`;
}

/** As many rows from the front as fit the row and byte bounds (always at least one). */
export function takeBatch<T>(rows: readonly T[], maxRows: number, maxBytes: number): T[] {
  let bytes = 2;
  let count = 0;
  while (count < rows.length && count < maxRows) {
    const size = JSON.stringify(rows[count]).length + 1;
    if (count > 0 && bytes + size > maxBytes) break;
    bytes += size;
    count++;
  }
  return rows.slice(0, count);
}

export class PredictionWriter {
  readonly counters: WriterCounters = { generated: 0, persisted: 0, spooled: 0, rejected: 0 };
  /** Rows spooled over the run (a total, unlike the `spooled` gauge). */
  spooledTotal = 0;
  /** `persisted`, split as the server answered: newly stored, already there, or stored over an older row. */
  readonly stored = { inserted: 0, duplicates: 0, replaced: 0 };
  /** Stored rows in which the server replaced characters PostgreSQL cannot store by U+FFFD. */
  altered = 0;
  /** Rows found in the spool when the writer started (included in `generated`). */
  readonly recovered: number;

  private readonly opts: Required<Omit<WriterOptions, 'connection' | 'spool' | 'log'>>;
  private readonly queue: PredictionRowInput[] = [];
  private inFlight = 0;
  private offline = false;
  private nextProbeAt = 0;
  private closeDeadline: number | null = null;
  private readonly stopWaiting = new AbortController();
  private wake: (() => void) | null = null;
  private finished = false;
  private readonly loop: Promise<void>;

  constructor(private readonly options: WriterOptions) {
    this.opts = {
      maxBatchRows: Math.min(options.maxBatchRows ?? PREDICTION_BATCH_MAX, PREDICTION_BATCH_MAX),
      maxBatchBytes: options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
      maxAttempts: options.maxAttempts ?? 5,
      retryBaseMs: options.retryBaseMs ?? 250,
      retryCapMs: options.retryCapMs ?? 8_000,
      probeIntervalMs: options.probeIntervalMs ?? 2_000,
      random: options.random ?? Math.random,
    };
    const existing = options.spool.read();
    this.recovered = existing.rows.length + existing.badLines.length;
    this.counters.generated = this.recovered;
    this.counters.spooled = existing.rows.length;
    if (existing.badLines.length > 0) {
      // A line torn by a crash mid-append cannot be parsed, so it cannot be sent: count it, name it.
      this.counters.rejected += existing.badLines.length;
      options.log.error(
        `The spool ${options.spool.file} has ${existing.badLines.length} unreadable line(s) (line ${existing.badLines.slice(0, 10).join(', ')}); they are counted as rejected.`,
      );
      options.spool.replace(existing.rows);
    }
    if (existing.rows.length > 0) {
      options.log.warn(
        `Found ${existing.rows.length} prediction(s) in the spool ${options.spool.file} from an earlier run; ${options.connection.usable ? 'uploading them first' : 'they stay there'}.`,
      );
    }
    this.loop = this.run().finally(() => {
      this.finished = true;
    });
  }

  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  get spoolFile(): string {
    return this.options.spool.file;
  }

  /** Hands rows over; never blocks, never throws. */
  enqueue(rows: readonly PredictionRowInput[]): void {
    if (rows.length === 0) return;
    this.counters.generated += rows.length;
    if (this.finished) {
      // Nothing ships any more (the loop has ended): straight to disk.
      this.spoolRows(rows);
      return;
    }
    this.queue.push(...rows);
    this.kick();
  }

  /**
   * Sends what is queued and drains the spool, giving an unreachable server until `timeoutMs`
   * to come back; what is still unsent then is in the spool. Resolves with the final counters.
   */
  async close(timeoutMs: number): Promise<WriterCounters> {
    this.closeDeadline = Date.now() + timeoutMs;
    const timer = setTimeout(() => this.stopWaiting.abort(), timeoutMs);
    this.kick();
    try {
      await this.loop;
    } finally {
      clearTimeout(timer);
    }
    return { ...this.counters };
  }

  private kick(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private waitForWork(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.stopWaiting.signal;
      const wake = () => done();
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', wake);
        resolve();
      }
      signal.addEventListener('abort', wake, { once: true });
      this.wake = wake;
      if (signal.aborted) done();
    });
  }

  private get closing(): boolean {
    return this.closeDeadline !== null;
  }

  private get pastDeadline(): boolean {
    return this.closeDeadline !== null && Date.now() >= this.closeDeadline;
  }

  private async run(): Promise<void> {
    for (;;) {
      try {
        if (await this.turn()) return;
      } catch (error) {
        // A bug or a disk error must not end shipping silently: say so and keep going.
        this.options.log.error(`The predictions writer hit an unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        if (this.closing) {
          this.spoolRows(this.queue.splice(0));
          return;
        }
        await this.waitForWork(1_000);
      }
    }
  }

  /** One step of the writer's loop; true when it is done for good. */
  private async turn(): Promise<boolean> {
    if (!this.options.connection.usable || this.pastDeadline) {
      // Offline mode, a refused token or no time left: everything goes to disk.
      this.spoolRows(this.queue.splice(0));
      if (this.closing) return true;
      await this.waitForWork(60_000);
      return false;
    }
    if (this.offline) {
      this.spoolRows(this.queue.splice(0));
      const wait = this.nextProbeAt - Date.now();
      if (wait > 0) {
        await this.waitForWork(wait);
        return false;
      }
      await this.drainSpool(1);
      return false;
    }
    if (this.counters.spooled > 0) {
      await this.drainSpool(this.opts.maxAttempts);
      return false;
    }
    if (this.queue.length === 0) {
      if (this.closing) return true;
      await this.waitForWork(60_000);
      return false;
    }
    const batch = this.takeBatch(this.queue);
    this.queue.splice(0, batch.length);
    this.inFlight = batch.length;
    const outcome = await this.sendWithRetries(batch, this.opts.maxAttempts);
    this.inFlight = 0;
    if (outcome.ok) this.account(batch, outcome.answer);
    else this.handleFailure(batch, outcome.failure);
    return false;
  }

  private takeBatch<T>(rows: readonly T[]): T[] {
    return takeBatch(rows, this.opts.maxBatchRows, this.opts.maxBatchBytes);
  }

  private sendWithRetries(rows: readonly unknown[], attempts: number): Promise<SendOutcome> {
    return sendPredictionBatch({
      connection: this.options.connection,
      rows,
      attempts,
      retryBaseMs: this.opts.retryBaseMs,
      retryCapMs: this.opts.retryCapMs,
      random: this.opts.random,
      signal: this.stopWaiting.signal,
      log: this.options.log,
    });
  }

  private account(rows: readonly unknown[], answer: WritePredictionsOutput): void {
    this.counters.persisted += answer.inserted + answer.duplicates + answer.replaced;
    this.stored.inserted += answer.inserted;
    this.stored.duplicates += answer.duplicates;
    this.stored.replaced += answer.replaced;
    this.counters.rejected += answer.rejected.length;
    if (answer.altered > 0) {
      // Said loudly once; every later batch still adds to the total the summary reports.
      const first = this.altered === 0;
      this.altered += answer.altered;
      this.options.log[first ? 'warn' : 'debug'](`${alteredNote(answer.altered)}${first ? ' The run summary gives the total.' : ''}`);
    }
    if (answer.replaced > 0) {
      this.options.log.info(
        `${answer.replaced} prediction(s) replaced rows the server held at the same (step, sampleIndex) with other content (a run resumed from a checkpoint?).`,
      );
    }
    if (answer.rejected.length > 0) {
      const reasons = answer.rejected
        .slice(0, MAX_REASONS_LOGGED)
        .map((r) => {
          const row = rows[r.index] as Partial<PredictionRowInput> | undefined;
          return `step ${row?.step ?? '?'} sample ${row?.sampleIndex ?? '?'}: ${r.reason}`;
        })
        .join('; ');
      this.options.log.error(`The server rejected ${answer.rejected.length} of ${rows.length} prediction(s): ${reasons}`);
    }
    const accounted = answer.inserted + answer.duplicates + answer.replaced + answer.rejected.length;
    if (accounted !== rows.length) {
      this.options.log.warn(`The server accounted for ${accounted} of ${rows.length} prediction(s) in one batch; the counters follow its answer.`);
    }
  }

  /** A batch that failed for good or for now. Returns nothing: the rows are always accounted. */
  private handleFailure(rows: readonly PredictionRowInput[], failure: PodCallFailure): void {
    switch (failure.action) {
      case 'rejected':
        this.counters.rejected += rows.length;
        this.options.log.error(`The server refused a batch of ${rows.length} prediction(s) (HTTP ${failure.httpStatus}): ${failure.message}. They are counted as rejected and not resent.`);
        return;
      case 'unauthorized':
        this.refuseToken(failure);
        this.spoolRows(rows);
        return;
      case 'retry':
        this.spoolRows(rows);
        this.goOffline(failure);
        return;
    }
  }

  private refuseToken(failure: PodCallFailure): void {
    if (this.options.connection.tokenRefused !== null) return;
    this.options.connection.refuse(failure.message, failure.reason);
    // An ended job accepts nothing from any token, so a sync hint would only fail again.
    const next =
      failure.reason === 'job_ended'
        ? 'the job has ended, so they cannot be uploaded to it'
        : `upload them with \`npm run trainer -- sync --spool ${this.spoolFile}\` and a valid JOB_TOKEN`;
    this.options.log.error(
      `The server refused the job token (HTTP 401: ${failure.message}). Nothing more is sent with it; predictions go to the spool ${this.spoolFile}: ${next}.`,
    );
  }

  private goOffline(failure: PodCallFailure): void {
    if (!this.offline) {
      this.options.log.warn(
        `The server is unreachable after ${this.opts.maxAttempts} attempts (${failure.message}); predictions go to the spool ${this.spoolFile} and training continues. Retrying every ${Math.round(this.opts.probeIntervalMs / 1000)}s.`,
      );
    }
    this.offline = true;
    this.nextProbeAt = Date.now() + this.opts.probeIntervalMs;
  }

  private spoolRows(rows: readonly PredictionRowInput[]): void {
    if (rows.length === 0) return;
    try {
      this.options.spool.append(rows);
      this.counters.spooled += rows.length;
      this.spooledTotal += rows.length;
    } catch (error) {
      // Nowhere left to keep them: say exactly how many and why, and count them as lost (rejected).
      this.counters.rejected += rows.length;
      this.options.log.error(`Could not write ${rows.length} prediction(s) to the spool ${this.spoolFile}: ${error instanceof Error ? error.message : String(error)}. They are lost.`);
    }
  }

  /**
   * Uploads the spool front to back, `attempts` tries per batch (1 while probing an unreachable
   * server). Sent rows leave the file; on failure the remainder is rewritten and kept.
   */
  private async drainSpool(attempts: number): Promise<void> {
    const { rows } = this.options.spool.read();
    if (rows.length === 0) {
      this.counters.spooled = 0;
      this.offline = false;
      return;
    }
    if (this.offline) this.options.log.debug(`Trying the server again with ${rows.length} spooled prediction(s)`);
    let done = 0;
    let stopped: PodCallFailure | null = null;
    while (done < rows.length) {
      const batch = this.takeBatch(rows.slice(done));
      const outcome = await this.sendWithRetries(batch, attempts);
      if (!outcome.ok && outcome.failure.action !== 'rejected') {
        stopped = outcome.failure;
        break;
      }
      if (outcome.ok) this.account(batch, outcome.answer);
      else {
        this.counters.rejected += batch.length;
        this.options.log.error(`The server refused ${batch.length} spooled prediction(s) (HTTP ${outcome.failure.httpStatus}): ${outcome.failure.message}. They are counted as rejected.`);
      }
      done += batch.length;
      this.counters.spooled -= batch.length;
      if (this.offline) {
        this.offline = false;
        this.options.log.info(`The server is reachable again; uploading ${rows.length} spooled prediction(s) before anything newer.`);
      }
    }
    this.options.spool.replace(rows.slice(done));
    this.counters.spooled = rows.length - done;
    if (stopped?.action === 'unauthorized') this.refuseToken(stopped);
    else if (stopped) this.goOffline(stopped);
    else if (done > 0) this.options.log.info(`The spool is drained: ${done} prediction(s) uploaded.`);
  }
}
