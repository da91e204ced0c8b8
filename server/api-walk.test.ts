// the whole API answers hostile input with a 4xx that says why, never a 5xx,
// and keeps serving. Every procedure of the app router (read from the router, so one added
// later is walked too) starts from a valid example; each field of it, nested ones included,
// is replaced by hostile values (fixed edge cases, then fast-check's random ones) and sent
// over real HTTP. Reproduce a failure with API_WALK_SEED=<seed printed by fast-check>.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appRouter } from './routers/app.router';
import { startTestServer, type TestServer } from './test-support/server';
import { createDataset, createManualJob, createUser, TEST_PASSWORD, uniqueEmail } from './test-support/factories';
import { createInvitation } from './auth/invitations';
import { startSession } from './auth/auth.service';
import {
  ABSENT,
  callOverHttp,
  fieldPaths,
  formatPath,
  HOSTILE_CONSTANTS,
  hostileValue,
  listProcedures,
  withField,
  type FieldPath,
  type Hostile,
  type WalkAnswer,
  type WalkedProcedure,
} from './test-support/api-walk';

/** fast-check's random values per field, after the fixed ones; small so the file stays well under a minute. */
const RANDOM_RUNS_PER_FIELD = 6;
const SEED = Number(process.env.API_WALK_SEED ?? 20_261_212);

let server: TestServer;

interface Fixtures {
  user: { id: string; email: string; token: string };
  datasetId: string;
  /** The job whose token the pod.* procedures use; it has predictions, metrics and logs. */
  pod: { jobId: string; token: string };
  /** Jobs only the baseline of cancel / rotateToken acts on (both end what a token can do). */
  cancelJobId: string;
  rotateJobId: string;
  jobsCursor: string;
  predictionsCursor: string;
  registeredEmail: string;
  /** A new live job, for procedures whose valid call ends the job (pod.finish). */
  freshJob(): Promise<{ jobId: string; token: string }>;
}

interface Example {
  /** The input; undefined for procedures that take none. */
  input?: unknown;
  token?: string;
  /** Hostile values only this procedure understands (a cursor that decodes out of range), by field. */
  crafted?: Record<string, Hostile[]>;
}

const base64url = (text: string) => Buffer.from(text).toString('base64url');

/** A new session (as a sign-in makes) for `user`: its token. */
const sessionOf = async (user: { id: string; email: string }) =>
  (await startSession(server.deps, { id: user.id, email: user.email, createdAt: new Date() })).token;
/** An account only the session-ending procedures use, so they never end the fixture user's session. */
let sessionsAccount: ReturnType<typeof createUser> | undefined;
const sessionsUser = () => (sessionsAccount ??= createUser(server.deps, { email: uniqueEmail('walk-sessions') }));

const config = (fx: Fixtures) => ({
  datasetId: fx.datasetId,
  launcher: 'manual',
  training: { epochs: 3, batchSize: 8, learningRate: 0.5, evalStrategy: 'steps', evalSteps: 5, seed: 42 },
  predictions: { enabled: true, sampleFrequency: 'steps', sampleCount: 2, stepInterval: 5, maxNewTokens: 24 },
});

/**
 * A valid input for every procedure, keyed by path. A procedure missing here fails the walk:
 * add its example (with the token it needs) when you add the procedure.
 */
const EXAMPLES: Record<string, (fx: Fixtures) => Example | Promise<Example>> = {
  // The fixture user is the server's first account, so its administrator.
  'admin.createInvitation': (fx) => ({ token: fx.user.token, input: { email: uniqueEmail('invited'), expiresInHours: 24 } }),
  'admin.listInvitations': (fx) => ({ token: fx.user.token, input: { limit: 10 } }),
  'admin.revokeInvitation': async (fx) => ({
    token: fx.user.token,
    input: { invitationId: (await createInvitation(server.deps, fx.user.id, { expiresInHours: 1 })).invitation.id },
  }),
  'auth.signupPolicy': () => ({}),
  'auth.register': (fx) => ({ input: { email: fx.registeredEmail, password: TEST_PASSWORD } }),
  'auth.login': (fx) => ({ input: { email: fx.user.email, password: TEST_PASSWORD } }),
  'auth.me': (fx) => ({ token: fx.user.token }),
  // Procedures that end sessions get a session of their own each call (a fresh sign-in), and
  // those that end every session of an account act on an account of their own.
  // tRPC reads a mutation's body as JSON even when it takes no input: send {} as clients do.
  'auth.logout': async (fx) => ({ token: await sessionOf(fx.user), input: {} }),
  'auth.logoutEverywhere': async () => ({ token: await sessionOf(await sessionsUser()), input: {} }),
  'auth.changePassword': async () => ({
    token: await sessionOf(await sessionsUser()),
    input: { currentPassword: TEST_PASSWORD, newPassword: TEST_PASSWORD },
  }),
  'auth.sessions': (fx) => ({ token: fx.user.token }),
  'auth.revokeSession': async () => {
    const user = await sessionsUser();
    const victim = await sessionOf(user);
    const sessionId = (await server.client(victim).auth.sessions.query()).find((s) => s.current)?.id ?? '';
    return { token: await sessionOf(user), input: { sessionId } };
  },
  'auth.streamTicket': (fx) => ({ token: fx.user.token, input: { path: 'jobs.onUpdate' } }),
  'datasets.upload': (fx) => ({
    token: fx.user.token,
    input: { name: 'walked', jsonl: '{"prompt":"a","completion":"b"}\n{"prompt":"c","completion":"d"}' },
    // Escapes inside the file's text, which the tRPC middleware cannot see: jsonb refuses them.
    crafted: { jsonl: ['{"prompt":"a\\u0000b","completion":"\\ud800"}\n{"prompt":"\\udfff","completion":"x\\u0000"}'] },
  }),
  'datasets.list': (fx) => ({ token: fx.user.token }),
  'diagnostics.job': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId } }),
  'jobs.validateConfig': (fx) => ({ token: fx.user.token, input: config(fx) }),
  'jobs.deploy': (fx) => ({ token: fx.user.token, input: { name: 'walked job', config: config(fx) } }),
  'jobs.list': (fx) => ({
    token: fx.user.token,
    input: { cursor: fx.jobsCursor, limit: 2 },
    crafted: {
      cursor: [
        base64url(`-271821-04-20T00:00:00.000Z|${fx.pod.jobId}`),
        base64url(`+275760-09-13T00:00:00.000Z|${fx.pod.jobId}`),
        base64url(`0000-01-01T00:00:00.000Z|${fx.pod.jobId}`),
        base64url(`2026-01-01T00:00:00.000Z|${'-'.repeat(36)}`),
        base64url(`2026-01-01T00:00:00.000Z|${fx.pod.jobId}|extra`),
      ],
    },
  }),
  'jobs.get': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId } }),
  'jobs.cancel': (fx) => ({ token: fx.user.token, input: { jobId: fx.cancelJobId } }),
  'jobs.rotateToken': (fx) => ({ token: fx.user.token, input: { jobId: fx.rotateJobId } }),
  'jobs.logs': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId, afterId: 0, limit: 100 } }),
  'jobs.onUpdate': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId } }),
  'jobs.metrics': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId } }),
  'launchers.list': (fx) => ({ token: fx.user.token }),
  'pod.config': (fx) => ({ token: fx.pod.token }),
  'pod.heartbeat': (fx) => ({
    token: fx.pod.token,
    input: {
      status: 'running',
      mode: 'cloud',
      env: { JOB_ID: true, JOB_TOKEN: true, API_URL: true },
      epoch: 1,
      step: 5,
      totalSteps: 15,
      counters: { generated: 3, persisted: 3, spooled: 0, rejected: 0 },
      triggerFires: 1,
    },
  }),
  'pod.writePredictions': (fx) => ({
    token: fx.pod.token,
    input: { predictions: [{ epoch: 1, step: 5, sampleIndex: 0, trigger: 'steps', prompt: 'q0', groundTruth: 'a0', prediction: 'a0' }] },
  }),
  'pod.writeMetrics': (fx) => ({ token: fx.pod.token, input: { metrics: [{ step: 5, epoch: 1, name: 'loss', value: 0.5 }] } }),
  'pod.log': (fx) => ({ token: fx.pod.token, input: { lines: [{ level: 'info', message: 'walked' }] } }),
  'pod.finish': async (fx) => ({ token: (await fx.freshJob()).token, input: { status: 'failed', error: 'walked' } }),
  'predictions.list': (fx) => ({
    token: fx.user.token,
    input: { jobId: fx.pod.jobId, epoch: 1, trigger: 'steps', search: 'q', cursor: fx.predictionsCursor, limit: 1 },
    crafted: { cursor: [base64url('9999999999:0'), base64url('0:9999999999'), base64url('2147483648:2147483648')] },
  }),
  'predictions.epochs': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId } }),
  'predictions.compare': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId, epochs: [1] } }),
  'predictions.onNew': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId, lastEventId: '0' } }),
  'predictions.exportLink': (fx) => ({ token: fx.user.token, input: { jobId: fx.pod.jobId, format: 'csv' } }),
};

let fx: Fixtures;

beforeAll(async () => {
  // Only the manual launcher: a walked deploy must never start a trainer process.
  server = await startTestServer({ LAUNCHERS: 'manual' });
  const user = await createUser(server.deps);
  const dataset = await createDataset(server.deps, user.id, { count: 40 });
  const job = (name: string) => createManualJob(server.deps, user.id, { datasetId: dataset.id, name });
  const pod = await job('pod');
  const cancel = await job('cancel');
  const rotate = await job('rotate');
  const api = server.client(user.token);
  // Three predictions and a metric, so reads have rows to page through and cursors to decode.
  const rows = [0, 1, 2].map((i) => ({ epoch: 1, step: 5, sampleIndex: i, trigger: 'steps' as const, prompt: `q${i}`, groundTruth: 'a', prediction: 'a' }));
  await server.client(pod.token).pod.writePredictions.mutate({ predictions: rows });
  const page = await api.predictions.list.query({ jobId: pod.jobId, epoch: 1, trigger: 'steps', search: 'q', limit: 1 });
  const jobs = await api.jobs.list.query({ limit: 1 });
  if (!page.nextCursor || !jobs.nextCursor) throw new Error('the fixtures should span more than one page');
  fx = {
    user,
    datasetId: dataset.id,
    pod: { jobId: pod.jobId, token: pod.token },
    cancelJobId: cancel.jobId,
    rotateJobId: rotate.jobId,
    jobsCursor: jobs.nextCursor,
    predictionsCursor: page.nextCursor,
    registeredEmail: uniqueEmail('walk'),
    freshJob: async () => {
      const fresh = await job('finish');
      return { jobId: fresh.jobId, token: fresh.token };
    },
  };
}, 120_000);

afterAll(async () => {
  await server?.close();
});

function describeAnswer(procedure: WalkedProcedure, path: FieldPath, value: Hostile, answer: WalkAnswer): string {
  const shown = value === ABSENT ? '(left out)' : JSON.stringify(value)?.slice(0, 120);
  return `${procedure.path} with ${formatPath(path)} = ${shown} answered ${answer.status} ${answer.message ?? '(no message)'}`;
}

/** The walk's promise for one answer: under 500, and a 4xx carries a message a user can read. */
function assertAnswer(procedure: WalkedProcedure, path: FieldPath, value: Hostile, answer: WalkAnswer): void {
  const what = describeAnswer(procedure, path, value, answer);
  expect(answer.status, what).toBeLessThan(500);
  if (answer.status >= 400) expect(answer.message, what).toBeTruthy();
}

const procedures = listProcedures(appRouter);

describe('the API walk', () => {
  it('has a valid example for every procedure of the router, and none for a procedure that is gone', () => {
    const paths = procedures.map((p) => p.path);
    const missing = paths.filter((path) => !EXAMPLES[path]);
    expect(missing, `add an example input for ${missing.join(', ')} to EXAMPLES in server/api-walk.test.ts`).toEqual([]);
    expect(Object.keys(EXAMPLES).filter((path) => !paths.includes(path))).toEqual([]);
  });

  for (const procedure of procedures) {
    it(`${procedure.path} (${procedure.kind}): no field takes it to a 5xx`, async () => {
      const makeExample = EXAMPLES[procedure.path];
      if (!makeExample) throw new Error(`no example input for ${procedure.path}: add one to EXAMPLES in server/api-walk.test.ts`);
      const example = await makeExample(fx);

      // The example must be valid, or the walk would only ever test the first refusal.
      for (const schema of procedure.inputs) {
        const parsed = schema.safeParse(example.input);
        expect(parsed.success, `${procedure.path}: the example input is invalid: ${parsed.error?.message}`).toBe(true);
      }
      const baseline = await callOverHttp(server.url, procedure, example.input ?? ABSENT, example.token);
      expect(baseline.status, `${procedure.path}: the example was refused: ${baseline.message}`).toBeLessThan(300);

      for (const path of fieldPaths(procedure.inputs, example.input)) {
        const crafted = example.crafted?.[path.join('.')] ?? [];
        const fixed = [...HOSTILE_CONSTANTS, ...crafted];
        await fc.assert(
          fc.asyncProperty(hostileValue, async (value) => {
            const current = await makeExample(fx);
            const answer = await callOverHttp(server.url, procedure, withField(current.input, path, value), current.token);
            assertAnswer(procedure, path, value, answer);
          }),
          {
            // fast-check counts the fixed examples within numRuns.
            numRuns: fixed.length + RANDOM_RUNS_PER_FIELD,
            seed: SEED,
            examples: fixed.map((value) => [value]),
            // Shrinking a 100 KB string costs many requests; the failing value is printed as is.
            endOnFailure: true,
          },
        );
      }
    }, 120_000);
  }

  it('keeps serving after the walk: /health answers 200 and a signed-in call still works', async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    const me = await server.client(fx.user.token).auth.me.query();
    expect(me.email).toBe(fx.user.email);
    const job = await server.client(fx.user.token).jobs.get.query({ jobId: fx.pod.jobId });
    expect(job.id).toBe(fx.pod.jobId);
    const pod = await server.raw('pod.log', { method: 'POST', token: fx.pod.token, body: JSON.stringify({ lines: [{ message: 'still here' }] }) });
    expect(pod.status).toBe(200);
  });
});
