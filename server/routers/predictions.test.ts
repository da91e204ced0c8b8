// predictions.* over real HTTP: keyset paging that returns every row once, exact filters,
// epoch comparison, live delivery with resume, exports, and owner scoping on all of it.
import { describe, expect, it } from 'vitest';
import { errorDetails, type RouterOutputs } from '../../client/api/client';
import { startTestServer, useTestServer, type TestServer } from '../test-support/server';
import { createManualJob, createUser } from '../test-support/factories';
import { opened, until } from '../test-support/wait';
import { seedPredictions } from '../test-support/seed';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../../db/client';
import { searchMatchKeys } from '../../db/queries/predictions';

// Instances that share a database share their signing keys, as a real deployment must.
const SHARED_SECRETS = { SESSION_SECRET: 's'.repeat(40), JOB_TOKEN_SECRET: 'j'.repeat(40) };

let server: TestServer;
useTestServer((started) => (server = started), SHARED_SECRETS);

type Item = RouterOutputs['predictions']['list']['items'][number];

async function jobWithRows(count: number, options: { samples?: number; firesPerEpoch?: number } = {}) {
  const user = await createUser(server.deps);
  const job = await createManualJob(server.deps, user.id);
  await seedPredictions(server.database.db, { jobId: job.jobId, userId: user.id, count, ...options });
  return { user, ...job, api: server.client(user.token) };
}

async function pageThrough(api: ReturnType<TestServer['client']>, input: { jobId: string; epoch?: number; search?: string; limit: number }) {
  const items: Item[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: RouterOutputs['predictions']['list'] = await api.predictions.list.query({ ...input, cursor });
    items.push(...page.items);
    cursor = page.nextCursor;
    pages++;
  } while (cursor);
  return { items, pages };
}

function rows(n: number, step: number, from = 0) {
  return Array.from({ length: n }, (_, i) => ({
    epoch: 1,
    step,
    sampleIndex: from + i,
    trigger: 'eval' as const,
    prompt: `p${from + i}`,
    groundTruth: `g${from + i}`,
    prediction: `x${from + i}`,
  }));
}

describe('predictions.list', () => {
  // The keyset property on small pages (many page boundaries, steps with several samples each);
  // the same walk over 1 M rows is timed in the benchmark (bench/), where its size belongs.
  it('pages through every prediction exactly once, in (step, sampleIndex) order, across page boundaries', async () => {
    const { api, jobId } = await jobWithRows(2_003, { samples: 7 });
    const { items, pages } = await pageThrough(api, { jobId, limit: 13 });
    expect(pages).toBe(Math.ceil(2_003 / 13));
    expect(items).toHaveLength(2_003);
    expect(new Set(items.map((i) => i.id)).size).toBe(2_003);
    for (let i = 1; i < items.length; i++) {
      const [a, b] = [items[i - 1] as Item, items[i] as Item];
      expect(a.step < b.step || (a.step === b.step && a.sampleIndex < b.sampleIndex)).toBe(true);
    }
  });

  it('returns exactly the rows matching epoch, trigger and search, with counts', async () => {
    const { api, jobId } = await jobWithRows(400, { samples: 10, firesPerEpoch: 4 });
    const first = await api.predictions.list.query({ jobId, limit: 5 });
    expect(first).toMatchObject({ totalCount: 400, epochCount: 10 });
    const epoch3 = await pageThrough(api, { jobId, epoch: 3, limit: 7 });
    expect(epoch3.items).toHaveLength(40);
    expect(epoch3.items.every((i) => i.epoch === 3)).toBe(true);
    const sample7 = await api.predictions.list.query({ jobId, search: 'SAMPLE 7', limit: 200 });
    expect(sample7.totalCount).toBe(40);
    expect(sample7.items.every((i) => i.prompt === 'prompt for sample 7')).toBe(true);
    expect((await api.predictions.list.query({ jobId, trigger: 'steps', limit: 5 })).totalCount).toBe(0);
    expect((await api.predictions.list.query({ jobId, epoch: 3, search: 'guess 1', limit: 200 })).totalCount).toBe(
      epoch3.items.filter((i) => i.prediction.includes('guess 1')).length,
    );
  });

  it('counts search matches exactly up to 1000 and says "at least" beyond, paging still reaching every match', async () => {
    const { api, jobId } = await jobWithRows(1_500, { samples: 10 });
    const exact = await api.predictions.list.query({ jobId, search: 'sample 7', limit: 5 });
    expect(exact).toMatchObject({ totalCount: 150, totalCountIsLowerBound: false });
    const many = await api.predictions.list.query({ jobId, search: 'prompt for', limit: 5 });
    expect(many).toMatchObject({ totalCount: 1000, totalCountIsLowerBound: true });
    expect((await pageThrough(api, { jobId, search: 'prompt for', limit: 200 })).items).toHaveLength(1_500);
    expect(await api.predictions.list.query({ jobId, limit: 5 })).toMatchObject({ totalCount: 1_500, totalCountIsLowerBound: false });
  });

  it('matches search text literally, wildcards included', async () => {
    const { api, jobId, token } = await jobWithRows(0 + 1);
    const pod = server.client(token);
    await pod.pod.writePredictions.mutate({ predictions: [{ ...rows(1, 500)[0]!, prediction: '100% sure_thing' }] });
    expect((await api.predictions.list.query({ jobId, search: '100%', limit: 10 })).totalCount).toBe(1);
    expect((await api.predictions.list.query({ jobId, search: '%', limit: 10 })).totalCount).toBe(1);
    expect((await api.predictions.list.query({ jobId, search: 'e_t', limit: 10 })).totalCount).toBe(1);
    expect((await api.predictions.list.query({ jobId, search: 'sure_', limit: 10 })).totalCount).toBe(1);
    expect((await api.predictions.list.query({ jobId, search: 's_re', limit: 10 })).totalCount).toBe(0);
  });

  it('refuses a limit above 200 and a forged cursor with 400', async () => {
    const { api, jobId } = await jobWithRows(10);
    expect(errorDetails(await api.predictions.list.query({ jobId, limit: 201 }).catch((e: unknown) => e))).toMatchObject({
      httpStatus: 400,
      message: expect.stringMatching(/limit must be at most 200/),
    });
    expect(errorDetails(await api.predictions.list.query({ jobId, limit: 5, cursor: 'garbage' }).catch((e: unknown) => e)).httpStatus).toBe(400);
  });
});

describe('predictions.epochs and predictions.compare', () => {
  it('lists each epoch with its count and step range', async () => {
    const { api, jobId } = await jobWithRows(80, { samples: 10, firesPerEpoch: 4 });
    const epochs = await api.predictions.epochs.query({ jobId });
    expect(epochs.map((e) => [e.epoch, e.count, e.minStep, e.maxStep])).toEqual([
      [1, 40, 5, 20],
      [2, 40, 25, 40],
    ]);
  });

  it('lines up the same samples across epochs, taking each epoch\'s latest prediction, with scores', async () => {
    const user = await createUser(server.deps);
    const { token, jobId } = await createManualJob(server.deps, user.id);
    const pod = server.client(token);
    const at = (epoch: number, step: number, predictions: string[]) =>
      predictions.map((prediction, sampleIndex) => ({ epoch, step, sampleIndex, trigger: 'eval' as const, prompt: `q${sampleIndex}`, groundTruth: 'the cat sat', prediction }));
    await pod.pod.writePredictions.mutate({ predictions: at(1, 10, ['dog', 'the dog']) });
    await pod.pod.writePredictions.mutate({ predictions: at(1, 20, ['the', 'the dog']) });
    await pod.pod.writePredictions.mutate({ predictions: at(2, 30, ['the cat sat']) });
    const result = await server.client(user.token).predictions.compare.query({ jobId, epochs: [2, 1] });
    expect(result.epochs).toEqual([1, 2]);
    expect(result.samples.map((s) => s.sampleIndex)).toEqual([0, 1]);
    const [s0, s1] = result.samples;
    expect(s0?.predictions[0]).toMatchObject({ prediction: 'the', step: 20, exact: false });
    expect(s0?.predictions[0]?.f1).toBeCloseTo(0.5, 5);
    expect(s0?.predictions[1]).toMatchObject({ prediction: 'the cat sat', f1: 1, exact: true });
    expect(s1?.predictions[1]).toBeNull();
    expect(result.meanF1[1]).toBe(1);
  });
});

describe('predictions.onNew', () => {
  it('delivers a stored prediction within half a second and resumes after a drop with no gap or repeat', async () => {
    const user = await createUser(server.deps);
    const { token, jobId } = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);
    const pod = server.client(token).pod;

    const received: Array<{ id: string; sampleIndex: number; at: number }> = [];
    const listen = (lastEventId?: string) =>
      opened((onStarted) =>
        api.predictions.onNew.subscribe(
          { jobId, ...(lastEventId ? { lastEventId } : {}) },
          { onStarted, onData: (event) => received.push({ id: event.id, sampleIndex: event.data.sampleIndex, at: Date.now() }) },
        ),
      );
    const waitFor = async (n: number) => {
      await until(() => received.length, (count) => count >= n, `${n} predictions`, 5_000);
      expect(received.length).toBe(n);
    };

    let subscription = await listen();
    const writtenAt = Date.now();
    await pod.writePredictions.mutate({ predictions: rows(3, 1) });
    await waitFor(3);
    expect(received[2]!.at - writtenAt).toBeLessThan(500);

    subscription.unsubscribe();
    await pod.writePredictions.mutate({ predictions: rows(4, 2) });
    subscription = await listen(received.at(-1)!.id);
    await waitFor(7);
    await pod.writePredictions.mutate({ predictions: rows(2, 3) });
    await waitFor(9);
    subscription.unsubscribe();
    expect(received.map((r) => r.sampleIndex)).toEqual([0, 1, 2, 0, 1, 2, 3, 0, 1]);
    expect(new Set(received.map((r) => r.id)).size).toBe(9);
  });

  it('delivers to subscribers of a second server instance on the same database', async () => {
    const second = await startTestServer(SHARED_SECRETS, { database: server.database });
    try {
      const user = await createUser(server.deps);
      const { token, jobId } = await createManualJob(server.deps, user.id);
      const got: number[] = [];
      const subscription = await opened((onStarted) =>
        second.client(user.token).predictions.onNew.subscribe({ jobId }, { onStarted, onData: (e) => got.push(e.data.sampleIndex) }),
      );
      await server.client(token).pod.writePredictions.mutate({ predictions: rows(2, 1) });
      await until(() => got.length, (n) => n >= 2, 'both rows on the second instance', 5_000);
      subscription.unsubscribe();
      expect(got).toEqual([0, 1]);
    } finally {
      await second.close();
    }
  });
});

describe('exports', () => {
  it('streams JSONL and CSV of every prediction, in order, through a short-lived link', async () => {
    const { api, jobId } = await jobWithRows(2_500);
    const jsonl = await api.predictions.exportLink.mutate({ jobId, format: 'jsonl' });
    const res = await fetch(`${server.url}${jsonl.url}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toContain(`predictions-${jobId}.jsonl`);
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Item);
    expect(lines).toHaveLength(2_500);
    expect(new Set(lines.map((l) => l.id)).size).toBe(2_500);

    const csv = await api.predictions.exportLink.mutate({ jobId, format: 'csv' });
    const text = await (await fetch(`${server.url}${csv.url}`)).text();
    const csvLines = text.trim().split('\r\n');
    expect(csvLines[0]).toBe('id,epoch,step,sampleIndex,trigger,prompt,groundTruth,prediction,altered,createdAt');
    expect(csvLines).toHaveLength(2_501);
  });

  it('quotes CSV cells and neutralises formulas', async () => {
    const user = await createUser(server.deps);
    const { token, jobId } = await createManualJob(server.deps, user.id);
    await server.client(token).pod.writePredictions.mutate({
      predictions: [{ ...rows(1, 1)[0]!, prompt: 'a, "quoted"\nline', prediction: '=HYPERLINK("x")' }],
    });
    const link = await server.client(user.token).predictions.exportLink.mutate({ jobId, format: 'csv' });
    const text = await (await fetch(`${server.url}${link.url}`)).text();
    expect(text).toContain('"a, ""quoted""\nline"');
    expect(text).toContain(`"'=HYPERLINK(""x"")"`);
  });

  it('refuses a forged, tampered or cross-job link', async () => {
    const { api, jobId } = await jobWithRows(5);
    const link = await api.predictions.exportLink.mutate({ jobId, format: 'jsonl' });
    const other = await jobWithRows(5);
    const crossJob = link.url.replace(jobId, other.jobId);
    for (const url of [crossJob, `/api/export/${jobId}.jsonl?token=abc`, `/api/export/${jobId}.jsonl`, link.url.replace('.jsonl?', '.exe?')]) {
      expect((await fetch(`${server.url}${url}`)).status, url).toBe(401);
    }
  });
});

describe("another user's job", () => {
  it('is NOT_FOUND for every predictions procedure and yields no event', async () => {
    const { jobId, token, api: ownerApi } = await jobWithRows(20);
    const bob = server.client((await createUser(server.deps)).token);
    for (const call of [
      () => bob.predictions.list.query({ jobId, limit: 10 }),
      () => bob.predictions.epochs.query({ jobId }),
      () => bob.predictions.compare.query({ jobId, epochs: [1] }),
      () => bob.predictions.exportLink.mutate({ jobId, format: 'csv' }),
    ]) {
      expect(errorDetails(await call().catch((e: unknown) => e))).toMatchObject({ httpStatus: 404, message: 'Job not found' });
    }
    const events: unknown[] = [];
    const errors: unknown[] = [];
    const sub = bob.predictions.onNew.subscribe({ jobId }, { onData: (e) => events.push(e), onError: (e) => errors.push(e) });
    await until(() => errors.length, (n) => n > 0, "the refusal of bob's stream", 5_000);
    // The owner's own stream is the witness: once it has the new rows, bob's would have had them too.
    const ownerSeen: unknown[] = [];
    const owner = await opened((onStarted) => ownerApi.predictions.onNew.subscribe({ jobId }, { onStarted, onData: (e) => ownerSeen.push(e) }));
    await server.client(token).pod.writePredictions.mutate({ predictions: rows(2, 999) });
    await until(() => ownerSeen.length, (n) => n >= 2, "the new rows on the owner's stream", 5_000);
    owner.unsubscribe();
    sub.unsubscribe();
    expect(events).toHaveLength(0);
    expect(errorDetails(errors[0]).code).toBe('NOT_FOUND');
  });
});

describe('predictions.list search served by the trigram indexes', () => {
  it('matches metacharacters, NUL-replaced, right-to-left and emoji text literally', async () => {
    const user = await createUser(server.deps);
    const { jobId, token } = await createManualJob(server.deps, user.id);
    const api = server.client(user.token);
    const texts = [
      'regex .*+?^${}()|[]\\ and LIKE % _ in one line',
      'a\u0000b has a NUL',
      'שלום עולם, right to left',
      'مرحبا بالعالم',
      'rocket 🚀 launch, 👩‍🚀 crew',
      'now 50%_off',
      'now 50xyoff',
    ];
    const written = await server.client(token).pod.writePredictions.mutate({
      predictions: texts.map((prediction, i) => ({ ...rows(1, 10, i)[0]!, prediction })),
    });
    expect(written).toMatchObject({ inserted: texts.length, altered: 1 });
    const search = async (term: string) => {
      const page = await api.predictions.list.query({ jobId, search: term, limit: 50 });
      expect(page.totalCount).toBe(page.items.length);
      return page.items.map((i) => i.sampleIndex);
    };
    expect(await search('.*+?^${}()|[]\\')).toEqual([0]);
    expect(await search('% _')).toEqual([0]);
    expect(await search('50%_off')).toEqual([5]);
    expect(await search('50%')).toEqual([5]);
    // The term goes through the same storable-text rule as the rows: its NUL becomes U+FFFD too.
    expect(await search('a\u0000b')).toEqual([1]);
    expect(await search('a\uFFFDb has')).toEqual([1]);
    expect(await search('שלום עולם')).toEqual([2]);
    expect(await search('بالعالم')).toEqual([3]);
    expect(await search('🚀')).toEqual([4]);
    expect(await search('👩‍🚀 crew')).toEqual([4]);
    expect(await search('ROCKET')).toEqual([4]);
    expect(await search('zzqxvk')).toEqual([]);
    // Under 3 characters there is no trigram to look up; the result is the same.
    expect(await search('🚀')).toEqual([4]);
    expect(await search('_')).toEqual([0, 5]);
    expect(await search('a')).toEqual([0, 1, 4]);
    expect(await search('e')).toEqual([0, 2, 4]);
  });

  it('pages a search of more matches than a page and fewer than the cap: every match once, in order, exactly counted', async () => {
    const { api, jobId } = await jobWithRows(2_000, { samples: 20 });
    // 'guess 1' matches guess 1, 10–19, 100–199, 1000–1999: 1 + 10 + 100 + 1000 = 1111 rows, over the cap;
    // 'guess 17' matches 17, 170–179, 1700–1799: 111 rows, under it.
    const expected = Array.from({ length: 2_000 }, (_, g) => g).filter((g) => `guess ${g}`.includes('guess 17'));
    const first = await api.predictions.list.query({ jobId, search: 'guess 17', limit: 7 });
    expect(first).toMatchObject({ totalCount: expected.length, totalCountIsLowerBound: false });
    const { items, pages } = await pageThrough(api, { jobId, search: 'guess 17', limit: 7 });
    expect(pages).toBe(Math.ceil(expected.length / 7));
    expect(items.map((i) => Number(i.prediction.slice('guess '.length)))).toEqual(expected);
    const epochPage = await api.predictions.list.query({ jobId, search: 'guess 17', epoch: 1, limit: 200 });
    expect(epochPage.items.every((i) => i.epoch === 1 && i.prediction.includes('guess 17'))).toBe(true);
    expect(epochPage.totalCount).toBe(epochPage.items.length);
    const over = await api.predictions.list.query({ jobId, search: 'guess 1', limit: 7 });
    expect(over).toMatchObject({ totalCount: 1000, totalCountIsLowerBound: true });
    expect(over.items.map((i) => i.prediction)).toEqual(['guess 1', 'guess 10', 'guess 11', 'guess 12', 'guess 13', 'guess 14', 'guess 15']);
  });

  it('can serve the search from the trigram indexes of the job', async () => {
    const { jobId, user } = await jobWithRows(20_000);
    await server.database.db.execute(sql`vacuum analyze training_predictions`);
    const query = searchMatchKeys(server.database.db, { jobId, userId: user.id, search: 'guess 12345', limit: 1001 });
    const plan = await server.database.db.transaction(async (tx) => {
      // A table this small is read faster without an index: take the plain scans away to see that the indexes apply.
      await tx.execute(sql`set local enable_seqscan = off`);
      await tx.execute(sql`set local enable_indexscan = off`);
      return rowsOf<{ 'QUERY PLAN': string }>(await tx.execute(sql`explain ${query}`))
        .map((row) => row['QUERY PLAN'])
        .join('\n');
    });
    for (const column of ['prompt', 'ground_truth', 'prediction']) expect(plan).toContain(`training_predictions_${column}_trgm_idx`);
  });
});
