// Starts the whole server for a given config: database, secrets, HTTP. Used by main.ts and by
// tests that need a real server on a real port.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openDatabase, type Database } from '../db/client';
import { createApp, type AppOptions } from './app';
import { createDeps, type AppDeps } from './deps';
import type { AppConfig } from './env';
import { resolveSecrets } from './secrets';

export interface RunningServer {
  url: string;
  deps: AppDeps;
  close(): Promise<void>;
}

export async function startServer(
  config: AppConfig,
  options: AppOptions & { database?: Database } = {},
): Promise<RunningServer> {
  const database = options.database ?? (await openDatabase(config.database));
  const secrets = await resolveSecrets(config);
  const deps = createDeps(config, database, secrets);
  const app = createApp(deps, options);
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  // Bounded header size and timeouts: a slow or huge request cannot hold a connection forever.
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return {
    url: `http://${host}:${port}`,
    deps,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (!options.database) await database.close();
    },
  };
}
