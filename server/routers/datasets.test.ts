// datasets.* over real HTTP: JSONL parsing with line numbers, limits, ownership, the example.
import { describe, expect, it } from 'vitest';
import { errorDetails } from '../../client/api/client';
import { DATASET_FIELD_MAX, DATASET_MAX_ROWS } from '#contract/datasets.schemas';
import { REPLACEMENT_CHARACTER as FFFD } from '#contract/text';
import { EXAMPLE_DATASET_NAME } from '../datasets/datasets.service';
import { getDatasetRows } from '../../db/queries/datasets';
import { useTestServer, type TestServer } from '../test-support/server';
import { createDataset, createUser } from '../test-support/factories';

let server: TestServer;
useTestServer((started) => (server = started));

const lines = (n: number, make = (i: number) => ({ prompt: `p${i}`, completion: `c${i}` })) =>
  Array.from({ length: n }, (_, i) => JSON.stringify(make(i))).join('\n');

describe('datasets', () => {
  it('gives every new account the example dataset, with a few hundred rows', async () => {
    const user = await createUser(server.deps);
    const list = await server.client(user.token).datasets.list.query();
    expect(list).toHaveLength(1);
    expect(list[0]?.name).toBe(EXAMPLE_DATASET_NAME);
    expect(list[0]?.rowCount).toBeGreaterThanOrEqual(200);
  });

  it('uploads JSONL with prompt/completion, prompt/response or input/output keys', async () => {
    const user = await createUser(server.deps);
    const api = server.client(user.token);
    const jsonl = [
      JSON.stringify({ prompt: 'a', completion: 'b' }),
      '',
      JSON.stringify({ prompt: 'c', response: 'd' }),
      JSON.stringify({ input: 'e', output: 'f' }),
    ].join('\r\n');
    const dataset = await api.datasets.upload.mutate({ name: 'mixed', jsonl });
    expect(dataset).toMatchObject({ name: 'mixed', rowCount: 3 });
    expect((await api.datasets.list.query()).map((d) => d.name)).toContain('mixed');
  });

  it('names the bad line by number (line 7)', async () => {
    const user = await createUser(server.deps);
    const rows = lines(10).split('\n');
    rows[6] = '{"prompt": "missing its completion"}';
    const failure = await server.client(user.token).datasets.upload.mutate({ name: 'bad', jsonl: rows.join('\n') }).catch((e: unknown) => e);
    const details = errorDetails(failure);
    expect(details.httpStatus).toBe(400);
    expect(details.message).toMatch(/^line 7: expected "prompt" and "completion"/);
    expect(details.field).toBe('jsonl');
  });

  it('lists at most five bad lines and counts the rest', async () => {
    const user = await createUser(server.deps);
    const jsonl = ['not json', ...Array.from({ length: 8 }, () => '[1,2]')].join('\n');
    const failure = await server.client(user.token).datasets.upload.mutate({ name: 'bad', jsonl }).catch((e: unknown) => e);
    expect(errorDetails(failure).message).toMatch(/line 1: not valid JSON; line 2: expected a JSON object.*\(and 4 more bad lines\)/);
  });

  it('states the row limit when it is exceeded', async () => {
    const user = await createUser(server.deps);
    const jsonl = lines(DATASET_MAX_ROWS + 1, (i) => ({ prompt: `${i}`, completion: '' }));
    const failure = await server.client(user.token).datasets.upload.mutate({ name: 'big', jsonl }).catch((e: unknown) => e);
    expect(errorDetails(failure)).toMatchObject({ httpStatus: 413 });
    expect(errorDetails(failure).message).toContain(`more than ${DATASET_MAX_ROWS} rows`);
  });

  it("never shows one user's datasets to another", async () => {
    const alice = await createUser(server.deps);
    const bob = await createUser(server.deps);
    await server.client(alice.token).datasets.upload.mutate({ name: 'alice-only', jsonl: lines(3) });
    const bobs = await server.client(bob.token).datasets.list.query();
    expect(bobs.map((d) => d.name)).not.toContain('alice-only');
  });

  it('refuses a job token', async () => {
    const user = await createUser(server.deps);
    const res = await server.raw('datasets.list', { token: 'x.y.z' });
    expect(res.status).toBe(401);
    expect((await server.raw('datasets.list', { token: user.token })).status).toBe(200);
  });

  // text JSON can carry but jsonb cannot (U+0000, half of a surrogate pair)
  // is stored as U+FFFD, never a 500, whether it arrives raw or escaped inside the file's text.
  describe('text PostgreSQL cannot store', () => {
    const RTL = '\u202Eمرحبا بالعالم\u202C שלום';
    const upload = async (token: string, name: string, jsonl: string) => {
      const res = await server.raw('datasets.upload', { method: 'POST', token, body: JSON.stringify({ name, jsonl }) });
      return res as { status: number; body: { result?: { data: { id: string; rowCount: number } }; error?: { message: string } } };
    };
    const storedRows = async (userId: string, datasetId: string) => (await getDatasetRows(server.deps.database.db, { userId, datasetId }))?.rows;

    it('stores escaped and raw NULs, lone surrogates, right-to-left text and a 16 000-character field, with U+FFFD for what jsonb refuses', async () => {
      const user = await createUser(server.deps);
      const long = 'é'.repeat(DATASET_FIELD_MAX);
      const jsonl = [
        // Escapes inside the line's JSON text: the middleware sees backslashes, JSON.parse makes the characters.
        String.raw`{"prompt":"a\u0000b","completion":"c\u0000"}`,
        String.raw`{"prompt":"half \ud83d of an emoji","completion":"\udfff"}`,
        // Raw characters in the file: the request's JSON carries them, the middleware replaces them.
        JSON.stringify({ prompt: 'raw\u0000nul', completion: 'raw \ud800 surrogate' }),
        JSON.stringify({ prompt: RTL, completion: long }),
        JSON.stringify({ prompt: 'intact 😀', completion: 'ok' }),
      ].join('\n');
      const res = await upload(user.token, 'hostile text', jsonl);
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
      const dataset = res.body.result?.data;
      expect(dataset?.rowCount).toBe(5);
      expect(await storedRows(user.id, dataset?.id ?? '')).toEqual([
        { prompt: `a${FFFD}b`, completion: `c${FFFD}` },
        { prompt: `half ${FFFD} of an emoji`, completion: FFFD },
        { prompt: `raw${FFFD}nul`, completion: `raw ${FFFD} surrogate` },
        { prompt: RTL, completion: long },
        { prompt: 'intact 😀', completion: 'ok' },
      ]);
    });

    it('refuses a field one character over the limit with a 400 naming the line, not a 500', async () => {
      const user = await createUser(server.deps);
      const jsonl = [JSON.stringify({ prompt: 'a', completion: 'b' }), JSON.stringify({ prompt: 'x'.repeat(DATASET_FIELD_MAX + 1), completion: 'b' })].join('\n');
      const res = await upload(user.token, 'too long', jsonl);
      expect(res.status).toBe(400);
      expect(res.body.error?.message).toBe(`line 2: a field is longer than ${DATASET_FIELD_MAX} characters`);
    });

    it('stores dataset and job names holding a NUL or a lone surrogate with U+FFFD', async () => {
      const user = await createUser(server.deps);
      const api = server.client(user.token);
      const res = await upload(user.token, 'data\u0000set \ud800', lines(2));
      expect(res.status).toBe(200);
      expect((await api.datasets.list.query()).map((d) => d.name)).toContain(`data${FFFD}set ${FFFD}`);

      const dataset = await createDataset(server.deps, user.id);
      const deploy = await server.raw('jobs.deploy', {
        method: 'POST',
        token: user.token,
        body: JSON.stringify({ name: 'job\u0000 \udc00 name', config: { datasetId: dataset.id, launcher: 'manual' } }),
      });
      expect(deploy.status, JSON.stringify(deploy.body).slice(0, 300)).toBe(200);
      expect((await api.jobs.list.query({})).items.map((j) => j.name)).toContain(`job${FFFD} ${FFFD} name`);
    });
  });
});
