// The shape of bench/results.json: what one `npm run bench` measured. Its own module so the
// report (report.ts) and the run (run.ts) can both name it without importing each other.
import type { machineInfo } from './common';
import type { DecompositionRow, IngestRow, WritePathRow } from './ingest';
import type { ListingResults } from './listing';
import type { LiveRow } from './live';
import type { PgliteResults } from './pglite';
import type { SpaResult } from './spa';
import type { SpoolBenchResults } from './spool';
import type { TrigramWriteResults } from './trigram';

export interface Results {
  generatedAt: string;
  quick: boolean;
  durationSeconds: number;
  machine: ReturnType<typeof machineInfo>;
  ingest: IngestRow[];
  ingestDecomposition: DecompositionRow[];
  /** The write path before and after the round-trip cut, same run (bench/ingest.ts, WritePathRow). */
  writePaths?: WritePathRow[];
  list: ListingResults['list'];
  diagnostics: ListingResults['diagnostics'] | null;
  explain: ListingResults['explain'];
  seed: ListingResults['seed'] | null;
  live: LiveRow[];
  spa: SpaResult | null;
  pglite: PgliteResults | null;
  /** The trainer's write-ahead spool: cost per trigger fire on the training loop (bench/spool.ts). */
  spool?: SpoolBenchResults | null;
  /** Ingest with and without the search's trigram indexes (bench/trigram.ts). */
  trigram?: TrigramWriteResults | null;
  /** The 1-minute load average sampled every 5 s while each section ran (the machine is shared). */
  loadDuring?: Array<{ section: string; mean: number; max: number; samples: number }>;
  targets: Array<{ target: string; value: string; met: boolean | null }>;
}
