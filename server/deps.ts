// Everything a request handler may reach, built once at start (server/server.ts) or per test.
import type { Database } from '../db/client';
import type { Secrets } from './secrets';
import type { AppDeps, ServerConfig } from './app-deps';
import { createThrottles } from './auth/rate-limit';
import type { LauncherRegistry } from './launchers/types';
import { createLauncherRegistry } from './launchers/registry';
import { createLiveHub } from './live/live-hub';

export type { AppDeps, ServerConfig };

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
