// The pod's metrics: each point (step, epoch, name, value) goes through the write-ahead spool
// like a prediction (spool.ts, writer.ts: on disk before it is sent, marked done when answered,
// 413 splits, Retry-After honoured, a refused token keeps them for `sync`), on its own channel
// that lets points gather for `intervalMs` so a step's few points do not each cost a request.
// A non-finite value (a NaN loss is a real and telling event) travels under its wire name
// ('NaN', 'Infinity', '-Infinity': JSON has no NaN), as the contract defines it. The server
// validates rows one by one: a row it refuses is logged once with its reason and never resent,
// and never fails the run.
import { metricValueToWire, type MetricValue } from '#contract/pod.schemas';
import type { PodConnection, PodLogger } from './connection';
import { Spool } from './spool';
import { metricChannel, SpoolSender, type BatchAnswer } from './writer';

export interface MetricPoint {
  step: number;
  epoch: number;
  name: string;
  value: MetricValue;
}

export interface MetricsReporterOptions {
  connection: PodConnection;
  log: PodLogger;
  /** The run's spool (shared with the predictions); without one, points are kept in memory only. */
  spool?: Spool;
  /** How long points gather before a partial batch is sent. */
  intervalMs?: number;
  maxItems?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  probeIntervalMs?: number;
}

class MetricsSender extends SpoolSender {
  /** How the server answered, summed over the run. */
  readonly answered = { inserted: 0, duplicates: 0, replaced: 0, rejected: 0 };

  get rejectedPoints(): number {
    return this.rejectedCount;
  }

  protected override noteAnswer(answer: BatchAnswer): void {
    this.answered.inserted += answer.inserted;
    this.answered.duplicates += answer.duplicates;
    this.answered.replaced += answer.replaced;
  }
}

export class MetricsReporter {
  private readonly sender: MetricsSender;

  constructor(options: MetricsReporterOptions) {
    this.sender = new MetricsSender(
      {
        connection: options.connection,
        log: options.log,
        spool: options.spool ?? Spool.memory(),
        lingerMs: options.intervalMs ?? 2_000,
        ...(options.maxItems !== undefined ? { maxBatchRows: options.maxItems } : {}),
        ...(options.retryBaseMs !== undefined ? { retryBaseMs: options.retryBaseMs } : {}),
        ...(options.retryCapMs !== undefined ? { retryCapMs: options.retryCapMs } : {}),
        ...(options.probeIntervalMs !== undefined ? { probeIntervalMs: options.probeIntervalMs } : {}),
        announceRecovered: false,
      },
      metricChannel,
    );
  }

  /** Kept for callers that start reporters explicitly; the sender runs from construction. */
  start(): void {}

  /** How the server answered, summed over the run; `rejected` includes points refused whole (413 alone, other 4xx). */
  get answered(): { inserted: number; duplicates: number; replaced: number; rejected: number } {
    return { ...this.sender.answered, rejected: this.sender.rejectedPoints };
  }

  /** Points found in the spool from an earlier run (sent first). */
  get recovered(): number {
    return this.sender.recovered;
  }

  /** Writes one point to the spool; never blocks on the network, never throws. */
  record(at: { step: number; epoch: number }, name: string, value: number): void {
    const point: MetricPoint = { step: at.step, epoch: at.epoch, name, value: metricValueToWire(value) };
    this.sender.enqueue([point]);
  }

  /** Points recorded but not yet answered for by the server (in the spool). */
  get pending(): number {
    const c = this.sender.counters;
    return c.spooled + this.sender.pending;
  }

  /** Sends what is in the spool, giving the server until `timeoutMs`; the rest stays in the spool. */
  async close(timeoutMs: number): Promise<void> {
    await this.sender.close(timeoutMs);
  }
}
