// Audit F7: sessions are server-side state. Signing out (here or everywhere), a password change
// elsewhere, or revoking a session ends it on its very next request; the session token is never
// accepted from a URL, and live streams open with a short ticket bound to one subscription.
import { SignJWT } from 'jose';
import { EventSource } from 'eventsource';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { TOKEN_ISSUER } from '../auth/tokens';
import { createManualJob, createUser, TEST_PASSWORD } from '../test-support/factories';
import { useTestServer, type TestServer } from '../test-support/server';
import { until } from '../test-support/wait';
import { createApiClient } from '../../client/api/client';

let server: TestServer;
useTestServer((started) => (server = started));

type ErrorBody = { error: { message: string; data: { code: string; httpStatus: number; field: string | null } } };
const messageOf = (body: unknown) => (body as ErrorBody).error.message;
const NEW_PASSWORD = 'a brand new passphrase 42';

async function signIn(email: string, password = TEST_PASSWORD, userAgent = 'security-test'): Promise<string> {
  const res = await server.raw('auth.login', { method: 'POST', body: JSON.stringify({ email, password }), headers: { 'user-agent': userAgent } });
  expect(res.status).toBe(200);
  return (res.body as { result: { data: { token: string } } }).result.data.token;
}

const me = (token: string) => server.raw('auth.me', { token });
const mutate = (procedure: string, token: string, input: unknown = {}) =>
  server.raw(procedure, { method: 'POST', token, body: JSON.stringify(input) });

async function mintTicket(token: string, path: string): Promise<string> {
  const res = await mutate('auth.streamTicket', token, { path });
  expect(res.status).toBe(200);
  return (res.body as { result: { data: { ticket: string } } }).result.data.ticket;
}

/**
 * Opens a subscription over raw HTTP with the given connection params. tRPC answers 200 and
 * "connected" either way, then either a serialized error (refused) or the stream's events; once
 * connected, `trigger` makes an event happen and returns a string that event carries. Resolves
 * with the error's code and message, or with `delivered` once that string arrives.
 */
async function openStream(
  path: string,
  input: unknown,
  params: Record<string, string> | null,
  trigger: () => Promise<string>,
): Promise<{ code: string | null; message: string | null; delivered: boolean }> {
  const query = new URLSearchParams({ input: JSON.stringify(input) });
  if (params) query.set('connectionParams', JSON.stringify(params));
  const abort = new AbortController();
  const response = await fetch(`${server.url}/trpc/${path}?${query}`, { signal: abort.signal });
  if (!response.body || !response.headers.get('content-type')?.includes('text/event-stream')) {
    return { code: String(response.status), message: await response.text(), delivered: false };
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let marker: string | null = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { code: null, message: null, delivered: false };
      text += decoder.decode(value, { stream: true });
      const error = /event: serialized-error\ndata: (.*)\n/.exec(text);
      if (error?.[1]) {
        const parsed = JSON.parse(error[1]) as { message: string; data: { code: string } };
        return { code: parsed.data.code, message: parsed.message, delivered: false };
      }
      if (marker && text.includes(marker)) return { code: null, message: null, delivered: true };
      if (!marker && text.includes('event: connected')) marker = await trigger();
    }
  } finally {
    abort.abort();
  }
}

/** For jobs.onUpdate streams: deploys a job for the user, whose id the stream should then carry. */
const newJobFor = (userId: string) => async () => (await createManualJob(server.deps, userId)).jobId;

describe('signing out', () => {
  it('auth.logout ends this session on its next request; the user’s other session carries on', async () => {
    const user = await createUser(server.deps);
    const here = await signIn(user.email);
    const there = await signIn(user.email);
    expect((await me(here)).status).toBe(200);
    expect((await mutate('auth.logout', here)).status).toBe(200);
    const after = await me(here);
    expect(after.status).toBe(401);
    expect(messageOf(after.body)).toBe('Your session has ended; sign in again');
    expect((await server.raw('jobs.list', { token: here, query: `?input=${encodeURIComponent('{}')}` })).status).toBe(401);
    expect((await me(there)).status).toBe(200);
  });

  it('auth.logoutEverywhere ends every session of the user, and no one else’s', async () => {
    const user = await createUser(server.deps);
    const other = await createUser(server.deps);
    const a = await signIn(user.email);
    const b = await signIn(user.email);
    const res = await mutate('auth.logoutEverywhere', a);
    expect(res.status).toBe(200);
    expect((res.body as { result: { data: { revokedSessions: number } } }).result.data.revokedSessions).toBe(3); // a, b and the sign-up session
    expect((await me(a)).status).toBe(401);
    expect((await me(b)).status).toBe(401);
    expect((await me(user.token)).status).toBe(401);
    expect((await me(other.token)).status).toBe(200);
  });

  it('auth.changePassword elsewhere ends every other session; the one that changed it stays', async () => {
    const user = await createUser(server.deps);
    const elsewhere = await signIn(user.email);
    const changer = await signIn(user.email);
    const res = await mutate('auth.changePassword', changer, { currentPassword: TEST_PASSWORD, newPassword: NEW_PASSWORD });
    expect(res.status).toBe(200);
    expect((await me(elsewhere)).status).toBe(401);
    expect((await me(changer)).status).toBe(200);
    const oldPassword = await server.raw('auth.login', { method: 'POST', body: JSON.stringify({ email: user.email, password: TEST_PASSWORD }) });
    expect(oldPassword.status).toBe(401);
    await signIn(user.email, NEW_PASSWORD);
  });

  it('auth.changePassword with a wrong current password answers 400 naming currentPassword, and ends nothing', async () => {
    const user = await createUser(server.deps);
    const other = await signIn(user.email);
    const res = await mutate('auth.changePassword', user.token, { currentPassword: 'not my password', newPassword: NEW_PASSWORD });
    expect(res.status).toBe(400);
    expect((res.body as ErrorBody).error.data.field).toBe('currentPassword');
    expect((await me(other)).status).toBe(200);
    expect((await me(user.token)).status).toBe(200);
  });

  it('auth.changePassword is throttled per account like sign-in', async () => {
    const user = await createUser(server.deps);
    const statuses = await Promise.all(
      Array.from({ length: 15 }, () => mutate('auth.changePassword', user.token, { currentPassword: 'a wrong guess', newPassword: NEW_PASSWORD })),
    );
    expect(statuses.filter((r) => r.status === 400).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(5);
  });

  it('auth.changePassword refuses a short new password naming the field and the limit', async () => {
    const user = await createUser(server.deps);
    const res = await mutate('auth.changePassword', user.token, { currentPassword: TEST_PASSWORD, newPassword: 'short' });
    expect(res.status).toBe(400);
    expect(messageOf(res.body)).toMatch(/newPassword: New password must be at least 10 characters/);
  });
});

describe('the sessions list', () => {
  it('lists the user’s live sessions with the current one marked, and revokes one by id', async () => {
    const user = await createUser(server.deps);
    const a = await signIn(user.email, TEST_PASSWORD, 'Browser A');
    const b = await signIn(user.email, TEST_PASSWORD, `Browser B ${'x'.repeat(1000)}`);
    const list = await server.client(a).auth.sessions.query();
    expect(list).toHaveLength(3);
    expect(list.filter((s) => s.current).map((s) => s.userAgent)).toEqual(['Browser A']);
    const sessionB = list.find((s) => s.userAgent?.startsWith('Browser B'));
    expect(sessionB?.userAgent?.length).toBe(256);
    expect(Object.keys(sessionB ?? {}).sort()).toEqual(['createdAt', 'current', 'id', 'lastUsedAt', 'userAgent']);

    await server.client(a).auth.revokeSession.mutate({ sessionId: sessionB?.id ?? '' });
    expect((await me(b)).status).toBe(401);
    expect((await me(a)).status).toBe(200);
    expect(await server.client(a).auth.sessions.query()).toHaveLength(2);
  });

  it('another user’s session id answers exactly like a missing one, and stays live', async () => {
    const alice = await createUser(server.deps);
    const bob = await createUser(server.deps);
    const bobSession = (await server.client(bob.token).auth.sessions.query())[0]?.id ?? '';
    const foreign = await mutate('auth.revokeSession', alice.token, { sessionId: bobSession });
    const missing = await mutate('auth.revokeSession', alice.token, { sessionId: '00000000-0000-4000-8000-000000000000' });
    expect(foreign.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(messageOf(foreign.body)).toBe(messageOf(missing.body));
    expect((await me(bob.token)).status).toBe(200);
  });
});

describe('no session token from a URL', () => {
  const inUrl = (token: string) => `connectionParams=${encodeURIComponent(JSON.stringify({ token }))}`;

  it('refuses a session token in ?connectionParams= on a query', async () => {
    const user = await createUser(server.deps);
    const res = await server.raw('auth.me', { query: `?${inUrl(user.token)}` });
    expect(res.status).toBe(401);
  });

  it('refuses a session token in ?connectionParams= on a mutation', async () => {
    const user = await createUser(server.deps);
    const res = await server.raw('auth.streamTicket', { method: 'POST', body: JSON.stringify({ path: 'jobs.onUpdate' }), query: `?${inUrl(user.token)}` });
    expect(res.status).toBe(401);
  });

  it('refuses a session token in ?connectionParams= on a subscription (as token or as ticket)', async () => {
    const user = await createUser(server.deps);
    expect((await openStream('jobs.onUpdate', {}, { token: user.token }, newJobFor(user.id))).code).toBe('UNAUTHORIZED');
    expect((await openStream('jobs.onUpdate', {}, { ticket: user.token }, newJobFor(user.id))).code).toBe('UNAUTHORIZED');
  });
});

describe('stream tickets', () => {
  it('open the subscription they were minted for, as their user', async () => {
    const user = await createUser(server.deps);
    const ticket = await mintTicket(user.token, 'jobs.onUpdate');
    const stream = await openStream('jobs.onUpdate', {}, { ticket }, newJobFor(user.id));
    expect(stream).toEqual({ code: null, message: null, delivered: true });
  });

  it('are refused for another subscription, a query and a mutation', async () => {
    const user = await createUser(server.deps);
    const ticket = await mintTicket(user.token, 'jobs.onUpdate');
    const { jobId } = await createManualJob(server.deps, user.id);
    const other = await openStream('predictions.onNew', { jobId }, { ticket }, async () => 'no event expected');
    expect(other.code).toBe('UNAUTHORIZED');
    expect((await me(ticket)).status).toBe(401);
    expect((await server.raw('auth.me', { query: `?connectionParams=${encodeURIComponent(JSON.stringify({ ticket }))}` })).status).toBe(401);
    expect((await mutate('auth.logout', ticket)).status).toBe(401);
    expect((await me(user.token)).status).toBe(200);
  });

  it('are refused once older than a minute', async () => {
    const user = await createUser(server.deps);
    const sessionId = (await server.client(user.token).auth.sessions.query())[0]?.id ?? '';
    const now = Math.floor(Date.now() / 1000);
    const ticket = (iat: number, exp: number) =>
      new SignJWT({ sid: sessionId, pth: 'jobs.onUpdate' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(TOKEN_ISSUER)
        .setAudience('stream')
        .setSubject(user.id)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(server.deps.secrets.session);
    // The same ticket minted just now works: what is refused below is its age alone.
    expect((await openStream('jobs.onUpdate', {}, { ticket: await ticket(now, now + 60) }, newJobFor(user.id))).delivered).toBe(true);
    expect((await openStream('jobs.onUpdate', {}, { ticket: await ticket(now - 61, now - 1) }, newJobFor(user.id))).code).toBe('UNAUTHORIZED');
    // Signed for longer than a ticket ever is, though still unexpired.
    expect((await openStream('jobs.onUpdate', {}, { ticket: await ticket(now - 61, now + 600) }, newJobFor(user.id))).code).toBe('UNAUTHORIZED');
  });

  it('are refused once their session is revoked', async () => {
    const user = await createUser(server.deps);
    const token = await signIn(user.email);
    const ticket = await mintTicket(token, 'jobs.onUpdate');
    await mutate('auth.logout', token);
    const stream = await openStream('jobs.onUpdate', {}, { ticket }, newJobFor(user.id));
    expect(stream.code).toBe('UNAUTHORIZED');
    expect(stream.message).toBe('Your session has ended; sign in again');
  });

  it('the typed client reopens a dropped stream with a fresh ticket when the old one has expired', async () => {
    const user = await createUser(server.deps);
    // A TCP relay in front of the server, so the test can cut every connection as a network would.
    const sockets = new Set<Socket>();
    const relay = createServer((client) => {
      const upstream = connect(Number(new URL(server.url).port), '127.0.0.1');
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`;
    let minted = 0;
    const api = createApiClient({
      url: relayUrl,
      token: user.token,
      EventSource,
      fetch: async (input, init) => {
        if (String(input instanceof Request ? input.url : input).includes('auth.streamTicket')) minted += 1;
        return fetch(input, init);
      },
    });
    const events: string[] = [];
    const errors: unknown[] = [];
    let started = 0;
    // The stale reconnect also says "connected" before its refusal: count only starts on a new ticket.
    let startedOnNewTicket = 0;
    const onStarted = () => {
      started += 1;
      if (minted >= 2) startedOnNewTicket += 1;
    };
    const sub = api.jobs.onUpdate.subscribe({}, { onStarted, onData: (job) => events.push(job.id), onError: (error) => errors.push(error) });
    try {
      await until(() => started, (n) => n >= 1, 'the stream started');
      const first = await createManualJob(server.deps, user.id);
      await until(() => events, (list) => list.includes(first.jobId), 'the first job on the stream');
      expect(minted).toBe(1);
      // Two minutes later (for every clock in this process, the server's too) the connection drops:
      // EventSource reconnects by itself with the same URL, whose ticket has expired.
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 120_000, shouldAdvanceTime: true });
      for (const socket of sockets) socket.destroy();
      await until(() => minted, (n) => n >= 2, 'a second ticket');
      await until(() => startedOnNewTicket, (n) => n >= 1, 'the stream started again on the new ticket');
      const second = await createManualJob(server.deps, user.id);
      await until(() => events, (list) => list.includes(second.jobId), 'the second job on the reopened stream');
      expect(errors).toEqual([]);
    } finally {
      vi.useRealTimers();
      sub.unsubscribe();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  }, 60_000);

  it('the typed client mints one per connection and receives events as the user', async () => {
    const user = await createUser(server.deps);
    const minted: string[] = [];
    const api = createApiClient({
      url: server.url,
      token: user.token,
      EventSource,
      fetch: async (input, init) => {
        if (String(input instanceof Request ? input.url : input).includes('auth.streamTicket')) minted.push('ticket');
        return fetch(input, init);
      },
    });
    const events: string[] = [];
    let started = false;
    const sub = api.jobs.onUpdate.subscribe({}, { onStarted: () => (started = true), onData: (job) => events.push(job.id) });
    try {
      await until(() => started, Boolean, 'the stream started');
      expect(minted).toEqual(['ticket']);
      const job = await createManualJob(server.deps, user.id);
      await until(() => events, (list) => list.includes(job.jobId), 'the job’s update on the stream');
    } finally {
      sub.unsubscribe();
    }
  });
});

describe('open live streams end with their session', () => {
  const endings: Array<[string, (token: string, otherToken: string) => Promise<unknown>]> = [
    ['auth.logout', (token) => mutate('auth.logout', token)],
    ['auth.logoutEverywhere from another session', (_token, otherToken) => mutate('auth.logoutEverywhere', otherToken)],
    ['auth.changePassword from another session', (_token, otherToken) => mutate('auth.changePassword', otherToken, { currentPassword: TEST_PASSWORD, newPassword: NEW_PASSWORD })],
  ];
  for (const [ending, end] of endings) {
    it(`${ending} ends a stream the session had open, and nothing written afterwards reaches it`, async () => {
      const user = await createUser(server.deps);
      const token = await signIn(user.email);
      const otherToken = await signIn(user.email);
      const { jobId, token: podToken } = await createManualJob(server.deps, user.id);
      const api = createApiClient({ url: server.url, token, EventSource });
      const seen: string[] = [];
      const errors: unknown[] = [];
      let started = false;
      const sub = api.predictions.onNew.subscribe(
        { jobId },
        { onStarted: () => (started = true), onData: (event) => seen.push(event.data.prompt), onError: (error) => errors.push(error) },
      );
      const row = (prompt: string, step: number) => ({ epoch: 1, step, sampleIndex: 0, trigger: 'eval' as const, prompt, groundTruth: 'g', prediction: 'p' });
      try {
        await until(() => started, Boolean, 'the stream to open');
        await server.client(podToken).pod.writePredictions.mutate({ predictions: [row('before', 1)] });
        await until(() => seen, (list) => list.includes('before'), 'the row written before');
        expect(await end(token, otherToken)).toMatchObject({ status: 200 });
        await until(() => errors.length, (n) => n > 0, 'the stream to end with the session');
        expect((errors[0] as Error).message).toBe('Your session has ended; sign in again');
        await server.client(podToken).pod.writePredictions.mutate({ predictions: [row('after', 2)] });
        // The owner's other live session (or a fresh one) sees the new row: had the ended stream still been open, it would have too.
        const witness = ending === 'auth.logout' ? otherToken : await signIn(user.email, ending.startsWith('auth.changePassword') ? NEW_PASSWORD : TEST_PASSWORD);
        const rows = await server.client(witness).predictions.list.query({ jobId, limit: 10 });
        expect(rows.items.map((item) => item.prompt).sort()).toEqual(['after', 'before']);
        expect(seen).toEqual(['before']);
      } finally {
        sub.unsubscribe();
      }
    });
  }
});
