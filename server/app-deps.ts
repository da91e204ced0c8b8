// What a request handler may reach (the dependencies built once at start), as types only: every
// module that takes `deps` imports this, and only server/deps.ts builds it, so nothing that the
// builder imports (the launchers, the jobs service) has to import the builder back.
import type { Database } from '../db/client';
import type { AppConfig } from './env';
import type { Secrets } from './secrets';
import type { Throttles } from './auth/rate-limit';
import type { LauncherRegistry } from './launchers/types';
import type { LiveHub } from './live/live-hub';

/** The config as the running server sees it: the public URL is known once listening. */
export type ServerConfig = AppConfig & { publicUrl: string };

export interface AppDeps {
  config: ServerConfig;
  database: Database;
  secrets: Secrets;
  /** Stable per data directory: marks the jobs whose local processes this instance runs. */
  instanceId: string;
  /** Sign-in / sign-up throttles, counted in the database so every instance shares them. */
  throttles: Throttles;
  /** The launchers configured on this server; a job may only ask for one of these. */
  launchers: LauncherRegistry;
  live: LiveHub;
}
