// Ships small, lossy-tolerant records (log lines, metrics) to the server in the background:
// a bounded buffer (the oldest give way when it is full, and how many is reported), a flush
// every interval, batches of at most `maxItems`. A failed flush keeps its items for the next
// one; nothing here ever waits the trainer or throws into it. Predictions do not go through
// here: they have the writer, with its spool and its counters.
import { classifyPodError, sleep } from './api';
import type { PodApi } from './api';
import type { PodConnection } from './connection';

export interface ShipperOptions<T> {
  connection: PodConnection;
  /** For messages about the shipper itself ("metrics", "log lines"). */
  what: string;
  send(api: PodApi, items: T[]): Promise<unknown>;
  maxItems: number;
  maxBuffer: number;
  intervalMs: number;
  /** Where the shipper reports its own trouble (not the pod logger: it may be what is failing). */
  report(message: string, level: 'info' | 'warn' | 'error'): void;
  /** Called with how many items were dropped since the last report, when shipping resumes. */
  droppedNotice?(count: number): T;
}

export class BatchShipper<T> {
  private buffer: T[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private failing = false;
  /** Lowered after a 413 so the next batches fit the server's body limit. */
  private maxItems: number;
  sent = 0;

  constructor(private readonly options: ShipperOptions<T>) {
    this.maxItems = options.maxItems;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.options.intervalMs);
    this.timer.unref();
  }

  push(item: T): void {
    this.buffer.push(item);
    if (this.buffer.length > this.options.maxBuffer) {
      this.buffer.splice(0, this.buffer.length - this.options.maxBuffer);
      this.dropped++;
    }
  }

  get size(): number {
    return this.buffer.length;
  }

  /** One batch; concurrent callers share the flush in progress. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Stops the timer and flushes until empty, a failure, or the deadline. */
  async close(timeoutMs: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const deadline = Date.now() + timeoutMs;
    while (this.buffer.length > 0 && this.options.connection.usable && Date.now() < deadline) {
      const before = this.buffer.length;
      const maxBefore = this.maxItems;
      await Promise.race([this.flush(), sleep(Math.max(0, deadline - Date.now()))]);
      if (this.buffer.length >= before && this.maxItems === maxBefore) break;
    }
  }

  private async flushOnce(): Promise<void> {
    const api = this.options.connection.api;
    if (!api || !this.options.connection.usable || this.buffer.length === 0) return;
    if (this.dropped > 0 && this.options.droppedNotice) {
      this.buffer.unshift(this.options.droppedNotice(this.dropped));
      this.dropped = 0;
    }
    const batch = this.buffer.slice(0, this.maxItems);
    try {
      await this.options.send(api, batch);
      this.buffer.splice(0, batch.length);
      this.sent += batch.length;
      if (this.failing) this.options.report(`Sending ${this.options.what} works again.`, 'info');
      this.failing = false;
    } catch (error) {
      const failure = classifyPodError(error);
      if (failure.action === 'unauthorized') {
        this.options.connection.refuse(failure.message, failure.reason);
        this.options.report(`The server refused the job token while sending ${this.options.what} (HTTP 401: ${failure.message}); no more are sent.`, 'error');
      } else if (failure.action === 'split' && batch.length > 1) {
        // Over the server's body limit: the same items go in smaller batches, none is dropped.
        this.maxItems = Math.max(1, Math.floor(batch.length / 2));
      } else if (failure.action === 'rejected' || failure.action === 'split') {
        this.buffer.splice(0, batch.length);
        this.options.report(`The server refused ${batch.length} ${this.options.what} (HTTP ${failure.httpStatus}): ${failure.message}; they are dropped.`, 'error');
      } else if (!this.failing) {
        this.failing = true;
        this.options.report(`Sending ${this.options.what} failed (${failure.message}); kept for the next try.`, 'warn');
      }
    }
  }
}
