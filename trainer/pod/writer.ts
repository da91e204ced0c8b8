// The predictions writer (and, with another channel, the metrics sender): the trainer hands it
// rows and goes on training. Each row is appended to the write-ahead spool at once (spool.ts:
// one write per call, fsync'd off the main thread before anything is sent); one asynchronous
// loop sends the spool's rows in bounded batches (gzipped by the client's fetch) and marks them
// done when the server has answered for them. Every answer has one handling:
// - network error, deadline, 5xx, 408, 429: retried with exponential backoff and full jitter,
//   never sooner than the server's Retry-After; after `maxAttempts` the writer is "offline": the
//   rows wait in the spool and one batch probes the server every `probeIntervalMs`.
// - 413: the batch is halved and each half sent (recursively, down to one row, and later
//   batches are kept under the size that passed); one row still too large is refused for good,
//   with the reason. Nothing is dropped for being in a large batch.
// - 401: nothing more is sent with this token (everyone sharing the connection stops); the rows
//   stay in the spool, and one line says how to rotate the token and run `sync` (not for
//   `job_ended`: the trainer stops training instead, see main.ts).
// - 400 per-row refusals in an answer (and any other 4xx for a whole batch): counted as
//   rejected, with the reasons logged, and not resent.
// A kill -9 at any instant loses nothing already generated: the next run of the same job (same
// spool directory) or `trainer sync` sends what the server had not answered for; a replay of a
// batch whose answer was lost comes back as duplicates (the server stores each key once).
//
// Counters, for every moment of the run:
//   generated = persisted + rejected + spooled + pending
// - generated: rows handed to the writer in this run, plus rows found in the spool at start
//   (and unreadable lines found there, which count as rejected).
// - persisted: rows the server confirmed are stored: `inserted` + `duplicates` + `replaced` of its
//   answers. A duplicate is a row the server already had, i.e. one of ours from an earlier attempt
//   whose answer was lost (or an earlier run of this job): it is stored, exactly once. A replaced
//   row had the key of a stored row with other content (a run resumed from a checkpoint): ours is
//   the one stored now.
// - rejected: rows the server refused for good (per-row `rejected`, a single row too large
//   (413), a whole batch answered with another 4xx than 401 or 413, or rows an answer did not
//   account for); the reasons are logged, the rows are not resent.
// - spooled: rows in the spool that nothing is sending now: the server is unreachable (between
//   probes), the token was refused, there is no server (local mode), or the writer has closed.
// - pending: rows in the spool on their way: queued or in flight while the server answers.
//   Zero once close() returns.
// Every row in `spooled` or `pending` is in the spool file (or, if the disk refused it, the
// writer said so and keeps it in memory). `altered` (not a term of the sum) counts stored rows
// in which the server replaced characters PostgreSQL cannot store (U+0000, half an emoji) by
// U+FFFD: stored, marked, and said so.
import {
  POD_BATCH_MAX_BYTES,
  PREDICTION_BATCH_MAX,
  type MetricRowInput,
  type PredictionRowInput,
} from '#contract/pod.schemas';
import { backoffDelay, classifyPodError, sleep, type PodApi, type PodCallFailure } from './api';
import type { PodConnection, PodLogger } from './connection';
import type { Spool, SpoolEntry, SpoolKind } from './spool';

export interface WriterCounters {
  generated: number;
  persisted: number;
  spooled: number;
  rejected: number;
}

/** What the server answered for one batch, whatever the kind of record. */
export interface BatchAnswer {
  inserted: number;
  duplicates: number;
  replaced: number;
  altered: number;
  rejected: { index: number; reason: string }[];
}

/** A kind of record the pod sends from the spool, and how. */
export interface Channel {
  kind: SpoolKind;
  /** For messages: "prediction(s)", "metric point(s)". */
  noun: string;
  /** `signal` aborts the request when the writer's close deadline passes (a hung server must not hold the exit). */
  send(api: PodApi, bodies: unknown[], signal: AbortSignal): Promise<BatchAnswer>;
  /** Names one record in a message about it. */
  label(body: unknown): string;
}

export const predictionChannel: Channel = {
  kind: 'prediction',
  noun: 'prediction(s)',
  send: (api, bodies, signal) => api.pod.writePredictions.mutate({ predictions: bodies }, { signal }),
  label(body) {
    const row = body as Partial<PredictionRowInput> | null;
    return `step ${row?.step ?? '?'} sample ${row?.sampleIndex ?? '?'}`;
  },
};

export const metricChannel: Channel = {
  kind: 'metric',
  noun: 'metric point(s)',
  send: async (api, bodies, signal): Promise<BatchAnswer> => ({ altered: 0, ...(await api.pod.writeMetrics.mutate({ metrics: bodies }, { signal })) }),
  label(body) {
    const point = body as Partial<MetricRowInput> | null;
    // JSON-quoted: the name may hold the very control character that got it refused.
    return `${JSON.stringify(point?.name ?? '?')} at step ${point?.step ?? '?'}`;
  },
};

export interface WriterOptions {
  connection: PodConnection;
  spool: Spool;
  log: PodLogger;
  maxBatchRows?: number;
  /** Bound on one batch's JSON before compression (the server checks it after inflating). */
  maxBatchBytes?: number;
  /** Attempts per batch before the writer waits offline and probes. */
  maxAttempts?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** While the server is unreachable, how often to try one batch. */
  probeIntervalMs?: number;
  /** How long to let a partial batch fill before sending it (0: send at once). */
  lingerMs?: number;
  random?: () => number;
  /** The command that uploads the spool, for the line printed when the token is refused. */
  syncCommand?: (file: string) => string;
  /** Say at start how many rows an earlier run left in the spool (not for `sync`). */
  announceRecovered?: boolean;
}

export const DEFAULT_MAX_BATCH_BYTES = POD_BATCH_MAX_BYTES;
const MAX_REASONS_LOGGED = 5;

export type SendOutcome = { ok: true; answer: BatchAnswer } | { ok: false; failure: PodCallFailure };

/** What a count of altered rows means, in words a user can act on. */
export function alteredNote(count: number): string {
  return `${count} prediction(s) had characters PostgreSQL cannot store (NUL, half an emoji) replaced by U+FFFD; they are stored and marked altered.`;
}

/** As many entries from the front as fit the row and byte bounds (always at least one). */
export function takeBatch<T extends { bytes: number }>(entries: readonly T[], maxRows: number, maxBytes: number): T[] {
  let bytes = 2;
  let count = 0;
  while (count < entries.length && count < maxRows) {
    const size = entries[count]?.bytes ?? 0;
    if (count > 0 && bytes + size > maxBytes) break;
    bytes += size;
    count++;
  }
  return entries.slice(0, count);
}

/** Sends records of one channel from the spool; see the top of this file. */
export class SpoolSender {
  /** Rows handed over in this run plus those found in the spool (see the invariant above). */
  protected generatedCount = 0;
  protected persistedCount = 0;
  protected rejectedCount = 0;
  /** `persisted`, split as the server answered: newly stored, already there, or stored over an older row. */
  readonly stored = { inserted: 0, duplicates: 0, replaced: 0 };
  /** Stored rows in which the server replaced characters PostgreSQL cannot store by U+FFFD. */
  altered = 0;
  /** Rows found in the spool when the sender started (included in `generated`). */
  readonly recovered: number;

  protected readonly opts: Required<Omit<WriterOptions, 'connection' | 'spool' | 'log' | 'syncCommand' | 'announceRecovered'>>;
  private offline = false;
  private nextProbeAt = 0;
  private closeDeadline: number | null = null;
  private readonly stopWaiting = new AbortController();
  private wake: (() => void) | null = null;
  private finished = false;
  private lastSentAt = 0;
  private diskProblemSaid = false;
  private readonly loop: Promise<void>;

  constructor(
    protected readonly options: WriterOptions,
    protected readonly channel: Channel,
  ) {
    this.opts = {
      maxBatchRows: Math.min(options.maxBatchRows ?? PREDICTION_BATCH_MAX, PREDICTION_BATCH_MAX),
      maxBatchBytes: options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
      maxAttempts: options.maxAttempts ?? 5,
      retryBaseMs: options.retryBaseMs ?? 250,
      retryCapMs: options.retryCapMs ?? 8_000,
      probeIntervalMs: options.probeIntervalMs ?? 2_000,
      lingerMs: options.lingerMs ?? 0,
      random: options.random ?? Math.random,
    };
    options.spool.acquire();
    this.recovered = options.spool.count(channel.kind);
    this.generatedCount = this.recovered;
    this.loop = this.run().finally(() => {
      this.finished = true;
      options.spool.release();
    });
  }

  /** Rows in the spool that this sender has not had answered. */
  protected get queued(): number {
    return this.options.spool.count(this.channel.kind);
  }

  /** True while the loop is sending (not waiting out an outage, refused, offline or closed). */
  private get sending(): boolean {
    return !this.finished && !this.offline && this.options.connection.usable && !this.pastDeadline;
  }

  get counters(): WriterCounters {
    return { generated: this.generatedCount, persisted: this.persistedCount, spooled: this.sending ? 0 : this.queued, rejected: this.rejectedCount };
  }

  get pending(): number {
    return this.sending ? this.queued : 0;
  }

  get spoolFile(): string {
    return this.options.spool.file || '(memory)';
  }

  /** Hands records over: in the spool when this returns; never blocks on the network, never throws. */
  enqueue(bodies: readonly unknown[]): void {
    if (bodies.length === 0) return;
    this.generatedCount += bodies.length;
    const problem = this.options.spool.append(this.channel.kind, bodies);
    if (problem !== null && !this.diskProblemSaid) {
      this.diskProblemSaid = true;
      this.options.log.error(
        `Could not write to the spool ${this.spoolFile} (${problem}); ${this.channel.noun} are kept in memory until the server has them, and a crash now would lose them.`,
      );
    }
    // A lingering channel (metrics) lets points gather into one batch instead of waking per point.
    if (this.opts.lingerMs === 0 || this.queued >= this.opts.maxBatchRows) this.kick();
  }

  /**
   * Sends what is in the spool, giving an unreachable server until `timeoutMs` to come back;
   * what is still unsent then stays in the spool. Resolves with the final counters.
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
    return this.counters;
  }

  protected kick(): void {
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
        // A bug or a disk error must not end sending silently: say so and keep going (the rows
        // are in the spool whatever happens here).
        this.options.log.error(`The ${this.channel.noun} sender hit an unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        if (this.closing) return;
        await this.waitForWork(1_000);
      }
    }
  }

  /** One step of the loop; true when it is done for good. */
  private async turn(): Promise<boolean> {
    // What is written reaches the disk before any of it is sent.
    await this.options.spool.flush();
    if (!this.options.connection.usable || this.pastDeadline || this.queued === 0) {
      if (this.closing) return true;
      await this.waitForWork(60_000);
      return false;
    }
    if (this.offline) {
      const wait = this.nextProbeAt - Date.now();
      if (wait > 0) {
        await this.waitForWork(wait);
        return false;
      }
    } else if (!this.closing && this.opts.lingerMs > 0 && this.queued < this.opts.maxBatchRows) {
      const wait = this.lastSentAt + this.opts.lingerMs - Date.now();
      if (wait > 0) {
        await this.waitForWork(wait);
        return false;
      }
    }
    const spool = this.options.spool;
    const entries = spool.entries(this.channel.kind);
    let durable = 0;
    while (durable < entries.length && durable < this.opts.maxBatchRows && spool.isDurable(entries[durable]?.seq ?? Infinity)) durable++;
    const batch = takeBatch(entries.slice(0, durable), this.opts.maxBatchRows, this.opts.maxBatchBytes);
    if (batch.length === 0) return false; // appended during the flush: flush again
    const probing = this.offline;
    const waiting = this.queued;
    if (probing) this.options.log.debug(`Trying the server again with ${waiting} spooled ${this.channel.noun}`);
    this.lastSentAt = Date.now();
    const failure = await this.deliver(batch, probing ? 1 : this.opts.maxAttempts);
    if (failure === null) {
      if (this.offline) {
        this.offline = false;
        this.options.log.info(`The server is reachable again; uploading ${waiting} spooled ${this.channel.noun} before anything newer.`);
      }
      return false;
    }
    if (failure.action === 'unauthorized') this.options.connection.refuse(failure.message, failure.reason);
    else this.goOffline(failure);
    return false;
  }

  /**
   * Sends one batch (the front of the queue) until the server has answered for every row, or
   * returns the failure that stopped it (retryable, or a refused token); 413 splits the batch.
   */
  private async deliver(batch: readonly SpoolEntry[], attempts: number): Promise<PodCallFailure | null> {
    const outcome = await this.sendWithRetries(batch.map((entry) => entry.body), attempts);
    if (outcome.ok) {
      this.account(batch, outcome.answer);
      return null;
    }
    const failure = outcome.failure;
    if (failure.action === 'split') {
      if (batch.length === 1) {
        this.refuseAll(batch, `too large for the server even alone (HTTP 413: ${failure.message})`);
        return null;
      }
      const bytes = batch.reduce((sum, entry) => sum + entry.bytes, 2);
      // Later batches start under the size that was refused, so a replay does not 413 every time.
      this.opts.maxBatchBytes = Math.max(1, Math.min(this.opts.maxBatchBytes, Math.floor(bytes / 2)));
      this.options.log.debug(`The server found a batch of ${batch.length} ${this.channel.noun} (${bytes} bytes) too large (HTTP 413); sending it in halves.`);
      const half = Math.ceil(batch.length / 2);
      return (await this.deliver(batch.slice(0, half), attempts)) ?? (await this.deliver(batch.slice(half), attempts));
    }
    if (failure.action === 'rejected') {
      this.refuseAll(batch, `HTTP ${failure.httpStatus}: ${failure.message}`);
      return null;
    }
    return failure;
  }

  private async sendWithRetries(bodies: unknown[], attempts: number): Promise<SendOutcome> {
    const connection = this.options.connection;
    let failure: PodCallFailure | null = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const api = connection.api;
      if (!api || !connection.usable) break;
      if (attempt > 0) {
        // Full jitter under the cap, but never sooner than the server asked (Retry-After is a floor).
        const delay = Math.max(backoffDelay(attempt - 1, this.opts.retryBaseMs, this.opts.retryCapMs, this.opts.random), failure?.retryAfterMs ?? 0);
        await sleep(delay, this.stopWaiting.signal);
        if (this.stopWaiting.signal.aborted) break;
      }
      try {
        return { ok: true, answer: await this.channel.send(api, bodies, this.stopWaiting.signal) };
      } catch (error) {
        failure = classifyPodError(error);
        if (failure.action !== 'retry') return { ok: false, failure };
        this.options.log.debug(`Sending ${bodies.length} ${this.channel.noun} failed (attempt ${attempt + 1}/${attempts}): ${failure.message}`);
      }
    }
    return { ok: false, failure: failure ?? { action: 'retry', httpStatus: undefined, message: 'not sent', retryAfterMs: null, reason: null } };
  }

  private account(batch: readonly SpoolEntry[], answer: BatchAnswer): void {
    const stored = answer.inserted + answer.duplicates + answer.replaced;
    // Every row of the batch leaves the spool counted once: what the server did not account for
    // (it always does; this guards the invariant) is counted as rejected.
    const storedHere = Math.min(stored, batch.length);
    this.persistedCount += storedHere;
    this.rejectedCount += batch.length - storedHere;
    this.stored.inserted += answer.inserted;
    this.stored.duplicates += answer.duplicates;
    this.stored.replaced += answer.replaced;
    this.options.spool.resolve(this.channel.kind, batch);
    this.noteAnswer(answer);
    if (answer.rejected.length > 0) {
      const reasons = answer.rejected
        .slice(0, MAX_REASONS_LOGGED)
        .map((r) => `${batch[r.index] ? this.channel.label(batch[r.index]?.body) : `row ${r.index}`}: ${r.reason}`)
        .join('; ');
      const more = answer.rejected.length > MAX_REASONS_LOGGED ? ` (and ${answer.rejected.length - MAX_REASONS_LOGGED} more)` : '';
      this.options.log.error(`The server rejected ${answer.rejected.length} of ${batch.length} ${this.channel.noun}: ${reasons}${more}; they are not resent.`);
    }
    const accounted = stored + answer.rejected.length;
    if (accounted !== batch.length) {
      this.options.log.warn(`The server accounted for ${accounted} of ${batch.length} ${this.channel.noun} in one batch; the rest are counted as rejected.`);
    }
  }

  /** Hook for what a channel makes of an answer beyond the counters (altered, replaced notes). */
  protected noteAnswer(answer: BatchAnswer): void {
    void answer;
  }

  private refuseAll(batch: readonly SpoolEntry[], why: string): void {
    this.rejectedCount += batch.length;
    this.options.spool.resolve(this.channel.kind, batch);
    const first = batch[0];
    const which = batch.length === 1 && first ? ` (${this.channel.label(first.body)})` : '';
    this.options.log.error(`The server refused ${batch.length} ${this.channel.noun}${which}: ${why}. They are counted as rejected and not resent.`);
  }

  private goOffline(failure: PodCallFailure): void {
    if (!this.offline) {
      this.options.log.warn(
        `The server is unreachable after ${this.opts.maxAttempts} attempts (${failure.message}); ${this.channel.noun} wait in the spool ${this.spoolFile} and training continues. Retrying every ${Math.round(this.opts.probeIntervalMs / 1000)}s.`,
      );
    }
    this.offline = true;
    this.nextProbeAt = Date.now() + Math.max(this.opts.probeIntervalMs, failure.retryAfterMs ?? 0);
  }
}

/** The predictions: the sender with the prediction channel, and what the run reports about it. */
export class PredictionWriter extends SpoolSender {
  constructor(options: WriterOptions) {
    super(options, predictionChannel);
    const opened = options.spool.opened;
    if (opened.badLines.length > 0) {
      // Unreadable lines cannot be sent: count them (as generated and rejected) and name them.
      this.generatedCount += opened.badLines.length;
      this.rejectedCount += opened.badLines.length;
      options.log.error(
        `The spool ${this.spoolFile} has ${opened.badLines.length} unreadable line(s) (line ${opened.badLines.slice(0, 10).join(', ')}); they are counted as rejected.`,
      );
    }
    if (opened.tornTail) {
      options.log.warn(
        `The last line of the spool ${this.spoolFile} was cut short (the pod was killed while writing it); it had never been sent, and is dropped.`,
      );
    }
    if (this.recovered > 0 && options.announceRecovered !== false) {
      options.log.warn(
        `Found ${this.recovered} prediction(s) in the spool ${this.spoolFile} from an earlier run; ${options.connection.usable ? 'uploading them first' : 'they stay there'}.`,
      );
    }
    options.connection.onRefused((message, reason) => this.sayRefused(message, reason));
  }

  /** Hands rows over: in the spool when this returns; never blocks, never throws. */
  override enqueue(rows: readonly PredictionRowInput[]): void {
    super.enqueue(rows);
  }

  protected override noteAnswer(answer: BatchAnswer): void {
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
  }

  /** The one line a user needs when the token is refused (by any caller): where the rows are, how to send them. */
  private sayRefused(message: string, reason: string | null): void {
    const held = `${this.queued} prediction(s) are kept in the spool ${this.spoolFile}`;
    if (reason === 'job_ended') {
      // An ended job accepts nothing more from this token (main.ts stops training), but an upload
      // token for it does (docs/decisions/0005-upload-tokens.md).
      const command = this.options.syncCommand?.(this.spoolFile) ?? `npm run trainer -- sync --spool ${this.spoolFile}`;
      this.options.log.error(
        `The server refused the job token (HTTP 401: ${message}). ${held}; the job has ended. To keep them, press "New upload token" on the job page (or jobs.rotateToken), then run: JOB_TOKEN=<the upload token> ${command}`,
      );
      return;
    }
    const command = this.options.syncCommand?.(this.spoolFile) ?? `npm run trainer -- sync --spool ${this.spoolFile}`;
    this.options.log.error(
      `The server refused the job token (HTTP 401${reason ? `, ${reason}` : ''}: ${message}). Nothing more is sent with it; ${held} (and new ones join them). To upload them, rotate the token on the job page (or jobs.rotateToken) and run: JOB_TOKEN=<the new token> ${command}`,
    );
  }
}
