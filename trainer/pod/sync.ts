// `trainer sync --spool FILE`: uploads a spool file (from a local-mode run, a pod that lost the
// server or whose token was refused, a pod killed mid-run) to the job its JOB_TOKEN names: the
// predictions and metric points the server has not answered for, through the same sender as a
// run (retries, Retry-After, 413 splits; writer.ts). The file is only read, never changed, so a
// sync to the wrong place loses nothing, a pod still writing the file is not disturbed, and
// running it twice is harmless: rows the server already holds come back as duplicates.
import { existsSync } from 'node:fs';
import type { PodConnection, PodLogger } from './connection';
import { classifyPodError } from './api';
import { MetricsReporter } from './metrics';
import { Spool } from './spool';
import { alteredNote, PredictionWriter } from './writer';

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
  /** Metric points in the file, and how many of them the server now holds. */
  metrics: { points: number; stored: number; rejected: number; unsent: number };
  finished: boolean;
  /** True when every row and point is stored (inserted, already there, or replacing an older one). */
  ok: boolean;
}

export async function syncSpoolFile(args: {
  file: string;
  connection: PodConnection;
  log: PodLogger;
  /** After a complete upload, mark the job completed (pod.finish). */
  finish?: boolean;
  /** How long to wait for an unreachable server before giving up (the rows stay in the file). */
  timeoutMs?: number;
  attempts?: number;
  retryBaseMs?: number;
  syncCommand?: (file: string) => string;
}): Promise<SyncResult> {
  const { file, connection, log } = args;
  if (!existsSync(file)) throw new Error(`The spool file ${file} does not exist`);
  const spool = new Spool(file, { readOnly: true });
  const badLines = spool.opened.badLines.length;
  const sending = { maxAttempts: args.attempts ?? 6, retryBaseMs: args.retryBaseMs ?? 500, retryCapMs: 10_000 };
  const writer = new PredictionWriter({
    connection,
    spool,
    log,
    ...sending,
    announceRecovered: false,
    ...(args.syncCommand ? { syncCommand: args.syncCommand } : {}),
  });
  const metrics = new MetricsReporter({ connection, log, spool, intervalMs: 0, ...sending });
  log.info(`Uploading ${writer.recovered} prediction(s) and ${metrics.recovered} metric point(s) from ${file}`);
  const timeoutMs = args.timeoutMs ?? 30_000;
  const [counters] = await Promise.all([writer.close(timeoutMs), metrics.close(timeoutMs)]);
  const answered = metrics.answered;
  const metricsStored = answered.inserted + answered.duplicates + answered.replaced;
  const result: SyncResult = {
    rows: writer.recovered + badLines,
    ...writer.stored,
    altered: writer.altered,
    rejected: counters.rejected - badLines,
    unsent: counters.spooled + badLines,
    metrics: { points: metrics.recovered, stored: metricsStored, rejected: answered.rejected, unsent: metrics.pending },
    finished: false,
    ok: false,
  };
  if (result.unsent > badLines) {
    log.error(
      connection.tokenRefused !== null
        ? `${result.unsent - badLines} row(s) were not sent: the server refused the job token.`
        : `The server could not be reached in time; ${result.unsent - badLines} row(s) were not sent. Run sync again: stored rows are skipped.`,
    );
  }
  result.ok = result.rejected === 0 && result.unsent === 0 && result.metrics.unsent === 0;
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
