// Shared pieces of the benchmark: realistic prediction rows, timing statistics, the machine
// description and a small keep-alive HTTP client. No server imports, so the load worker can
// use it too.
import type { PredictionTrigger } from '#contract/triggers';
import http from 'node:http';
import os from 'node:os';
import { gzipSync } from 'node:zlib';

export interface PredictionRow {
  epoch: number;
  step: number;
  sampleIndex: number;
  trigger: PredictionTrigger;
  prompt: string;
  groundTruth: string;
  prediction: string;
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same rows on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ren', 'ta', 'vos', 'el', 'ur', 'sa', 'din', 'po', 'qua', 'ne', 'tri', 'ga', 'bel', 'sto', 'fu', 'ix', 'mar'];

/** A vocabulary of word-like tokens; picked Zipf-like, so a few words are common and most rare. */
export const VOCABULARY: string[] = (() => {
  const next = rng(7);
  const words = new Set<string>(['the', 'of', 'and', 'to', 'a', 'in', 'is', 'that', 'for', 'it', 'answer', 'model', 'question']);
  while (words.size < 3000) {
    const parts = 1 + Math.floor(next() * 3);
    let word = '';
    for (let i = 0; i < parts; i++) word += SYLLABLES[Math.floor(next() * SYLLABLES.length)];
    words.add(word);
  }
  return [...words];
})();

/** Words of the vocabulary by rank; the benchmark's search term is one of middling frequency. */
export function zipfWord(next: () => number): string {
  // Inverse-CDF of a 1/x^1.0-ish distribution over the vocabulary, cheap and good enough.
  const rank = Math.min(VOCABULARY.length - 1, Math.floor(Math.exp(next() * Math.log(VOCABULARY.length)) - 1));
  return VOCABULARY[rank] ?? 'the';
}

/** Text of about `length` characters made of words, ending at a word boundary. */
export function text(next: () => number, length: number): string {
  let out = '';
  while (out.length < length) out += (out ? ' ' : '') + zipfWord(next);
  return out.slice(0, length).trimEnd();
}

/**
 * The batch a pod writes at its `batch`-th trigger fire: `size` samples at one step, with
 * realistic sizes (prompt ~200 chars, ground truth ~150, prediction ~200). Deterministic in
 * (podSeed, batch), so a replay sends byte-identical batches.
 */
export function predictionBatch(podSeed: number, batch: number, size: number): PredictionRow[] {
  const next = rng(podSeed * 100_003 + batch);
  const rows: PredictionRow[] = [];
  for (let i = 0; i < size; i++) {
    rows.push({
      epoch: 1 + Math.floor(batch / 10),
      step: (batch + 1) * 10,
      sampleIndex: i,
      trigger: 'eval',
      prompt: text(next, 190 + Math.floor(next() * 20)),
      groundTruth: text(next, 140 + Math.floor(next() * 20)),
      prediction: text(next, 190 + Math.floor(next() * 20)),
    });
  }
  return rows;
}

// ---- statistics ----

export function percentile(sortedValues: number[], p: number): number {
  if (sortedValues.length === 0) return NaN;
  const index = Math.min(sortedValues.length - 1, Math.max(0, Math.ceil((p / 100) * sortedValues.length) - 1));
  return sortedValues[index] ?? NaN;
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? NaN),
    mean: round(mean),
  };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Wall-clock milliseconds comparable across threads and processes (each has its own performance.now origin). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Runs `fn` sequentially: `warmup` untimed calls, then timed calls until `iterations` are done
 * or `budgetMs` has passed (but at least `minIterations`). Returns the latencies in ms.
 */
export async function timeSequential(
  fn: () => Promise<unknown>,
  options: { warmup: number; iterations: number; minIterations: number; budgetMs: number },
): Promise<number[]> {
  for (let i = 0; i < options.warmup; i++) await fn();
  const samples: number[] = [];
  const deadline = performance.now() + options.budgetMs;
  while (samples.length < options.iterations && (samples.length < options.minIterations || performance.now() < deadline)) {
    const start = performance.now();
    await fn();
    samples.push(performance.now() - start);
  }
  return samples;
}

// ---- HTTP ----

export interface HttpResponse {
  status: number;
  body: string;
}

/** A keep-alive HTTP client on node:http: less client-side CPU than fetch, so the server is what gets measured. */
export function createHttpClient(baseUrl: string, maxSockets: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const base = new URL(baseUrl);
  const request = (method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: Buffer | string) =>
    new Promise<HttpResponse>((resolve, reject) => {
      const req = http.request(
        { host: base.hostname, port: base.port, path, method, agent, headers: body !== undefined ? { ...headers, 'content-length': String(Buffer.byteLength(body)) } : headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  const postBody = (path: string, token: string, body: RequestBody) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    return request('POST', path, body.gzip ? { ...headers, 'content-encoding': 'gzip' } : headers, body.data);
  };
  return {
    get: (path: string, token: string) => request('GET', path, { authorization: `Bearer ${token}` }),
    /** POSTs JSON, optionally gzipped (the pod's choice; the server inflates). */
    postJson: (path: string, token: string, payload: unknown, gzip = false) => postBody(path, token, requestBody(payload, gzip)),
    /** POSTs a body made earlier by requestBody. */
    postBody,
    close: () => agent.destroy(),
  };
}

export interface RequestBody {
  data: Buffer | string;
  gzip: boolean;
}

/** A JSON request body, gzipped when asked, ready to send. */
export function requestBody(payload: unknown, gzip: boolean): RequestBody {
  const json = JSON.stringify(payload);
  return gzip ? { data: gzipSync(json), gzip } : { data: json, gzip };
}

export function trpcQueryPath(procedure: string, input: unknown): string {
  return `/trpc/${procedure}?input=${encodeURIComponent(JSON.stringify(input))}`;
}

// ---- machine ----

export function machineInfo(postgres: string) {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model.trim() ?? 'unknown',
    memGiB: round(os.totalmem() / 1024 ** 3, 1),
    node: process.version,
    postgres,
    platform: `${os.platform()} ${os.release()}`,
    loadAverageAtStart: os.loadavg().map((v) => round(v, 2)),
  };
}
