// `npm run dev`: the API under tsx watch (restarts on change) and Vite's dev server with hot
// reload for the SPA, proxying /trpc to the API. Open the URL Vite prints.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createServer } from 'vite';
import { PROJECT_ROOT } from './paths';

const api = spawn(process.execPath, ['--import', 'tsx', '--watch', path.join(PROJECT_ROOT, 'server/main.ts')], {
  stdio: 'inherit',
  cwd: PROJECT_ROOT,
});
const vite = await createServer({ configFile: path.join(PROJECT_ROOT, 'vite.config.ts') });
await vite.listen();
vite.printUrls();

const stop = () => {
  api.kill('SIGTERM');
  void vite.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
