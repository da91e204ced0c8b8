// What the write-ahead spool (trainer/pod/spool.ts) costs the training loop: the time of one
// trigger fire's hand-over (`PredictionWriter.enqueue` of the fire's rows, as trainer/main.ts
// calls it) with the spool on disk, against the same writer keeping rows in memory only
// (`Spool.memory()`: the hand-over before issue 13, no file), in the same process,
// interleaved in blocks so machine noise hits both alike. Also: how long after the fire the
// rows are fsync'd (the fsync runs off the main thread; sending waits for it).
// Run alone: `npx tsx bench/spool.ts` (or BENCH_ONLY=spool npm run bench).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PodConnection, type PodLogger } from '../trainer/pod/connection';
import { Spool } from '../trainer/pod/spool';
import { PredictionWriter } from '../trainer/pod/writer';
import { predictionBatch, round, summarize, type Summary } from './common';

export interface SpoolBenchResults {
  rowsPerFire: number;
  bytesPerFire: number;
  fires: number;
  /** Microseconds per fire on the training loop: the rows pushed on an array (the old enqueue, which serialized later, when batching). */
  pushUs: Summary;
  /** The writer with `Spool.memory()`: serializes at hand-over, no file. */
  memoryUs: Summary;
  spoolUs: Summary;
  /** spool p50 − memory p50, and spool p50 / memory p50. */
  addedP50Us: number;
  ratioP50: number;
  /** Milliseconds from the fire to its rows being fsync'd. */
  durableMs: Summary;
}

const quietLog: PodLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Lets pending I/O callbacks run between fires, as the training loop's setImmediate does. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runSpoolBench(options: { quick: boolean; log: (line: string) => void; rowsPerFire?: number }): Promise<SpoolBenchResults> {
  const rowsPerFire = options.rowsPerFire ?? 32;
  const blocks = options.quick ? 4 : 20;
  const firesPerBlock = 50;
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-spool-'));
  // No server: the writer's loop stays idle, so only the hand-over itself is timed.
  const connection = new PodConnection(null);
  const disk = new PredictionWriter({ connection, spool: new Spool(path.join(dir, 'job.jsonl')), log: quietLog });
  const memory = new PredictionWriter({ connection, spool: Spool.memory(), log: quietLog });
  const probe = new Spool(path.join(dir, 'probe.jsonl'));
  const pushUs: number[] = [];
  const queue: unknown[] = [];
  const memoryUs: number[] = [];
  const spoolUs: number[] = [];
  const durableMs: number[] = [];
  let fire = 0;
  const timeFire = (writer: PredictionWriter | null, into: number[]) => {
    const rows = predictionBatch(7, fire++, rowsPerFire);
    const started = performance.now();
    if (writer) writer.enqueue(rows);
    else queue.push(...rows);
    into.push((performance.now() - started) * 1000);
  };
  try {
    for (let i = 0; i < 20; i++) {
      timeFire(disk, []);
      timeFire(memory, []);
    }
    for (let block = 0; block < blocks; block++) {
      const variants: [PredictionWriter | null, number[]][] = [
        [disk, spoolUs],
        [memory, memoryUs],
        [null, pushUs],
      ];
      const order = block % 2 === 0 ? variants : variants.reverse();
      for (const [writer, into] of order) {
        for (let i = 0; i < firesPerBlock; i++) {
          timeFire(writer, into);
          await yieldToLoop();
        }
      }
      // Fire to fsync'd, as the sender waits for it before sending (a separate file, so the
      // timed writer's own flushes do not overlap).
      const started = performance.now();
      probe.append('prediction', predictionBatch(9, block, rowsPerFire));
      await probe.flush();
      durableMs.push(performance.now() - started);
      options.log(`  spool block ${block + 1}/${blocks}`);
    }
  } finally {
    await Promise.all([disk.close(0), memory.close(0)]);
    probe.acquire();
    probe.release();
    await rm(dir, { recursive: true, force: true });
  }
  const bytesPerFire = Buffer.byteLength(predictionBatch(7, 0, rowsPerFire).map((row, seq) => `${JSON.stringify({ seq, prediction: row })}\n`).join(''));
  const memorySummary = summarize(memoryUs);
  const spoolSummary = summarize(spoolUs);
  return {
    rowsPerFire,
    bytesPerFire,
    fires: spoolUs.length,
    pushUs: summarize(pushUs),
    memoryUs: memorySummary,
    spoolUs: spoolSummary,
    addedP50Us: round(spoolSummary.p50 - memorySummary.p50),
    ratioP50: round(spoolSummary.p50 / Math.max(memorySummary.p50, 0.01)),
    durableMs: summarize(durableMs),
  };
}

export function describeSpoolBench(r: SpoolBenchResults): string[] {
  return [
    `one fire = ${r.rowsPerFire} rows (${r.bytesPerFire} bytes in the spool), ${r.fires} fires each way`,
    `hand-over, array push (old):  p50 ${r.pushUs.p50} µs, p99 ${r.pushUs.p99} µs (the rows were serialized later, when batched)`,
    `hand-over, memory only:       p50 ${r.memoryUs.p50} µs, p99 ${r.memoryUs.p99} µs, mean ${r.memoryUs.mean} µs`,
    `hand-over, write-ahead spool: p50 ${r.spoolUs.p50} µs, p99 ${r.spoolUs.p99} µs, mean ${r.spoolUs.mean} µs`,
    `spool adds ${r.addedP50Us} µs per fire at p50 (${r.ratioP50}×); fire → fsync'd p50 ${r.durableMs.p50} ms, p99 ${r.durableMs.p99} ms (off the main thread)`,
  ];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await runSpoolBench({ quick: process.env.BENCH_QUICK === '1', log: () => undefined });
  for (const line of describeSpoolBench(result)) console.log(line);
}
