// The write-ahead spool: every prediction and metric point the pod generates is appended here
// before anything tries to send it, and marked done when the server has answered for it, so a
// pod killed at any instant (kill -9 included) loses nothing it had generated. The writer and
// the metrics sender read what they send from here; the next run of the same job, or
// `trainer sync --spool FILE`, uploads what is left.
//
// One file per job, `<spoolDir>/<jobId or 'local'>.jsonl`, one JSON record per line:
//   {"seq":12,"prediction":{…row as sent…}}   a prediction, numbered in the order generated
//   {"seq":13,"metric":{…point as sent…}}     a metric point
//   {"done":[[0,11],[13,13]]}                 seq ranges the server has answered for
//   {…a bare prediction row…}                 an older spool's line (before the seq records)
// A line cut short by a crash (only the last one can be) is dropped: sending waits until a line
// is on disk, so a torn line was never sent. Replays are safe: the server stores
// (job, step, sampleIndex) and (job, name, step) once, and a replay of an answered batch comes
// back as duplicates.
// The Python callback writes and reads this same format (SpoolFile in
// trainer/python/predictions_callback.py; its file is named by the callback, any name works), so
// either client's sync uploads the other's spool: trainer/clients.test.ts, scenario h, proves it.
//
// Costs on the training loop (bench/spool.ts measures them): `append` is one write(2) per call
// (per trigger fire, or per metric point), which a kill -9 of the process cannot undo (the data
// is in the kernel's page cache); the fsync that makes it survive a machine crash runs on
// libuv's thread pool (`flush`), and the senders wait for it before sending. Done records are
// plain writes: losing one to a machine crash only makes the next run resend rows the server
// already has.
import { closeSync, existsSync, fsync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

export type SpoolKind = 'prediction' | 'metric';
export const SPOOL_KINDS: readonly SpoolKind[] = ['prediction', 'metric'];

export function spoolFileFor(spoolDir: string, jobId: string | null): string {
  return path.join(spoolDir, `${jobId ?? 'local'}.jsonl`);
}

export interface SpoolEntry {
  seq: number;
  kind: SpoolKind;
  body: unknown;
  /** Size of its line, for batching by bytes without serializing again. */
  bytes: number;
}

export interface SpoolOpenReport {
  /** Records found that the server has not answered for, by kind. */
  recovered: Record<SpoolKind, number>;
  /** Line numbers (1-based) that could not be read, other than a torn last line. */
  badLines: number[];
  /** The last line was cut short (a pod killed while appending); it is dropped. */
  tornTail: boolean;
}

/** Rewrite the file when it holds this many bytes and less than half of them are still to send. */
const COMPACT_MIN_BYTES = 8 * 1024 * 1024;
/** Truncate a file whose every record is answered once it is this large. */
const TRUNCATE_MIN_BYTES = 1024 * 1024;

function lineOf(record: object): string {
  return `${JSON.stringify(record)}\n`;
}

/** seq numbers as inclusive ranges, for a short done record. */
export function toRanges(seqs: readonly number[]): [number, number][] {
  const sorted = [...seqs].sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const seq of sorted) {
    const last = ranges.at(-1);
    if (last && seq === last[1] + 1) last[1] = seq;
    else if (!last || seq > last[1]) ranges.push([seq, seq]);
  }
  return ranges;
}

function writeAll(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset);
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

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface Parsed {
  entries: SpoolEntry[];
  badLines: number[];
  tornTail: boolean;
  /** Anything that a rewrite would tidy: done records, old-format lines, unreadable lines. */
  untidy: boolean;
  nextSeq: number;
}

function parseSpool(text: string): Parsed {
  const lines = text.split('\n');
  // A file that does not end with a newline was cut short mid-append; split leaves '' otherwise.
  const last = lines.pop() ?? '';
  const done = new Set<number>();
  const doneRanges: [number, number][] = [];
  const found: SpoolEntry[] = [];
  const legacy: { body: unknown; bytes: number }[] = [];
  const badLines: number[] = [];
  let maxSeq = -1;
  let untidy = false;
  let tornTail = false;
  const take = (line: string, lineNumber: number, isLast: boolean) => {
    if (!line.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (isLast) tornTail = true;
      else badLines.push(lineNumber);
      untidy = true;
      return;
    }
    const bytes = Buffer.byteLength(line) + 1;
    if (isObject(value) && Array.isArray(value.done)) {
      untidy = true;
      for (const range of value.done) {
        if (Array.isArray(range) && Number.isInteger(range[0]) && Number.isInteger(range[1])) {
          const [from, to] = range as [number, number];
          doneRanges.push([from, to]);
          maxSeq = Math.max(maxSeq, to);
        }
      }
      return;
    }
    if (isObject(value) && Number.isInteger(value.seq) && ('prediction' in value || 'metric' in value)) {
      const seq = value.seq as number;
      maxSeq = Math.max(maxSeq, seq);
      found.push({ seq, kind: 'prediction' in value ? 'prediction' : 'metric', body: 'prediction' in value ? value.prediction : value.metric, bytes });
      return;
    }
    if (isObject(value)) {
      // A spool written before records had numbers: each line is one prediction row.
      untidy = true;
      legacy.push({ body: value, bytes });
      return;
    }
    badLines.push(lineNumber);
    untidy = true;
  };
  lines.forEach((line, i) => take(line, i + 1, false));
  take(last, lines.length + 1, true);
  for (const [from, to] of doneRanges) {
    // Bounded by what was found: a corrupt range cannot make this loop run for ever.
    for (const entry of found) if (entry.seq >= from && entry.seq <= to) done.add(entry.seq);
  }
  const seen = new Set<number>();
  const entries = found.filter((entry) => {
    if (done.has(entry.seq) || seen.has(entry.seq)) return false;
    seen.add(entry.seq);
    return true;
  });
  let nextSeq = maxSeq + 1;
  for (const row of legacy) entries.push({ seq: nextSeq++, kind: 'prediction', body: row.body, bytes: row.bytes });
  entries.sort((a, b) => a.seq - b.seq);
  return { entries, badLines, tornTail, untidy, nextSeq };
}

/** Reads a spool file without changing it (an absent file is an empty spool). */
export function readSpoolFile(file: string): Parsed {
  return existsSync(file) ? parseSpool(readFileSync(file, 'utf8')) : { entries: [], badLines: [], tornTail: false, untidy: false, nextSeq: 0 };
}

/**
 * One spool file, shared by the prediction writer and the metrics sender of one run (each takes
 * its own kind). Synchronous appends (so the caller's data is in the file when `append`
 * returns), an asynchronous fsync before sending, and the undone records indexed in memory so
 * sending never rereads the file. `Spool.memory()` keeps records in memory only (no file).
 * `readOnly` (sync) reads the file and never changes it.
 */
export class Spool {
  readonly opened: SpoolOpenReport;
  private fd: number | null = null;
  private readonly queues: Record<SpoolKind, SpoolEntry[]> = { prediction: [], metric: [] };
  private nextSeq: number;
  private writtenSeq = -1;
  private durableSeq = -1;
  private syncing: Promise<void> | null = null;
  private fileBytes = 0;
  private liveBytes = 0;
  private users = 0;
  /** Set when the disk refused a write: records are then kept in memory only, and said so once. */
  private diskError: string | null = null;
  private readonly readOnly: boolean;
  /** False for `Spool.memory()`: no file at all. */
  private readonly onDisk: boolean;

  static memory(): Spool {
    return new Spool('', { memory: true });
  }

  constructor(
    readonly file: string,
    options: { readOnly?: boolean; memory?: boolean } = {},
  ) {
    this.readOnly = options.readOnly ?? false;
    this.onDisk = !options.memory;
    const text = this.onDisk && existsSync(file) ? readFileSync(file, 'utf8') : '';
    const parsed = parseSpool(text);
    this.nextSeq = parsed.nextSeq;
    for (const entry of parsed.entries) {
      this.queues[entry.kind].push(entry);
      this.liveBytes += entry.bytes;
    }
    this.fileBytes = Buffer.byteLength(text);
    this.writtenSeq = this.durableSeq = this.nextSeq - 1;
    this.opened = {
      recovered: { prediction: this.queues.prediction.length, metric: this.queues.metric.length },
      badLines: parsed.badLines,
      tornTail: parsed.tornTail,
    };
    // Start from a tidy file: no torn tail for the next append to run into, no old format.
    if (parsed.untidy && !this.readOnly && this.onDisk) this.rewrite();
  }

  /** Records of one kind the server has not answered for, oldest first. */
  entries(kind: SpoolKind): readonly SpoolEntry[] {
    return this.queues[kind];
  }

  count(kind: SpoolKind): number {
    return this.queues[kind].length;
  }

  /** Why records are only in memory, when the disk refused them. */
  get problem(): string | null {
    return this.diskError;
  }

  /** A user (writer, metrics sender) of the spool; the last `release` closes it. */
  acquire(): void {
    this.users++;
  }

  /**
   * Appends records (one write). They are indexed in memory even when the disk refuses the
   * write; the answer then says why (and `problem` keeps saying it).
   */
  append(kind: SpoolKind, bodies: readonly unknown[]): string | null {
    if (bodies.length === 0) return null;
    const entries = bodies.map((body): SpoolEntry => {
      const seq = this.nextSeq++;
      return { seq, kind, body, bytes: 0 };
    });
    const text = entries
      .map((entry) => {
        const line = lineOf({ seq: entry.seq, [kind]: entry.body });
        entry.bytes = Buffer.byteLength(line);
        return line;
      })
      .join('');
    this.queues[kind].push(...entries);
    for (const entry of entries) this.liveBytes += entry.bytes;
    const last = entries[entries.length - 1]?.seq ?? this.writtenSeq;
    if (!this.onDisk || this.readOnly || this.diskError !== null) {
      this.writtenSeq = this.durableSeq = last;
      return this.diskError;
    }
    try {
      const data = Buffer.from(text);
      writeAll(this.open(), data);
      this.fileBytes += data.length;
      this.writtenSeq = last;
      return null;
    } catch (error) {
      this.diskError = error instanceof Error ? error.message : String(error);
      this.writtenSeq = this.durableSeq = last;
      return this.diskError;
    }
  }

  /** True once the record is on disk (or the spool keeps records in memory only). */
  isDurable(seq: number): boolean {
    return seq <= this.durableSeq;
  }

  /** fsyncs what is written, off the main thread; concurrent callers share one fsync. */
  async flush(): Promise<void> {
    while (this.durableSeq < this.writtenSeq) {
      if (!this.syncing) {
        const fd = this.fd;
        const upTo = this.writtenSeq;
        if (fd === null) {
          this.durableSeq = upTo;
          return;
        }
        this.syncing = new Promise<void>((resolve) => {
          fsync(fd, (error) => {
            if (error) this.diskError ??= error.message;
            // Even a failed fsync leaves the data in the page cache: the process may die, not
            // the rows; sending them is still right (the server is the other copy).
            this.durableSeq = Math.max(this.durableSeq, upTo);
            resolve();
          });
        }).finally(() => {
          this.syncing = null;
        });
      }
      await this.syncing;
    }
  }

  /** The server answered for these records (stored or refused for good): never send them again. */
  resolve(kind: SpoolKind, entries: readonly SpoolEntry[]): void {
    if (entries.length === 0) return;
    const queue = this.queues[kind];
    const seqs = new Set(entries.map((entry) => entry.seq));
    // Senders answer for the front of their queue; the filter keeps this right whatever the order.
    if (entries.length <= queue.length && entries.every((entry, i) => queue[i] === entry)) queue.splice(0, entries.length);
    else this.queues[kind] = queue.filter((entry) => !seqs.has(entry.seq));
    for (const entry of entries) this.liveBytes -= entry.bytes;
    if (!this.onDisk || this.readOnly || this.diskError !== null) return;
    try {
      const data = Buffer.from(lineOf({ done: toRanges([...seqs]) }));
      writeAll(this.open(), data);
      this.fileBytes += data.length;
    } catch (error) {
      this.diskError = error instanceof Error ? error.message : String(error);
      return;
    }
    this.maybeCompact();
  }

  /**
   * The last user is done: what is written is fsync'd, an empty spool's file is removed, and a
   * file with answered records is rewritten to hold only what is left (ready for `sync`).
   */
  release(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0 || !this.onDisk || this.readOnly) return;
    try {
      if (this.fd !== null && this.writtenSeq > this.durableSeq) fsyncSync(this.fd);
      this.durableSeq = this.writtenSeq;
      if (this.count('prediction') + this.count('metric') === 0) {
        this.closeFd();
        if (existsSync(this.file)) {
          rmSync(this.file, { force: true });
          fsyncDir(path.dirname(this.file));
        }
      } else if (this.fileBytes > this.liveBytes) {
        this.rewrite();
      }
    } catch (error) {
      this.diskError ??= error instanceof Error ? error.message : String(error);
    } finally {
      this.closeFd();
    }
  }

  private open(): number {
    if (this.fd !== null) return this.fd;
    const file = this.file;
    const dir = path.dirname(file);
    const created = !existsSync(file);
    mkdirSync(dir, { recursive: true });
    this.fd = openSync(file, 'a');
    if (created) fsyncDir(dir);
    return this.fd;
  }

  private closeFd(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      closeSync(fd);
    } catch {
      // Already closed: nothing to release.
    }
  }

  private maybeCompact(): void {
    // Never under an fsync in flight: it holds the descriptor a rewrite would close.
    if (this.syncing || this.fd === null) return;
    if (this.liveBytes === 0 && this.fileBytes >= TRUNCATE_MIN_BYTES) {
      // Every record answered: start the file again (same inode, so no directory fsync).
      ftruncateSync(this.fd, 0);
      this.fileBytes = 0;
    } else if (this.fileBytes >= COMPACT_MIN_BYTES && this.liveBytes * 2 < this.fileBytes) {
      this.rewrite();
    }
  }

  /** Replaces the file by the records still to send (write aside, fsync, rename), or removes it. */
  private rewrite(): void {
    const file = this.file;
    const entries = [...this.queues.prediction, ...this.queues.metric].sort((a, b) => a.seq - b.seq);
    this.closeFd();
    if (entries.length === 0) {
      rmSync(file, { force: true });
      fsyncDir(path.dirname(file));
      this.fileBytes = 0;
      this.durableSeq = this.writtenSeq;
      return;
    }
    mkdirSync(path.dirname(file), { recursive: true });
    const aside = `${file}.${process.pid}.tmp`;
    const lines = entries.map((entry) => {
      const line = lineOf({ seq: entry.seq, [entry.kind]: entry.body });
      entry.bytes = Buffer.byteLength(line);
      return line;
    });
    const data = Buffer.from(lines.join(''));
    const fd = openSync(aside, 'w');
    try {
      writeAll(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(aside, file);
    fsyncDir(path.dirname(file));
    this.fileBytes = this.liveBytes = data.length;
    this.durableSeq = this.writtenSeq;
  }
}
