// The real server for the Python real-Trainer suite (conftest.py starts it once per session):
// what `npm start` runs, minus the SPA build, on an embedded database in the data directory given
// as the only argument, offering only the manual launcher. Prints "LISTENING <url>" once it
// answers; stops on SIGTERM, SIGINT or when its stdin closes (the pytest process went away).
import { loadConfig } from '../../../server/env';
import { startServer } from '../../../server/server';

const dataDir = process.argv[2];
if (!dataDir) {
  console.error('usage: node --import tsx trainer/python/tests/start-server.ts DATA_DIR');
  process.exit(2);
}

// Only these variables: nothing from the caller's environment (no DATABASE_URL) reaches the config.
// SIGNUP=open: the suite registers an account per test.
const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LAUNCHERS: 'manual', SIGNUP: 'open' }));
console.log(`LISTENING ${server.url}`);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  server.close().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
