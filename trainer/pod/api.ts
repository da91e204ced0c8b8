// The pod's connection to the server: the repo's typed client (createApiClient) with a fetch that
// gzips large bodies, gives every request a deadline, and turns a non-JSON answer (a proxy's
// HTML 502, a load balancer's 404) into an error that still carries its HTTP status. Every
// failure is classified once, here, into what the caller should do about it.
import { gzipSync } from 'node:zlib';
import { createApiClient, errorDetails, type ApiClient } from '../../client/api/client';
import { setMaxListeners } from 'node:events';

export type PodApi = ApiClient;

export interface PodApiOptions {
  apiUrl: string;
  token: string;
  /** Deadline of one HTTP request; a hung connection counts as unreachable. */
  timeoutMs?: number;
  /** Bodies at least this large are sent gzipped. */
  gzipMinBytes?: number;
  fetch?: typeof fetch;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;
const DEFAULT_GZIP_MIN_BYTES = 1024;

/** An answer that was not tRPC JSON: only its status and the start of its text are known. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    bodyStart: string,
    readonly retryAfterMs: number | null = null,
  ) {
    super(`HTTP ${status} from the server (not a tRPC answer)${bodyStart ? `: ${bodyStart}` : ''}`);
    this.name = 'HttpStatusError';
  }
}

export function podFetch(options: Pick<PodApiOptions, 'timeoutMs' | 'gzipMinBytes' | 'fetch'> = {}): typeof fetch {
  const base = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const gzipMinBytes = options.gzipMinBytes ?? DEFAULT_GZIP_MIN_BYTES;
  return async (input, init = {}) => {
    const headers = new Headers(init.headers);
    let body = init.body;
    if (typeof body === 'string' && Buffer.byteLength(body) >= gzipMinBytes) {
      body = new Uint8Array(gzipSync(body));
      headers.set('content-encoding', 'gzip');
    }
    const deadline = AbortSignal.timeout(timeoutMs);
    // Every request adds a listener to the caller's long-lived signal until it is collected: that
    // is expected, not a leak, and Node's warning at 11 of them read like a bug to users.
    if (init.signal) setMaxListeners(0, init.signal);
    const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
    const response = await base(input, { ...init, headers, body, signal });
    if (response.ok) return response;
    const type = response.headers.get('content-type') ?? '';
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    if (!type.includes('json')) {
      const text = (await response.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 200);
      throw new HttpStatusError(response.status, text, retryAfterMs);
    }
    return retryAfterMs === null ? response : withRetryAfter(response, retryAfterMs);
  };
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/**
 * A tRPC error answer with a Retry-After header (a 503 or 429 from the server or a proxy in
 * front of it): the header is copied into the error's data, where the typed client's error
 * carries it, so the backoff can honour it whoever set it.
 */
async function withRetryAfter(response: Response, retryAfterMs: number): Promise<Response> {
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
  }
  for (const item of Array.isArray(json) ? json : [json]) {
    const data = (item as { error?: { data?: Record<string, unknown> } } | null)?.error?.data;
    if (data && typeof data === 'object' && (data.retryAfterSeconds === undefined || data.retryAfterSeconds === null)) data.retryAfterSeconds = retryAfterMs / 1000;
  }
  return new Response(JSON.stringify(json), { status: response.status, statusText: response.statusText, headers: response.headers });
}

export function createPodApi(options: PodApiOptions): PodApi {
  // One HTTP request per call: a 413 then names the batch that was too large (see ApiClientOptions.batching).
  return createApiClient({ url: options.apiUrl, token: options.token, fetch: podFetch(options), batching: false });
}

/**
 * What to do about a failed call:
 * - `retry`: the network, a deadline, a 5xx, 408 or 429: the server may take it later (not
 *   before its Retry-After, when it gave one).
 * - `split`: 413: the body is over the server's limit; the same rows in smaller batches are fine.
 * - `unauthorized`: 401: the token is expired, revoked, or its job ended; nothing this token
 *   sends will be accepted again, so stop sending (spool instead) and say so.
 * - `rejected`: any other 4xx: the server understood and refused; resending changes nothing.
 */
export interface PodCallFailure {
  action: 'retry' | 'split' | 'unauthorized' | 'rejected';
  httpStatus: number | undefined;
  message: string;
  retryAfterMs: number | null;
  /** The server's machine-readable cause, when it gave one (`job_ended`, `token_revoked`…). */
  reason: string | null;
}

function findHttpStatusError(error: unknown): HttpStatusError | null {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current instanceof HttpStatusError) return current;
    current = current.cause;
  }
  return null;
}

function rootMessage(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (!messages.includes(current.message)) messages.push(current.message);
    current = current.cause;
  }
  return messages.join(': ') || String(error);
}

export function classifyPodError(error: unknown): PodCallFailure {
  const details = errorDetails(error);
  const raw = findHttpStatusError(error);
  const httpStatus = details.httpStatus ?? raw?.status;
  const retryAfterMs = details.retryAfterSeconds !== null ? details.retryAfterSeconds * 1000 : (raw?.retryAfterMs ?? null);
  if (httpStatus === undefined) {
    return { action: 'retry', httpStatus, message: `server unreachable (${rootMessage(error)})`, retryAfterMs, reason: null };
  }
  const message = raw && details.httpStatus === undefined ? raw.message : details.message;
  const reason = details.reason;
  if (httpStatus >= 500 || httpStatus === 429 || httpStatus === 408) return { action: 'retry', httpStatus, message, retryAfterMs, reason };
  if (httpStatus === 413) return { action: 'split', httpStatus, message, retryAfterMs, reason };
  if (httpStatus === 401) return { action: 'unauthorized', httpStatus, message, retryAfterMs, reason };
  return { action: 'rejected', httpStatus, message, retryAfterMs, reason };
}

/** Exponential backoff with full jitter: a random wait in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
