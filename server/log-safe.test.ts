// Logs never hold data: when the database refuses a statement, the server
// logs the error's SQLSTATE, constraint and sizes, never the query's parameters. Drizzle's error
// message carries every parameter and PostgreSQL's detail quotes the failing row (password hash
// included), so a careless `console.error(error)` would print all of it.
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { describeError } from './log-safe';
import { createManualJob, createUser, uniqueEmail } from './test-support/factories';
import { useTestServer, type TestServer } from './test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

/** Everything the process writes to its log while a test runs. */
let logged: string[] = [];
beforeEach(() => {
  logged = [];
  const capture = (...args: unknown[]) => void logged.push(args.map((arg) => (typeof arg === 'string' ? arg : describeAnything(arg))).join(' '));
  vi.spyOn(console, 'error').mockImplementation(capture);
  vi.spyOn(console, 'warn').mockImplementation(capture);
  vi.spyOn(console, 'log').mockImplementation(capture);
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    logged.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** What console.error would print for an object: its inspection, with message, cause and own fields. */
function describeAnything(value: unknown): string {
  if (value instanceof Error) return `${value.stack ?? ''} ${JSON.stringify({ ...value, cause: describeAnything(value.cause) })}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Makes the database refuse what matches `forbidden` in one column, for one test. */
async function refuse(table: string, column: string, forbidden: string): Promise<() => Promise<void>> {
  const name = `log_safe_refuse_${randomBytes(3).toString('hex')}`;
  const db = server.database.db;
  await db.execute(sql.raw(`ALTER TABLE ${table} ADD CONSTRAINT ${name} CHECK (position('${forbidden}' in ${column}) = 0) NOT VALID`));
  return async () => void (await db.execute(sql.raw(`ALTER TABLE ${table} DROP CONSTRAINT ${name}`)));
}

describe('a database error in the log', () => {
  it('names the SQLSTATE and constraint of a refused sign-up, never the email, password or hash', async () => {
    const marker = `refused${randomBytes(3).toString('hex')}`;
    const email = uniqueEmail(marker);
    const password = `pw-${randomBytes(8).toString('hex')}-secret`;
    const restore = await refuse('users', 'email', marker);
    try {
      const answer = await server.raw('auth.register', { method: 'POST', body: JSON.stringify({ email, password }) });
      expect(answer.status).toBe(500);
      expect(JSON.stringify(answer.body)).not.toContain(marker);
    } finally {
      await restore();
    }
    const log = logged.join('\n');
    expect(log).toContain('[trpc] auth.register failed');
    expect(log).toContain('23514'); // check_violation
    expect(log).toContain('log_safe_refuse_');
    expect(log).toMatch(/\d+ params, \d+ bytes/);
    expect(log).not.toContain(marker);
    expect(log).not.toContain(password);
    expect(log).not.toContain('$argon2');
    expect(log).not.toContain('Failing row');
  });

  it('names the SQLSTATE of a refused prediction batch, never the prediction text', async () => {
    const user = await createUser(server.deps);
    const { token } = await createManualJob(server.deps, user.id);
    const marker = `secret-prediction-${randomBytes(4).toString('hex')}`;
    const restore = await refuse('training_predictions', 'prediction', marker);
    try {
      const row = { epoch: 1, step: 1, sampleIndex: 0, trigger: 'steps', prompt: 'What is 2+2?', groundTruth: '4', prediction: `the answer is ${marker}` };
      const answer = await server.raw('pod.writePredictions', { method: 'POST', token, body: JSON.stringify({ predictions: [row] }) });
      expect(answer.status).toBe(500);
    } finally {
      await restore();
    }
    const log = logged.join('\n');
    expect(log).toContain('[trpc] pod.writePredictions failed');
    expect(log).toContain('23514');
    expect(log).not.toContain(marker);
    expect(log).not.toContain('What is 2+2?');
  });
});

describe('describeError', () => {
  it('keeps the words of an error that carries no query', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED', syscall: 'connect' });
    const described = describeError(new Error('wrapped', { cause: error }));
    expect(described).toContain('wrapped');
    expect(described).toContain('ECONNREFUSED');
    expect(described).toMatch(/\n\s+at /);
  });

  it('drops every message once a link carries a query, even one copied into an outer error', () => {
    const secret = 'alice@example.test';
    const drizzle = Object.assign(new Error(`Failed query: insert into users values ($1)\nparams: ${secret}`), { query: 'insert into users values ($1)', params: [secret] });
    // tRPC copies the message of the error it wraps into its own.
    const outer = new Error(drizzle.message, { cause: drizzle });
    const described = describeError(outer);
    expect(described).not.toContain(secret);
    expect(described).toContain(`1 params, ${Buffer.byteLength(secret)} bytes`);
  });
});
