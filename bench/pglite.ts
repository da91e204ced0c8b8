// The embedded default (PGlite, no DATABASE_URL): ingest through the stack with 1 and 8 pods
// (CPU per 1 000 rows: PGlite runs inside the server process, so it is all the server's), and
// listing, search and compare on a 200 000-row job, so a user of `npm start` knows what to
// expect. No direct baseline: PGlite has one connection, owned by the server.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { loadConfig } from '../server/env';
import { startServer } from '../server/server';
import { createManualJob, createUser } from '../server/test-support/factories';
import { unsafeRebuildEpochStats, SEARCH_COUNT_CAP } from '../db/queries/predictions';
import { rowsOf } from '../db/client';
import { createHttpClient, rng, summarize, text, timeSequential, trpcQueryPath, VOCABULARY } from './common';
import { measuredIngest, runIngest, type IngestRow } from './ingest';
import { createDataset } from '../server/test-support/factories';
import { startLoadWorker } from './load-client';

export interface PgliteResults {
  ingest: IngestRow[];
  list: Array<{ case: string; p50Ms: number; p95Ms: number; p99Ms: number; n: number }>;
  seedRows: number;
  seedSeconds: number;
  /** Seconds to build the trigram indexes on the seeded rows (the seed drops them while loading). */
  trigramBuildSeconds?: number;
  /** 8 pods through the stack with and without the trigram indexes, back to back (server + PGlite CPU). */
  trigramWrite?: Array<{ indexes: string; rowsPerSec: number; cpuPer1k: number | null; requestP99Ms: number }>;
}

export async function runPglite(options: { quick: boolean; log: (line: string) => void }): Promise<PgliteResults> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-bench-pglite-'));
  const server = await startServer(
    loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, SESSION_SECRET: randomBytes(48).toString('base64'), JOB_TOKEN_SECRET: randomBytes(48).toString('base64') }),
  );
  const load = startLoadWorker();
  try {
    const ingest = await runIngest(server.deps, load, {
      url: server.url,
      databaseUrl: '',
      poolSize: 1,
      rowsPerCase: options.quick ? 1_600 : 16_000,
      batchSize: 100,
      podCounts: [1, 8],
      baselines: false,
      monitor: null,
      log: (line) => options.log(`  [pglite]${line}`),
    });

    // The trigram indexes' write cost on PGlite: the same 8-pod case with them and without them.
    const trigramWrite: NonNullable<PgliteResults['trigramWrite']> = [];
    const db0 = server.deps.database.db;
    const definitions = rowsOf<{ name: string; definition: string }>(
      await db0.execute(sql`select indexname as name, indexdef as definition from pg_indexes where tablename = 'training_predictions' and indexdef like '%gin_trgm_ops%'`),
    );
    for (const indexes of ['trigram indexes', 'no trigram indexes']) {
      if (indexes === 'no trigram indexes') for (const index of definitions) await db0.execute(sql.raw(`drop index "${index.name}"`));
      const owner = await createUser(server.deps);
      const dataset = await createDataset(server.deps, owner.id, { count: 40 });
      const pods = [];
      for (let i = 0; i < 8; i++) {
        const j = await createManualJob(server.deps, owner.id, { datasetId: dataset.id, name: `pglite trigram ${i}` });
        pods.push({ jobId: j.jobId, userId: owner.id, token: j.token, seed: 700_000 + trigramWrite.length * 10 + i });
      }
      const m = await measuredIngest(load, { url: server.url, databaseUrl: '', batchSize: 100, poolSize: 1, gzip: false, mode: 'stack', pods, batchesPerPod: options.quick ? 2 : 20 }, null);
      trigramWrite.push({ indexes, rowsPerSec: Math.round(m.result.rows / (m.result.ms / 1000)), cpuPer1k: m.cpu.app, requestP99Ms: summarize(m.result.requestMs).p99 });
      options.log(`  [pglite] 8 pods, ${indexes}: ${trigramWrite.at(-1)?.rowsPerSec} rows/s, server + PGlite CPU ${m.cpu.app} ms per 1 000 rows`);
    }
    for (const index of definitions) await db0.execute(sql.raw(index.definition));

    const rowsToSeed = options.quick ? 20_000 : 200_000;
    const user = await createUser(server.deps);
    const job = await createManualJob(server.deps, user.id, { name: 'bench pglite listing' });
    const db = server.deps.database.db;
    const next = rng(43);
    const texts = Array.from({ length: 2_000 }, (_, i) => ({ i, prompt: text(next, 200), truth: text(next, 150), pred: text(next, 200) }));
    const seedStarted = performance.now();
    await db.execute(sql`create temp table bench_texts as select * from json_to_recordset(${JSON.stringify(texts)}::json) as r(i int, prompt text, truth text, pred text)`);
    // Loaded in bulk with the trigram indexes dropped and built after (timed), as on PostgreSQL.
    const trigram = rowsOf<{ name: string; definition: string }>(
      await db.execute(sql`select indexname as name, indexdef as definition from pg_indexes where tablename = 'training_predictions' and indexdef like '%gin_trgm_ops%'`),
    );
    for (const index of trigram) await db.execute(sql.raw(`drop index "${index.name}"`));
    await db.execute(sql`
      insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
      select ${job.jobId}::uuid, ${user.id}::uuid, 1 + (g / 100) / 50, ((g / 100) + 1) * 10, g % 100, 'eval', tp.prompt, tp.truth, tr.pred
      from generate_series(0, ${rowsToSeed - 1}::int) as g
      join bench_texts tp on tp.i = g % 100
      join bench_texts tr on tr.i = (g * 7919) % 2000`);
    await unsafeRebuildEpochStats(db, { jobId: job.jobId });
    const buildStarted = performance.now();
    for (const index of trigram) await db.execute(sql.raw(index.definition));
    const trigramBuildSeconds = Math.round((performance.now() - buildStarted) / 100) / 10;
    await db.execute(sql`vacuum analyze training_predictions`);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    options.log(`  [pglite] seeded ${rowsToSeed} rows in ${seedSeconds.toFixed(1)} s (trigram indexes built in ${trigramBuildSeconds} s)`);

    const http = createHttpClient(server.url, 1);
    const list = async (input: Record<string, unknown>) => {
      const res = await http.get(trpcQueryPath('predictions.list', input), user.token);
      if (res.status !== 200) throw new Error(`pglite predictions.list: HTTP ${res.status} ${res.body.slice(0, 200)}`);
      return (JSON.parse(res.body) as { result: { data: { nextCursor: string | null } } }).result.data;
    };
    const deepPage = options.quick ? 50 : 200;
    let cursor: string | null = null;
    for (let remaining = (deepPage - 1) * 50; remaining > 0; remaining -= Math.min(200, remaining)) {
      cursor = (await list({ jobId: job.jobId, limit: Math.min(200, remaining), ...(cursor ? { cursor } : {}) })).nextCursor;
    }
    const term = VOCABULARY.slice(40).find((w) => w.length >= 8) ?? 'question';
    // A rare word as the PostgreSQL bench picks it: from the rare end, more than a page of matches and at most a tenth of the cap.
    let rare = { term: 'zzqxvk', matches: 0 };
    for (const word of [...VOCABULARY].reverse()) {
      if (word.length < 7) continue;
      const pattern = `%${word}%`;
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`select count(*)::int as n from (select 1 from training_predictions where job_id = ${job.jobId}
          and (prompt ilike ${pattern} or ground_truth ilike ${pattern} or prediction ilike ${pattern}) limit ${SEARCH_COUNT_CAP + 1}) t`),
      );
      if ((row?.n ?? 0) > 50 && (row?.n ?? 0) <= SEARCH_COUNT_CAP / 10) {
        rare = { term: word, matches: row?.n ?? 0 };
        break;
      }
    }
    const compare = async (input: Record<string, unknown>) => {
      const res = await http.get(trpcQueryPath('predictions.compare', input), user.token);
      if (res.status !== 200) throw new Error(`pglite predictions.compare: HTTP ${res.status} ${res.body.slice(0, 200)}`);
      return res;
    };
    const epochs = Math.max(1, Math.floor(rowsToSeed / (100 * 50)));
    const timing = options.quick ? { warmup: 3, iterations: 30, minIterations: 10, budgetMs: 2_000 } : { warmup: 10, iterations: 200, minIterations: 20, budgetMs: 4_000 };
    const cases: Array<[string, Record<string, unknown>]> = [
      ['page 1', { jobId: job.jobId, limit: 50 }],
      [`page ${deepPage}`, { jobId: job.jobId, limit: 50, cursor }],
      ['epoch 10, page 1', { jobId: job.jobId, limit: 50, epoch: 10 }],
      [`search, broad word "${term}"`, { jobId: job.jobId, limit: 50, search: term }],
      [`search, rare word "${rare.term}" (${rare.matches} matches)`, { jobId: job.jobId, limit: 50, search: rare.term }],
      ['search, no match', { jobId: job.jobId, limit: 50, search: 'zzqxvk' }],
      [`compare epochs 1, ${Math.ceil(epochs / 2)}, ${epochs} (first page)`, { jobId: job.jobId, epochs: [1, Math.ceil(epochs / 2), epochs] }],
    ];
    const listRows: PgliteResults['list'] = [];
    for (const [name, input] of cases) {
      const call = name.startsWith('compare') ? () => compare(input) : () => list(input);
      const s = summarize(await timeSequential(call, timing));
      listRows.push({ case: name, p50Ms: s.p50, p95Ms: s.p95, p99Ms: s.p99, n: s.n });
      options.log(`  [pglite] ${name}: p50 ${s.p50} ms, p99 ${s.p99} ms`);
    }
    http.close();
    return { ingest, list: listRows, seedRows: rowsToSeed, seedSeconds: Math.round(seedSeconds * 10) / 10, trigramBuildSeconds, trigramWrite };
  } finally {
    await load.close();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
