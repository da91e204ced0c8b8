// auth.* over real HTTP against a real database: every bad input answers 4xx with a message.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { signSessionToken, TOKEN_ISSUER } from '../auth/tokens';
import { useTestServer, type TestServer } from '../test-support/server';
import { createUser, TEST_PASSWORD, uniqueEmail } from '../test-support/factories';

let server: TestServer;
useTestServer((started) => (server = started));

type ErrorBody = { error: { message: string; data: { code: string; httpStatus: number; field: string | null } } };
const errorOf = (body: unknown) => (body as ErrorBody).error;
const post = (procedure: string, input: unknown, token?: string) =>
  server.raw(procedure, { method: 'POST', body: JSON.stringify(input), ...(token ? { token } : {}) });

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('auth.register', () => {
  it('creates a user and returns a session token that auth.me accepts', async () => {
    const email = uniqueEmail();
    const res = await post('auth.register', { email, password: TEST_PASSWORD });
    expect(res.status).toBe(200);
    const { token, user } = (res.body as { result: { data: { token: string; user: { id: string; email: string } } } }).result.data;
    expect(user.email).toBe(email);
    expect(JSON.stringify(res.body)).not.toMatch(/argon2|password_?hash/i);
    const me = await server.raw('auth.me', { token });
    expect(me.status).toBe(200);
    expect((me.body as { result: { data: { id: string } } }).result.data.id).toBe(user.id);
  });

  it('refuses a duplicate email, case-insensitively, with 409 naming the field', async () => {
    const email = uniqueEmail();
    await post('auth.register', { email, password: TEST_PASSWORD });
    const res = await post('auth.register', { email: email.toUpperCase(), password: TEST_PASSWORD });
    expect(res.status).toBe(409);
    expect(errorOf(res.body).message).toMatch(/already exists/);
    expect(errorOf(res.body).data.field).toBe('email');
  });

  it('refuses a short password naming the limit', async () => {
    const res = await post('auth.register', { email: uniqueEmail(), password: 'short' });
    expect(res.status).toBe(400);
    expect(errorOf(res.body).message).toMatch(/password: Password must be at least 10 characters/);
    expect(errorOf(res.body).data.field).toBe('password');
  });

  it('refuses a 1 MB password with 400 and the limit, not a 500 or a hash of it', async () => {
    const res = await post('auth.register', { email: uniqueEmail(), password: 'x'.repeat(1024 * 1024) });
    expect(res.status).toBe(400);
    expect(errorOf(res.body).message).toMatch(/at most 256 characters/);
  });

  it('refuses an invalid email', async () => {
    const res = await post('auth.register', { email: 'not-an-email', password: TEST_PASSWORD });
    expect(res.status).toBe(400);
    expect(errorOf(res.body).message).toMatch(/email: Enter a valid email address/);
  });
});

describe('auth.login', () => {
  it('signs in with the right password, any email case', async () => {
    const user = await createUser(server.deps);
    const res = await post('auth.login', { email: user.email.toUpperCase(), password: TEST_PASSWORD });
    expect(res.status).toBe(200);
  });

  it('answers a wrong password and an unknown email with the same 401', async () => {
    const user = await createUser(server.deps);
    const wrong = await post('auth.login', { email: user.email, password: 'wrong password 123' });
    const unknown = await post('auth.login', { email: uniqueEmail(), password: 'wrong password 123' });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(errorOf(wrong.body).message).toBe(errorOf(unknown.body).message);
  });

  it('rate-limits failed logins per email with 429 and Retry-After', async () => {
    const user = await createUser(server.deps);
    for (let i = 0; i < 10; i++) {
      expect((await post('auth.login', { email: user.email, password: 'wrong password 123' })).status).toBe(401);
    }
    const limited = await post('auth.login', { email: user.email, password: TEST_PASSWORD });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(errorOf(limited.body).message).toMatch(/Too many failed sign-ins; try again in \d+ seconds/);
    // Another account from elsewhere is unaffected by this email's lockout.
    const other = await createUser(server.deps);
    expect((await post('auth.login', { email: other.email, password: TEST_PASSWORD })).status).toBe(200);
  });

  it('answers malformed JSON with 400 and a parse message', async () => {
    const res = await server.raw('auth.login', { method: 'POST', body: '{"email": "a@b.c", ' });
    expect(res.status).toBe(400);
    expect(errorOf(res.body).message).toMatch(/JSON/);
  });

  it('answers a non-object input with 400 naming what was expected', async () => {
    const res = await post('auth.login', 'just a string');
    expect(res.status).toBe(400);
    expect(errorOf(res.body).message).toMatch(/expected object/);
  });
});

describe('session tokens', () => {
  it('refuses a token signed with another key', async () => {
    const user = await createUser(server.deps);
    const forged = await signSessionToken(new TextEncoder().encode('x'.repeat(48)), user.id, 3600, randomUUID());
    const res = await server.raw('auth.me', { token: forged });
    expect(res.status).toBe(401);
    expect(errorOf(res.body).message).toMatch(/invalid or has expired/);
  });

  it('refuses an unsigned token (alg: none)', async () => {
    const user = await createUser(server.deps);
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ iss: TOKEN_ISSUER, aud: 'user', sub: user.id, iat: now, exp: now + 3600 })}.`;
    expect((await server.raw('auth.me', { token: unsigned })).status).toBe(401);
  });

  it('refuses an expired token signed with the real key', async () => {
    const user = await createUser(server.deps);
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience('user')
      .setSubject(user.id)
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(server.deps.secrets.session);
    expect((await server.raw('auth.me', { token: expired })).status).toBe(401);
  });

  it('refuses a real-key token without exp', async () => {
    const user = await createUser(server.deps);
    const noExp = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience('user')
      .setSubject(user.id)
      .setIssuedAt()
      .sign(server.deps.secrets.session);
    expect((await server.raw('auth.me', { token: noExp })).status).toBe(401);
  });

  it('refuses a real-key token for another audience', async () => {
    const user = await createUser(server.deps);
    const wrongAudience = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience('admin')
      .setSubject(user.id)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(server.deps.secrets.session);
    expect((await server.raw('auth.me', { token: wrongAudience })).status).toBe(401);
  });

  it('refuses garbage in the Authorization header without a 500', async () => {
    for (const token of ['garbage', 'a.b.c', '....', 'Ünicode']) {
      const res = await server.raw('auth.me', { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(401);
    }
  });
});
