// Accounts and sessions: sign in, who am I, sign out (here or everywhere), change the password,
// list and revoke sessions, stream tickets. A session is a row in `sessions` (the token's `jti`);
// userProcedure checks that row on every request, so revoking it ends the session at once.
// Errors are deliberately vague where precision would leak (an unknown email and a wrong
// password read the same).
import { AppError } from '../errors';
import type { AppDeps } from '../app-deps';
import type {
  MeOutput,
  ChangePasswordInput,
  CredentialsInput,
  PublicUser,
  RevokedOutput,
  SessionInfo,
  SessionOutput,
  StreamTicketOutput,
} from '#contract/auth.schemas';
import { SESSIONS_LIST_MAX } from '#contract/auth.schemas';
import { findUserForLogin, getPasswordHash, getUser, updatePasswordHash, type UserRecord } from '../../db/queries/users';
import { insertSession, listLiveSessions, revokeSession as revokeSessionRow, revokeUserSessions } from '../../db/queries/sessions';
import { burnPasswordCheck, hashPassword, verifyPassword } from './passwords';
import { signSessionToken, signStreamTicket } from './tokens';

/** Who is asking, as the HTTP request says: the client address (for throttles) and user agent (for the sessions list). */
export interface RequestClient {
  ip: string;
  userAgent: string | null;
}

/** The session a user procedure runs in (from the verified token, checked against its row). */
export interface SessionScope {
  userId: string;
  sessionId: string;
}

export function toPublicUser(user: UserRecord): PublicUser {
  return { id: user.id, email: user.email, createdAt: user.createdAt.toISOString() };
}

/**
 * Issues a session for a user who has just proven who they are (sign-in or sign-up): inserts its
 * row (expiring with the token, SESSION_TTL_HOURS) and signs a token naming it.
 */
export async function startSession(deps: AppDeps, user: UserRecord, client: Pick<RequestClient, 'userAgent'> = { userAgent: null }): Promise<SessionOutput> {
  const ttlSeconds = deps.config.sessionTtlSeconds;
  const session = await insertSession(deps.database.db, {
    userId: user.id,
    expiresAt: new Date(Date.now() + ttlSeconds * 1000),
    userAgent: client.userAgent,
  });
  const token = await signSessionToken(deps.secrets.session, user.id, ttlSeconds, session.id);
  return { token, user: toPublicUser(user) };
}

const tooManySignIns = (seconds: number) => `Too many failed sign-ins; try again in ${seconds} seconds`;

/**
 * auth.login. Each attempt takes a point from the account's and the client's limit *before* the
 * password is checked (atomically, in the database), so requests sent together cannot all be
 * checked: over a limit the answer is TOO_MANY_REQUESTS with retryAfterSeconds and no password
 * is looked at. A correct password clears the account's count and gives the client its point back.
 * Throws UNAUTHORIZED "Email or password is incorrect" for an unknown email and a wrong password alike.
 */
export async function login(deps: AppDeps, input: CredentialsInput, client: RequestClient): Promise<SessionOutput> {
  const { loginAccount, loginClient } = deps.throttles;
  // Both are taken even when the first refuses, so a locked account still costs its client a point.
  const taken = await Promise.allSettled([loginAccount.consume(input.email, tooManySignIns), loginClient.consume(client.ip, tooManySignIns)]);
  const refused = taken.find((result) => result.status === 'rejected');
  if (refused) throw refused.reason;

  const found = await findUserForLogin(deps.database.db, { email: input.email });
  const ok = found ? await verifyPassword(found.passwordHash, input.password) : (await burnPasswordCheck(input.password), false);
  if (!found || !ok) throw new AppError('UNAUTHORIZED', 'Email or password is incorrect');
  await Promise.all([loginAccount.reset(input.email), loginClient.reward(client.ip)]);
  return startSession(deps, { id: found.id, email: found.email, createdAt: found.createdAt }, client);
}

/** auth.me: the signed-in user, and whether they administer this server. */
export async function me(deps: AppDeps, userId: string): Promise<MeOutput> {
  const user = await getUser(deps.database.db, { userId });
  // A valid token for a user who no longer exists is a dead session, not a missing resource.
  if (!user) throw new AppError('UNAUTHORIZED', 'Your account no longer exists; sign in again');
  return { ...toPublicUser(user), isAdmin: user.isAdmin };
}

/** auth.logout: revokes the session this request was made with; its token is refused from now on. */
export async function logout(deps: AppDeps, scope: SessionScope): Promise<RevokedOutput> {
  const revoked = await revokeSessionRow(deps.database.db, scope);
  if (revoked) await deps.live.sessionsEnded([scope.sessionId]);
  return { revokedSessions: revoked ? 1 : 0 };
}

/** auth.logoutEverywhere: revokes every session of the user, this one included. */
export async function logoutEverywhere(deps: AppDeps, scope: SessionScope): Promise<RevokedOutput> {
  const ids = await revokeUserSessions(deps.database.db, { userId: scope.userId });
  await deps.live.sessionsEnded(ids);
  return { revokedSessions: ids.length };
}

/**
 * auth.changePassword: proves the current password (throttled like sign-in, per account), stores
 * the new one and revokes every other session; the session that made the change stays signed in.
 * Throws TOO_MANY_REQUESTS over the limit, BAD_REQUEST naming `currentPassword` when it is wrong.
 */
export async function changePassword(deps: AppDeps, scope: SessionScope, input: ChangePasswordInput): Promise<RevokedOutput> {
  const db = deps.database.db;
  const user = await getUser(db, { userId: scope.userId });
  if (!user) throw new AppError('UNAUTHORIZED', 'Your account no longer exists; sign in again');
  await deps.throttles.loginAccount.consume(user.email, (seconds) => `Too many password attempts; try again in ${seconds} seconds`);
  const hash = await getPasswordHash(db, { userId: scope.userId });
  if (!hash || !(await verifyPassword(hash, input.currentPassword))) {
    // Not UNAUTHORIZED: the session is fine, and the web app signs out on a 401.
    throw new AppError('BAD_REQUEST', 'The current password is incorrect', { field: 'currentPassword' });
  }
  await deps.throttles.loginAccount.reset(user.email);
  const passwordHash = await hashPassword(input.newPassword);
  // One transaction: a crash between the two must not leave the new password with the old sessions live.
  const ids = await db.transaction(async (tx) => {
    await updatePasswordHash(tx, { userId: scope.userId, passwordHash });
    return revokeUserSessions(tx, { userId: scope.userId, exceptSessionId: scope.sessionId });
  });
  await deps.live.sessionsEnded(ids);
  return { revokedSessions: ids.length };
}

/** auth.sessions: the user's live sessions, newest first (at most SESSIONS_LIST_MAX), marking the current one. */
export async function listSessions(deps: AppDeps, scope: SessionScope): Promise<SessionInfo[]> {
  const rows = await listLiveSessions(deps.database.db, { userId: scope.userId, limit: SESSIONS_LIST_MAX });
  return rows.map((row) => ({
    id: row.id,
    createdAt: row.createdAt.toISOString(),
    lastUsedAt: row.lastUsedAt.toISOString(),
    userAgent: row.userAgent,
    current: row.id === scope.sessionId,
  }));
}

/** auth.revokeSession: revokes one of the user's sessions; NOT_FOUND for a missing, ended or someone else's id alike. */
export async function revokeSession(deps: AppDeps, scope: SessionScope, sessionId: string): Promise<RevokedOutput> {
  const revoked = await revokeSessionRow(deps.database.db, { userId: scope.userId, sessionId });
  if (!revoked) throw new AppError('NOT_FOUND', 'Session not found', { field: 'sessionId' });
  await deps.live.sessionsEnded([sessionId]);
  return { revokedSessions: 1 };
}

/**
 * auth.streamTicket: a ticket for opening one live subscription (`path`) as this session, valid
 * about a minute. The session is checked again when the stream opens, so a revoked session's
 * ticket is refused.
 */
export async function streamTicket(deps: AppDeps, scope: SessionScope, path: string): Promise<StreamTicketOutput> {
  const { ticket, expiresAt } = await signStreamTicket(deps.secrets.session, { userId: scope.userId, sessionId: scope.sessionId, path });
  return { ticket, expiresAt: expiresAt.toISOString() };
}
