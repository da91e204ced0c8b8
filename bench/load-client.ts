// The main process's handle on the load generator (bench/load-worker.ts). It runs in a child
// process, not a worker thread, so that the bench process's CPU time is the server's alone:
// CPU per stored row is read per process (bench/cpu.ts).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { IngestResult, IngestTask, LiveResult, LiveTask } from './load-worker';

export interface LoadWorker {
  ingest(task: Omit<IngestTask, 'kind'>): Promise<IngestResult>;
  live(task: Omit<LiveTask, 'kind'>): Promise<LiveResult>;
  close(): Promise<void>;
}

export function startLoadWorker(): LoadWorker {
  // execArgv empty: the boot file registers tsx itself, and a --cpu-prof given to the bench
  // profiles the server, not the load generator.
  const child = fork(fileURLToPath(new URL('./load-worker.boot.mjs', import.meta.url)), [], { execArgv: [], serialization: 'advanced', stdio: 'inherit' });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  const failAll = (error: Error) => {
    for (const entry of waiting.values()) entry.reject(error);
    waiting.clear();
  };
  child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const entry = waiting.get(message.id);
    if (!entry) return;
    waiting.delete(message.id);
    if (message.error !== undefined) entry.reject(new Error(`load worker: ${message.error}`));
    else entry.resolve(message.result);
  });
  child.on('error', failAll);
  child.on('exit', (code, signal) => failAll(new Error(`load worker exited (code ${code}, signal ${signal})`)));
  const run = (task: IngestTask | LiveTask) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      child.send({ id, task });
    });
  return {
    ingest: async (task) => (await run({ kind: 'ingest', ...task })) as IngestResult,
    live: async (task) => (await run({ kind: 'live', ...task })) as LiveResult,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill();
      await exited;
    },
  };
}
