// The pod's metrics: each point (step, epoch, name, value) is buffered and shipped to
// pod.writeMetrics in the background by the BatchShipper. A non-finite value (a NaN loss is a
// real and telling event) travels under its wire name ('NaN', 'Infinity', '-Infinity': JSON has
// no NaN), as the contract defines it. The server validates rows one by one: a row it refuses is
// logged once with its reason and never resent, and never fails the run.
import { metricValueToWire, type MetricValue, type WriteMetricsOutput } from '../../server/contract/pod.schemas';
import type { PodConnection, PodLogger } from './connection';
import { BatchShipper } from './shipper';

export interface MetricPoint {
  step: number;
  epoch: number;
  name: string;
  value: MetricValue;
}

export interface MetricsReporterOptions {
  connection: PodConnection;
  log: PodLogger;
  intervalMs?: number;
  maxItems?: number;
  maxBuffer?: number;
}

const MAX_REASONS_LOGGED = 5;

export class MetricsReporter {
  /** How the server answered, summed over the run. */
  readonly answered = { inserted: 0, duplicates: 0, replaced: 0, rejected: 0 };
  private readonly shipper: BatchShipper<MetricPoint>;

  constructor(private readonly options: MetricsReporterOptions) {
    this.shipper = new BatchShipper<MetricPoint>({
      connection: options.connection,
      what: 'metrics',
      send: async (api, points) => this.account(points, await api.pod.writeMetrics.mutate({ metrics: points })),
      maxItems: options.maxItems ?? 1000,
      maxBuffer: options.maxBuffer ?? 50_000,
      intervalMs: options.intervalMs ?? 2_000,
      report: (message, level) => options.log[level](message),
    });
  }

  start(): void {
    this.shipper.start();
  }

  /** Queues one point; never blocks, never throws. */
  record(at: { step: number; epoch: number }, name: string, value: number): void {
    this.shipper.push({ step: at.step, epoch: at.epoch, name, value: metricValueToWire(value) });
  }

  /** Points recorded but not yet taken by the server. */
  get pending(): number {
    return this.shipper.size;
  }

  /** Flushes what is buffered, giving the server until `timeoutMs`. */
  close(timeoutMs: number): Promise<void> {
    return this.shipper.close(timeoutMs);
  }

  private account(points: readonly MetricPoint[], answer: WriteMetricsOutput): void {
    this.answered.inserted += answer.inserted;
    this.answered.duplicates += answer.duplicates;
    this.answered.replaced += answer.replaced;
    this.answered.rejected += answer.rejected.length;
    if (answer.rejected.length === 0) return;
    // Resending a refused row would be refused again: say why once, and let it go.
    const reasons = answer.rejected
      .slice(0, MAX_REASONS_LOGGED)
      .map((r) => {
        const point = points[r.index];
        // JSON-quoted: the name may hold the very control character that got it refused.
        return `${point ? `${JSON.stringify(point.name)} at step ${point.step}` : `row ${r.index}`}: ${r.reason}`;
      })
      .join('; ');
    const more = answer.rejected.length > MAX_REASONS_LOGGED ? ` (and ${answer.rejected.length - MAX_REASONS_LOGGED} more)` : '';
    this.options.log.error(`The server refused ${answer.rejected.length} of ${points.length} metric point(s), not resent: ${reasons}${more}`);
  }
}
