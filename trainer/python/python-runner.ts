// Test support: runs the machine's python3 for the tests of the Python callback, without
// blocking the event loop (the server answering the child lives in the test's own process, so a
// synchronous spawn would deadlock it). Tests skip, with the reason, when python3 is missing.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const PYTHON_DIR = path.join(REPO, 'trainer/python');
export const PYTHON_MISSING = spawnSync('python3', ['--version']).error ? 'python3 is not installed on this machine' : null;

export interface PythonRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function pythonEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  // Start from this process's environment without any pod variable, then add the run's own.
  // eslint-disable-next-line no-restricted-properties -- a test helper hands its own environment on to the child
  const base = { ...process.env };
  for (const name of ['JOB_ID', 'JOB_TOKEN', 'API_URL']) delete base[name];
  return { ...base, PYTHONDONTWRITEBYTECODE: '1', ...env };
}

export function python(args: string[], env: Record<string, string | undefined>, cwd = REPO): Promise<PythonRun> {
  return new Promise((resolve) => {
    execFile('python3', args, { cwd, env: pythonEnv(env), timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A running python3 child whose output is read while it runs (to kill it at a chosen moment). */
export interface PythonChild {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process has exited: its code, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnPython(args: string[], env: Record<string, string | undefined>, cwd = REPO): PythonChild {
  const child = spawn('python3', args, { cwd, env: pythonEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
  };
}
