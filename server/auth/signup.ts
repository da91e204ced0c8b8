// Who may create an account: auth.register. Kept apart from sign-in (auth.service.ts) because
// sign-up policy (open, by invitation, closed) and its throttling are a concern of their own.
import { AppError } from '../errors';
import type { AppDeps } from '../deps';
import type { CredentialsInput, SessionOutput } from '../contract/auth.schemas';
import { insertUser } from '../../db/queries/users';
import { hashPassword } from './passwords';
import { startSession } from './auth.service';
import { addExampleDataset } from '../datasets/datasets.service';

export async function register(deps: AppDeps, input: CredentialsInput): Promise<SessionOutput> {
  const passwordHash = await hashPassword(input.password);
  const user = await insertUser(deps.database.db, { email: input.email, passwordHash });
  if (!user) throw new AppError('CONFLICT', 'An account with this email already exists; sign in instead', { field: 'email' });
  // Every account starts with a dataset it can deploy at once.
  await addExampleDataset(deps, user.id);
  return startSession(deps, user);
}
