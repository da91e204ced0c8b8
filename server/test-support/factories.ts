// Small factories for test data. Users are created through the real service so their
// password hashes and tokens are the real thing.
import { randomBytes } from 'node:crypto';
import type { AppDeps } from '../deps';
import { register } from '../auth/auth.service';

export const TEST_PASSWORD = 'correct horse battery staple';

export function uniqueEmail(prefix = 'user'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}@example.test`;
}

export async function createUser(deps: AppDeps, overrides: { email?: string; password?: string } = {}) {
  const email = overrides.email ?? uniqueEmail();
  const session = await register(deps, { email, password: overrides.password ?? TEST_PASSWORD });
  return { ...session.user, token: session.token, password: overrides.password ?? TEST_PASSWORD };
}
