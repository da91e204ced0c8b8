// The typed client as another TypeScript service would use it: plain import, base URL, token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiClient, errorDetails } from './client';
import { startTestServer, type TestServer } from '../../server/test-support/server';
import { TEST_PASSWORD, uniqueEmail } from '../../server/test-support/factories';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

describe('createApiClient', () => {
  it('registers, then reads auth.me with the returned token', async () => {
    const anonymous = createApiClient({ url: server.url });
    const email = uniqueEmail('service');
    const { token, user } = await anonymous.auth.register.mutate({ email, password: TEST_PASSWORD });
    let current: string | null = token;
    const signedIn = createApiClient({ url: `${server.url}/`, token: () => current });
    expect(await signedIn.auth.me.query()).toEqual({ ...user, isAdmin: expect.any(Boolean) as boolean });

    current = null;
    const failure = await signedIn.auth.me.query().catch((error: unknown) => error);
    expect(errorDetails(failure)).toMatchObject({ httpStatus: 401, code: 'UNAUTHORIZED', message: 'Sign in first' });
  });

  it('exposes field errors for forms', async () => {
    const failure = await createApiClient({ url: server.url })
      .auth.register.mutate({ email: 'nope', password: 'short' })
      .catch((error: unknown) => error);
    const details = errorDetails(failure);
    expect(details.httpStatus).toBe(400);
    expect(Object.keys(details.fieldErrors ?? {}).sort()).toEqual(['email', 'password']);
  });
});
