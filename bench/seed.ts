// The listing data set, written straight into the tables (not through the API): `total`
// predictions over `users` users and `jobs` jobs, one of which holds `bigJob` rows. Texts are
// word-like with realistic sizes; a job's prompts repeat per sample (the same samples are
// predicted at every trigger fire) while predictions vary. Users and jobs are created through
// the real services, so tokens and job rows are the real thing.
import pg from 'pg';
import type { AppDeps } from '../server/app-deps';
import { startSession } from '../server/auth/auth.service';
import { getUser } from '../db/queries/users';
import { createManualJob, createUser } from '../server/test-support/factories';
import { rng, text } from './common';

export interface SeededListing {
  users: Array<{ id: string; token: string }>;
  bigJob: { jobId: string; userId: string; token: string; rows: number; samples: number; firesPerEpoch: number; stepsPerFire: number };
  jobs: number;
  total: number;
  seconds: number;
  reused: boolean;
}

const TEXTS = 5_000;
const BIG_SAMPLES = 100;
const BIG_FIRES_PER_EPOCH = 50;
const SMALL_SAMPLES = 20;
const SMALL_FIRES_PER_EPOCH = 10;
const STEPS_PER_FIRE = 10;

interface Marker {
  userIds: string[];
  bigJobId: string;
  bigRows: number;
  jobs: number;
  total: number;
}

export async function seedListing(
  deps: AppDeps,
  options: { databaseUrl: string; total: number; bigJob: number; jobs: number; users: number; reuse: boolean; log: (line: string) => void },
): Promise<SeededListing> {
  const started = performance.now();
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  // Sessions live in the database: a reused seed's users sign in again (a new session row each).
  const session = async (userId: string) => {
    const user = await getUser(deps.database.db, { userId });
    if (!user) throw new Error(`the seeded user ${userId} is gone; drop the bench database and seed again`);
    return (await startSession(deps, user)).token;
  };
  try {
    await client.query('create table if not exists bench_seed_marker (info jsonb not null)');
    const existing = options.reuse ? (await client.query<{ info: Marker }>('select info from bench_seed_marker')).rows[0]?.info : undefined;
    if (existing && existing.total === options.total && existing.bigRows === options.bigJob) {
      options.log(`  reusing the seeded database (${existing.total} rows over ${existing.jobs} jobs)`);
      const users = await Promise.all(existing.userIds.map(async (id) => ({ id, token: await session(id) })));
      const bigUser = existing.userIds[0] ?? '';
      return {
        users,
        bigJob: bigJobInfo(existing.bigJobId, bigUser, users[0]?.token ?? '', existing.bigRows),
        jobs: existing.jobs,
        total: existing.total,
        seconds: 0,
        reused: true,
      };
    }

    // Users and one job each through the services (argon2 hashes, signed tokens, real job rows);
    // the rest of each user's jobs are copies of that job's row, finished ones, made in SQL.
    const users: Array<{ id: string; token: string }> = [];
    const jobIds: string[] = [];
    const jobUsers: string[] = [];
    for (let u = 0; u < options.users; u++) {
      const user = await createUser(deps);
      users.push({ id: user.id, token: user.token });
      const job = await createManualJob(deps, user.id, { name: `seeded job ${u}-0` });
      jobIds.push(job.jobId);
      jobUsers.push(user.id);
      const copies = Math.floor(options.jobs / options.users) + (u < options.jobs % options.users ? 1 : 0) - 1;
      if (copies <= 0) continue;
      const { rows: cloned } = await client.query<{ id: string }>(
        `insert into training_jobs (user_id, dataset_id, name, status, launcher, config, finished_at)
         select user_id, dataset_id, 'seeded job ${u}-' || g, 'completed', launcher, config, now()
         from training_jobs cross join generate_series(1, $2::int) as g where id = $1
         returning id`,
        [job.jobId, copies],
      );
      for (const row of cloned) {
        jobIds.push(row.id);
        jobUsers.push(user.id);
      }
    }
    options.log(`  ${users.length} users and ${jobIds.length} jobs created in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    // A pool of texts the rows draw from, generated here with a fixed seed.
    const next = rng(42);
    const ids: number[] = [];
    const prompts: string[] = [];
    const truths: string[] = [];
    const predictions: string[] = [];
    for (let i = 0; i < TEXTS; i++) {
      ids.push(i);
      prompts.push(text(next, 190 + Math.floor(next() * 20)));
      truths.push(text(next, 140 + Math.floor(next() * 20)));
      predictions.push(text(next, 190 + Math.floor(next() * 20)));
    }
    await client.query('create temp table bench_texts (i int primary key, prompt text not null, truth text not null, pred text not null)');
    await client.query('insert into bench_texts select * from unnest($1::int[], $2::text[], $3::text[], $4::text[])', [ids, prompts, truths, predictions]);

    // A bulk load builds GIN indexes once at the end instead of row by row (as one would restore
    // a dump): the trigram indexes of migration 0004 are dropped here and rebuilt below.
    const trigram = await dropTrigramIndexes(client);
    const insertStarted = performance.now();
    const [bigJobId, ...smallJobIds] = jobIds;
    const [bigUserId, ...smallUserIds] = jobUsers;
    if (!bigJobId || !bigUserId) throw new Error('no jobs were created');
    // The big job: BIG_SAMPLES samples per fire, BIG_FIRES_PER_EPOCH fires per epoch.
    await client.query(
      `insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
       select $1::uuid, $2::uuid, 1 + (g / $4) / $5, ((g / $4) + 1) * $6, g % $4, 'eval', tp.prompt, tp.truth, tr.pred
       from generate_series(0, $3 - 1) as g
       join bench_texts tp on tp.i = (g % $4)
       join bench_texts tr on tr.i = ((g::bigint * 7919) % ${TEXTS})`,
      [bigJobId, bigUserId, options.bigJob, BIG_SAMPLES, BIG_FIRES_PER_EPOCH, STEPS_PER_FIRE],
    );
    // The other jobs share the rest, as evenly as it divides.
    const rest = options.total - options.bigJob;
    const per = Math.floor(rest / smallJobIds.length);
    const extra = rest - per * smallJobIds.length;
    await client.query(
      `insert into training_predictions (job_id, user_id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction)
       select j.job_id, j.user_id, 1 + (g / $4) / $5, ((g / $4) + 1) * $6, g % $4, 'eval', tp.prompt, tp.truth, tr.pred
       from unnest($1::uuid[], $2::uuid[]) with ordinality as j(job_id, user_id, n)
       cross join lateral generate_series(0, $3 - 1 + (case when j.n <= $7 then 1 else 0 end)) as g
       join bench_texts tp on tp.i = ((g % $4) + j.n * 37) % ${TEXTS}
       join bench_texts tr on tr.i = ((g::bigint * 7919 + j.n) % ${TEXTS})`,
      [smallJobIds, smallUserIds, per, SMALL_SAMPLES, SMALL_FIRES_PER_EPOCH, STEPS_PER_FIRE, extra],
    );
    const insertSeconds = (performance.now() - insertStarted) / 1000;
    const buildStarted = performance.now();
    await createIndexes(client, trigram);
    options.log(`  trigram indexes built on ${options.total} rows in ${((performance.now() - buildStarted) / 1000).toFixed(1)} s`);
    // Per-epoch totals for every seeded job in one statement (what unsafeRebuildEpochStats does per job).
    await client.query(
      `insert into prediction_epoch_stats as s (job_id, user_id, epoch, trigger, count, min_step, max_step, last_write_at)
       select job_id, user_id, epoch, trigger, count(*), min(step), max(step), max(created_at)
       from training_predictions where job_id = any($1::uuid[])
       group by job_id, user_id, epoch, trigger
       on conflict (job_id, epoch, trigger) do update set
         count = excluded.count, min_step = excluded.min_step, max_step = excluded.max_step, last_write_at = excluded.last_write_at`,
      [jobIds],
    );
    // Autovacuum would get here after a bulk load; doing it now makes runs comparable.
    await client.query('vacuum (analyze) training_predictions');
    await client.query('vacuum (analyze) prediction_epoch_stats');
    const { rows: countRows } = await client.query<{ n: string }>('select count(*)::bigint as n from training_predictions where job_id = any($1::uuid[])', [jobIds]);
    const total = Number(countRows[0]?.n ?? 0);
    const marker: Marker = { userIds: users.map((u) => u.id), bigJobId, bigRows: options.bigJob, jobs: jobIds.length, total: options.total };
    await client.query('delete from bench_seed_marker');
    await client.query('insert into bench_seed_marker (info) values ($1)', [JSON.stringify(marker)]);
    const seconds = (performance.now() - started) / 1000;
    options.log(`  seeded ${total} predictions (insert ${insertSeconds.toFixed(1)} s, total with users/jobs/stats/vacuum ${seconds.toFixed(1)} s)`);
    return {
      users,
      bigJob: bigJobInfo(bigJobId, bigUserId, users[0]?.token ?? '', options.bigJob),
      jobs: jobIds.length,
      total,
      seconds: Math.round(seconds * 10) / 10,
      reused: false,
    };
  } finally {
    await client.end();
  }
}

function bigJobInfo(jobId: string, userId: string, token: string, rows: number): SeededListing['bigJob'] {
  return { jobId, userId, token, rows, samples: BIG_SAMPLES, firesPerEpoch: BIG_FIRES_PER_EPOCH, stepsPerFire: STEPS_PER_FIRE };
}

/** An index's name and its CREATE INDEX statement, as pg_indexes gives it. */
export interface IndexDefinition {
  name: string;
  definition: string;
}

/**
 * Drops the trigram (gin_trgm_ops) indexes of training_predictions and returns their definitions,
 * read from the database itself, so that rebuilding them needs no copy of migration 0004.
 */
export async function dropTrigramIndexes(client: pg.Client): Promise<IndexDefinition[]> {
  const { rows } = await client.query<{ name: string; definition: string }>(
    `select indexname as name, indexdef as definition from pg_indexes
     where tablename = 'training_predictions' and indexdef like '%gin_trgm_ops%' order by indexname`,
  );
  for (const row of rows) await client.query(`drop index ${pg.escapeIdentifier(row.name)}`);
  return rows;
}

/** Creates indexes from their definitions, one after another. */
export async function createIndexes(client: pg.Client, indexes: IndexDefinition[]): Promise<void> {
  // As migration 0004 does: GIN builds several times faster with more than the 64 MB default.
  await client.query(`set maintenance_work_mem = '256MB'`);
  for (const index of indexes) await client.query(index.definition);
  await client.query('reset maintenance_work_mem');
}
