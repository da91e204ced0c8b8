// What the search's trigram indexes (migration 0004) cost on the write path: 8 pods through the
// stack and the multi-row INSERT baseline, with the indexes and then without them, back to back
// in one run on the same (1 M-row) table, then the indexes rebuilt (timed: what migration 0004
// costs an existing deployment of that size). GIN defers part of its work to a pending list that
// a later write or VACUUM flushes; that flush is done and counted inside the case that caused it.
import pg from 'pg';
import type { AppDeps } from '../server/app-deps';
import { createDataset, createManualJob, createUser } from '../server/test-support/factories';
import { round, summarize } from './common';
import { processCpuMs, perThousandRows } from './cpu';
import { measuredIngest, type CpuPerThousand } from './ingest';
import type { LoadWorker } from './load-client';
import type { PodTarget } from './load-worker';
import { createIndexes, dropTrigramIndexes } from './seed';

export interface TrigramWriteRow {
  indexes: 'trigram indexes' | 'no trigram indexes';
  mode: 'stack' | 'INSERT…VALUES';
  pods: number;
  rows: number;
  rowsPerSec: number;
  requestP50Ms: number;
  requestP99Ms: number;
  cpu: CpuPerThousand;
  /** CPU ms per 1 000 rows of flushing the GIN pending lists after the case (included in cpu.postgres). */
  pendingFlushPer1k: number | null;
}

export interface TrigramWriteResults {
  rows: TrigramWriteRow[];
  /** Seconds to build the trigram indexes on the table as it stood (migration 0004 on an existing database). */
  rebuildSeconds: number;
  tableRows: number;
  indexBytes: number;
}

let seed = 900_000;

async function pods(deps: AppDeps, count: number): Promise<PodTarget[]> {
  const user = await createUser(deps);
  const dataset = await createDataset(deps, user.id, { count: 40 });
  const out: PodTarget[] = [];
  for (let i = 0; i < count; i++) {
    const job = await createManualJob(deps, user.id, { datasetId: dataset.id, name: `bench trigram ${i}` });
    out.push({ jobId: job.jobId, userId: user.id, token: job.token, seed: seed++ });
  }
  return out;
}

/** Flushes every trigram index's pending list; returns the CPU ms the flushing backend used. */
async function flushPending(monitor: pg.Client, monitorPid: number): Promise<number> {
  const before = processCpuMs(monitorPid) ?? 0;
  await monitor.query(
    `select gin_clean_pending_list(c.oid) from pg_index i join pg_class c on c.oid = i.indexrelid
     join pg_indexes x on x.indexname = c.relname
     where i.indrelid = 'training_predictions'::regclass and x.indexdef like '%gin_trgm_ops%'`,
  );
  return (processCpuMs(monitorPid) ?? 0) - before;
}

export async function runTrigramWriteCost(
  deps: AppDeps,
  load: LoadWorker,
  options: { url: string; databaseUrl: string; poolSize: number; rowsPerCase: number; log: (line: string) => void },
): Promise<TrigramWriteResults> {
  const monitor = new pg.Client({ connectionString: options.databaseUrl });
  await monitor.connect();
  const batchSize = 100;
  const podCount = 8;
  const batchesPerPod = Math.max(1, Math.round(options.rowsPerCase / (podCount * batchSize)));
  const common = { url: options.url, databaseUrl: options.databaseUrl, batchSize, poolSize: options.poolSize, gzip: false, batchesPerPod };
  try {
    const { rows: pidRows } = await monitor.query<{ pid: number }>('select pg_backend_pid() as pid');
    const monitorPid = pidRows[0]?.pid ?? 0;
    const results: TrigramWriteRow[] = [];
    const runCases = async (indexes: TrigramWriteRow['indexes']) => {
      for (const mode of ['stack', 'values'] as const) {
        if (indexes === 'trigram indexes') await flushPending(monitor, monitorPid);
        const measured = await measuredIngest(load, { ...common, mode, pods: await pods(deps, podCount) }, monitor);
        const flushMs = indexes === 'trigram indexes' ? await flushPending(monitor, monitorPid) : 0;
        const r = measured.result;
        if (r.errors.length > 0) options.log(`  ! trigram ${indexes} ${mode}: ${r.errors[0]}`);
        const s = summarize(r.requestMs);
        const flushPer1k = perThousandRows(flushMs, r.rows);
        const postgres = measured.cpu.postgres === null ? null : round(measured.cpu.postgres + (flushPer1k ?? 0), 1);
        results.push({
          indexes,
          mode: mode === 'stack' ? 'stack' : 'INSERT…VALUES',
          pods: podCount,
          rows: r.rows,
          rowsPerSec: round(r.rows / (r.ms / 1000), 0),
          requestP50Ms: s.p50,
          requestP99Ms: s.p99,
          cpu: { ...measured.cpu, postgres },
          pendingFlushPer1k: indexes === 'trigram indexes' ? flushPer1k : null,
        });
        options.log(`  ${indexes}, ${mode}: ${round(r.rows / (r.ms / 1000), 0)} rows/s, CPU ms/1000 rows app ${measured.cpu.app} + postgres ${postgres} (flush ${flushPer1k ?? '-'})`);
      }
    };
    await runCases('trigram indexes');
    const definitions = await dropTrigramIndexes(monitor);
    if (definitions.length === 0) throw new Error('no trigram index on training_predictions: is migration 0004 applied?');
    let rebuildSeconds = 0;
    try {
      await runCases('no trigram indexes');
    } finally {
      const started = performance.now();
      await createIndexes(monitor, definitions);
      rebuildSeconds = round((performance.now() - started) / 1000, 1);
    }
    options.log(`  trigram indexes rebuilt in ${rebuildSeconds} s`);
    const { rows: sizeRows } = await monitor.query<{ n: string; bytes: string }>(
      `select (select count(*) from training_predictions)::bigint as n,
              (select coalesce(sum(pg_relation_size(indexname::regclass)), 0) from pg_indexes
               where tablename = 'training_predictions' and indexdef like '%gin_trgm_ops%')::bigint as bytes`,
    );
    await monitor.query('vacuum (analyze) training_predictions');
    return { rows: results, rebuildSeconds, tableRows: Number(sizeRows[0]?.n ?? 0), indexBytes: Number(sizeRows[0]?.bytes ?? 0) };
  } finally {
    await monitor.end();
  }
}
