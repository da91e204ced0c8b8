// Who may join (audit F8), over real HTTP against a real server: SIGNUP=closed
// refuses auth.register; SIGNUP=invite needs a valid invitation that an administrator created,
// and refuses a missing, wrong, used, expired, revoked or other-email one naming `invitation`;
// the first account on an empty server may always register and is the one administrator, even
// when two register at once; admin.* refuses everyone else.
import { describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { useTestServer, type TestServer } from '../test-support/server';
import { TEST_PASSWORD, uniqueEmail } from '../test-support/factories';
import { users } from '../../db/schema';

type ErrorBody = { error: { message: string; data: { code: string; httpStatus: number; field: string | null } } };
type Session = { token: string; user: { id: string; email: string } };
const errorOf = (body: unknown) => (body as ErrorBody).error;
const dataOf = <T>(body: unknown) => (body as { result: { data: T } }).result.data;

/** HTTP calls as any client makes them, against the server `get` returns (it is started in beforeAll). */
function helpers(get: () => TestServer) {
  const post = (procedure: string, input: unknown, token?: string) =>
    get().raw(procedure, { method: 'POST', body: JSON.stringify(input), ...(token ? { token } : {}) });
  const query = (procedure: string, token?: string) => get().raw(procedure, token ? { token } : {});
  async function registerOk(input: { email: string; password?: string; invitation?: string }): Promise<Session> {
    const res = await post('auth.register', { password: TEST_PASSWORD, ...input });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return dataOf<Session>(res.body);
  }
  async function isAdmin(token: string): Promise<boolean> {
    const res = await query('auth.me', token);
    expect(res.status).toBe(200);
    return dataOf<{ isAdmin: boolean }>(res.body).isAdmin;
  }
  async function invite(adminToken: string, input: { email?: string; expiresInHours?: number } = {}): Promise<{ id: string; secret: string; link: string }> {
    const res = await post('admin.createInvitation', input, adminToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const { invitation, link } = dataOf<{ invitation: { id: string }; link: string }>(res.body);
    const secret = new URL(link).searchParams.get('invitation');
    if (!secret) throw new Error(`no secret in ${link}`);
    return { id: invitation.id, secret, link };
  }
  return { post, get: query, registerOk, isAdmin, invite };
}

describe('SIGNUP=closed', () => {
  let server: TestServer;
  useTestServer((started) => (server = started), { SIGNUP: 'closed' });
  const { post, get, registerOk, isAdmin, invite } = helpers(() => server);

  it('lets the first account register (it becomes the administrator), then refuses auth.register with 403 saying sign-up is closed', async () => {
    expect(dataOf((await get('auth.signupPolicy')).body)).toEqual({ signup: 'closed', firstAccount: true });
    const first = await registerOk({ email: uniqueEmail('admin') });
    expect(await isAdmin(first.token)).toBe(true);
    expect(dataOf((await get('auth.signupPolicy')).body)).toEqual({ signup: 'closed', firstAccount: false });

    const res = await post('auth.register', { email: uniqueEmail(), password: TEST_PASSWORD });
    expect(res.status).toBe(403);
    expect(errorOf(res.body).message).toMatch(/Sign-up is closed on this server; ask the administrator/);
    // Nothing was stored for the refused one.
    expect(await server.database.db.$count(users)).toBe(1);
  });

  it('an invitation does not open a closed server', async () => {
    const first = await registerOk({ email: uniqueEmail('admin') });
    const { secret } = await invite(first.token);
    const res = await post('auth.register', { email: uniqueEmail(), password: TEST_PASSWORD, invitation: secret });
    expect(res.status).toBe(403);
  });
});

describe('SIGNUP=invite (the default)', () => {
  let server: TestServer;
  // The default policy: no SIGNUP given (the test server otherwise opens sign-up).
  useTestServer((started) => (server = started), { SIGNUP: '' });
  const { post, get, registerOk, isAdmin, invite } = helpers(() => server);

  async function admin(): Promise<Session> {
    return registerOk({ email: uniqueEmail('admin') });
  }

  async function refused(input: { email?: string; invitation?: string }, message: RegExp) {
    const res = await post('auth.register', { email: uniqueEmail(), password: TEST_PASSWORD, ...input });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(errorOf(res.body).data.field).toBe('invitation');
    expect(errorOf(res.body).message).toMatch(message);
    return res;
  }

  it('is the default policy, and says so to the sign-in page', async () => {
    expect(server.deps.config.signup).toBe('invite');
    expect(dataOf((await get('auth.signupPolicy')).body)).toEqual({ signup: 'invite', firstAccount: true });
  });

  it('the first account needs no invitation and becomes the administrator; the second needs one', async () => {
    const first = await admin();
    expect(await isAdmin(first.token)).toBe(true);
    await refused({}, /by invitation: open the invitation link/);
    expect(await server.database.db.$count(users)).toBe(1);
  });

  it('an invitation link registers exactly one account, which is not an administrator; used again it is refused', async () => {
    const first = await admin();
    const { secret, link } = await invite(first.token);
    expect(link).toBe(`${server.deps.config.publicUrl}/register?invitation=${secret}`);
    expect(Buffer.from(secret, 'base64url').length).toBeGreaterThanOrEqual(32);
    const invited = await registerOk({ email: uniqueEmail('invited'), invitation: secret });
    expect(await isAdmin(invited.token)).toBe(false);
    await refused({ invitation: secret }, /already been used/);

    const list = await get('admin.listInvitations', first.token);
    const [row] = dataOf<{ items: Array<Record<string, unknown>> }>(list.body).items;
    expect(row).toMatchObject({ status: 'used', usedByEmail: invited.user.email, createdByEmail: first.user.email });
    // Only the hash is stored, and the list never shows the secret.
    expect(JSON.stringify(list.body)).not.toContain(secret);
    const stored = await server.database.db.execute(sql`select token_hash from invitations`);
    expect(JSON.stringify(stored)).not.toContain(secret);
  });

  it('refuses a wrong invitation naming the field', async () => {
    await admin();
    await refused({ invitation: 'not-a-real-invitation-secret' }, /not valid/);
  });

  it('refuses an expired invitation', async () => {
    const first = await admin();
    const { id, secret } = await invite(first.token);
    await server.database.db.execute(sql`update invitations set expires_at = now() - interval '1 second' where id = ${id}`);
    await refused({ invitation: secret }, /expired/);
    const list = await get('admin.listInvitations', first.token);
    expect(dataOf<{ items: Array<{ status: string }> }>(list.body).items[0]?.status).toBe('expired');
  });

  it('refuses a revoked invitation; revoking a used one changes nothing', async () => {
    const first = await admin();
    const { id, secret } = await invite(first.token);
    const revoked = await post('admin.revokeInvitation', { invitationId: id }, first.token);
    expect(dataOf<{ status: string }>(revoked.body).status).toBe('revoked');
    await refused({ invitation: secret }, /revoked/);

    const other = await invite(first.token);
    await registerOk({ email: uniqueEmail(), invitation: other.secret });
    const late = await post('admin.revokeInvitation', { invitationId: other.id }, first.token);
    expect(dataOf<{ status: string }>(late.body).status).toBe('used');
  });

  it('an invitation bound to an email accepts that email (any case) only', async () => {
    const first = await admin();
    const email = uniqueEmail('bound');
    const { secret } = await invite(first.token, { email });
    await refused({ email: uniqueEmail('someone-else'), invitation: secret }, /for another email address/);
    await registerOk({ email: email.toUpperCase(), invitation: secret });
  });

  it('a taken email does not spend the invitation', async () => {
    const first = await admin();
    const { secret } = await invite(first.token);
    const res = await post('auth.register', { email: first.user.email, password: TEST_PASSWORD, invitation: secret });
    expect(res.status).toBe(409);
    await registerOk({ email: uniqueEmail(), invitation: secret });
  });

  it('one invitation used by many registrations at once makes exactly one account', async () => {
    const first = await admin();
    const { secret } = await invite(first.token);
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => post('auth.register', { email: uniqueEmail('race'), password: TEST_PASSWORD, invitation: secret })),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400, 400, 400, 400, 400, 400, 400]);
    expect(await server.database.db.$count(users)).toBe(2);
  });

  it('refuses an expiry beyond the bound, naming the field and the limit', async () => {
    const first = await admin();
    const res = await post('admin.createInvitation', { expiresInHours: 24 * 365 }, first.token);
    expect(res.status).toBe(400);
    expect(errorOf(res.body).data.field).toBe('expiresInHours');
    expect(errorOf(res.body).message).toMatch(/at most 720/);
  });

  it('admin.* refuses a signed-in non-administrator with 403 and an anonymous caller with 401', async () => {
    const first = await admin();
    const { secret, id } = await invite(first.token);
    const member = await registerOk({ email: uniqueEmail('member'), invitation: secret });
    for (const [procedure, input] of [
      ['admin.createInvitation', {}],
      ['admin.revokeInvitation', { invitationId: id }],
    ] as const) {
      expect((await post(procedure, input, member.token)).status, procedure).toBe(403);
      expect((await post(procedure, input)).status, procedure).toBe(401);
    }
    const list = await get('admin.listInvitations', member.token);
    expect(list.status).toBe(403);
    expect(errorOf(list.body).message).toMatch(/Only an administrator/);
    expect(await isAdmin(member.token)).toBe(false);
  });
});

describe('the first account, registered twice at once', () => {
  let server: TestServer;
  useTestServer((started) => (server = started), { SIGNUP: 'closed' });
  const { post } = helpers(() => server);

  it('gives exactly one administrator (and, on a closed server, exactly one account)', { timeout: 60_000 }, async () => {
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => post('auth.register', { email: uniqueEmail(`first-${i}`), password: TEST_PASSWORD })),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 403)).toHaveLength(5);
    const admins = await server.database.db.execute(sql`select count(*)::int as n from users where is_admin`);
    expect(JSON.stringify(admins)).toMatch(/"n":1\b/);
  });
});

describe('SIGNUP=open', () => {
  let server: TestServer;
  useTestServer((started) => (server = started), { SIGNUP: 'open' });
  const { registerOk, isAdmin } = helpers(() => server);

  it('anyone may register; only the first account is an administrator', async () => {
    const first = await registerOk({ email: uniqueEmail() });
    const second = await registerOk({ email: uniqueEmail() });
    expect(await isAdmin(first.token)).toBe(true);
    expect(await isAdmin(second.token)).toBe(false);
  });
});
