// One protocol, two clients: every scenario below is written once (the fault
// on the server's side, the run, and what the server must store and the client must print) and
// played by both clients against the real server (trainer/scenarios/clients.ts: the TypeScript
// trainer `trainer/main.ts` as a child process, the Python callback driven by fake_training.py).
// Faults come from a loopback TCP proxy (trainer/scenarios/proxy.ts) or the server's own config.
// Every scenario checks the stored keys (step, sampleIndex) against what the client announced it
// generated, and the client's accounting: generated = persisted + rejected + spooled + pending.
// Spools are read with trainer/pod/spool.ts, the format's reference reader; the "Done when" scenario
// uploads each client's spool with the other client's sync (one spool format).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trainingPredictions } from '../db/schema';
import { hasUnstorableText, toStorableText } from '#contract/text';
import { uploadDataset } from '../server/datasets/datasets.service';
import { createManualJob, createUser } from '../server/test-support/factories';
import { startTestServer, useTestServer, type TestServer } from '../server/test-support/server';
import { until } from '../server/test-support/wait';
import { readSpoolFile } from './pod/spool';
import { CLIENTS, jobConfigFor, type PodClient, type PodCounters, type PodProcess, type RunLength } from './scenarios/clients';
import { startFaultProxy } from './scenarios/proxy';

const EXAMPLE = path.resolve(import.meta.dirname, '../server/datasets/example.jsonl');

let server: TestServer;
useTestServer((s) => (server = s));

let spoolDir: string;
beforeEach(() => {
  spoolDir = mkdtempSync(path.join(tmpdir(), 'pod-scenario-'));
});
afterEach(() => rmSync(spoolDir, { recursive: true, force: true }));

async function podJob(length: RunLength, on: TestServer = server) {
  const user = await createUser(on.deps);
  const dataset = await uploadDataset(on.deps, user.id, { name: 'example', jsonl: readFileSync(EXAMPLE, 'utf8') });
  const job = await createManualJob(on.deps, user.id, { datasetId: dataset.id, config: jobConfigFor(length) });
  return { user, ...job };
}

const byKey = (a: string, b: string) => {
  const [sa = 0, ia = 0] = a.split('/').map(Number);
  const [sb = 0, ib = 0] = b.split('/').map(Number);
  return sa - sb || ia - ib;
};
const sorted = (keys: Iterable<string>) => [...keys].sort(byKey);

/** `step/sampleIndex` of every row the server holds for the job (the table's key makes each one once). */
async function storedKeys(jobId: string, on: TestServer = server): Promise<string[]> {
  const rows = await on.database.db
    .select({ step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex })
    .from(trainingPredictions)
    .where(eq(trainingPredictions.jobId, jobId));
  return sorted(rows.map((row) => `${row.step}/${row.sampleIndex}`));
}

/** What the spool still holds to send, by the reference reader of the format. */
function spoolKeys(file: string): string[] {
  const { entries } = readSpoolFile(file);
  return sorted(entries.filter((e) => e.kind === 'prediction').map((e) => {
    const row = e.body as { step: number; sampleIndex: number };
    return `${row.step}/${row.sampleIndex}`;
  }));
}

function expectAccounting(counters: PodCounters | null, output: string): PodCounters {
  expect(counters, output).not.toBeNull();
  const c = counters as PodCounters;
  expect(c.generated, 'generated = persisted + rejected + spooled + pending').toBe(c.persisted + c.rejected + c.spooled + c.pending);
  return c;
}

/** The client exits by itself within `ms` (its own bound plus slack), or the scenario fails. */
async function exitWithin(pod: PodProcess, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      pod.kill('SIGKILL');
      reject(new Error(`the client did not exit within ${ms} ms:\n${pod.output}`));
    }, ms);
  });
  try {
    return await Promise.race([pod.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fault lasts this long: the scenario's own timing, not a wait for a condition. */
const hold = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** No token, nor any 20-character piece of one, in `text`. */
function expectNoCredential(text: string, tokens: readonly string[]) {
  for (const token of tokens) {
    for (let i = 0; i + 20 <= token.length; i++) {
      if (text.includes(token.slice(i, i + 20))) throw new Error(`a 20-character piece of a token (at offset ${i}) was printed or logged`);
    }
  }
}

async function podLog(userToken: string, jobId: string, on: TestServer = server): Promise<string> {
  const { lines } = await on.client(userToken).jobs.logs.query({ jobId });
  return lines.map((line) => line.message).join('\n');
}

/** After a kill: every announced row is stored; anything more is at most the fire being written at the kill. */
function expectStoredOnce(stored: string[], generated: string[], client: PodClient) {
  const announced = new Set(generated);
  expect(generated.filter((key) => !stored.includes(key)), 'generated rows missing').toEqual([]);
  const extra = stored.filter((key) => !announced.has(key));
  expect(extra.length, `rows beyond the announced ones: ${extra.join(' ')}`).toBeLessThanOrEqual(client.rowsPerFire);
}

/**
 * A run that ended with everything delivered: it generated every planned row, its counters say
 * all persisted (and add up), and the server holds exactly those keys. Returns the keys.
 */
async function expectEverythingStored(client: PodClient, pod: PodProcess, jobId: string, length: RunLength, on: TestServer = server): Promise<string[]> {
  const generated = sorted(pod.generated());
  expect(generated).toHaveLength(client.plannedRows(length));
  const c = expectAccounting(client.counters(pod.output), pod.output);
  expect(c).toMatchObject({ generated: generated.length, persisted: generated.length, rejected: 0, spooled: 0 });
  expect(await storedKeys(jobId, on)).toEqual(generated);
  return generated;
}

const other = (client: PodClient) => CLIENTS.find((c) => c !== client) ?? client;

describe.each(CLIENTS)('$name against the real server', (client) => {
  const vars = (job: { jobId: string; token: string }, apiUrl: string) => ({ JOB_ID: job.jobId, JOB_TOKEN: job.token, API_URL: apiUrl });

  it('a. revoked token mid-run: rows kept in the spool, one line says how to rotate and sync, no token printed; after jobs.rotateToken, sync stores each row once', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('short');
    const pod = client.start(vars(job, server.url), { length: 'short', drainSeconds: 30, spoolDir });
    await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
    const rotated = await server.client(job.user.token).jobs.rotateToken.mutate({ jobId: job.jobId });
    const exit = await exitWithin(pod, 120_000);
    expect(exit.code, pod.output).toBe(client.exitWithRowsLeft);

    const generated = sorted(pod.generated());
    expect(generated).toHaveLength(client.plannedRows('short'));
    const c = expectAccounting(client.counters(pod.output), pod.output);
    expect(c).toMatchObject({ generated: generated.length, rejected: 0, pending: 0 });
    expect(c.spooled).toBeGreaterThan(0);
    const storedBefore = await storedKeys(job.jobId);
    expect(storedBefore).toHaveLength(c.persisted);
    expect(sorted([...storedBefore, ...spoolKeys(pod.spoolFile)])).toEqual(generated);
    const hints = pod.output.split('\n').filter((line) => /rotate the token on the job page/.test(line));
    expect(hints, pod.output).toHaveLength(1);
    expect(hints[0]).toContain(`sync --spool ${pod.spoolFile}`);

    const sync = await client.sync(pod.spoolFile, { JOB_TOKEN: rotated.env.JOB_TOKEN, API_URL: server.url });
    expect(sync.code, sync.output).toBe(0);
    expect(sync.summary).toEqual({ read: c.spooled, inserted: c.spooled, duplicates: 0, rejected: 0, unsent: 0 });
    expect(await storedKeys(job.jobId)).toEqual(generated);

    const tokens = [job.token, rotated.env.JOB_TOKEN];
    for (const text of [pod.output, sync.output, await podLog(job.user.token, job.jobId)]) expectNoCredential(text, tokens);
  }, 240_000);

  it('b. behind a 16 KiB body limit (413): a replay after an outage is split, never dropped, and everything is stored', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const small = await startTestServer({ MAX_BODY_BYTES: String(16 * 1024) });
    const proxy = await startFaultProxy(small.url);
    try {
      const job = await podJob('short', small);
      const pod = client.start(vars(job, proxy.url), { length: 'short', drainSeconds: 120, spoolDir });
      await until(() => storedKeys(job.jobId, small), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
      await proxy.dark();
      // Rows pile up in the spool: the replay is one batch far over 16 KiB.
      const atDark = pod.generated().length;
      const enough = Math.min(atDark + 300, client.plannedRows('short'));
      await until(() => pod.generated().length, (n) => n >= enough, 'rows generated while the server is away', 60_000);
      await proxy.light();
      const exit = await exitWithin(pod, 180_000);
      expect(exit.code, pod.output).toBe(0);

      await expectEverythingStored(client, pod, job.jobId, 'short', small);
      expect(existsSync(pod.spoolFile), 'the spool is gone').toBe(false);
    } finally {
      await proxy.close();
      await small.close();
    }
  }, 240_000);

  it('c. server dark for ten seconds mid-run: everything is stored once it is back', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('long');
    const proxy = await startFaultProxy(server.url);
    try {
      const pod = client.start(vars(job, proxy.url), { length: 'long', drainSeconds: 120, spoolDir });
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
      await proxy.dark();
      // A batch whose body had already reached the server when the proxy went dark still commits
      // there: count from when the stored rows have stopped moving (a second without change).
      let last = -1;
      const storedAtDark = await until(
        async () => {
          const previous = last;
          await hold(1_000);
          last = (await storedKeys(job.jobId)).length;
          return previous === last ? last : -1;
        },
        (n) => n >= 0,
        'writes in flight at the cut to settle',
        30_000,
      );
      // Ten seconds dark; all along, whatever is generated and not stored is on disk (write-ahead),
      // not in memory waiting for the retries to give up. Read in this order: a row is on disk
      // before it is announced, and nothing is stored while dark.
      const darkUntil = Date.now() + 10_000;
      while (Date.now() < darkUntil) {
        const generated = pod.generated();
        const stored = new Set(await storedKeys(job.jobId));
        const onDisk = new Set(spoolKeys(pod.spoolFile));
        expect(stored.size, 'nothing got through while dark').toBe(storedAtDark);
        expect(generated.filter((key) => !stored.has(key) && !onDisk.has(key)), 'generated rows neither stored nor in the spool').toEqual([]);
        await hold(250);
      }
      await proxy.light();
      const exit = await exitWithin(pod, 180_000);
      expect(exit.code, pod.output).toBe(0);

      const generated = await expectEverythingStored(client, pod, job.jobId, 'long');
      expect(existsSync(pod.spoolFile), 'the spool is gone').toBe(false);
      const detail = await server.client(job.user.token).jobs.get.query({ jobId: job.jobId });
      expect(detail.podReport?.counters).toEqual({ generated: generated.length, persisted: generated.length, spooled: 0, rejected: 0 });
    } finally {
      await proxy.close();
    }
  }, 240_000);

  it('d. server hanging at exit: the client exits within its bound with every unsent row in the spool; sync stores them once', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('short');
    const proxy = await startFaultProxy(server.url);
    try {
      const pod = client.start(vars(job, proxy.url), { length: 'short', drainSeconds: 5, spoolDir });
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
      proxy.hang();
      // Training takes a few seconds, the bound 5 s, then the final heartbeat gets at most that bound
      // too: a client that waits out its retries (5 × 15 s) on the hung sockets misses this.
      const exit = await exitWithin(pod, 60_000);
      expect(exit.code, pod.output).toBe(client.exitWithRowsLeft);

      const generated = sorted(pod.generated());
      expect(generated).toHaveLength(client.plannedRows('short'));
      const c = expectAccounting(client.counters(pod.output), pod.output);
      expect(c).toMatchObject({ generated: generated.length, rejected: 0, pending: 0 });
      expect(c.spooled).toBeGreaterThan(0);
      const spooled = spoolKeys(pod.spoolFile);
      expect(spooled).toHaveLength(c.spooled);
      const storedAtExit = await storedKeys(job.jobId);
      expect(sorted(new Set([...storedAtExit, ...spooled])), 'every generated row is stored or in the spool').toEqual(generated);
      expect(pod.output).toContain(`sync --spool ${pod.spoolFile}`);

      proxy.unhang();
      const sync = await client.sync(pod.spoolFile, { JOB_TOKEN: job.token, API_URL: server.url });
      expect(sync.code, sync.output).toBe(0);
      expect(sync.summary).toMatchObject({ read: c.spooled, rejected: 0, unsent: 0 });
      expect((sync.summary?.inserted ?? 0) + (sync.summary?.duplicates ?? 0)).toBe(c.spooled);
      expect(await storedKeys(job.jobId)).toEqual(generated);
    } finally {
      await proxy.close();
    }
  }, 240_000);

  /** The completion the model writes for the sample at each index (the same at every step). */
  const OUTPUTS = ['NUL \u0000 inside', 'half an emoji \ud83d', 'a whole emoji \u{1F600}'];
  const STEPS = 2;
  /** Trainer's logs per step; JSON has no NaN, so non-finite values are written by name here. */
  const LOGS: Record<number, Record<string, number | 'NaN'>> = { 1: { loss: 'NaN' }, 2: { loss: 0.5, 'eval_precision@5': 0.25, 'bad\u0007name': 1 } };

  it('e. a NUL and half an emoji in a model output: stored, marked altered, the spool empty; a NaN loss and eval_precision@5 stored, a bad metric name refused with its reason', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('short');
    const run = await client.runOutputs(vars(job, server.url), { outputs: OUTPUTS, steps: STEPS, logs: LOGS }, spoolDir);
    const rows = STEPS * OUTPUTS.length;
    const c = expectAccounting(run.counters, run.output);
    expect(c).toEqual({ generated: rows, persisted: rows, spooled: 0, rejected: 0, pending: 0, altered: STEPS * OUTPUTS.filter(hasUnstorableText).length });
    expect(existsSync(run.spoolFile), 'the spool is gone').toBe(false);

    const stored = await server.database.db
      .select({ step: trainingPredictions.step, sampleIndex: trainingPredictions.sampleIndex, prediction: trainingPredictions.prediction, altered: trainingPredictions.altered })
      .from(trainingPredictions)
      .where(eq(trainingPredictions.jobId, job.jobId))
      .orderBy(trainingPredictions.step, trainingPredictions.sampleIndex);
    const expected = Array.from({ length: STEPS }, (_, s) => OUTPUTS.map((output, sampleIndex) => ({ step: s + 1, sampleIndex, prediction: toStorableText(output), altered: hasUnstorableText(output) }))).flat();
    expect(stored).toEqual(expected);
    expect(run.output).toMatch(/prediction\(s\) had characters PostgreSQL cannot store \(NUL, half an emoji\) replaced by U\+FFFD/);

    const { points } = await server.client(job.user.token).jobs.metrics.query({ jobId: job.jobId });
    expect(points.map((p) => [p.name, p.step, p.value]).sort()).toEqual([['eval_precision@5', 2, 0.25], ['loss', 1, 'NaN'], ['loss', 2, 0.5]].sort());
    expect(run.metricsRefused).toBe(1);
    expect(run.output).toMatch(/"bad\\u0007name" at step 2: .*printable characters only/);
  }, 120_000);

  it('f. a token (and id and URL) read from a file, trailing newline and all, works', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('short');
    const pod = client.start({ JOB_ID: `${job.jobId}\n`, JOB_TOKEN: `${job.token}\n`, API_URL: `${server.url}\n` }, { length: 'short', drainSeconds: 30, spoolDir });
    const exit = await exitWithin(pod, 120_000);
    expect(exit.code, pod.output).toBe(0);
    await expectEverythingStored(client, pod, job.jobId, 'short');
    expectNoCredential(pod.output, [job.token]);
  }, 120_000);

  it('g. kill -9 while the server hangs with rows unacknowledged, then a second run of the job with the same spool: every generated row stored exactly once', async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const job = await podJob('short');
    const proxy = await startFaultProxy(server.url);
    try {
      const pod = client.start(vars(job, proxy.url), { length: 'short', drainSeconds: 120, spoolDir });
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
      proxy.hang();
      const atHang = pod.generated().length;
      const enough = Math.min(atHang + 5 * client.rowsPerFire, client.plannedRows('short'));
      await until(() => pod.generated().length, (n) => n >= enough, 'rows generated while the server hangs', 60_000);
      pod.kill('SIGKILL');
      expect((await pod.exited).signal).toBe('SIGKILL');

      const generated = sorted(pod.generated());
      const storedAtKill = await storedKeys(job.jobId);
      const unstored = generated.filter((key) => !storedAtKill.includes(key));
      expect(unstored.length, 'rows were generated but not acknowledged when the pod died').toBeGreaterThan(0);
      const spooled = new Set(spoolKeys(pod.spoolFile));
      expect(unstored.filter((key) => !spooled.has(key)), 'unstored rows missing from the spool').toEqual([]);

      const resume = client.start(vars(job, server.url), { length: 'short', resume: true, drainSeconds: 60, spoolDir });
      const exit = await exitWithin(resume, 180_000);
      expect(exit.code, resume.output).toBe(0);
      expect(client.recovered(resume.output)).toBeGreaterThanOrEqual(unstored.length);
      const c = expectAccounting(client.counters(resume.output), resume.output);
      expect(c).toMatchObject({ persisted: c.generated, rejected: 0, spooled: 0 });
      const stored = await storedKeys(job.jobId);
      expectStoredOnce(stored, sorted(new Set([...generated, ...resume.generated()])), client);
      expect(existsSync(pod.spoolFile), 'the spool is gone').toBe(false);
    } finally {
      await proxy.close();
    }
  }, 300_000);

  it(`h. the server hangs for 60 s, the pod is killed 40 s in, then the other client's sync stores every generated row exactly once`, async (ctx) => {
    ctx.skip(client.skip !== null, client.skip ?? '');
    const syncer = other(client);
    ctx.skip(syncer.skip !== null, syncer.skip ?? '');
    const job = await podJob('long');
    const proxy = await startFaultProxy(server.url);
    try {
      const pod = client.start(vars(job, proxy.url), { length: 'long', drainSeconds: 120, spoolDir });
      await until(() => storedKeys(job.jobId), (keys) => keys.length > 0, 'the first stored predictions', 60_000);
      proxy.hang();
      await hold(40_000);
      pod.kill('SIGKILL');
      expect((await pod.exited).signal, 'the pod was still running 40 s into the hang').toBe('SIGKILL');
      const generated = sorted(pod.generated());
      const storedAtKill = await storedKeys(job.jobId);
      expect(storedAtKill.length).toBeLessThan(generated.length);
      // The last 20 s of the hang are not waited out: the pod is dead and the sync below goes to
      // the server directly, so they could change nothing.
      proxy.unhang();

      // One spool format: the file one client wrote, uploaded by the other's sync. It reads only
      // what the server had not answered for (the reference reader agrees), sends each row once.
      const unanswered = spoolKeys(pod.spoolFile);
      const sync = await syncer.sync(pod.spoolFile, { JOB_TOKEN: job.token, API_URL: server.url });
      expect(sync.code, sync.output).toBe(0);
      expect(sync.summary).toMatchObject({ read: unanswered.length, rejected: 0, unsent: 0 });
      expect((sync.summary?.inserted ?? 0) + (sync.summary?.duplicates ?? 0)).toBe(unanswered.length);
      expectStoredOnce(await storedKeys(job.jobId), generated, client);
    } finally {
      await proxy.close();
    }
  }, 300_000);
});
