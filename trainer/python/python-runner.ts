// Test support: runs the machine's python3 for the tests of the Python callback, without
// blocking the event loop (the server answering the child lives in the test's own process, so a
// synchronous spawn would deadlock it). Tests skip, with the reason, when python3 is missing.
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const PYTHON_DIR = path.join(REPO, 'trainer/python');
export const PYTHON_MISSING = spawnSync('python3', ['--version']).error ? 'python3 is not installed on this machine' : null;

export interface PythonRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function python(args: string[], env: Record<string, string | undefined>, cwd = REPO): Promise<PythonRun> {
  // Start from this process's environment without any pod variable, then add the run's own.
  const base = { ...process.env };
  for (const name of ['JOB_ID', 'JOB_TOKEN', 'API_URL']) delete base[name];
  return new Promise((resolve) => {
    execFile('python3', args, { cwd, env: { ...base, PYTHONDONTWRITEBYTECODE: '1', ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
