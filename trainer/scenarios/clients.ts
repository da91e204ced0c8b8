// Test support for the shared pod scenarios (trainer/clients.test.ts): the two clients of the pod
// protocol behind one interface, so a scenario is written once and played by both.
// - The TypeScript trainer: the pod program itself, `trainer/main.ts`, as a child process with
//   only the pod's variables (its model is the toy model, so the job's config decides its rows);
//   for model outputs chosen by the scenario, its writer and metrics sender in this process.
// - The Python callback: `trainer/python/fake_training.py` driving the real callback in python3
//   (Trainer's event order, no model), `--print-steps` announcing each step once its rows are
//   on disk.
// Each client says what it generated (keys `step/sampleIndex`), what its summary counted, and
// what its `sync` did, in one shape; the scenarios assert on those and on the database.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobConfigInput } from '#contract/job-config';
import { createPodApi } from '../pod/api';
import { PodConnection } from '../pod/connection';
import { MetricsReporter } from '../pod/metrics';
import { Spool, spoolFileFor } from '../pod/spool';
import { PredictionWriter } from '../pod/writer';
import { PYTHON_DIR, PYTHON_MISSING, python, spawnPython } from '../python/python-runner';
import { memoryLogger } from '../pod/logger';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** `short`: a few seconds of training; `long`: tens of seconds (for the Python client; the TypeScript trainer trains as fast as it can). */
export type RunLength = 'short' | 'long';

export type PodVars = Record<'JOB_ID' | 'JOB_TOKEN' | 'API_URL', string>;

export interface RunOptions {
  length: RunLength;
  /** The second run of a job, to upload what the first left: generate as little as the client can. */
  resume?: boolean;
  /** How long the client may spend at exit delivering what is unsent (then it leaves it in the spool). */
  drainSeconds: number;
  spoolDir: string;
}

/** A client's accounting, from its summary line: generated = persisted + rejected + spooled + pending. */
export interface PodCounters {
  generated: number;
  persisted: number;
  rejected: number;
  spooled: number;
  pending: number;
  altered: number;
}

export interface SyncRun {
  code: number | null;
  output: string;
  /** Rows the sync read from the spool (those the server had not answered for), and what became of them. */
  summary: { read: number; inserted: number; duplicates: number; rejected: number; unsent: number } | null;
}

export interface PodProcess {
  readonly output: string;
  readonly spoolFile: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** `step/sampleIndex` of every row the client announced (each is on disk by the announcement). */
  generated(): string[];
}

export interface OutputsRun {
  counters: PodCounters;
  metricsRefused: number;
  output: string;
  spoolFile: string;
}

export interface PodClient {
  name: string;
  /** Why this client cannot run here (python3 missing), or null. */
  skip: string | null;
  /** Rows of one trigger fire: a kill may leave one fire on disk that was not announced yet. */
  rowsPerFire: number;
  /** Rows a whole run of this length generates. */
  plannedRows(length: RunLength): number;
  /** The exit code of a run that ended with rows left in the spool (a library cannot choose its script's). */
  exitWithRowsLeft: number;
  start(vars: PodVars, options: RunOptions): PodProcess;
  counters(output: string): PodCounters | null;
  /** Rows a run found in the spool at start (left by an earlier run), from its output. */
  recovered(output: string): number;
  sync(spoolFile: string, vars: Omit<PodVars, 'JOB_ID'>): Promise<SyncRun>;
  /** A run whose model writes `outputs[sampleIndex]`, with Trainer's logs (`"NaN"` for NaN) at each step. */
  runOutputs(vars: PodVars, scenario: { outputs: string[]; steps: number; logs: Record<number, Record<string, number | 'NaN'>> }, spoolDir: string): Promise<OutputsRun>;
}

/** The job the scenarios create: its config is the TypeScript trainer's run (the Python callback ignores it). */
export function jobConfigFor(length: RunLength) {
  return {
    training: { epochs: length === 'short' ? 30 : 100, evalStrategy: 'no' },
    predictions: { sampleFrequency: 'steps', stepInterval: 5, sampleCount: 5 },
  } satisfies Pick<JobConfigInput, 'training' | 'predictions'>;
}

/** Steps per epoch of the example dataset (371 rows, a tenth held out, batches of 8). */
const EXAMPLE_STEPS_PER_EPOCH = 42;

function keysOf(step: number, count: number): string[] {
  return Array.from({ length: count }, (_, sampleIndex) => `${step}/${sampleIndex}`);
}

function lastMatch(pattern: RegExp, text: string): RegExpExecArray | null {
  let last: RegExpExecArray | null = null;
  for (const match of text.matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))) last = match as RegExpExecArray;
  return last;
}

function numbers(match: RegExpExecArray | null): number[] | null {
  return match ? match.slice(1).map((value) => (value === undefined ? 0 : Number(value))) : null;
}

function collect(child: ReturnType<typeof spawn>): { text: () => string } {
  let text = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  return { text: () => text };
}

function spawnTrainer(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'trainer', 'main.ts'), ...args], {
    cwd: ROOT,
    // eslint-disable-next-line no-restricted-properties -- a test helper hands its PATH on to the child, and nothing else
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TRAINER_HEARTBEAT_MS: '500', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = collect(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, output, exited };
}

export const typescriptTrainer: PodClient = {
  name: 'the TypeScript trainer',
  skip: null,
  rowsPerFire: 5,
  plannedRows: (length) => {
    const { training, predictions } = jobConfigFor(length);
    return Math.floor((training.epochs * EXAMPLE_STEPS_PER_EPOCH) / predictions.stepInterval) * predictions.sampleCount;
  },
  exitWithRowsLeft: 2,
  start(vars, options) {
    // A resumed run trains its job again (the program cannot be told not to): its rows have the
    // keys of the first run's, and the server stores each key once.
    const run = spawnTrainer(['--drain-timeout', String(options.drainSeconds)], { ...vars, TRAINER_SPOOL_DIR: options.spoolDir });
    return {
      get output() {
        return run.output.text();
      },
      spoolFile: spoolFileFor(options.spoolDir, vars.JOB_ID.trim()),
      exited: run.exited,
      kill: (signal) => run.child.kill(signal),
      generated: () => [...run.output.text().matchAll(/Trigger "\w+" fired at step (\d+) \(epoch \d+\): (\d+) prediction/g)].flatMap((m) => keysOf(Number(m[1]), Number(m[2]))),
    };
  },
  counters(output) {
    const found = numbers(lastMatch(/SUMMARY status=\w+ mode=\w+ missing=\S+ generated=(\d+) persisted=(\d+) spooled=(\d+) rejected=(\d+) replaced=\d+ altered=(\d+)/, output));
    if (!found) return null;
    const [generated = NaN, persisted = NaN, spooled = NaN, rejected = NaN, altered = NaN] = found;
    // The summary is printed after close(): nothing is on its way any more.
    return { generated, persisted, spooled, rejected, pending: 0, altered };
  },
  recovered: (output) => Number(/recoveredFromSpool=(\d+)/.exec(output)?.[1] ?? 0),
  async sync(spoolFile, vars) {
    const run = spawnTrainer(['sync', '--spool', spoolFile], vars);
    const { code } = await run.exited;
    const output = run.output.text();
    const found = numbers(/SYNC SUMMARY rows=(\d+) stored=\d+ \(new=(\d+) already-stored=(\d+) replaced=\d+\) altered=\d+ rejected=(\d+) not-sent=(\d+)/.exec(output));
    const [read = NaN, inserted = NaN, duplicates = NaN, rejected = NaN, unsent = NaN] = found ?? [];
    return { code, output, summary: found ? { read, inserted, duplicates, rejected, unsent } : null };
  },
  async runOutputs(vars, scenario, spoolDir) {
    // The model's outputs cannot be chosen in the toy model of main.ts: the writer and metrics
    // sender main.ts runs are driven here instead, with the same connection and spool.
    const { log, lines } = memoryLogger();
    const connection = new PodConnection(createPodApi({ apiUrl: vars.API_URL, token: vars.JOB_TOKEN }));
    const spool = new Spool(spoolFileFor(spoolDir, vars.JOB_ID));
    const writer = new PredictionWriter({ connection, spool, log });
    const metrics = new MetricsReporter({ connection, log, spool, intervalMs: 50 });
    metrics.start();
    for (let step = 1; step <= scenario.steps; step++) {
      const at = { step, epoch: step / scenario.steps };
      for (const [name, value] of Object.entries(scenario.logs[step] ?? {})) metrics.record(at, name, Number(value));
      writer.enqueue(
        scenario.outputs.map((prediction, sampleIndex) => ({ epoch: 1, step, sampleIndex, trigger: 'steps' as const, prompt: `question ${sampleIndex}`, groundTruth: `answer ${sampleIndex}`, prediction })),
      );
    }
    const [counters] = await Promise.all([writer.close(20_000), metrics.close(20_000)]);
    return {
      counters: { ...counters, pending: writer.pending, altered: writer.altered },
      metricsRefused: metrics.answered.rejected,
      output: lines.join('\n'),
      spoolFile: spool.file,
    };
  },
};

const PYTHON_SAMPLES = 3;
const PYTHON_STEPS: Record<RunLength, { steps: number; seconds: number }> = { short: { steps: 150, seconds: 0.02 }, long: { steps: 500, seconds: 0.04 } };

export const pythonCallback: PodClient = {
  name: 'the Python callback',
  skip: PYTHON_MISSING,
  rowsPerFire: PYTHON_SAMPLES,
  plannedRows: (length) => PYTHON_STEPS[length].steps * PYTHON_SAMPLES,
  exitWithRowsLeft: 0,
  start(vars, options) {
    const spoolFile = path.join(options.spoolDir, 'spool.jsonl');
    const { steps, seconds } = PYTHON_STEPS[options.length];
    // A resumed run never fires (sampling on evaluation, with no evaluation): it only uploads.
    const trigger = options.resume ? ['--sample-frequency', 'eval', '--eval-strategy', 'no'] : ['--sample-frequency', 'steps', '--step-interval', '1', '--eval-strategy', 'no'];
    const args = [
      path.join(PYTHON_DIR, 'fake_training.py'),
      ...['--epochs', '1', '--steps-per-epoch', String(options.resume ? 1 : steps), '--step-seconds', String(seconds), '--sample-count', String(PYTHON_SAMPLES)],
      ...trigger,
      ...['--print-steps', '--spool', spoolFile, '--exit-timeout', String(options.drainSeconds)],
    ];
    const run = spawnPython(args, vars, options.spoolDir);
    return {
      get output() {
        return `${run.stdout}\n${run.stderr}`;
      },
      spoolFile,
      exited: run.exited,
      kill: (signal) => run.child.kill(signal),
      generated: () => (options.resume ? [] : [...run.stdout.matchAll(/^step (\d+)$/gm)].flatMap((m) => keysOf(Number(m[1]), PYTHON_SAMPLES))),
    };
  },
  counters(output) {
    const found = numbers(lastMatch(/generated=(\d+) persisted=(\d+) spooled=(\d+) rejected=(\d+) replaced=\d+ altered=(\d+) metrics_refused=\d+(?: pending=(\d+))?/, output));
    if (!found) return null;
    const [generated = NaN, persisted = NaN, spooled = NaN, rejected = NaN, altered = NaN, pending = 0] = found;
    return { generated, persisted, spooled, rejected, pending, altered };
  },
  recovered: (output) => Number(/(\d+) prediction\(s\) left in .* by an earlier run will be uploaded/.exec(output)?.[1] ?? 0),
  async sync(spoolFile, vars) {
    const run = await python([path.join(PYTHON_DIR, 'predictions_callback.py'), 'sync', '--spool', spoolFile], vars);
    const output = `${run.stdout}\n${run.stderr}`;
    const found = numbers(/sync: (\d+) row\(s\) read, inserted=(\d+) duplicates=(\d+) replaced=\d+ altered=\d+ rejected=(\d+) unsent=(\d+)/.exec(output));
    const [read = NaN, inserted = NaN, duplicates = NaN, rejected = NaN, unsent = NaN] = found ?? [];
    return { code: run.code, output, summary: found ? { read, inserted, duplicates, rejected, unsent } : null };
  },
  async runOutputs(vars, scenario, spoolDir) {
    const file = path.join(spoolDir, 'scenario.json');
    writeFileSync(file, JSON.stringify({ outputs: scenario.outputs, logs: scenario.logs }));
    const spoolFile = path.join(spoolDir, 'spool.jsonl');
    const args = ['--epochs', '1', '--steps-per-epoch', String(scenario.steps), '--sample-frequency', 'steps', '--step-interval', '1', '--eval-strategy', 'no'];
    const count = String(scenario.outputs.length);
    const run = await python([path.join(PYTHON_DIR, 'fake_training.py'), ...args, '--samples', count, '--sample-count', count, '--scenario', file, '--spool', spoolFile], vars, spoolDir);
    const output = `${run.stdout}\n${run.stderr}`;
    const counters = pythonCallback.counters(output);
    if (run.code !== 0 || !counters) throw new Error(`the Python run failed (exit ${run.code}):\n${output}`);
    return { counters, metricsRefused: Number(/metrics_refused=(\d+)/.exec(output)?.[1] ?? NaN), output, spoolFile };
  },
};

export const CLIENTS: readonly PodClient[] = [typescriptTrainer, pythonCallback];
