// `trainer sync --spool FILE`: uploads a spool file (from a local-mode run, or a pod that lost
// the server) to the job its JOB_TOKEN names. The file is only read, never changed, so a sync
// to the wrong place loses nothing and running it twice is harmless: rows the server already
// holds come back as duplicates.
import { existsSync } from 'node:fs';
import { PREDICTION_BATCH_MAX } from '../../server/contract/pod.schemas';
import { classifyPodError } from './api';
import type { PodConnection, PodLogger } from './connection';
import { readSpoolFile } from './spool';
import { alteredNote, DEFAULT_MAX_BATCH_BYTES, sendPredictionBatch, takeBatch } from './writer';

export interface SyncResult {
  rows: number;
  inserted: number;
  duplicates: number;
  /** Rows stored over a row of the same key with other content (a resumed run). */
  replaced: number;
  /** Stored rows in which characters PostgreSQL cannot store were replaced by U+FFFD. */
  altered: number;
  rejected: number;
  /** Rows not sent: unreadable lines, or the server unreachable / refusing the token. */
  unsent: number;
  finished: boolean;
  /** True when every row is stored (inserted, already there, or replacing an older one). */
  ok: boolean;
}

export async function syncSpoolFile(args: {
  file: string;
  connection: PodConnection;
  log: PodLogger;
  /** After a complete upload, mark the job completed (pod.finish), which also retires the token. */
  finish?: boolean;
  attempts?: number;
  retryBaseMs?: number;
}): Promise<SyncResult> {
  const { file, connection, log } = args;
  if (!existsSync(file)) throw new Error(`The spool file ${file} does not exist`);
  const { rows, badLines } = readSpoolFile(file);
  const result: SyncResult = { rows: rows.length + badLines.length, inserted: 0, duplicates: 0, replaced: 0, altered: 0, rejected: 0, unsent: badLines.length, finished: false, ok: false };
  if (badLines.length > 0) log.error(`${badLines.length} line(s) of ${file} are not JSON (line ${badLines.slice(0, 10).join(', ')}) and cannot be sent.`);
  log.info(`Uploading ${rows.length} prediction(s) from ${file}`);
  let done = 0;
  while (done < rows.length) {
    const batch = takeBatch(rows.slice(done), PREDICTION_BATCH_MAX, DEFAULT_MAX_BATCH_BYTES);
    const outcome = await sendPredictionBatch({
      connection,
      rows: batch,
      attempts: args.attempts ?? 6,
      retryBaseMs: args.retryBaseMs ?? 500,
      retryCapMs: 10_000,
      log,
    });
    if (outcome.ok) {
      result.inserted += outcome.answer.inserted;
      result.duplicates += outcome.answer.duplicates;
      result.replaced += outcome.answer.replaced;
      result.altered += outcome.answer.altered;
      result.rejected += outcome.answer.rejected.length;
      for (const r of outcome.answer.rejected.slice(0, 5)) log.error(`Row ${done + r.index + 1} of the spool was rejected: ${r.reason}`);
    } else if (outcome.failure.action === 'rejected') {
      result.rejected += batch.length;
      log.error(`The server refused ${batch.length} row(s) (HTTP ${outcome.failure.httpStatus}): ${outcome.failure.message}`);
    } else {
      result.unsent += rows.length - done;
      log.error(
        outcome.failure.action === 'unauthorized'
          ? `The server refused the job token (HTTP 401: ${outcome.failure.message}). Use the job's current token (rotate it on the job page if needed).`
          : `The server is unreachable (${outcome.failure.message}); ${rows.length - done} row(s) were not sent. Run sync again: stored rows are skipped.`,
      );
      break;
    }
    done += batch.length;
  }
  result.ok = result.rejected === 0 && result.unsent === 0;
  if (result.altered > 0) log.warn(alteredNote(result.altered));
  if (args.finish && result.ok && connection.api) {
    try {
      await connection.api.pod.finish.mutate({ status: 'completed' });
      result.finished = true;
      log.info('The job is marked completed.');
    } catch (error) {
      log.error(`Marking the job completed failed: ${classifyPodError(error).message}`);
    }
  }
  return result;
}
