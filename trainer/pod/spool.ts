// The spool: prediction rows that could not reach the server, one JSON row per line in
// `<spoolDir>/<jobId or 'local'>.jsonl`, fsync'd before the writer counts them as spooled, so a
// crash right after cannot lose them. The pod drains it when the server is back; `trainer sync`
// uploads it from anywhere. Replays are safe: the server stores (job, step, sampleIndex) once.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { PredictionRowInput } from '../../server/contract/pod.schemas';

export function spoolFileFor(spoolDir: string, jobId: string | null): string {
  return path.join(spoolDir, `${jobId ?? 'local'}.jsonl`);
}

export interface SpoolRead {
  rows: unknown[];
  /** Line numbers (1-based) that were not JSON, e.g. a line cut short by a crash. */
  badLines: number[];
}

/** Every row of a spool file (an absent file is an empty spool). */
export function readSpoolFile(file: string): SpoolRead {
  if (!existsSync(file)) return { rows: [], badLines: [] };
  const rows: unknown[] = [];
  const badLines: number[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      try {
        rows.push(JSON.parse(line));
      } catch {
        badLines.push(i + 1);
      }
    });
  return { rows, badLines };
}

function writeDurably(file: string, text: string, flags: 'a' | 'w'): void {
  const fd = openSync(file, flags);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some platforms cannot open a directory; the file itself was fsync'd.
  }
}

/**
 * One spool file, used by one writer at a time. Synchronous on purpose: a few fsync'd appends
 * while the server is down cost milliseconds, and ordering with the drain stays trivial.
 */
export class Spool {
  constructor(readonly file: string) {}

  append(rows: readonly PredictionRowInput[]): void {
    if (rows.length === 0) return;
    const dir = path.dirname(this.file);
    const created = !existsSync(this.file);
    mkdirSync(dir, { recursive: true });
    writeDurably(this.file, rows.map((row) => JSON.stringify(row)).join('\n') + '\n', 'a');
    if (created) fsyncDir(dir);
  }

  read(): SpoolRead {
    return readSpoolFile(this.file);
  }

  /** Replaces the spool's content atomically (write aside, fsync, rename); no rows removes it. */
  replace(rows: readonly unknown[]): void {
    if (rows.length === 0) {
      rmSync(this.file, { force: true });
      fsyncDir(path.dirname(this.file));
      return;
    }
    const aside = `${this.file}.${process.pid}.tmp`;
    writeDurably(aside, rows.map((row) => JSON.stringify(row)).join('\n') + '\n', 'w');
    renameSync(aside, this.file);
    fsyncDir(path.dirname(this.file));
  }
}
