// Entry point of `npm start`: parse the environment, build the SPA if needed, migrate, serve.
import { ConfigError, loadConfig } from './env';
import { ensureSpaBuilt, SPA_DIR } from './spa';
import { startServer } from './server';
import { DataDirLockedError } from './data-dir-lock';
import { describeError } from './log-safe';

async function main(): Promise<void> {
  const config = loadConfig();
  await ensureSpaBuilt();
  const server = await startServer(config, { spaDir: SPA_DIR });
  console.log(`[server] listening on ${server.url} (database: ${server.deps.database.kind}, public URL: ${server.deps.config.publicUrl})`);

  let closing = false;
  const shutdown = (signal: string) => {
    // A second signal while requests drain means "now": the operator has decided not to wait.
    if (closing) {
      console.log(`[server] ${signal} again: exiting without waiting for requests in flight`);
      process.exit(1);
    }
    closing = true;
    console.log(`[server] ${signal}: shutting down; requests in flight have up to ${config.shutdownGraceSeconds} s to finish`);
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`[server] shutdown failed: ${describeError(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((error: unknown) => {
  // Refusals the operator acts on are said in words alone; anything else with its frames, never its data.
  const expected = error instanceof ConfigError || error instanceof DataDirLockedError;
  console.error(expected ? `[server] ${error.message}` : `[server] failed to start: ${describeError(error)}`);
  process.exit(1);
});
