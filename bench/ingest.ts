// Ingest: N concurrent pods, each with its own job and job token, writing batches through
// pod.writePredictions over HTTP; against it, the same rows through `pg` as one multi-row
// INSERT … ON CONFLICT DO NOTHING per batch, and through COPY FROM STDIN. Every case writes
// into fresh jobs of the same table, so no case sees another's rows as duplicates.
import type pg from 'pg';
import type { AppDeps } from '../server/app-deps';
import { writePathForBench } from '../server/pod/pod.service';
import { createDataset, createManualJob, createUser } from '../server/test-support/factories';
import { round, summarize } from './common';
import { backendCpuDelta, databaseBackendsCpu, ownCpuMs, perThousandRows } from './cpu';
import type { LoadWorker } from './load-client';
import { LOAD_APPLICATION_NAME, type IngestResult, type IngestTask, type PodTarget } from './load-worker';

export interface IngestRow {
  pods: number;
  variant: 'insert' | 'replay' | 'insert, gzip';
  rows: number;
  stackRowsPerSec: number;
  baselineRowsPerSec: number | null;
  copyRowsPerSec: number | null;
  /** stack / multi-row INSERT baseline */
  ratio: number | null;
  stackRequestP50Ms: number;
  stackRequestP99Ms: number;
  /** CPU ms per 1 000 rows offered (user + system), see CpuPerThousand. */
  cpu?: { stack: CpuPerThousand; insert: CpuPerThousand | null };
  errors: string[];
}

/**
 * CPU milliseconds per 1 000 rows of one case. `app` is the process that turns rows into SQL:
 * the server for the stack, the load generator's pg client for the direct baselines. `postgres`
 * is the database's backends (null on PGlite, which runs inside the server process). `client`
 * is the load generator (HTTP client for the stack; the same as `app` for the baselines).
 */
export interface CpuPerThousand {
  app: number | null;
  postgres: number | null;
  client: number | null;
}

export interface IngestOptions {
  url: string;
  databaseUrl: string;
  poolSize: number;
  rowsPerCase: number;
  batchSize: number;
  podCounts: number[];
  /** Also run the direct baselines (not on PGlite, which has no second connection). */
  baselines: boolean;
  /** A connection of the main process to the same PostgreSQL database, to read its backends' CPU; null on PGlite. */
  monitor: pg.Client | null;
  log: (line: string) => void;
}

/** One ingest task with the CPU it cost: this (the server's) process, its database backends, the load generator. */
export interface MeasuredIngest {
  result: IngestResult;
  cpu: CpuPerThousand;
}

/**
 * Runs one ingest task and reads CPU before and after: this process (the server, since the load
 * generator is a child process), the database's client backends other than the load
 * generator's own (the server's pool and its LISTEN connection), and what the load generator
 * measured of itself and of its own pool's backends.
 */
export async function measuredIngest(load: LoadWorker, task: Omit<IngestTask, 'kind'>, monitor: pg.Client | null): Promise<MeasuredIngest> {
  const before = monitor ? await databaseBackendsCpu(monitor, LOAD_APPLICATION_NAME) : null;
  const cpuStart = ownCpuMs();
  const result = await load.ingest(task);
  const serverCpu = ownCpuMs() - cpuStart;
  const after = monitor ? await databaseBackendsCpu(monitor, LOAD_APPLICATION_NAME) : null;
  const serverBackends = before && after ? backendCpuDelta(before, after) : null;
  const direct = task.mode !== 'stack';
  const postgres = serverBackends === null ? null : serverBackends + (result.poolBackendCpuMs ?? 0);
  return {
    result,
    cpu: {
      app: perThousandRows(direct ? result.clientCpuMs : serverCpu, result.rows),
      postgres: perThousandRows(postgres, result.rows),
      client: perThousandRows(result.clientCpuMs, result.rows),
    },
  };
}

let seedCounter = 1;

async function createPods(deps: AppDeps, count: number): Promise<PodTarget[]> {
  const user = await createUser(deps);
  const dataset = await createDataset(deps, user.id, { count: 40 });
  const pods: PodTarget[] = [];
  // Sequential: deploys are not what is measured, and they must not crowd the shared machine.
  for (let i = 0; i < count; i++) {
    const job = await createManualJob(deps, user.id, { datasetId: dataset.id, name: `bench pod ${i}` });
    pods.push({ jobId: job.jobId, userId: user.id, token: job.token, seed: seedCounter++ });
  }
  return pods;
}

const rate = (r: IngestResult) => round(r.rows / (r.ms / 1000), 0);

function check(label: string, r: IngestResult, expectInserted: number, log: (line: string) => void): void {
  if (r.errors.length > 0) log(`  ! ${label}: ${r.errors.length} error(s), first: ${r.errors[0]}`);
  else if (r.inserted !== expectInserted) log(`  ! ${label}: inserted ${r.inserted}, expected ${expectInserted}`);
}

export interface DecompositionRow {
  mode: string;
  pods: number;
  rows: number;
  rowsPerSec: number;
  ratioToInsert: number | null;
  requestP50Ms: number;
  requestP99Ms: number;
}

/** Filled by runIngest: the 8-pod decomposition of the stack's cost (raw pg, no HTTP). */
export const decomposition: DecompositionRow[] = [];

/**
 * Issue 19's before/after, in one run: the same case through the stack on the write path before
 * the change (advisory lock and notification as statements of their own: 7 round trips per
 * batch) and after (both folded into the insert statement: 5), alternated A B B A so that a
 * change in the machine's load falls on both. CPU in ms per 1 000 stored rows, summed over both
 * halves of each path.
 */
export interface WritePathRow {
  pods: number;
  path: 'before (7 round trips)' | 'after (5 round trips)';
  rows: number;
  rowsPerSec: number;
  requestP50Ms: number;
  requestP99Ms: number;
  serverCpu: number | null;
  postgresCpu: number | null;
}

/** Filled by runIngest, see WritePathRow. */
export const writePaths: WritePathRow[] = [];

async function compareWritePaths(deps: AppDeps, load: LoadWorker, options: IngestOptions, pods: number, log: (line: string) => void): Promise<void> {
  const common = { url: options.url, databaseUrl: options.databaseUrl, batchSize: options.batchSize, poolSize: options.poolSize, gzip: false };
  const batchesPerPod = Math.max(1, Math.round(options.rowsPerCase / (pods * options.batchSize)));
  const total = pods * batchesPerPod * options.batchSize;
  const sums = new Map<boolean, { rows: number; ms: number; serverMs: number; postgresMs: number | null; requestMs: number[] }>();
  try {
    for (const before19 of [true, false, false, true]) {
      writePathForBench.before19 = before19;
      const targets = await createPods(deps, pods);
      const cpuStart = ownCpuMs();
      const pgBefore = options.monitor ? await databaseBackendsCpu(options.monitor, LOAD_APPLICATION_NAME) : null;
      const r = await load.ingest({ ...common, mode: 'stack', pods: targets, batchesPerPod });
      const pgAfter = options.monitor ? await databaseBackendsCpu(options.monitor, LOAD_APPLICATION_NAME) : null;
      const serverMs = ownCpuMs() - cpuStart;
      check(`write path ${before19 ? 'before' : 'after'} ${pods} pods`, r, total, log);
      const postgresMs = pgBefore && pgAfter ? backendCpuDelta(pgBefore, pgAfter) : null;
      const sum = sums.get(before19) ?? { rows: 0, ms: 0, serverMs: 0, postgresMs: 0, requestMs: [] };
      sum.rows += r.rows;
      sum.ms += r.ms;
      sum.serverMs += serverMs;
      sum.postgresMs = sum.postgresMs === null || postgresMs === null ? null : sum.postgresMs + postgresMs;
      sum.requestMs.push(...r.requestMs);
      sums.set(before19, sum);
    }
  } finally {
    writePathForBench.before19 = false;
  }
  for (const before19 of [true, false]) {
    const sum = sums.get(before19);
    if (!sum) continue;
    const s = summarize(sum.requestMs);
    const row: WritePathRow = {
      pods,
      path: before19 ? 'before (7 round trips)' : 'after (5 round trips)',
      rows: sum.rows,
      rowsPerSec: round(sum.rows / (sum.ms / 1000), 0),
      requestP50Ms: s.p50,
      requestP99Ms: s.p99,
      serverCpu: perThousandRows(sum.serverMs, sum.rows),
      postgresCpu: perThousandRows(sum.postgresMs, sum.rows),
    };
    writePaths.push(row);
    log(`  write path ${row.path}, ${pods} pods: ${row.rowsPerSec} rows/s; CPU ms/1000 rows: server ${row.serverCpu}, postgres ${row.postgresCpu ?? '-'}`);
  }
}

export async function runIngest(deps: AppDeps, load: LoadWorker, options: IngestOptions): Promise<IngestRow[]> {
  const { log, batchSize } = options;
  const common = { url: options.url, databaseUrl: options.databaseUrl, batchSize, poolSize: options.poolSize, gzip: false };

  // Warm-up: JIT, connection pools, plan caches, on every path that is measured.
  const warm = await createPods(deps, 3);
  await load.ingest({ ...common, mode: 'stack', pods: warm.slice(0, 1), batchesPerPod: 20 });
  await load.ingest({ ...common, mode: 'stack', pods: warm.slice(0, 1), batchesPerPod: 5, gzip: true });
  if (options.baselines) {
    await load.ingest({ ...common, mode: 'values', pods: warm.slice(1, 2), batchesPerPod: 20 });
    await load.ingest({ ...common, mode: 'copy', pods: warm.slice(2, 3), batchesPerPod: 20 });
  }

  // Before/after of issue 19's write path first, on a warm server (both paths warmed above: the
  // warm-up ran the new one; the first 'before' case warms the old one's extra statements).
  if (options.baselines) {
    for (const pods of [1, 8]) await compareWritePaths(deps, load, options, pods, log);
  }

  const rows: IngestRow[] = [];
  for (const pods of options.podCounts) {
    const batchesPerPod = Math.max(1, Math.round(options.rowsPerCase / (pods * batchSize)));
    const total = pods * batchesPerPod * batchSize;
    const stackPods = await createPods(deps, pods);
    const stackMeasured = await measuredIngest(load, { ...common, mode: 'stack', pods: stackPods, batchesPerPod }, options.monitor);
    const stack = stackMeasured.result;
    check(`stack ${pods} pods`, stack, total, log);
    let values: IngestResult | null = null;
    let valuesCpu: CpuPerThousand | null = null;
    let copy: IngestResult | null = null;
    let valuesPods: PodTarget[] = [];
    if (options.baselines) {
      valuesPods = await createPods(deps, pods);
      const valuesMeasured = await measuredIngest(load, { ...common, mode: 'values', pods: valuesPods, batchesPerPod }, options.monitor);
      values = valuesMeasured.result;
      valuesCpu = valuesMeasured.cpu;
      check(`values ${pods} pods`, values, total, log);
      copy = await load.ingest({ ...common, mode: 'copy', pods: await createPods(deps, pods), batchesPerPod });
      check(`copy ${pods} pods`, copy, total, log);
    }
    const summary = summarize(stack.requestMs);
    const row: IngestRow = {
      pods,
      variant: 'insert',
      rows: total,
      stackRowsPerSec: rate(stack),
      baselineRowsPerSec: values ? rate(values) : null,
      copyRowsPerSec: copy ? rate(copy) : null,
      ratio: values ? round(rate(stack) / rate(values), 2) : null,
      stackRequestP50Ms: summary.p50,
      stackRequestP99Ms: summary.p99,
      cpu: { stack: stackMeasured.cpu, insert: valuesCpu },
      errors: [...stack.errors, ...(values?.errors ?? []), ...(copy?.errors ?? [])],
    };
    rows.push(row);
    log(
      `  ingest ${pods} pods: stack ${row.stackRowsPerSec} rows/s, insert ${row.baselineRowsPerSec ?? '-'}, copy ${row.copyRowsPerSec ?? '-'}, ratio ${row.ratio ?? '-'}; ` +
        `CPU ms/1000 rows: stack server ${stackMeasured.cpu.app} + postgres ${stackMeasured.cpu.postgres ?? '-'}, insert client ${valuesCpu?.app ?? '-'} + postgres ${valuesCpu?.postgres ?? '-'}`,
    );

    if (pods === 8 && options.baselines) {
      // Where the stack's time goes: its own statement without HTTP, plus today's separate
      // notify, and the proposal (notify inside the statement).
      for (const mode of ['stack-sql', 'stack-sql+notify', 'stack-sql, notify folded'] as const) {
        const r = await load.ingest({ ...common, mode, pods: await createPods(deps, pods), batchesPerPod });
        check(mode, r, total, log);
        const rs = summarize(r.requestMs);
        decomposition.push({ mode, pods, rows: total, rowsPerSec: rate(r), ratioToInsert: values ? round(rate(r) / rate(values), 2) : null, requestP50Ms: rs.p50, requestP99Ms: rs.p99 });
        log(`  ingest 8 pods ${mode}: ${rate(r)} rows/s`);
      }
    }
    if (pods === 8) {
      // Replay: the very same batches again, every row a duplicate (a pod retrying after a lost ack).
      const replay = await load.ingest({ ...common, mode: 'stack', pods: stackPods, batchesPerPod });
      check('stack replay', replay, 0, log);
      const valuesReplay = options.baselines ? await load.ingest({ ...common, mode: 'values', pods: valuesPods, batchesPerPod }) : null;
      if (valuesReplay) check('values replay', valuesReplay, 0, log);
      const rs = summarize(replay.requestMs);
      rows.push({
        pods,
        variant: 'replay',
        rows: total,
        stackRowsPerSec: rate(replay),
        baselineRowsPerSec: valuesReplay ? rate(valuesReplay) : null,
        copyRowsPerSec: null,
        ratio: valuesReplay ? round(rate(replay) / rate(valuesReplay), 2) : null,
        stackRequestP50Ms: rs.p50,
        stackRequestP99Ms: rs.p99,
        errors: [...replay.errors, ...(valuesReplay?.errors ?? [])],
      });
      // The same amount of fresh rows, gzipped by the pod.
      const gz = await load.ingest({ ...common, mode: 'stack', pods: await createPods(deps, pods), batchesPerPod, gzip: true });
      check('stack gzip', gz, total, log);
      const gs = summarize(gz.requestMs);
      rows.push({
        pods,
        variant: 'insert, gzip',
        rows: total,
        stackRowsPerSec: rate(gz),
        baselineRowsPerSec: row.baselineRowsPerSec,
        copyRowsPerSec: row.copyRowsPerSec,
        ratio: row.baselineRowsPerSec ? round(rate(gz) / row.baselineRowsPerSec, 2) : null,
        stackRequestP50Ms: gs.p50,
        stackRequestP99Ms: gs.p99,
        errors: gz.errors,
      });
      log(`  ingest 8 pods replay: stack ${rate(replay)} rows/s; gzip: stack ${rate(gz)} rows/s`);
    }
  }
  return rows;
}
