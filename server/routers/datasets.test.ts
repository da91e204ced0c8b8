// datasets.* over real HTTP: JSONL parsing with line numbers, limits, ownership, the example.
import { describe, expect, it } from 'vitest';
import { errorDetails } from '../../client/api/client';
import { DATASET_MAX_ROWS } from '../contract/datasets.schemas';
import { EXAMPLE_DATASET_NAME } from '../datasets/datasets.service';
import { useTestServer, type TestServer } from '../test-support/server';
import { createUser } from '../test-support/factories';

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
});
