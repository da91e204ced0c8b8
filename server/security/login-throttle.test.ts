// Audit F2 and F6: sign-in and sign-up throttling that holds under concurrency, over real HTTP.
// An attempt takes its point before the password is checked, in one atomic statement on the
// `rate_limits` table, so requests sent together are counted one after another, and every server
// instance on the same database shares the counts. A 401 means a password was checked; a 429
// means it was not.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { count } from 'drizzle-orm';
import { openDatabase } from '../../db/client';
import { users } from '../../db/schema';
import { RATE_LIMITS } from '../auth/rate-limit';
import { createTestDatabase, type TestDatabase } from '../test-support/database';
import { createUser, TEST_PASSWORD, uniqueEmail } from '../test-support/factories';
import { startTestServer, useTestServer, type TestServer } from '../test-support/server';

const ACCOUNT_LIMIT = RATE_LIMITS.loginAccount.points;
const CLIENT_LIMIT = RATE_LIMITS.loginClient.points;
const REGISTER_LIMIT = RATE_LIMITS.registerClient.points;

type Answer = { status: number; retryAfter: string | null };

async function login(base: string, email: string, password: string): Promise<Answer> {
  const response = await fetch(`${base}/trpc/auth.login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  await response.arrayBuffer();
  return { status: response.status, retryAfter: response.headers.get('retry-after') };
}

function tally(answers: Answer[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const { status } of answers) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

/** 200 guesses at one account sent at once, the right password last. */
function guesses(count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? TEST_PASSWORD : `wrong guess number ${i}`));
}

describe('one instance', () => {
  let server: TestServer;
  useTestServer((started) => (server = started), { SIGNUP: 'open' });

  it(`200 parallel sign-ins on one account check at most ${ACCOUNT_LIMIT} passwords, and the right one sent last is not let in`, async () => {
    const user = await createUser(server.deps);
    const answers = await Promise.all(guesses(200).map((password) => login(server.url, user.email, password)));
    const counts = tally(answers);
    expect(counts[200] ?? 0).toBe(0);
    expect(counts[401] ?? 0).toBeLessThanOrEqual(ACCOUNT_LIMIT);
    expect((counts[401] ?? 0) + (counts[429] ?? 0)).toBe(200);
    const refused = answers.find((a) => a.status === 429);
    expect(Number(refused?.retryAfter)).toBeGreaterThan(0);
  }, 120_000);

  it(`60 parallel sign-ins with 60 emails from one client check at most ${CLIENT_LIMIT} passwords`, async () => {
    const answers = await Promise.all(Array.from({ length: 60 }, () => login(server.url, uniqueEmail('spray'), 'wrong password 123')));
    const counts = tally(answers);
    expect(counts[401] ?? 0).toBeLessThanOrEqual(CLIENT_LIMIT);
    expect(counts[429] ?? 0).toBeGreaterThanOrEqual(60 - CLIENT_LIMIT);
  }, 120_000);

  it('a correct password clears the account count, and is not counted against its client', async () => {
    const user = await createUser(server.deps);
    for (let i = 0; i < ACCOUNT_LIMIT - 1; i++) expect((await login(server.url, user.email, 'wrong password 123')).status).toBe(401);
    expect((await login(server.url, user.email, TEST_PASSWORD)).status).toBe(200);
    // The count started again: another full set of attempts is allowed.
    for (let i = 0; i < ACCOUNT_LIMIT - 1; i++) expect((await login(server.url, user.email, 'wrong password 123')).status).toBe(401);
    expect((await login(server.url, user.email, TEST_PASSWORD)).status).toBe(200);
  }, 120_000);

  it(`auth.register is throttled per client: past ${REGISTER_LIMIT} sign-ups an address gets 429 with Retry-After, and no account is made`, async () => {
    const register = (email: string) =>
      server.raw('auth.register', { method: 'POST', body: JSON.stringify({ email, password: TEST_PASSWORD }) });
    const answers = await Promise.all(Array.from({ length: REGISTER_LIMIT + 5 }, (_, i) => register(`signup-${i}-${uniqueEmail()}`)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200).length).toBe(REGISTER_LIMIT);
    expect(statuses.filter((s) => s === 429).length).toBe(5);
    const refused = answers.find((a) => a.status === 429);
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(JSON.stringify(refused?.body)).toMatch(/Too many sign-ups from this address; try again in \d+ seconds/);
    expect((await register(`late-${uniqueEmail()}`)).status).toBe(429);
    const [accounts] = await server.database.db.select({ n: count() }).from(users);
    expect(accounts?.n).toBe(REGISTER_LIMIT);
  }, 120_000);
});

// Two instances with separate connection pools on one database share the counts, because they
// live in the database. On Postgres each instance has its own pool, as two processes would; an
// embedded PGlite database can be opened by one handle only, so there the two instances share
// that handle (still separate servers, deps and limiter objects: nothing is counted in memory).
describe(`two instances on one database (${process.env.TEST_DATABASE_URL ? 'Postgres, a pool each' : 'PGlite, one shared handle'})`, () => {
  let database: TestDatabase;
  let second: TestDatabase | undefined;
  let a: TestServer;
  let b: TestServer;
  const shared = { SESSION_SECRET: 's'.repeat(40), JOB_TOKEN_SECRET: 'j'.repeat(40), SIGNUP: 'open' };

  beforeAll(async () => {
    database = await createTestDatabase();
    if (database.url) {
      const pool = await openDatabase({ kind: 'postgres', url: database.url, poolSize: 5 });
      second = { ...pool, url: database.url, truncate: database.truncate };
    }
    a = await startTestServer(shared, { database });
    b = await startTestServer(shared, { database: second ?? database });
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await second?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await database.truncate();
  });

  it(`200 parallel sign-ins on one account, alternating instances, check at most ${ACCOUNT_LIMIT} passwords in all`, async () => {
    const user = await createUser(a.deps);
    const answers = await Promise.all(guesses(200).map((password, i) => login(i % 2 === 0 ? a.url : b.url, user.email, password)));
    const counts = tally(answers);
    expect(counts[200] ?? 0).toBe(0);
    expect(counts[401] ?? 0).toBeLessThanOrEqual(ACCOUNT_LIMIT);
    expect((counts[401] ?? 0) + (counts[429] ?? 0)).toBe(200);
  }, 120_000);
});
