// Accounts: register, sign in, who am I. Errors are deliberately vague where precision would
// leak (an unknown email and a wrong password read the same).
import { AppError } from '../errors';
import type { AppDeps } from '../deps';
import type { CredentialsInput, PublicUser, SessionOutput } from '../contract/auth.schemas';
import { findUserForLogin, getUser, insertUser, type UserRecord } from '../../db/queries/users';
import { burnPasswordCheck, hashPassword, verifyPassword } from './passwords';
import { signSessionToken } from './tokens';
import { addExampleDataset } from '../datasets/datasets.service';

export function toPublicUser(user: UserRecord): PublicUser {
  return { id: user.id, email: user.email, createdAt: user.createdAt.toISOString() };
}

async function session(deps: AppDeps, user: UserRecord): Promise<SessionOutput> {
  const token = await signSessionToken(deps.secrets.session, user.id, deps.config.sessionTtlSeconds);
  return { token, user: toPublicUser(user) };
}

export async function register(deps: AppDeps, input: CredentialsInput): Promise<SessionOutput> {
  const passwordHash = await hashPassword(input.password);
  const user = await insertUser(deps.database.db, { email: input.email, passwordHash });
  if (!user) throw new AppError('CONFLICT', 'An account with this email already exists; sign in instead', { field: 'email' });
  // Every account starts with a dataset it can deploy at once.
  await addExampleDataset(deps, user.id);
  return session(deps, user);
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
  return session(deps, { id: found.id, email: found.email, createdAt: found.createdAt });
}

export async function me(deps: AppDeps, userId: string): Promise<PublicUser> {
  const user = await getUser(deps.database.db, { userId });
  // A valid token for a user who no longer exists is a dead session, not a missing resource.
  if (!user) throw new AppError('UNAUTHORIZED', 'Your account no longer exists; sign in again');
  return toPublicUser(user);
}
