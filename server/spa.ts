// Makes sure the built SPA is there and current, so `npm start` works on a fresh clone
// without a separate build step. Vite is loaded only when a build is needed.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, SPA_DIR } from './paths';

export { SPA_DIR };
const SPA_SOURCES = [path.join(PROJECT_ROOT, 'client'), path.join(PROJECT_ROOT, 'server', 'contract')];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

export function spaIsCurrent(): boolean {
  const index = path.join(SPA_DIR, 'index.html');
  if (!existsSync(index)) return false;
  const built = statSync(index).mtimeMs;
  return SPA_SOURCES.every((dir) => !existsSync(dir) || newestMtime(dir) <= built);
}

export async function ensureSpaBuilt(log: (line: string) => void = console.log): Promise<void> {
  if (spaIsCurrent()) return;
  log('[spa] building the web app (first start or sources changed)...');
  const { build } = await import('vite');
  await build({ configFile: path.join(PROJECT_ROOT, 'vite.config.ts'), logLevel: 'warn' });
  log('[spa] built');
}
