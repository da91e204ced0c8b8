// Token lifetimes and dead subjects (audit "Informational"): every kind of token the server signs
// is refused when issued in the future, or when its lifetime (exp - iat) is longer than that kind
// is ever issued for, even with a good signature; a session token of a deleted user is refused.
// Each forged token below differs from an accepted one in that one respect only.
import { eq } from 'drizzle-orm';
import { SignJWT, type JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { users } from '../../db/schema';
import { TOKEN_ISSUER } from '../auth/tokens';
import { createManualJob, createUser } from '../test-support/factories';
import { useTestServer, type TestServer } from '../test-support/server';

let server: TestServer;
useTestServer((started) => (server = started));

const YEAR_9999 = Math.floor(Date.UTC(9999, 0, 1) / 1000);
const now = () => Math.floor(Date.now() / 1000);

function sign(key: Uint8Array, audience: string, subject: string, claims: JWTPayload, iat: number, exp: number): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(audience)
    .setSubject(subject)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key);
}

/** A signed-in user and the id of their (live) session, so forged tokens name a real session. */
async function userWithSession() {
  const user = await createUser(server.deps);
  const sessionId = (await server.client(user.token).auth.sessions.query())[0]?.id ?? '';
  const session = (iat: number, exp: number) => sign(server.deps.secrets.session, 'user', user.id, { jti: sessionId }, iat, exp);
  return { user, sessionId, session };
}

const meStatus = async (token: string) => (await server.raw('auth.me', { token })).status;

describe('session tokens', () => {
  it('a well-formed token for a live session is accepted (the control)', async () => {
    const { session } = await userWithSession();
    expect(await meStatus(await session(now(), now() + 3600))).toBe(200);
  });

  it('refuses one issued in the future (beyond a minute of clock skew)', async () => {
    const { session } = await userWithSession();
    expect(await meStatus(await session(now() + 3600, now() + 7200))).toBe(401);
    // Within the skew a fast clock on another instance is tolerated.
    expect(await meStatus(await session(now() + 30, now() + 3600))).toBe(200);
  });

  it('refuses one expiring in year 9999', async () => {
    const { session } = await userWithSession();
    expect(await meStatus(await session(now(), YEAR_9999))).toBe(401);
  });

  it('refuses one lasting longer than SESSION_TTL_HOURS', async () => {
    const { session } = await userWithSession();
    expect(await meStatus(await session(now(), now() + server.deps.config.sessionTtlSeconds + 3600))).toBe(401);
  });

  it('refuses one without a session id, as every token minted before sessions were rows', async () => {
    const { user } = await userWithSession();
    const legacy = await sign(server.deps.secrets.session, 'user', user.id, {}, now(), now() + 3600);
    expect(await meStatus(legacy)).toBe(401);
  });

  it('refuses the token of a deleted user on every user procedure, saying the session ended', async () => {
    const { user } = await userWithSession();
    await server.database.db.delete(users).where(eq(users.id, user.id));
    const me = await server.raw('auth.me', { token: user.token });
    expect(me.status).toBe(401);
    expect((me.body as { error: { message: string } }).error.message).toBe('Your session has ended; sign in again');
    expect((await server.raw('jobs.list', { token: user.token, query: `?input=${encodeURIComponent('{}')}` })).status).toBe(401);
  });
});

describe('job tokens', () => {
  async function jobTokenFor(iat: number, exp: number) {
    const user = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, user.id);
    return sign(server.deps.secrets.jobToken, 'pod', jobId, { own: user.id, ver: 1 }, iat, exp);
  }
  const podConfig = async (token: string) => (await server.raw('pod.config', { token })).status;

  it('refuses one issued in the future and one expiring in year 9999; the same token with sane times is accepted', async () => {
    const control = await podConfig(await jobTokenFor(now(), now() + 3600));
    expect(control).toBe(200);
    expect(await podConfig(await jobTokenFor(now() + 3600, now() + 7200))).toBe(401);
    expect(await podConfig(await jobTokenFor(now(), YEAR_9999))).toBe(401);
    expect(await podConfig(await jobTokenFor(now(), now() + server.deps.config.jobTokenTtlSeconds + 3600))).toBe(401);
  });
});

describe('export links', () => {
  it('refuses one lasting longer than five minutes or issued in the future', async () => {
    const user = await createUser(server.deps);
    const { jobId } = await createManualJob(server.deps, user.id);
    const link = (iat: number, exp: number) => sign(server.deps.secrets.session, 'export', jobId, { own: user.id }, iat, exp);
    const status = async (token: string) => (await fetch(`${server.url}/api/export/${jobId}.jsonl?token=${token}`)).status;
    expect(await status(await link(now(), now() + 300))).toBe(200);
    expect(await status(await link(now(), YEAR_9999))).toBe(401);
    expect(await status(await link(now() + 3600, now() + 3700))).toBe(401);
  });
});
