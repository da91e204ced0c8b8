// The benchmark's load generator, run in a child process so that its own CPU (building and
// sending batches, parsing server-sent events) neither shares the server's event loop nor
// counts as the server's CPU time. Tasks: ingest through the stack / multi-row INSERT / COPY,
// and live-delivery latency.
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { EventSource } from 'eventsource';
import { createApiClient } from '../client/api/client';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sql } from 'drizzle-orm';
import { insertPredictions } from '../db/queries/predictions';
import * as schema from '../db/schema';
import { createHttpClient, predictionBatch, requestBody, wallMs, type PredictionRow } from './common';
import { ownCpuMs, processCpuMs } from './cpu';

/** The application_name of the load generator's own connections: the main process leaves them out of the server's backends. */
export const LOAD_APPLICATION_NAME = 'bench-load';

export interface PodTarget {
  jobId: string;
  userId: string;
  token: string;
  /** Seeds the pod's rows; a replay passes the seed of the run it repeats. */
  seed: number;
}

export interface IngestTask {
  kind: 'ingest';
  mode: 'stack' | 'values' | 'copy' | 'stack-sql' | 'stack-sql+notify' | 'stack-sql, notify folded';
  url: string;
  databaseUrl: string;
  pods: PodTarget[];
  batchesPerPod: number;
  batchSize: number;
  gzip: boolean;
  /** Connections the direct baselines may use: the server's own pool size, for a like-for-like comparison. */
  poolSize: number;
}

export interface IngestResult {
  rows: number;
  ms: number;
  inserted: number;
  duplicates: number;
  errors: string[];
  requestMs: number[];
  /** CPU ms (user + system) of this load-generator process over the timed part. */
  clientCpuMs: number;
  /** CPU ms of the PostgreSQL backends of this process's own pool over the timed part (direct modes); null for the stack. */
  poolBackendCpuMs: number | null;
}

export interface LiveTask {
  kind: 'live';
  url: string;
  userToken: string;
  pod: PodTarget;
  subscribers: number;
  writes: number;
  rowsPerWrite: number;
  intervalMs: number;
  /** Batch numbers start here, so steps never collide with earlier rounds on the same job. */
  firstBatch: number;
}

export interface LiveResult {
  /** Each (subscriber, row) delivery: arrival minus the writer's receipt of the HTTP acknowledgement. */
  latenciesMs: number[];
  /** The same deliveries measured from the moment the write request was sent. */
  fromSendMs: number[];
  expected: number;
  delivered: number;
  errors: string[];
}

type Task = IngestTask | LiveTask;

const WRITE_PATH = '/trpc/pod.writePredictions';
const COLUMNS = 'job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction';

async function ingest(task: IngestTask): Promise<IngestResult> {
  // Batches are built before the clock starts: the pod's sampling is not what is measured.
  const batches = task.pods.map((pod) => Array.from({ length: task.batchesPerPod }, (_, b) => predictionBatch(pod.seed, b, task.batchSize)));
  // The same for the request bodies (JSON, gzipped when asked): serializing is the pod's work, not the server's.
  const bodies = new Map(batches.flat().map((rows) => [rows, task.mode === 'stack' ? requestBody({ predictions: rows }, task.gzip) : null]));
  const errors: string[] = [];
  const requestMs: number[] = [];
  let inserted = 0;
  let duplicates = 0;
  const http = createHttpClient(task.url, task.pods.length);
  const pool = task.mode === 'stack' ? null : new pg.Pool({ connectionString: task.databaseUrl, max: task.poolSize, application_name: LOAD_APPLICATION_NAME });
  const backendPids: number[] = [];
  try {
    if (pool) {
      // Every connection opened before the clock starts, and its backend's pid noted: their CPU
      // is read before and after, while they are still open.
      const clients = await Promise.all(Array.from({ length: task.poolSize }, () => pool.connect()));
      for (const client of clients) {
        const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
        if (rows[0]) backendPids.push(rows[0].pid);
        client.release();
      }
    }
    const backendsCpu = () => backendPids.reduce((sum, pid) => sum + (processCpuMs(pid) ?? 0), 0);
    const write = async (pod: PodTarget, rows: PredictionRow[]) => {
      if (task.mode === 'stack') {
        const body = bodies.get(rows) ?? requestBody({ predictions: rows }, task.gzip);
        const res = await http.postBody(WRITE_PATH, pod.token, body);
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body.slice(0, 300)}`);
        const data = (JSON.parse(res.body) as { result: { data: { inserted: number; duplicates: number } } }).result.data;
        inserted += data.inserted;
        duplicates += data.duplicates;
      } else if (task.mode === 'values' && pool) {
        const values: unknown[] = [];
        const tuples = rows.map((r, i) => {
          values.push(pod.jobId, pod.userId, r.epoch, r.step, r.sampleIndex, r.trigger, r.prompt, r.groundTruth, r.prediction);
          const o = i * 9;
          return `($${o + 1}, $${o + 2}, $${o + 3}, $${o + 4}, $${o + 5}, $${o + 6}, $${o + 7}, $${o + 8}, $${o + 9})`;
        });
        const result = await pool.query(
          `insert into training_predictions (${COLUMNS}) values ${tuples.join(', ')} on conflict (job_id, step, sample_index) do nothing`,
          values,
        );
        inserted += result.rowCount ?? 0;
        duplicates += rows.length - (result.rowCount ?? 0);
      } else if (pool && task.mode === 'stack-sql') {
        // The server's own insert statement, without HTTP, tRPC, auth or notify.
        const r = await insertPredictions(drizzle({ client: pool, schema }), { jobId: pod.jobId, userId: pod.userId, rows: rows.map((row) => ({ ...row, altered: false })) });
        inserted += r.inserted;
      } else if (pool && task.mode === 'stack-sql+notify') {
        // … plus the notification as the server sends it today: a second statement, a second commit.
        const db = drizzle({ client: pool, schema });
        const r = await insertPredictions(db, { jobId: pod.jobId, userId: pod.userId, rows: rows.map((row) => ({ ...row, altered: false })) });
        if (r.maxId !== null) await db.execute(sql`select pg_notify('bench_predictions_stored', ${JSON.stringify({ jobId: pod.jobId, maxId: r.maxId })})`);
        inserted += r.inserted;
      } else if (pool && task.mode === 'stack-sql, notify folded') {
        const r = await pool.query<{ inserted: number }>(FOLDED_INSERT, [pod.jobId, pod.userId, JSON.stringify(rows)]);
        inserted += Number(r.rows[0]?.inserted ?? 0);
      } else if (pool) {
        const client = await pool.connect();
        try {
          const stream = client.query(copyFrom(`copy training_predictions (${COLUMNS}) from stdin`));
          await pipeline(Readable.from([copyText(pod, rows)]), stream);
          inserted += Number(stream.rowCount);
        } finally {
          client.release();
        }
      }
    };
    const start = performance.now();
    const cpuStart = ownCpuMs();
    const backendsStart = pool ? backendsCpu() : 0;
    await Promise.all(
      task.pods.map(async (pod, p) => {
        for (const rows of batches[p] ?? []) {
          const t0 = performance.now();
          try {
            await write(pod, rows);
          } catch (error) {
            if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
          }
          requestMs.push(performance.now() - t0);
        }
      }),
    );
    const ms = performance.now() - start;
    const clientCpuMs = ownCpuMs() - cpuStart;
    const poolBackendCpuMs = pool ? backendsCpu() - backendsStart : null;
    return { rows: task.pods.length * task.batchesPerPod * task.batchSize, ms, inserted, duplicates, errors, requestMs, clientCpuMs, poolBackendCpuMs };
  } finally {
    http.close();
    await pool?.end();
  }
}

/**
 * The proposed statement: insertPredictions' statement with the notification sent from inside
 * it (pg_notify is transactional, so it is delivered at this statement's commit), one commit
 * per batch instead of two.
 */
const FOLDED_INSERT = `
  with new_rows as (
    insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
    select $1::uuid, $2::uuid, r.epoch, r.step, r."sampleIndex", r.trigger, r.prompt, r."groundTruth", r.prediction
    from json_to_recordset($3::json)
      as r(epoch int, step int, "sampleIndex" int, trigger text, prompt text, "groundTruth" text, prediction text)
    on conflict (job_id, step, sample_index) do nothing
    returning id, epoch, step, trigger, created_at
  ), stats as (
    insert into prediction_epoch_stats as s (job_id, user_id, epoch, trigger, count, min_step, max_step, last_write_at)
    select $1::uuid, $2::uuid, epoch, trigger, count(*), min(step), max(step), max(created_at)
    from new_rows group by epoch, trigger
    on conflict (job_id, epoch, trigger) do update set
      count = s.count + excluded.count,
      min_step = least(s.min_step, excluded.min_step),
      max_step = greatest(s.max_step, excluded.max_step),
      last_write_at = greatest(s.last_write_at, excluded.last_write_at)
  ), summary as (
    select count(*)::int as inserted, max(id)::bigint as max_id from new_rows
  )
  select inserted, max_id,
         case when max_id is not null
           then pg_notify('bench_predictions_stored', json_build_object('jobId', $1::uuid, 'maxId', max_id)::text) end as notified
  from summary`;

/** COPY text format: tab-separated, with backslash, tab, newline and carriage return escaped. */
function copyText(pod: PodTarget, rows: PredictionRow[]): string {
  const esc = (value: string) => value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
  return rows
    .map((r) => `${pod.jobId}\t${pod.userId}\t${r.epoch}\t${r.step}\t${r.sampleIndex}\t${r.trigger}\t${esc(r.prompt)}\t${esc(r.groundTruth)}\t${esc(r.prediction)}\n`)
    .join('');
}

async function live(task: LiveTask): Promise<LiveResult> {
  const errors: string[] = [];
  const latenciesMs: number[] = [];
  const fromSendMs: number[] = [];
  // step -> when the write carrying it was sent / acknowledged
  const sentAt = new Map<number, number>();
  const ackAt = new Map<number, number>();
  const arrivals: Array<{ step: number; at: number }> = [];
  // Which subscribers have received anything yet: measuring starts when all of them have.
  const seenAny = new Array<boolean>(task.subscribers).fill(false);

  const api = createApiClient({ url: task.url, token: task.userToken, EventSource });
  const subscriptions = Array.from({ length: task.subscribers }, (_, s) =>
    api.predictions.onNew.subscribe(
      { jobId: task.pod.jobId },
      {
        onData: (event) => {
          arrivals.push({ step: event.data.step, at: wallMs() });
          seenAny[s] = true;
        },
        onError: (error) => {
          if (errors.length < 5) errors.push(error.message);
        },
      },
    ),
  );
  const http = createHttpClient(task.url, 2);
  try {
    // Warm-up writes until every stream has delivered something: only then are all listening.
    const warmDeadline = Date.now() + 20_000;
    for (let k = 0; seenAny.some((seen) => !seen) && Date.now() < warmDeadline; k++) {
      const warm = await http.postJson(WRITE_PATH, task.pod.token, { predictions: predictionBatch(task.pod.seed, task.firstBatch + k, 1) });
      if (warm.status !== 200) throw new Error(`warm-up write failed: HTTP ${warm.status} ${warm.body.slice(0, 200)}`);
      await sleep(200);
    }
    if (seenAny.some((seen) => !seen)) errors.push(`only ${seenAny.filter(Boolean).length}/${task.subscribers} subscribers received the warm-up`);
    await sleep(500);

    // Measured writes use batch numbers far past the warm-up's, so their steps are distinct.
    for (let w = 1; w <= task.writes; w++) {
      const batch = predictionBatch(task.pod.seed, task.firstBatch + 10_000 + w, task.rowsPerWrite);
      const step = batch[0]?.step ?? 0;
      sentAt.set(step, wallMs());
      const res = await http.postJson(WRITE_PATH, task.pod.token, { predictions: batch });
      ackAt.set(step, wallMs());
      if (res.status !== 200 && errors.length < 5) errors.push(`write HTTP ${res.status}`);
      await sleep(task.intervalMs);
    }
    const expected = task.subscribers * task.rowsPerWrite * task.writes;
    const measured = () => arrivals.filter((a) => sentAt.has(a.step)).length;
    const deadline = Date.now() + 20_000;
    while (measured() < expected && Date.now() < deadline) await sleep(50);
    let delivered = 0;
    for (const { step, at } of arrivals) {
      const ack = ackAt.get(step);
      const sent = sentAt.get(step);
      if (sent === undefined) continue;
      delivered++;
      if (ack !== undefined) latenciesMs.push(at - ack);
      fromSendMs.push(at - sent);
    }
    return { latenciesMs, fromSendMs, expected, delivered, errors };
  } finally {
    for (const s of subscriptions) s.unsubscribe();
    http.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

process.on('message', (message: { id: number; task: Task }) => {
  const run = message.task.kind === 'ingest' ? ingest(message.task) : live(message.task);
  run.then(
    (result) => process.send?.({ id: message.id, result }),
    (error: unknown) => process.send?.({ id: message.id, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
  );
});
// The parent went away (the bench ended or crashed): nothing left to do.
process.on('disconnect', () => process.exit(0));
