// The predictions writer against a tiny local HTTP server that speaks tRPC's wire format and
// misbehaves on cue (5xx, hangs, 4xx, 401, refused connections, HTML from a "proxy"), so every
// path of retry / spool / drain is exercised over real sockets.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { PredictionRowInput } from '#contract/pod.schemas';
import { hasUnstorableText, toStorableText } from '#contract/text';
import { createPodApi } from './api';
import { PodConnection } from './connection';
import { readSpoolFile, Spool } from './spool';
import { PredictionWriter, type WriterOptions } from './writer';
import { memoryLogger } from './logger';

type Behaviour = 'ok' | 'error500' | 'html502' | 'error400' | 'error401' | 'error401ended' | 'error429' | 'html503' | 'hang' | 'destroy';

interface Received {
  encoding: string | undefined;
  authorization: string | undefined;
  rows: number;
  /** When the request arrived (ms since the epoch). */
  at: number;
}

/** What the server compares to tell a duplicate from a replacement (the text as stored). */
function storedContent(row: PredictionRowInput): string {
  return JSON.stringify([row.epoch, row.trigger, toStorableText(row.prompt), toStorableText(row.groundTruth), toStorableText(row.prediction)]);
}

class FakePodServer {
  /** Stored rows by (step, sampleIndex), as their content, like the real server's key. */
  readonly stored = new Map<string, string>();
  readonly received: Received[] = [];
  /** Behaviours for the next requests, in order; then `fallback`. */
  script: Behaviour[] = [];
  fallback: Behaviour = 'ok';
  /** Row indexes (within a batch) answered as rejected. */
  rejectWhere: (row: PredictionRowInput) => string | null = () => null;
  /** Like the server's MAX_BODY_BYTES: a larger (inflated) body is answered 413, as server/app.ts does. */
  maxBodyBytes = Infinity;
  private server: Server | null = null;
  port = 0;

  async listen(port = 0): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body = Buffer.concat(chunks);
    const encoding = req.headers['content-encoding'];
    if (encoding === 'gzip') body = gunzipSync(body);
    // tRPC's wire format, batched (`?batch=1`, inputs and answers by position) or one call per request (as pods send).
    const batched = (req.url ?? '').includes('batch=1');
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    const input = (batched ? (parsed as Record<string, unknown>)['0'] : parsed) as { predictions?: PredictionRowInput[] } | undefined;
    const rows = input?.predictions ?? [];
    const envelope = (answer: object) => JSON.stringify(batched ? [answer] : answer);
    this.received.push({ encoding, authorization: req.headers.authorization, rows: rows.length, at: Date.now() });
    const error = (httpStatus: number, code: string, message: string, reason: string | null = null, headers: Record<string, string> = {}) => {
      res.writeHead(httpStatus, { 'content-type': 'application/json', ...headers });
      res.end(envelope({ error: { message, code: -32000, data: { code, httpStatus, reason } } }));
    };
    if (body.length > this.maxBodyBytes) {
      res.writeHead(413, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `Request body exceeds the ${this.maxBodyBytes}-byte limit`, code: -32600, data: { code: 'PAYLOAD_TOO_LARGE', httpStatus: 413 } } }));
      return;
    }
    const behaviour = this.script.shift() ?? this.fallback;
    switch (behaviour) {
      case 'error429':
        return error(429, 'TOO_MANY_REQUESTS', 'Slow down', null, { 'retry-after': '1' });
      case 'html503':
        res.writeHead(503, { 'content-type': 'text/html', 'retry-after': '1' });
        res.end('<html><body>Service unavailable</body></html>');
        return;
      case 'hang':
        return; // never answers; the client's deadline must end it
      case 'destroy':
        req.socket.destroy();
        return;
      case 'html502':
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html><body>Bad gateway</body></html>');
        return;
      case 'error500':
        return error(500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
      case 'error400':
        return error(400, 'BAD_REQUEST', 'predictions holds at most 1000 rows per batch; split the batch');
      case 'error401':
        return error(401, 'UNAUTHORIZED', 'This job token was revoked (a newer token was issued); use the current one', 'token_revoked');
      case 'error401ended':
        return error(401, 'UNAUTHORIZED', 'The job has ended (cancelled); its token no longer accepts writes', 'job_ended');
      case 'ok': {
        // As the real server answers: same key and content is a duplicate, other content replaces.
        const answer = { inserted: 0, duplicates: 0, replaced: 0, altered: 0, rejected: [] as { index: number; reason: string }[] };
        rows.forEach((row, index) => {
          const reason = this.rejectWhere(row);
          if (reason) return answer.rejected.push({ index, reason });
          const key = `${row.step}:${row.sampleIndex}`;
          const content = storedContent(row);
          const before = this.stored.get(key);
          if (before === content) return answer.duplicates++;
          if (before === undefined) answer.inserted++;
          else answer.replaced++;
          this.stored.set(key, content);
          if ([row.prompt, row.groundTruth, row.prediction].some(hasUnstorableText)) answer.altered++;
        });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(envelope({ result: { data: answer } }));
      }
    }
  }
}

function rows(count: number, fromStep = 1, long = 0): PredictionRowInput[] {
  return Array.from({ length: count }, (_, i) => ({
    epoch: 1,
    step: fromStep + Math.floor(i / 5),
    sampleIndex: i % 5,
    trigger: 'steps' as const,
    prompt: `prompt ${i}`,
    groundTruth: `answer ${i}`,
    prediction: `guess ${i}${'x'.repeat(long)}`,
  }));
}


let server: FakePodServer;
let dir: string;
const writers: PredictionWriter[] = [];

beforeEach(async () => {
  server = new FakePodServer();
  await server.listen();
  dir = mkdtempSync(path.join(tmpdir(), 'writer-test-'));
});
afterEach(async () => {
  for (const writer of writers.splice(0)) await writer.close(0);
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function makeWriter(options: { url?: string; timeoutMs?: number } & Partial<WriterOptions> = {}) {
  const { log, lines } = memoryLogger();
  const connection = new PodConnection(createPodApi({ apiUrl: options.url ?? server.url, token: 'job-token', timeoutMs: options.timeoutMs ?? 2_000 }));
  const spool = new Spool(path.join(dir, 'job.jsonl'));
  const writer = new PredictionWriter({ connection, spool, log, maxAttempts: 3, retryBaseMs: 10, retryCapMs: 50, probeIntervalMs: 100, ...options });
  writers.push(writer);
  return { writer, lines, connection, spool };
}

function expectBalanced(writer: PredictionWriter) {
  const c = writer.counters;
  expect(c.generated).toBe(c.persisted + c.rejected + c.spooled + writer.pending);
}

describe('PredictionWriter', () => {
  it('retries 5xx (JSON or a proxy HTML page) and network drops, and stores each row once', async () => {
    server.script = ['error500', 'html502', 'destroy'];
    const { writer, lines } = makeWriter({ maxAttempts: 5 });
    writer.enqueue(rows(10));
    const counters = await writer.close(5_000);
    expect(server.received).toHaveLength(4);
    expect(server.stored.size).toBe(10);
    expect(counters).toEqual({ generated: 10, persisted: 10, spooled: 0, rejected: 0 });
    expect(lines.filter((l) => l.startsWith('debug'))).toHaveLength(3);
  });

  it('never retries a 4xx: the batch counts as rejected and the server message is logged', async () => {
    server.script = ['error400'];
    const { writer, lines } = makeWriter();
    writer.enqueue(rows(7));
    const counters = await writer.close(5_000);
    expect(server.received).toHaveLength(1);
    expect(counters).toEqual({ generated: 7, persisted: 0, spooled: 0, rejected: 7 });
    expect(lines.join('\n')).toContain('at most 1000 rows per batch');
  });

  it('counts per-row rejections from the answer, with reasons, and the rest as persisted', async () => {
    server.rejectWhere = (row) => (row.sampleIndex === 3 ? 'prediction: Too big' : null);
    const { writer, lines } = makeWriter();
    writer.enqueue(rows(10));
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 10, persisted: 8, spooled: 0, rejected: 2 });
    expect(lines.join('\n')).toMatch(/rejected 2 of 10 prediction\(s\): step 1 sample 3: prediction: Too big/);
  });

  it('counts rows that replaced older content (a resumed run) as persisted, and says how many rows were altered', async () => {
    const { writer, lines } = makeWriter();
    writer.enqueue(rows(10));
    await vi.waitFor(() => expect(writer.counters.persisted).toBe(10));
    // Resumed from a checkpoint: the same steps again, half with new text, one with a NUL.
    const resumed = rows(10).map((row, i) => (i % 2 === 0 ? { ...row, prediction: `resumed ${i}${i === 4 ? '\u0000' : ''}` } : row));
    writer.enqueue(resumed);
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 20, persisted: 20, spooled: 0, rejected: 0 });
    expect(writer.stored).toEqual({ inserted: 10, duplicates: 5, replaced: 5 });
    expect(writer.altered).toBe(1);
    expectBalanced(writer);
    expect(lines.join('\n')).toMatch(/5 prediction\(s\) replaced rows the server held/);
    expect(lines.join('\n')).toMatch(/warn 1 prediction\(s\) had characters PostgreSQL cannot store \(NUL, half an emoji\) replaced by U\+FFFD/);
  });

  it('on 401 stops sending, spools, and says so', async () => {
    server.script = ['error401'];
    const { writer, lines, connection, spool } = makeWriter();
    writer.enqueue(rows(5));
    await vi.waitFor(() => expect(writer.counters.spooled).toBe(5));
    writer.enqueue(rows(5, 100));
    const counters = await writer.close(5_000);
    expect(server.received).toHaveLength(1);
    expect(connection.tokenRefused).toMatch(/revoked/);
    expect(counters).toEqual({ generated: 10, persisted: 0, spooled: 10, rejected: 0 });
    expect(readSpoolFile(spool.file).entries).toHaveLength(10);
    expect(lines.join('\n')).toMatch(/refused the job token .*rotate the token on the job page .*JOB_TOKEN=<the new token> npm run trainer -- sync --spool/);
  });

  it('on 401 because the job has ended, keeps the rows but does not suggest a sync that would fail', async () => {
    server.script = ['error401ended'];
    const { writer, lines, connection } = makeWriter();
    writer.enqueue(rows(3));
    const counters = await writer.close(5_000);
    expect(connection.tokenRefusedReason).toBe('job_ended');
    expect(counters).toMatchObject({ generated: 3, spooled: 3 });
    expect(lines.join('\n')).toMatch(/refused the job token .*the job has ended\. To keep them, press "New upload token".*JOB_TOKEN=<the upload token> .*sync --spool/);
  });

  it('sends gzip bodies, bounded batches (rows and bytes), with the bearer token', async () => {
    const { writer } = makeWriter({ maxBatchBytes: 200_000 });
    writer.enqueue(rows(2_500));
    writer.enqueue(rows(50, 10_000, 10_000)); // ~10 kB each: 50 rows need 3+ batches of ≤ 200 kB
    const counters = await writer.close(10_000);
    expect(counters).toEqual({ generated: 2_550, persisted: 2_550, spooled: 0, rejected: 0 });
    expect(server.received.every((r) => r.encoding === 'gzip' && r.authorization === 'Bearer job-token')).toBe(true);
    expect(Math.max(...server.received.map((r) => r.rows))).toBeLessThanOrEqual(1000);
    const bigBatches = server.received.filter((r) => r.rows < 1000 && r.rows > 0).length;
    expect(bigBatches).toBeGreaterThanOrEqual(3);
  });

  it('gives up on a hung request at its deadline and retries', async () => {
    server.script = ['hang'];
    const { writer } = makeWriter({ timeoutMs: 300 });
    writer.enqueue(rows(5));
    const counters = await writer.close(5_000);
    expect(server.received).toHaveLength(2);
    expect(counters.persisted).toBe(5);
  });

  it('spools when the server is unreachable, keeps accepting rows, and drains the spool first when it is back', async () => {
    const port = server.port;
    await server.close();
    const { writer, lines, spool } = makeWriter({ url: `http://127.0.0.1:${port}` });
    writer.enqueue(rows(10));
    await vi.waitFor(() => expect(writer.counters.spooled).toBe(10), { timeout: 5_000 });
    writer.enqueue(rows(10, 50)); // still down: straight to the spool
    await vi.waitFor(() => expect(writer.counters.spooled).toBe(20), { timeout: 5_000 });
    expect(readFileSync(spool.file, 'utf8').trim().split('\n')).toHaveLength(20);
    expectBalanced(writer);

    await server.listen(port);
    await vi.waitFor(() => expect(writer.counters.persisted).toBe(20), { timeout: 5_000 });
    writer.enqueue(rows(5, 900));
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 25, persisted: 25, spooled: 0, rejected: 0 });
    expect(server.stored.size).toBe(25);
    expect(existsSync(spool.file)).toBe(false);
    const text = lines.join('\n');
    expect(text).toMatch(/unreachable after 3 attempts/);
    expect(text).toMatch(/reachable again; uploading 20 spooled/);
  });

  it('replays a spool left by an earlier run: rows the server already has count as persisted, once', async () => {
    const spool = new Spool(path.join(dir, 'job.jsonl'));
    spool.append('prediction', rows(10));
    for (const row of rows(5)) server.stored.set(`${row.step}:${row.sampleIndex}`, storedContent(row)); // half arrived before the crash
    const { writer } = makeWriter();
    expect(writer.recovered).toBe(10);
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 10, persisted: 10, spooled: 0, rejected: 0 });
    expect(writer.stored).toEqual({ inserted: 5, duplicates: 5, replaced: 0 });
    expect(server.stored.size).toBe(10);
  });

  it('at close, waits for an unreachable server only until the deadline, then leaves the rest spooled', async () => {
    server.fallback = 'error500';
    const { writer } = makeWriter();
    writer.enqueue(rows(5));
    const started = Date.now();
    const counters = await writer.close(500);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(counters).toEqual({ generated: 5, persisted: 0, spooled: 5, rejected: 0 });
  });

  it('with no server (offline mode) writes everything to the spool and never blocks', async () => {
    const { log } = memoryLogger();
    const spool = new Spool(path.join(dir, 'local.jsonl'));
    const writer = new PredictionWriter({ connection: new PodConnection(null), spool, log });
    writer.enqueue(rows(10));
    const counters = await writer.close(0);
    expect(counters).toEqual({ generated: 10, persisted: 0, spooled: 10, rejected: 0 });
    expect(readSpoolFile(spool.file).entries).toHaveLength(10);
  });
  it('writes ahead: rows are in the spool file when enqueue returns, before any answer (the server hangs)', async () => {
    server.fallback = 'hang';
    const { writer, spool } = makeWriter({ timeoutMs: 30_000 });
    writer.enqueue(rows(5));
    // No await between the hand-over and the read: a kill -9 here would find them on disk.
    expect(readSpoolFile(spool.file).entries.map((e) => e.body)).toEqual(rows(5));
    await vi.waitFor(() => expect(server.received).toHaveLength(1));
    writer.enqueue(rows(5, 10));
    expect(readSpoolFile(spool.file).entries).toHaveLength(10);
    expectBalanced(writer);
    expect(writer.counters).toEqual({ generated: 10, persisted: 0, spooled: 0, rejected: 0 });
    expect(writer.pending).toBe(10);
  });

  it('marks rows done as the server answers; a restart sends only the rest, and a torn last line is dropped', async () => {
    const file = path.join(dir, 'job.jsonl');
    // What a killed run leaves: 10 rows, the first 6 answered, then a line cut short mid-append.
    const lines = rows(10).map((row, seq) => JSON.stringify({ seq, prediction: row }));
    writeFileSync(file, `${lines.slice(0, 8).join('\n')}\n{"done":[[0,5]]}\n${lines.slice(8).join('\n')}\n${lines[9]?.slice(0, 40)}`);
    const { writer, lines: logged } = makeWriter();
    expect(writer.recovered).toBe(4);
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 4, persisted: 4, spooled: 0, rejected: 0 });
    expect(server.received.map((r) => r.rows)).toEqual([4]);
    expect([...server.stored.keys()].sort()).toEqual(['2:1', '2:2', '2:3', '2:4']);
    expect(logged.join('\n')).toMatch(/last line of the spool .* was cut short/);
    expect(existsSync(file)).toBe(false);
  });

  it('a restart after a torn append appends cleanly: the next line is not glued to the torn one', async () => {
    const file = path.join(dir, 'job.jsonl');
    writeFileSync(file, `${JSON.stringify({ seq: 0, prediction: rows(1)[0] })}\n{"seq":1,"predic`);
    server.fallback = 'error401';
    const { writer } = makeWriter();
    writer.enqueue(rows(3, 50));
    // As a kill -9 right after this append would leave the file: every row readable.
    const atKill = readSpoolFile(file);
    expect(atKill.badLines).toEqual([]);
    expect(atKill.tornTail).toBe(false);
    expect(atKill.entries.map((e) => e.body)).toEqual([...rows(1), ...rows(3, 50)]);
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 4, persisted: 0, spooled: 4, rejected: 0 });
    expect(readSpoolFile(file).entries.map((e) => e.body)).toEqual([...rows(1), ...rows(3, 50)]);
  });

  it('413 halves the batch down to one row: every row that fits is stored, one too large alone is rejected with the reason', async () => {
    server.maxBodyBytes = 16 * 1024;
    const { writer, lines } = makeWriter();
    const big = { ...rows(1, 500)[0], prediction: 'y'.repeat(20_000) } as PredictionRowInput;
    writer.enqueue([...rows(200, 1, 300), big, ...rows(50, 600, 300)]);
    const counters = await writer.close(10_000);
    expect(counters).toEqual({ generated: 251, persisted: 250, spooled: 0, rejected: 1 });
    expect(server.stored.size).toBe(250);
    expect(server.stored.has('500:0')).toBe(false);
    expect(lines.join('\n')).toMatch(/refused 1 prediction\(s\) \(step 500 sample 0\): too large for the server even alone \(HTTP 413: Request body exceeds/);
    expect(server.received.some((r) => r.rows > 1 && r.rows < 200)).toBe(true);
    expectBalanced(writer);
  });

  it('retries 408/429/503 never sooner than Retry-After (JSON or a proxy page), then stores once', async () => {
    server.script = ['error429', 'html503'];
    const { writer } = makeWriter({ maxAttempts: 5, retryBaseMs: 1, retryCapMs: 5 });
    writer.enqueue(rows(5));
    const counters = await writer.close(20_000);
    expect(counters).toEqual({ generated: 5, persisted: 5, spooled: 0, rejected: 0 });
    const at = server.received.map((r) => r.at);
    expect(at).toHaveLength(3);
    // Backoff alone would wait under 5 ms; Retry-After: 1 is the floor of both waits.
    expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(950);
    expect((at[2] ?? 0) - (at[1] ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it('a refused token is said in one line that names the spool and how to sync, never the token', async () => {
    server.script = ['error401'];
    const { log, lines } = memoryLogger();
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJwb2QiLCJzdWIiOiJqb2IifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const connection = new PodConnection(createPodApi({ apiUrl: server.url, token, timeoutMs: 2_000 }));
    const writer = new PredictionWriter({ connection, spool: new Spool(path.join(dir, 'job.jsonl')), log, syncCommand: (file) => `API_URL=${server.url} npm run trainer -- sync --spool ${file}` });
    writers.push(writer);
    writer.enqueue(rows(5));
    await writer.close(5_000);
    const refusal = lines.filter((l) => /refused the job token/.test(l));
    expect(refusal).toHaveLength(1);
    expect(refusal[0]).toMatch(/token_revoked.* 5 prediction\(s\) are kept in the spool .*job\.jsonl.*rotate the token on the job page \(or jobs\.rotateToken\) and run: JOB_TOKEN=<the new token> API_URL=http:\/\/127\.0\.0\.1:\d+ npm run trainer -- sync --spool /);
    expect(lines.join('\n')).not.toContain(token.slice(0, 20));
  });

  it('reads a spool of bare rows (an older trainer, or the Python callback): every row is sent once', async () => {
    const file = path.join(dir, 'job.jsonl');
    writeFileSync(file, `${rows(6).map((row) => JSON.stringify(row)).join('\n')}\n`);
    const { writer } = makeWriter();
    expect(writer.recovered).toBe(6);
    const counters = await writer.close(5_000);
    expect(counters).toEqual({ generated: 6, persisted: 6, spooled: 0, rejected: 0 });
    expect(server.stored.size).toBe(6);
    expect(existsSync(file)).toBe(false);
  });
});
