// The main thread's handle on the load-generator worker (bench/load-worker.ts).
import { Worker } from 'node:worker_threads';
import type { IngestResult, IngestTask, LiveResult, LiveTask } from './load-worker';

export interface LoadWorker {
  ingest(task: Omit<IngestTask, 'kind'>): Promise<IngestResult>;
  live(task: Omit<LiveTask, 'kind'>): Promise<LiveResult>;
  close(): Promise<void>;
}

export function startLoadWorker(): LoadWorker {
  const worker = new Worker(new URL('./load-worker.boot.mjs', import.meta.url));
  let nextId = 1;
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  worker.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const entry = waiting.get(message.id);
    if (!entry) return;
    waiting.delete(message.id);
    if (message.error !== undefined) entry.reject(new Error(`load worker: ${message.error}`));
    else entry.resolve(message.result);
  });
  worker.on('error', (error) => {
    for (const entry of waiting.values()) entry.reject(error);
    waiting.clear();
  });
  const run = (task: IngestTask | LiveTask) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, task });
    });
  return {
    ingest: async (task) => (await run({ kind: 'ingest', ...task })) as IngestResult,
    live: async (task) => (await run({ kind: 'live', ...task })) as LiveResult,
    close: async () => {
      await worker.terminate();
    },
  };
}
