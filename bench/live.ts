// Live: a pod writes a batch; the time from its HTTP acknowledgement to each subscriber's
// receipt of each row over SSE (predictions.onNew), with 1 and with 50 subscribers on the job.
import type { AppDeps } from '../server/app-deps';
import { createManualJob, createUser } from '../server/test-support/factories';
import { summarize } from './common';
import type { LoadWorker } from './load-client';

export interface LiveRow {
  subscribers: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The same deliveries measured from when the write was sent (includes the write itself). */
  fromSendP50Ms: number;
  fromSendP99Ms: number;
  /** Deliveries that arrived before the writer had read its acknowledgement (negative latency). */
  beforeAck: number;
  deliveries: number;
  expected: number;
  errors: string[];
}

const ROWS_PER_WRITE = 10;
const INTERVAL_MS = 100;

export async function runLive(
  deps: AppDeps,
  load: LoadWorker,
  options: { url: string; subscriberCounts: number[]; writes: number; log: (line: string) => void },
): Promise<LiveRow[]> {
  const rows: LiveRow[] = [];
  let seed = 900_000;
  for (const subscribers of options.subscriberCounts) {
    const user = await createUser(deps);
    const job = await createManualJob(deps, user.id, { name: `bench live ${subscribers}` });
    const result = await load.live({
      url: options.url,
      userToken: user.token,
      pod: { jobId: job.jobId, userId: user.id, token: job.token, seed: seed++ },
      subscribers,
      writes: options.writes,
      rowsPerWrite: ROWS_PER_WRITE,
      intervalMs: INTERVAL_MS,
      firstBatch: 0,
    });
    const s = summarize(result.latenciesMs);
    const f = summarize(result.fromSendMs);
    const row: LiveRow = {
      subscribers,
      p50Ms: s.p50,
      p99Ms: s.p99,
      maxMs: s.max,
      fromSendP50Ms: f.p50,
      fromSendP99Ms: f.p99,
      beforeAck: result.latenciesMs.filter((v) => v < 0).length,
      deliveries: result.delivered,
      expected: result.expected,
      errors: result.errors,
    };
    rows.push(row);
    options.log(`  live ${subscribers} subscriber(s): p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms after ack (from send p50 ${row.fromSendP50Ms}, p99 ${row.fromSendP99Ms}); ${row.deliveries}/${row.expected} delivered${row.errors.length ? `; errors: ${row.errors.join(' | ')}` : ''}`);
  }
  return rows;
}
