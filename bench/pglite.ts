// The embedded default (PGlite, no DATABASE_URL): ingest through the stack with 1 and 8 pods,
// and listing on a smaller seed (one job), so the two databases can be compared on the same
// machine. No direct baseline: PGlite has one connection, owned by the server.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { loadConfig } from '../server/env';
import { startServer } from '../server/server';
import { createManualJob, createUser } from '../server/test-support/factories';
import { rebuildEpochStats } from '../db/queries/predictions';
import { createHttpClient, rng, summarize, text, timeSequential, trpcQueryPath, VOCABULARY } from './common';
import { runIngest, type IngestRow } from './ingest';
import { startLoadWorker } from './load-client';

export interface PgliteResults {
  ingest: IngestRow[];
  list: Array<{ case: string; p50Ms: number; p95Ms: number; p99Ms: number; n: number }>;
  seedRows: number;
  seedSeconds: number;
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
      log: (line) => options.log(`  [pglite]${line}`),
    });

    const rowsToSeed = options.quick ? 20_000 : 100_000;
    const user = await createUser(server.deps);
    const job = await createManualJob(server.deps, user.id, { name: 'bench pglite listing' });
    const db = server.deps.database.db;
    const next = rng(43);
    const texts = Array.from({ length: 2_000 }, (_, i) => ({ i, prompt: text(next, 200), truth: text(next, 150), pred: text(next, 200) }));
    const seedStarted = performance.now();
    await db.execute(sql`create temp table bench_texts as select * from json_to_recordset(${JSON.stringify(texts)}::json) as r(i int, prompt text, truth text, pred text)`);
    await db.execute(sql`
      insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
      select ${job.jobId}::uuid, ${user.id}::uuid, 1 + (g / 100) / 50, ((g / 100) + 1) * 10, g % 100, 'eval', tp.prompt, tp.truth, tr.pred
      from generate_series(0, ${rowsToSeed - 1}::int) as g
      join bench_texts tp on tp.i = g % 100
      join bench_texts tr on tr.i = (g * 7919) % 2000`);
    await rebuildEpochStats(db, { jobId: job.jobId });
    await db.execute(sql`analyze training_predictions`);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    options.log(`  [pglite] seeded ${rowsToSeed} rows in ${seedSeconds.toFixed(1)} s`);

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
    const timing = options.quick ? { warmup: 3, iterations: 30, minIterations: 10, budgetMs: 2_000 } : { warmup: 10, iterations: 200, minIterations: 20, budgetMs: 4_000 };
    const cases: Array<[string, Record<string, unknown>]> = [
      ['page 1', { jobId: job.jobId, limit: 50 }],
      [`page ${deepPage}`, { jobId: job.jobId, limit: 50, cursor }],
      ['epoch 10, page 1', { jobId: job.jobId, limit: 50, epoch: 10 }],
      ['search', { jobId: job.jobId, limit: 50, search: term }],
    ];
    const listRows: PgliteResults['list'] = [];
    for (const [name, input] of cases) {
      const s = summarize(await timeSequential(() => list(input), timing));
      listRows.push({ case: name, p50Ms: s.p50, p95Ms: s.p95, p99Ms: s.p99, n: s.n });
      options.log(`  [pglite] ${name}: p50 ${s.p50} ms, p99 ${s.p99} ms`);
    }
    http.close();
    return { ingest, list: listRows, seedRows: rowsToSeed, seedSeconds: Math.round(seedSeconds * 10) / 10 };
  } finally {
    await load.close();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
