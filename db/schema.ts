// The one source of truth for the database: every table, column and index lives here, and
// drizzle-kit turns changes into the SQL migrations committed under db/migrations.
// snake_case in SQL, camelCase in TypeScript.
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { PREDICTION_TRIGGERS, type PredictionTrigger } from '#contract/triggers';
import type { JobConfig } from '#contract/job-config';
import { JOB_STATUSES_LIST, type JobStatusName } from '#contract/statuses';
import type { DatasetRow } from '#contract/dataset-jsonl';
import type { PodReport } from '#contract/pod.schemas';

/**
 * A list of the contract's names as SQL literals, `('a', 'b')`, for check constraints: the names
 * are the contract's constants (lower-case words), never user input, so they are inlined.
 */
function sqlList(names: readonly string[]) {
  if (!names.every((name) => /^[a-z_]+$/.test(name))) throw new Error(`not a plain name list: ${names.join(', ')}`);
  return sql.raw(`(${names.map((name) => `'${name}'`).join(', ')})`);
}

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();

export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    email: text('email').notNull(),
    passwordHash: text('password_hash').notNull(),
    /** A server administrator: creates invitations when SIGNUP=invite. The first account is one. */
    isAdmin: boolean('is_admin').notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('users_email_lower_key').on(sql`lower(${t.email})`)],
);

/**
 * Server-side session state: a session token names its row (claim `sid`), and a request is
 * refused once the row is revoked (sign out, sign out everywhere, password change) or expired.
 */
export const sessions = pgTable(
  'sessions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    /** The browser or client that signed in (bounded), for the sessions list. */
    userAgent: text('user_agent'),
  },
  (t) => [index('sessions_user_idx').on(t.userId, t.createdAt.desc())],
);

/** Invitation links an administrator creates when SIGNUP=invite; only the secret's hash is kept. */
export const invitations = pgTable(
  'invitations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull(),
    /** When set, only this email may accept the invitation. */
    email: text('email'),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    usedBy: uuid('used_by').references(() => users.id, { onDelete: 'set null' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('invitations_token_hash_key').on(t.tokenHash)],
);

/**
 * Counters for rate-limiter-flexible's Drizzle store (RateLimiterDrizzle): one row per limited
 * key, consumed atomically by an upsert, shared by every instance on the database.
 */
export const rateLimits = pgTable('rate_limits', {
  key: text('key').primaryKey(),
  points: integer('points').notNull().default(0),
  expire: timestamp('expire', { withTimezone: true }),
});

export type { DatasetRow };

export const datasets = pgTable(
  'datasets',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    rowCount: integer('row_count').notNull(),
    rows: jsonb('rows').$type<DatasetRow[]>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('datasets_user_created_idx').on(t.userId, t.createdAt.desc())],
);

export type JobStatus = JobStatusName;

/** What the pod last told us about itself (pod.heartbeat): the contract's podReport. */
export type { PodReport };

export const trainingJobs = pgTable(
  'training_jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    datasetId: uuid('dataset_id').references(() => datasets.id, { onDelete: 'set null' }),
    name: text('name').notNull(),
    status: text('status').$type<JobStatus>().notNull().default('pending'),
    launcher: text('launcher').notNull(),
    /** Validated against the shared job-config schema before it is stored. */
    config: jsonb('config').$type<JobConfig>().notNull(),
    /** Bumped on cancel, finish and rotate: a job token carrying an older version is revoked. */
    tokenVersion: integer('token_version').notNull().default(1),
    podReport: jsonb('pod_report').$type<PodReport>(),
    lastHeartbeatAt: timestamp('last_heartbeat_at', { withTimezone: true }),
    /** Which server instance runs the job's process and the launcher's handle on it. */
    launcherOwner: text('launcher_owner'),
    launcherRef: text('launcher_ref'),
    error: text('error'),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    index('training_jobs_user_created_idx').on(t.userId, t.createdAt.desc(), t.id.desc()),
    index('training_jobs_status_idx').on(t.status),
    check(
      'training_jobs_status_check',
      sql`${t.status} in ${sqlList(JOB_STATUSES_LIST)}`,
    ),
  ],
);


export const trainingPredictions = pgTable(
  'training_predictions',
  {
    // Monotonic, so a live subscriber can resume from the last id it saw.
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => trainingJobs.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    epoch: integer('epoch').notNull(),
    step: integer('step').notNull(),
    sampleIndex: integer('sample_index').notNull(),
    trigger: text('trigger').$type<PredictionTrigger>().notNull(),
    prompt: text('prompt').notNull(),
    groundTruth: text('ground_truth').notNull(),
    prediction: text('prediction').notNull(),
    /** A character PostgreSQL cannot store (U+0000, a lone surrogate) was replaced by U+FFFD. */
    altered: boolean('altered').notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [
    // Idempotency (a retried batch can never duplicate) and the listing order in one index.
    uniqueIndex('training_predictions_job_step_sample_key').on(t.jobId, t.step, t.sampleIndex),
    // The epoch filter, still in listing order.
    index('training_predictions_job_epoch_idx').on(t.jobId, t.epoch, t.step, t.sampleIndex),
    // Live updates and resume: rows of a job after a given id.
    index('training_predictions_job_id_idx').on(t.jobId, t.id),
    index('training_predictions_user_idx').on(t.userId),
    // Search (`%word%` ILIKE on each text column, scoped to a job): trigram GIN indexes with the
    // job first (btree_gin), so a search reads candidates of its own job only. Extensions
    // pg_trgm and btree_gin come from migration 0004 (docs/decisions/0007-search-trigram-index.md).
    index('training_predictions_prompt_trgm_idx').using('gin', t.jobId, t.prompt.op('gin_trgm_ops')),
    index('training_predictions_ground_truth_trgm_idx').using('gin', t.jobId, t.groundTruth.op('gin_trgm_ops')),
    index('training_predictions_prediction_trgm_idx').using('gin', t.jobId, t.prediction.op('gin_trgm_ops')),
    check('training_predictions_trigger_check', sql`${t.trigger} in ${sqlList(PREDICTION_TRIGGERS)}`),
  ],
);

/**
 * Running totals per (job, epoch, trigger), kept in the same statement that inserts
 * predictions: counts, epoch lists and "last write" answer without scanning a big job's rows.
 */
export const predictionEpochStats = pgTable(
  'prediction_epoch_stats',
  {
    jobId: uuid('job_id')
      .notNull()
      .references(() => trainingJobs.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    epoch: integer('epoch').notNull(),
    trigger: text('trigger').$type<PredictionTrigger>().notNull(),
    count: integer('count').notNull(),
    minStep: integer('min_step').notNull(),
    maxStep: integer('max_step').notNull(),
    lastWriteAt: timestamp('last_write_at', { withTimezone: true }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.epoch, t.trigger] })],
);

export const trainingMetrics = pgTable(
  'training_metrics',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => trainingJobs.id, { onDelete: 'cascade' }),
    step: integer('step').notNull(),
    epoch: doublePrecision('epoch').notNull(),
    name: text('name').notNull(),
    value: doublePrecision('value').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('training_metrics_job_name_step_key').on(t.jobId, t.name, t.step)],
);

export const jobEvents = pgTable(
  'job_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => trainingJobs.id, { onDelete: 'cascade' }),
    kind: text('kind').notNull(),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [index('job_events_job_id_idx').on(t.jobId, t.id)],
);

export const jobLogs = pgTable(
  'job_logs',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => trainingJobs.id, { onDelete: 'cascade' }),
    level: text('level').notNull().default('info'),
    line: text('line').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('job_logs_job_id_idx').on(t.jobId, t.id)],
);
