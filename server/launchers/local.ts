// The local launcher (the embedded default): runs the trainer as a child process of this
// server with only the three pod variables (never the server's own environment or secrets),
// limits how many run at once (the rest wait in a queue), keeps the tail of stderr for the
// job's error, and kills the process on cancel.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Launcher, LauncherEvents, LaunchRequest } from './types';

export interface LocalLauncherOptions {
  projectRoot: string;
  spoolDir: string;
  maxConcurrent: number;
  events: LauncherEvents;
  /** The program to run; defaults to the TypeScript trainer under tsx. */
  command?: { file: string; args: string[] };
}

const STDERR_TAIL_BYTES = 4_000;
const KILL_GRACE_MS = 5_000;

interface Running {
  child: ChildProcess;
  stderrTail: string;
  cancelled: boolean;
}

/** Signals the trainer's whole process group; a group already gone is not an error. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Every process of the group has exited.
  }
}

export function createLocalLauncher(options: LocalLauncherOptions): Launcher {
  const running = new Map<string, Running>();
  const queue: LaunchRequest[] = [];
  const command = options.command ?? {
    file: process.execPath,
    args: ['--import', 'tsx', path.join(options.projectRoot, 'trainer', 'main.ts')],
  };

  function pump(): void {
    while (running.size < options.maxConcurrent && queue.length > 0) {
      const next = queue.shift();
      if (next) spawnTrainer(next);
    }
  }

  function spawnTrainer(request: LaunchRequest): void {
    const child = spawn(command.file, command.args, {
      cwd: options.projectRoot,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? options.projectRoot,
        JOB_ID: request.env.JOB_ID,
        JOB_TOKEN: request.env.JOB_TOKEN,
        API_URL: request.env.API_URL,
        TRAINER_SPOOL_DIR: options.spoolDir,
        TRAINER_PARENT_PID: String(process.pid),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
      // Its own process group, so cancel reaches everything a wrapper command (sh -c, npm run)
      // started, not only the wrapper; the trainer still stops when this server dies (TRAINER_PARENT_PID).
      detached: true,
    });
    const entry: Running = { child, stderrTail: '', cancelled: false };
    running.set(request.jobId, entry);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      entry.stderrTail = (entry.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    child.once('error', (error) => {
      entry.stderrTail += `\n${error.message}`;
    });
    child.once('close', (code, signal) => {
      running.delete(request.jobId);
      pump();
      if (entry.cancelled) return;
      const ok = code === 0;
      const reason = signal ? `killed by ${signal}` : `exit code ${code}`;
      const tail = entry.stderrTail.trim();
      void options.events
        .exited(request.jobId, request.userId, ok ? { ok } : { ok, error: `The trainer process ended (${reason})${tail ? `:\n${tail}` : ''}` })
        .catch((error: unknown) => console.error(`[local-launcher] recording the end of ${request.jobId} failed:`, error));
    });
  }

  return {
    name: 'local',
    description: `Runs the trainer as a process on this server (at most ${options.maxConcurrent} at once; the rest queue).`,
    async start(request) {
      const position = queue.length + running.size >= options.maxConcurrent ? queue.length + 1 : 0;
      queue.push(request);
      pump();
      if (position > 0) {
        await options.events.log(request.jobId, 'info', `Queued: ${options.maxConcurrent === 1 ? 'a local job is' : `${options.maxConcurrent} local jobs are`} running; this one is number ${position} in line.`);
      }
      return { ref: `local:${request.jobId}`, revealEnv: false };
    },
    async cancel({ jobId }) {
      const index = queue.findIndex((q) => q.jobId === jobId);
      if (index >= 0) queue.splice(index, 1);
      const entry = running.get(jobId);
      if (!entry) return;
      entry.cancelled = true;
      signalGroup(entry.child, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(entry.child, 'SIGKILL'), KILL_GRACE_MS);
      timer.unref();
      entry.child.once('close', () => clearTimeout(timer));
    },
    async close() {
      queue.length = 0;
      const exits = [...running.values()].map(
        (entry) =>
          new Promise<void>((resolve) => {
            entry.cancelled = true;
            entry.child.once('close', () => resolve());
            signalGroup(entry.child, 'SIGTERM');
            setTimeout(() => signalGroup(entry.child, 'SIGKILL'), KILL_GRACE_MS).unref();
          }),
      );
      await Promise.all(exits);
    },
  };
}
