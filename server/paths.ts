// Where the project's files are at run time, independent of the working directory.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SPA_DIR = path.join(PROJECT_ROOT, 'dist', 'client');
