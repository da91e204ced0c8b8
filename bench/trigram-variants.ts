// The write cost of the index designs considered for search (docs/decisions/0007): PostgreSQL
// backend CPU per 1 000 rows inserted in batches of 100 into a scratch copy of
// training_predictions carrying each design in turn, rows sampled from an existing database.
// Creates and drops tables exp_src and exp_t in that database; needs pg_trgm and btree_gin.
//
//   URL=postgres://postgres@127.0.0.1:5432/predictions_bench N=10000 ROUNDS=2 npx tsx bench/trigram-variants.ts
import pg from 'pg';
import { processCpuMs } from './cpu';

const url = process.env.URL ?? 'postgres://postgres@127.0.0.1:5432/predictions_bench';
const c = new pg.Client({ connectionString: url });
await c.connect();
const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid ?? 0;
const variants: Record<string, string[]> = {
  none: [],
  'three, job-scoped (chosen)': ['prompt', 'ground_truth', 'prediction'].map((col) => `create index on exp_t using gin (job_id, ${col} gin_trgm_ops)`),
  'three, plain': ['prompt', 'ground_truth', 'prediction'].map((col) => `create index on exp_t using gin (${col} gin_trgm_ops)`),
  'one over the three, job-scoped': [`create index on exp_t using gin (job_id, (prompt || ' ' || ground_truth || ' ' || prediction) gin_trgm_ops)`],
  'two (ground truth, prediction), job-scoped': ['ground_truth', 'prediction'].map((col) => `create index on exp_t using gin (job_id, ${col} gin_trgm_ops)`),
};
const N = Number(process.env.N ?? 20000);
await c.query(`drop table if exists exp_src; create table exp_src as select job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction from training_predictions order by random() limit ${N}`);
for (let round = 0; round < Number(process.env.ROUNDS ?? 1); round++) {
  for (const [name, ddl] of Object.entries(variants)) {
    await c.query('drop table if exists exp_t');
    await c.query('create table exp_t (like training_predictions including defaults including constraints including identity)');
    await c.query('alter table exp_t add primary key (id)');
    await c.query('create unique index on exp_t (job_id, step, sample_index)');
    for (const d of ddl) await c.query(d);
    const before = processCpuMs(pid) ?? 0;
    const t0 = performance.now();
    // Batches of 100 rows, as pods send them.
    for (let off = 0; off < N; off += 100) {
      await c.query(`insert into exp_t (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
        select job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction from exp_src offset ${off} limit 100 on conflict do nothing`);
    }
    const flush0 = processCpuMs(pid) ?? 0;
    const { rows } = await c.query<{ n: number }>(`select count(*)::int as n from pg_class where relname like 'exp_t_%idx' and relam = (select oid from pg_am where amname = 'gin')`);
    await c.query(`select gin_clean_pending_list(oid) from pg_class where relname like 'exp_t_%idx' and relam = (select oid from pg_am where amname = 'gin')`);
    const after = processCpuMs(pid) ?? 0;
    const size = (await c.query<{ s: string }>(`select coalesce(sum(pg_relation_size(oid)),0)::bigint as s from pg_class where relname like 'exp_t_%idx' and relam = (select oid from pg_am where amname = 'gin')`)).rows[0]?.s ?? 0;
    console.log(`round ${round} | ${name} | gin ${rows[0]?.n ?? 0} | CPU ms/1000 rows ${(((after - before) / N) * 1000).toFixed(1)} (flush ${(((after - flush0) / N) * 1000).toFixed(1)}) | wall ${(performance.now() - t0).toFixed(0)} ms | gin MiB ${(Number(size) / 2 ** 20).toFixed(1)}`);
  }
}
await c.query('drop table if exists exp_t; drop table if exists exp_src');
await c.end();
