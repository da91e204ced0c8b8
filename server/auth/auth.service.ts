// Accounts: register, sign in, who am I. Errors are deliberately vague where precision would
// leak (an unknown email and a wrong password read the same).
import { AppError } from '../errors';
import type { AppDeps } from '../deps';
import type { CredentialsInput, PublicUser, SessionOutput } from '../contract/auth.schemas';
import { findUserForLogin, getUser, type UserRecord } from '../../db/queries/users';
import { burnPasswordCheck, verifyPassword } from './passwords';
import { signSessionToken } from './tokens';

export function toPublicUser(user: UserRecord): PublicUser {
  return { id: user.id, email: user.email, createdAt: user.createdAt.toISOString() };
}

/** Issues a session for a user who has just proven who they are (sign-in or sign-up). */
export async function startSession(deps: AppDeps, user: UserRecord): Promise<SessionOutput> {
  const token = await signSessionToken(deps.secrets.session, user.id, deps.config.sessionTtlSeconds);
  return { token, user: toPublicUser(user) };
}

export async function login(deps: AppDeps, input: CredentialsInput, clientIp: string): Promise<SessionOutput> {
  const { byEmail, byClient } = deps.loginLimits;
  const wait = Math.max(byEmail.retryAfterSeconds(input.email), byClient.retryAfterSeconds(clientIp));
  if (wait > 0) {
    throw new AppError('TOO_MANY_REQUESTS', `Too many failed sign-ins; try again in ${wait} seconds`, {
      retryAfterSeconds: wait,
    });
  }
  const found = await findUserForLogin(deps.database.db, { email: input.email });
  const ok = found ? await verifyPassword(found.passwordHash, input.password) : (await burnPasswordCheck(input.password), false);
  if (!found || !ok) {
    byEmail.recordFailure(input.email);
    byClient.recordFailure(clientIp);
    throw new AppError('UNAUTHORIZED', 'Email or password is incorrect');
  }
  byEmail.reset(input.email);
  return startSession(deps, { id: found.id, email: found.email, createdAt: found.createdAt });
}

export async function me(deps: AppDeps, userId: string): Promise<PublicUser> {
  const user = await getUser(deps.database.db, { userId });
  // A valid token for a user who no longer exists is a dead session, not a missing resource.
  if (!user) throw new AppError('UNAUTHORIZED', 'Your account no longer exists; sign in again');
  return toPublicUser(user);
}
