// Reading predictions: keyset pages, epochs, the same samples compared across epochs, live
// updates (resumable by id) and streamed exports. Every read is scoped to the owner.
import { tracked } from '@trpc/server';
import type { Writable } from 'node:stream';
import { AppError } from '../errors';
import { signExportToken } from '../auth/tokens';
import type { AppDeps } from '../app-deps';
import { exactMatch, tokenF1 } from '#contract/scoring';
import { COMPARE_PAGE_DEFAULT, type CompareOutput, type PredictionItem } from '#contract/predictions.schemas';
import { SAMPLE_INDEX_MAX, STEP_MAX } from '#contract/pod.schemas';
import type { PredictionTrigger } from '#contract/triggers';
import { assertJobVisible } from '../jobs/jobs.service';
import { Waker } from '../live/live-hub';
import {
  countMatchingPredictions,
  latestPerEpochAndSample,
  latestPredictionId,
  latestScoringTexts,
  nextComparedSamples,
  type ComparedSamples,
  listPredictionsPage,
  predictionEpochs,
  predictionsAfterId,
  predictionsByIds,
  SEARCH_COUNT_CAP,
  searchMatchKeys,
  type PredictionFilters,
  type PredictionRecord,
} from '../../db/queries/predictions';

function toItem(row: PredictionRecord): PredictionItem {
  return { ...row, createdAt: row.createdAt.toISOString() };
}

function encodeCursor(row: { step: number; sampleIndex: number }): string {
  return Buffer.from(`${row.step}:${row.sampleIndex}`).toString('base64url');
}

function decodeCursor(cursor: string): { step: number; sampleIndex: number } {
  const match = /^(\d{1,10}):(\d{1,10})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const position = match ? { step: Number(match[1]), sampleIndex: Number(match[2]) } : null;
  // Beyond the bounds a stored row can have, a cursor reached an int4 comparison and failed with a 500.
  if (!position || position.step > STEP_MAX || position.sampleIndex > SAMPLE_INDEX_MAX) {
    throw new AppError('BAD_REQUEST', 'cursor is not one this server issued', { field: 'cursor' });
  }
  return position;
}

export interface ListInput {
  jobId: string;
  epoch?: number | undefined;
  trigger?: PredictionTrigger | undefined;
  search?: string | undefined;
  cursor?: string | null | undefined;
  limit: number;
}

export async function listPredictions(deps: AppDeps, userId: string, input: ListInput) {
  await assertJobVisible(deps, userId, input.jobId);
  const db = deps.database.db;
  const filters = { jobId: input.jobId, userId, epoch: input.epoch, trigger: input.trigger, search: input.search || undefined };
  const after = input.cursor ? decodeCursor(input.cursor) : undefined;
  // Without a search the page is read in order and the count comes from the per-epoch totals.
  // A search first collects its matches' keys, up to the count cap, from the trigram indexes
  // (one pass, in no order); see searchPage.
  const searched = filters.search
    ? searchPage(db, filters, input.limit, after)
    : Promise.all([listPredictionsPage(db, { ...filters, limit: input.limit + 1, ...(after ? { after } : {}) }), countMatchingPredictions(db, filters)]);
  const [[rows, total], epochs, latestId] = await Promise.all([
    searched,
    predictionEpochs(db, { jobId: input.jobId, userId }),
    latestPredictionId(db, { jobId: input.jobId, userId }),
  ]);
  const page = rows.slice(0, input.limit);
  const last = page.at(-1);
  return {
    items: page.map(toItem),
    nextCursor: rows.length > input.limit && last ? encodeCursor(last) : null,
    totalCount: total.count,
    totalCountIsLowerBound: total.isLowerBound,
    epochCount: epochs.length,
    latestId,
  };
}

/**
 * One page of a search (limit + 1 rows after `after`, in listing order) and its count, capped at
 * SEARCH_COUNT_CAP. The first cap + 1 matches' keys are read in listing order (searchMatchKeys:
 * the trigram indexes for a rare word or none, the listing index for a common one); the page is
 * taken from those keys (rows fetched by id) whenever it lies within them, so the text is searched
 * once. Only a page beyond the first cap + 1 matches is read in order on its own. Terms under 3
 * characters have no trigram to look up: PostgreSQL reads the job's rows in order for them, which
 * stops early when the term is common, as such short strings nearly always are.
 */
async function searchPage(
  db: AppDeps['database']['db'],
  filters: PredictionFilters,
  limit: number,
  after: { step: number; sampleIndex: number } | undefined,
): Promise<[PredictionRecord[], { count: number; isLowerBound: boolean }]> {
  const keys = await searchMatchKeys(db, { ...filters, limit: SEARCH_COUNT_CAP + 1 });
  const total = keys.length > SEARCH_COUNT_CAP ? { count: SEARCH_COUNT_CAP, isLowerBound: true } : { count: keys.length, isLowerBound: false };
  const rest = after ? keys.filter((k) => k.step > after.step || (k.step === after.step && k.sampleIndex > after.sampleIndex)) : keys;
  // The keys hold every match, or at least this page and the one row that says another follows.
  if (!total.isLowerBound || rest.length > limit) {
    const page = rest.slice(0, limit + 1);
    const rows = page.length > 0 ? await predictionsByIds(db, { ...filters, ids: page.map((k) => k.id) }) : [];
    return [rows, total];
  }
  return [await listPredictionsPage(db, { ...filters, limit: limit + 1, ...(after ? { after } : {}) }), total];
}

export async function listEpochs(deps: AppDeps, userId: string, jobId: string) {
  await assertJobVisible(deps, userId, jobId);
  const rows = await predictionEpochs(deps.database.db, { jobId, userId });
  return rows.map((r) => ({ ...r, lastWriteAt: new Date(r.lastWriteAt).toISOString() }));
}

// ---- compare ----

type ComparedSample = CompareOutput['samples'][number];

// A compare cursor is the last sampleIndex of the page before, under its own prefix so that a
// list cursor (or anything else) is refused instead of read as a position.
const COMPARE_CURSOR_PREFIX = 'compare:';

function encodeCompareCursor(sampleIndex: number): string {
  return Buffer.from(`${COMPARE_CURSOR_PREFIX}${sampleIndex}`).toString('base64url');
}

function decodeCompareCursor(cursor: string): number {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = text.startsWith(COMPARE_CURSOR_PREFIX) ? /^\d{1,7}$/.exec(text.slice(COMPARE_CURSOR_PREFIX.length)) : null;
  const sampleIndex = match ? Number(match[0]) : NaN;
  if (!(sampleIndex <= SAMPLE_INDEX_MAX) || encodeCompareCursor(sampleIndex) !== cursor) {
    throw new AppError('BAD_REQUEST', 'cursor is not one this server issued: pass the nextCursor of the previous compare page', { field: 'cursor' });
  }
  return sampleIndex;
}

/**
 * Per-epoch totals over every sample of a comparison, added to as rows are scored, so the means
 * never depend on which page was asked for.
 */
class CompareTotals {
  private readonly f1Sums: number[];
  private readonly counts: number[];
  sampleCount = 0;

  constructor(private readonly epochs: number[]) {
    this.f1Sums = epochs.map(() => 0);
    this.counts = epochs.map(() => 0);
  }

  add(epoch: number, f1: number): void {
    const i = this.epochs.indexOf(epoch);
    this.f1Sums[i] = (this.f1Sums[i] ?? 0) + f1;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
  }

  summary(): Pick<CompareOutput, 'sampleCount' | 'epochSampleCounts' | 'meanF1'> {
    return {
      sampleCount: this.sampleCount,
      epochSampleCounts: [...this.counts],
      meanF1: this.counts.map((count, i) => (count > 0 ? (this.f1Sums[i] ?? 0) / count : null)),
    };
  }
}

/**
 * Samples scored per read while computing the means over every sample: memory holds at most
 * this many samples × the chosen epochs (without prompts) at once, whatever the job's size.
 */
const SCORING_CHUNK_SAMPLES = 1000;

/**
 * Token F1 is computed in TypeScript (its Unicode word rules have no exact SQL twin), so exact
 * means read every sample's latest prediction of the chosen epochs once per page, a chunk at a
 * time. Measured on PGlite (2 busy cores): 3 epochs × 1,000 samples × 10 steps (30k rows)
 * 0.1–0.3 s a page; 10 × 5,000 × 4 (200k rows) 1.5–2 s a page, almost all of it reading rows
 * (F1 over 50k rows: 60 ms). A page that is the whole comparison scores its own rows instead.
 */
async function scoreEverySample(deps: AppDeps, scope: ComparedSamples): Promise<CompareTotals> {
  const totals = new CompareTotals(scope.epochs);
  let after = -1;
  for (;;) {
    const indexes = await nextComparedSamples(deps.database.db, { ...scope, afterSampleIndex: after, limit: SCORING_CHUNK_SAMPLES });
    const first = indexes[0];
    const last = indexes.at(-1);
    if (first === undefined || last === undefined) break;
    const rows = await latestScoringTexts(deps.database.db, { ...scope, fromSampleIndex: first, toSampleIndex: last });
    for (const row of rows) totals.add(row.epoch, tokenF1(row.prediction, row.groundTruth));
    totals.sampleCount += indexes.length;
    if (indexes.length < SCORING_CHUNK_SAMPLES) break;
    after = last;
  }
  return totals;
}

/**
 * One page of the comparison, by sample: each sample on the page with every chosen epoch's
 * latest prediction (its highest step), and the totals and means over ALL samples, so a page
 * never passes for the whole. Pages follow sampleIndex; nextCursor is null on the last one.
 */
export async function comparePredictions(
  deps: AppDeps,
  userId: string,
  input: { jobId: string; epochs: number[]; cursor?: string | null | undefined; limit?: number | undefined },
): Promise<CompareOutput> {
  await assertJobVisible(deps, userId, input.jobId);
  const db = deps.database.db;
  const limit = input.limit ?? COMPARE_PAGE_DEFAULT;
  const epochs = [...new Set(input.epochs)].sort((a, b) => a - b);
  const scope = { jobId: input.jobId, userId, epochs };
  const after = input.cursor ? decodeCompareCursor(input.cursor) : -1;

  // One more than the page, to know whether another page follows.
  const indexes = await nextComparedSamples(db, { ...scope, afterSampleIndex: after, limit: limit + 1 });
  const pageIndexes = indexes.slice(0, limit);
  const hasMore = indexes.length > limit;
  const first = pageIndexes[0];
  const last = pageIndexes.at(-1);
  const wholeComparison = !input.cursor && !hasMore;
  const [rows, totalsOfAll] = await Promise.all([
    first === undefined || last === undefined ? [] : latestPerEpochAndSample(db, { ...scope, fromSampleIndex: first, toSampleIndex: last }),
    // When this one page is the whole comparison its rows are all there is to score.
    wholeComparison ? null : scoreEverySample(deps, scope),
  ]);

  const totalsOfPage = new CompareTotals(epochs);
  const samples: ComparedSample[] = [];
  for (const row of rows) {
    let sample = samples.at(-1);
    // Rows come in (sampleIndex, epoch) order, so a sample's rows are adjacent.
    if (sample?.sampleIndex !== row.sampleIndex) {
      sample = { sampleIndex: row.sampleIndex, prompt: row.prompt, groundTruth: row.groundTruth, predictions: epochs.map(() => null) };
      samples.push(sample);
    }
    const f1 = tokenF1(row.prediction, row.groundTruth);
    totalsOfPage.add(row.epoch, f1);
    sample.predictions[epochs.indexOf(row.epoch)] = {
      prediction: row.prediction,
      step: row.step,
      f1,
      exact: exactMatch(row.prediction, row.groundTruth),
      altered: row.altered,
    };
  }
  totalsOfPage.sampleCount = samples.length;

  return {
    epochs,
    samples,
    ...(totalsOfAll ?? totalsOfPage).summary(),
    limit,
    nextCursor: hasMore && last !== undefined ? encodeCompareCursor(last) : null,
  };
}

const LIVE_BATCH = 500;

// Every subscriber of a job wakes on the same notification and asks for the same rows; one
// read per (job, position) is shared by all of them instead of one query each.
// Keyed by database, so servers sharing this process (tests) never share reads.
const sharedReads = new WeakMap<AppDeps['database'], Map<string, Promise<PredictionRecord[]>>>();
function readAfter(deps: AppDeps, params: { jobId: string; userId: string; afterId: number }): Promise<PredictionRecord[]> {
  let reads = sharedReads.get(deps.database);
  if (!reads) {
    reads = new Map();
    sharedReads.set(deps.database, reads);
  }
  const key = `${params.jobId}:${params.userId}:${params.afterId}`;
  let read = reads.get(key);
  if (!read) {
    const pending = reads;
    read = predictionsAfterId(deps.database.db, { ...params, limit: LIVE_BATCH }).finally(() => pending.delete(key));
    reads.set(key, read);
  }
  return read;
}
// A notification can be lost (a listener reconnecting); re-reading on this period bounds the delay.
const LIVE_FALLBACK_POLL_MS = 5_000;

/**
 * New predictions of a job as tracked events (id = the row's id). Resumes after lastEventId,
 * reading from the table, so a reconnect sees every row exactly once whatever it missed.
 * Ownership is checked before the stream opens, so a refusal is an ordinary NOT_FOUND.
 */
export async function openPredictionStream(
  deps: AppDeps,
  userId: string,
  input: { jobId: string; lastEventId?: string | null | undefined },
  signal: AbortSignal | undefined,
) {
  await assertJobVisible(deps, userId, input.jobId);
  return streamNewPredictions(deps, userId, input, signal);
}

async function* streamNewPredictions(
  deps: AppDeps,
  userId: string,
  input: { jobId: string; lastEventId?: string | null | undefined },
  signal: AbortSignal | undefined,
) {
  const db = deps.database.db;
  const resumeFrom = input.lastEventId ? Number(input.lastEventId) : NaN;
  let lastId = Number.isSafeInteger(resumeFrom) && resumeFrom >= 0 ? resumeFrom : await latestPredictionId(db, { jobId: input.jobId, userId });
  // Subscribed for the whole stream, so a batch stored while we read still wakes the next read.
  const waker = new Waker();
  const stop = deps.live.onPredictions(input.jobId, () => waker.wake());
  try {
    while (!signal?.aborted) {
      waker.reset();
      const rows = await readAfter(deps, { jobId: input.jobId, userId, afterId: lastId });
      for (const row of rows) {
        lastId = row.id;
        yield tracked(String(row.id), toItem(row));
      }
      if (rows.length < LIVE_BATCH) await waker.wait(LIVE_FALLBACK_POLL_MS, signal);
    }
  } finally {
    stop();
  }
}

// ---- export ----

const CSV_BOM = '\uFEFF';
// `altered` says a U+FFFD in the text was put there by the server (a NUL or half an emoji), not by the model.
const EXPORT_COLUMNS = ['id', 'epoch', 'step', 'sampleIndex', 'trigger', 'prompt', 'groundTruth', 'prediction', 'altered', 'createdAt'] as const;

function csvCell(value: string | number | boolean): string {
  let text = String(value);
  // A cell a spreadsheet would run as a formula is neutralised.
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// Export handlers running per server (keyed by database, as sharedReads): what a test reads to
// prove an abandoned download's handler ended (audit F15: six stayed waiting for ever).
const exportsRunning = new WeakMap<AppDeps['database'], number>();

/** How many export downloads this server is writing right now. */
export function activeExports(deps: AppDeps): number {
  return exportsRunning.get(deps.database) ?? 0;
}

/**
 * Streams every prediction of a job in listing order, a page at a time: memory stays flat however
 * large the job. Ends early, without reading further pages, when `out` closes (the client went
 * away); returns the number of rows written.
 * @throws AppError NOT_FOUND when the job is not the user's.
 */
export async function writeExport(
  deps: AppDeps,
  scope: { jobId: string; userId: string },
  format: 'jsonl' | 'csv',
  out: Writable,
  isClosed: () => boolean,
): Promise<number> {
  exportsRunning.set(deps.database, activeExports(deps) + 1);
  try {
    return await writeExportPages(deps, scope, format, out, isClosed);
  } finally {
    exportsRunning.set(deps.database, activeExports(deps) - 1);
  }
}

/**
 * Resolves when `out` takes more (drain) or can never take more (close, error): a destroyed
 * socket never emits 'drain', and waiting for it alone kept the handler for ever.
 */
function writeOrGone(out: Writable, chunk: string): Promise<void> {
  if (out.destroyed || out.write(chunk)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const settle = () => {
      out.off('drain', settle);
      out.off('close', settle);
      out.off('error', settle);
      resolve();
    };
    out.on('drain', settle);
    out.on('close', settle);
    out.on('error', settle);
    // Closed between the write and the listeners: 'close' has fired already.
    if (out.destroyed) settle();
  });
}

async function writeExportPages(
  deps: AppDeps,
  scope: { jobId: string; userId: string },
  format: 'jsonl' | 'csv',
  out: Writable,
  isClosed: () => boolean,
): Promise<number> {
  await assertJobVisible(deps, scope.userId, scope.jobId);
  const write = (chunk: string) => writeOrGone(out, chunk);
  // Spreadsheet programs (Excel above all) read a CSV without a byte-order mark in the local
  // legacy code page, turning accents and emoji into mojibake; with it they read UTF-8. JSONL
  // readers expect none.
  if (format === 'csv') await write(`${CSV_BOM}${EXPORT_COLUMNS.join(',')}\r\n`);
  let after: { step: number; sampleIndex: number } | undefined;
  let written = 0;
  for (;;) {
    if (isClosed()) break;
    const rows = await listPredictionsPage(deps.database.db, { jobId: scope.jobId, userId: scope.userId, limit: 1000, ...(after ? { after } : {}) });
    if (rows.length === 0) break;
    const text = rows
      .map((row) => {
        const item = toItem(row);
        return format === 'jsonl' ? `${JSON.stringify(item)}\n` : `${EXPORT_COLUMNS.map((c) => csvCell(item[c])).join(',')}\r\n`;
      })
      .join('');
    await write(text);
    written += rows.length;
    const last = rows.at(-1);
    if (!last || rows.length < 1000) break;
    after = { step: last.step, sampleIndex: last.sampleIndex };
  }
  return written;
}

const EXPORT_LINK_SECONDS = 300;

/** A download link for a job's predictions, valid for a few minutes; the path is relative to the server. */
export async function createExportLink(deps: AppDeps, userId: string, input: { jobId: string; format: 'jsonl' | 'csv' }) {
  await assertJobVisible(deps, userId, input.jobId);
  const token = await signExportToken(deps.secrets.session, { jobId: input.jobId, userId }, EXPORT_LINK_SECONDS);
  return { url: `/api/export/${input.jobId}.${input.format}?token=${encodeURIComponent(token)}`, expiresInSeconds: EXPORT_LINK_SECONDS };
}
