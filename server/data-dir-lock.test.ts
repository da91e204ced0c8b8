// One embedded data directory, one process, with real processes: a second
// server on a directory a live server holds exits non-zero naming the holder and changes
// nothing; the holder keeps serving and its acknowledged writes survive a restart; a lock left
// by a process killed with SIGKILL does not block the next start.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiClient } from '../client/api/client';
import { lockFileFor } from './data-dir-lock';
import { PROJECT_ROOT } from './paths';
import { TEST_PASSWORD, uniqueEmail } from './test-support/factories';
import { until } from './test-support/wait';

// What `npm start` does after building the SPA (server/main.ts), without the SPA build, which
// these tests do not need and which another process might be running at the same moment.
const SERVER_SCRIPT = `
import { loadConfig } from './server/env.ts';
import { startServer } from './server/server.ts';
import { DataDirLockedError } from './server/data-dir-lock.ts';
try {
  const server = await startServer(loadConfig());
  console.log('LISTENING ' + server.url);
  process.on('SIGTERM', () => server.close().then(() => process.exit(0), () => process.exit(1)));
} catch (error) {
  console.error(error instanceof DataDirLockedError ? error.message : error);
  process.exit(1);
}
`;

interface ServerProcess {
  child: ChildProcess;
  pid: number;
  output(): { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: ServerProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const server of started) if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
  await Promise.all(started.map((server) => server.exited));
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function startProcess(dataDir: string): ServerProcess {
  // A minimal environment: no DATABASE_URL from the caller, so this is always the embedded database.
  // SIGNUP=open: the test registers a second account on the same server.
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', SIGNUP: 'open' };
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SERVER_SCRIPT], { cwd: PROJECT_ROOT, env });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  if (child.pid === undefined) throw new Error('the server process did not start');
  const server = { child, pid: child.pid, output: () => ({ stdout, stderr }), exited };
  started.push(server);
  return server;
}

async function urlOf(server: ServerProcess): Promise<string> {
  const { stdout } = await until(
    () => server.output(),
    (out) => /LISTENING (\S+)/.test(out.stdout) || server.child.exitCode !== null,
    `server pid ${server.pid} to listen`,
    90_000,
  );
  const url = /LISTENING (\S+)/.exec(stdout)?.[1];
  if (!url) throw new Error(`server pid ${server.pid} exited before listening: ${server.output().stderr}`);
  return url;
}

/** Every file under a directory with its size and modification time: equal snapshots mean nothing changed. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    const info = await stat(full);
    out[path.relative(dir, full)] = entry.isDirectory() ? 'dir' : `${info.size}@${info.mtimeMs}`;
  }
  return out;
}

async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'predictions-lock-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('one embedded data directory, one process', () => {
  it('refuses a second server naming the holder; the first keeps serving and its writes survive a restart', async () => {
    const dataDir = await scratchDir();
    const first = startProcess(dataDir);
    const firstUrl = await urlOf(first);
    const before = uniqueEmail();
    await createApiClient({ url: firstUrl }).auth.register.mutate({ email: before, password: TEST_PASSWORD });
    const untouched = await snapshot(dataDir);

    const second = startProcess(dataDir);
    // Whichever comes first: its exit (the fix) or its listening (the bug, which would never exit).
    await until(
      () => second.output().stdout,
      (stdout) => second.child.exitCode !== null || stdout.includes('LISTENING'),
      `the second server (pid ${second.pid}) to exit or listen`,
      90_000,
    );
    const { stdout, stderr } = second.output();
    expect(stdout, 'the second server started on a held directory').not.toContain('LISTENING');
    expect((await second.exited).code, stderr).not.toBe(0);
    expect(stderr).toContain(`pid ${first.pid}`);
    // The holder's command line, read from /proc, so an operator can tell which server it is.
    expect(stderr).toContain('--input-type=module');
    expect(stderr).toContain(dataDir);
    expect(await snapshot(dataDir)).toEqual(untouched);

    // The holder never noticed: it serves, writes and reads as before.
    const after = uniqueEmail();
    await createApiClient({ url: firstUrl }).auth.register.mutate({ email: after, password: TEST_PASSWORD });
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(existsSync(lockFileFor(path.join(dataDir, 'pglite'))), 'a clean stop releases the lock').toBe(false);

    const third = startProcess(dataDir);
    const api = createApiClient({ url: await urlOf(third) });
    for (const email of [before, after]) expect((await api.auth.login.mutate({ email, password: TEST_PASSWORD })).user.email).toBe(email);
    third.child.kill('SIGTERM');
    expect((await third.exited).code).toBe(0);
  }, 240_000);

  it('takes over a lock left by a server killed with SIGKILL', async () => {
    const dataDir = await scratchDir();
    const killed = startProcess(dataDir);
    await urlOf(killed);
    killed.child.kill('SIGKILL');
    expect((await killed.exited).signal).toBe('SIGKILL');
    // The lock is still there, naming a process that is gone: the case this test is about.
    expect(existsSync(lockFileFor(path.join(dataDir, 'pglite')))).toBe(true);

    const next = startProcess(dataDir);
    const url = await urlOf(next);
    expect(next.output().stderr).toContain(`pid ${killed.pid}`);
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok', db: 'pglite' });
    next.child.kill('SIGTERM');
    expect((await next.exited).code).toBe(0);
  }, 240_000);
});
