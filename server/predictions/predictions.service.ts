// Reading predictions: keyset pages, epochs, the same samples compared across epochs, live
// updates (resumable by id) and streamed exports. Every read is scoped to the owner.
import { tracked } from '@trpc/server';
import type { Writable } from 'node:stream';
import { AppError } from '../errors';
import { signExportToken } from '../auth/tokens';
import type { AppDeps } from '../deps';
import { exactMatch, tokenF1 } from '../contract/scoring';
import type { CompareOutput, PredictionItem } from '../contract/predictions.schemas';
import { SAMPLE_INDEX_MAX, STEP_MAX } from '../contract/pod.schemas';
import type { PredictionTrigger } from '../contract/triggers';
import { assertJobVisible } from '../jobs/jobs.service';
import { Waker } from '../live/live-hub';
import {
  countMatchingPredictions,
  latestPerEpochAndSample,
  latestPredictionId,
  listPredictionsPage,
  predictionEpochs,
  predictionsAfterId,
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
  const pageRows = listPredictionsPage(db, { ...filters, limit: input.limit + 1, ...(after ? { after } : {}) });
  // A search is counted by reading rows, so when the first page already holds every match (a
  // rare word, or none at all: a full read of the job) its length is the count, and the rows are
  // not read a second time. Without a search the count comes from the per-epoch totals.
  const counted = filters.search
    ? pageRows.then((rows) => (!after && rows.length <= input.limit ? { count: rows.length, isLowerBound: false } : countMatchingPredictions(db, filters)))
    : countMatchingPredictions(db, filters);
  const [rows, total, epochs, latestId] = await Promise.all([
    pageRows,
    counted,
    predictionEpochs(db, { jobId: input.jobId, userId }),
    latestPredictionId(db, { jobId: input.jobId }),
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

export async function listEpochs(deps: AppDeps, userId: string, jobId: string) {
  await assertJobVisible(deps, userId, jobId);
  const rows = await predictionEpochs(deps.database.db, { jobId, userId });
  return rows.map((r) => ({ ...r, lastWriteAt: new Date(r.lastWriteAt).toISOString() }));
}

export async function comparePredictions(deps: AppDeps, userId: string, input: { jobId: string; epochs: number[] }): Promise<CompareOutput> {
  await assertJobVisible(deps, userId, input.jobId);
  const epochs = [...new Set(input.epochs)].sort((a, b) => a - b);
  const rows = await latestPerEpochAndSample(deps.database.db, { jobId: input.jobId, userId, epochs });
  const bySample = new Map<number, CompareOutput['samples'][number]>();
  for (const row of rows) {
    let sample = bySample.get(row.sampleIndex);
    if (!sample) {
      sample = { sampleIndex: row.sampleIndex, prompt: row.prompt, groundTruth: row.groundTruth, predictions: epochs.map(() => null) };
      bySample.set(row.sampleIndex, sample);
    }
    sample.predictions[epochs.indexOf(row.epoch)] = {
      prediction: row.prediction,
      step: row.step,
      f1: tokenF1(row.prediction, row.groundTruth),
      exact: exactMatch(row.prediction, row.groundTruth),
    };
  }
  const samples = [...bySample.values()].sort((a, b) => a.sampleIndex - b.sampleIndex);
  const meanF1 = epochs.map((_, i) => {
    const scores = samples.flatMap((s) => (s.predictions[i] ? [s.predictions[i].f1] : []));
    return scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null;
  });
  return { epochs, samples, meanF1 };
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
  let lastId = Number.isSafeInteger(resumeFrom) && resumeFrom >= 0 ? resumeFrom : await latestPredictionId(db, { jobId: input.jobId });
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

const EXPORT_COLUMNS = ['id', 'epoch', 'step', 'sampleIndex', 'trigger', 'prompt', 'groundTruth', 'prediction', 'createdAt'] as const;

function csvCell(value: string | number): string {
  let text = String(value);
  // A cell a spreadsheet would run as a formula is neutralised.
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Streams every prediction of a job in listing order, a page at a time: memory stays flat however large the job. */
export async function writeExport(
  deps: AppDeps,
  scope: { jobId: string; userId: string },
  format: 'jsonl' | 'csv',
  out: Writable,
  isClosed: () => boolean,
): Promise<number> {
  await assertJobVisible(deps, scope.userId, scope.jobId);
  const write = (chunk: string) =>
    out.write(chunk) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve()));
  if (format === 'csv') await write(`${EXPORT_COLUMNS.join(',')}\r\n`);
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
