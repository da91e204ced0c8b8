// Everything a request handler may reach, built once at start (server/server.ts) or per test.
import type { Database } from '../db/client';
import type { AppConfig } from './env';
import type { Secrets } from './secrets';
import { createThrottles, type Throttles } from './auth/rate-limit';
import type { LauncherRegistry } from './launchers/types';
import { createLauncherRegistry } from './launchers/registry';
import { createLiveHub, type LiveHub } from './live/live-hub';

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

export function createDeps(
  config: ServerConfig,
  database: Database,
  secrets: Secrets,
  options: { instanceId: string; launchers?: (deps: AppDeps) => LauncherRegistry },
): AppDeps {
  const deps: AppDeps = {
    config,
    database,
    secrets,
    instanceId: options.instanceId,
    throttles: createThrottles(database.db),
    launchers: {},
    live: createLiveHub(database, { maxStreamsPerUser: config.maxLiveStreamsPerUser }),
  };
  // The launchers enabled by the config (server/launchers/registry.ts), unless a test supplies its own.
  deps.launchers = (options.launchers ?? createLauncherRegistry)(deps);
  return deps;
}
