// Everything a request handler may reach, built once at start (server/main.ts) or per test.
import type { Database } from '../db/client';
import type { AppConfig } from './env';
import type { Secrets } from './secrets';
import { FailureLimiter } from './auth/rate-limit';

export interface AppDeps {
  config: AppConfig;
  database: Database;
  secrets: Secrets;
  loginLimits: { byEmail: FailureLimiter; byClient: FailureLimiter };
}

export function createDeps(config: AppConfig, database: Database, secrets: Secrets): AppDeps {
  return {
    config,
    database,
    secrets,
    loginLimits: {
      byEmail: new FailureLimiter({ max: 10, windowMs: 15 * 60_000 }),
      byClient: new FailureLimiter({ max: 50, windowMs: 15 * 60_000 }),
    },
  };
}
