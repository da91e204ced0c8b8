// The local launcher (the embedded default): runs the trainer as a process on this server with
// only the three pod variables (never the server's own environment or secrets), limits how many
// run at once and how many of them one user may have (the rest wait in a fair queue: the next to
// start is the oldest waiting job of the user with the fewest running, so one user's jobs cannot
// hold another's back), and kills the process group on cancel.
//
// The trainer outlives this server (docs/decisions/0006-local-trainers-outlive-the-server.md):
// it runs detached in its own process group, writes stdout and stderr to a file
// (`<logDir>/<jobId>.log`), not to a pipe whose reader dies with the server, and is followed by
// pid. Its handle on the job (launcher_ref `local:<pid>:<start time>`) carries the process's
// start time from /proc, so a pid reused by another process after a reboot is not mistaken for
// it. A restarted server adopts the trainers still running, and for one that died meanwhile it
// uploads the spool the trainer left (the trainer's own `sync`) before ending the job.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { describeError } from '../log-safe';
import type { AdoptRequest, ExitOutcome, Launcher, LauncherEvents, LaunchRequest, PodEnv } from './types';

export interface LocalLauncherOptions {
  projectRoot: string;
  /** The trainer's TRAINER_SPOOL_DIR: the spool of a job is `<spoolDir>/<jobId>.jsonl` (trainer/pod/spool.ts). */
  spoolDir: string;
  /** Where each trainer's output goes, `<logDir>/<jobId>.log`. */
  logDir: string;
  maxConcurrent: number;
  /** How many trainers one user may have running at once; their further jobs wait without taking a slot. */
  maxPerUser: number;
  events: LauncherEvents;
  /** The program to run; defaults to the TypeScript trainer under tsx. */
  command?: { file: string; args: string[] };
  /** What uploads a spool file (`… sync --spool FILE` is appended); defaults to the TypeScript trainer. */
  syncCommand?: { file: string; args: string[] };
  /** How often an adopted trainer (not this process's child) is checked for life. */
  pollMs?: number;
}

const STDERR_TAIL_BYTES = 4_000;
/** How far back from the end of a trainer's output its SUMMARY line is looked for. */
const SUMMARY_SEARCH_BYTES = 64 * 1024;
const KILL_GRACE_MS = 5_000;
const SYNC_TIMEOUT_MS = 10 * 60_000;
const REF_PREFIX = 'local:';

/** One process, told apart from a later one with the same pid by its start time (null where /proc is missing). */
export interface LocalProcess {
  pid: number;
  startTime: string | null;
}

export function formatLocalRef(process: LocalProcess): string {
  return `${REF_PREFIX}${process.pid}:${process.startTime ?? ''}`;
}

/** The process a launcher_ref names; null for anything else (a job that was still queued, an older server's `local:<jobId>`). */
export function parseLocalRef(ref: string | null): LocalProcess | null {
  const match = ref?.match(/^local:(\d+):(\d*)$/);
  if (!match) return null;
  const pid = Number(match[1]);
  return pid > 1 ? { pid, startTime: match[2] ? match[2] : null } : null;
}

/**
 * Field 22 of /proc/<pid>/stat (clock ticks after boot), and whether the process is a zombie.
 * The command name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
 */
function procStat(pid: number): { startTime: string; zombie: boolean } | null | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    if (!existsSync('/proc/self/stat')) return undefined; // no /proc on this system
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? null : undefined;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, starttime field 22.
  const state = fields[0];
  const startTime = fields[19];
  return startTime ? { startTime, zombie: state === 'Z' || state === 'X' } : null;
}

export function readLocalProcess(pid: number): LocalProcess {
  const stat = procStat(pid);
  return { pid, startTime: stat ? stat.startTime : null };
}

/** Whether the process is still the one that was started (same pid, same start time) and not a zombie. */
export function isRunning(target: LocalProcess): boolean {
  const stat = procStat(target.pid);
  if (stat === null) return false;
  if (stat) return !stat.zombie && (target.startTime === null || stat.startTime === target.startTime);
  try {
    process.kill(target.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Signals the trainer's whole process group (it leads it: spawned detached); a group already gone is not an error. */
function signalGroup(target: LocalProcess, signal: NodeJS.Signals): void {
  if (!isRunning(target)) return;
  try {
    process.kill(-target.pid, signal);
  } catch {
    // Every process of the group has exited.
  }
}

/** The last `bytes` of a file as text (empty when there is no file). */
function tailOf(file: string, bytes: number): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(file).size;
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** The training outcome the trainer printed last (`SUMMARY status=completed …`), if it got that far. */
export function reportedOutcome(output: string): 'completed' | 'failed' | null {
  const matches = [...output.matchAll(/\bSUMMARY status=(completed|failed)\b/g)];
  const last = matches.at(-1)?.[1];
  return last === 'completed' || last === 'failed' ? last : null;
}

interface Running {
  jobId: string;
  userId: string;
  process: LocalProcess;
  /** Set for a process this server spawned; an adopted one is followed by polling. */
  child: ChildProcess | null;
  timer: NodeJS.Timeout | null;
  cancelled: boolean;
}

/**
 * The waiting jobs in the order they would start if slots freed one at a time and nothing ended:
 * round robin over users, the user with the fewest running (counting the ones placed before)
 * first, ties to the user whose next job has waited longest; each user's jobs in their own order.
 * `queue` is in arrival order. The launcher starts the head when a slot is free and its user is
 * under the per-user limit (if the head's user is at the limit, every waiting user is).
 */
export function fairOrder<T extends { userId: string }>(queue: readonly T[], runningByUser: ReadonlyMap<string, number>): T[] {
  const waiting = new Map<string, Array<{ item: T; arrival: number }>>();
  queue.forEach((item, arrival) => {
    const list = waiting.get(item.userId);
    if (list) list.push({ item, arrival });
    else waiting.set(item.userId, [{ item, arrival }]);
  });
  const counts = new Map(runningByUser);
  const order: T[] = [];
  while (waiting.size > 0) {
    let best: { userId: string; count: number; arrival: number } | null = null;
    for (const [userId, list] of waiting) {
      const count = counts.get(userId) ?? 0;
      const arrival = list[0]?.arrival ?? Infinity;
      if (!best || count < best.count || (count === best.count && arrival < best.arrival)) best = { userId, count, arrival };
    }
    if (!best) break;
    const list = waiting.get(best.userId) ?? [];
    const head = list.shift();
    if (head) order.push(head.item);
    if (list.length === 0) waiting.delete(best.userId);
    counts.set(best.userId, best.count + 1);
  }
  return order;
}

const plural = (count: number, one: string, many: string) => `${count} ${count === 1 ? one : many}`;

/** How a process ended: its status when it was this server's child; for an adopted one, only when it was seen gone. */
type Exit = { code: number | null; signal: NodeJS.Signals | null } | 'adopted' | 'while-down';

export function createLocalLauncher(options: LocalLauncherOptions): Launcher {
  const running = new Map<string, Running>();
  const queue: LaunchRequest[] = [];
  const syncs = new Set<ChildProcess>();
  let closed = false;
  const tsxTrainer = { file: process.execPath, args: ['--import', 'tsx', path.join(options.projectRoot, 'trainer', 'main.ts')] };
  const command = options.command ?? tsxTrainer;
  const syncCommand = options.syncCommand ?? tsxTrainer;
  const logFile = (jobId: string) => path.join(options.logDir, `${jobId}.log`);
  const spoolFile = (jobId: string) => path.join(options.spoolDir, `${jobId}.jsonl`);
  const report = (what: string) => (error: unknown) => console.error(`[local-launcher] ${what} failed: ${describeError(error)}`);

  function runningByUser(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const entry of running.values()) counts.set(entry.userId, (counts.get(entry.userId) ?? 0) + 1);
    return counts;
  }

  /**
   * Starts waiting jobs while a slot is free and the fair order's head may run; returns what it
   * started, each with the promise of its pid being recorded on the job.
   */
  function pump(): Array<{ jobId: string; recorded: Promise<void> }> {
    const startedNow: Array<{ jobId: string; recorded: Promise<void> }> = [];
    while (!closed && running.size < options.maxConcurrent) {
      const counts = runningByUser();
      const next = fairOrder(queue, counts)[0];
      if (!next || (counts.get(next.userId) ?? 0) >= options.maxPerUser) break;
      queue.splice(queue.indexOf(next), 1);
      const entry = spawnTrainer(next);
      // The trainer runs whether or not this is recorded; without it a restart would queue the job again.
      const recorded = options.events.started(next.jobId, next.userId, formatLocalRef(entry.process)).catch(report(`recording the process of ${next.jobId}`));
      startedNow.push({ jobId: next.jobId, recorded });
    }
    return startedNow;
  }

  /** Why a job that was just queued waits, and where it stands, for the job's log. */
  function whyQueued(request: LaunchRequest): string {
    const counts = runningByUser();
    const own = counts.get(request.userId) ?? 0;
    if (own >= options.maxPerUser) {
      const ownWaiting = queue.filter((q) => q.userId === request.userId).length;
      return (
        `Queued: this account has ${plural(own, 'local job', 'local jobs')} running, the most one account may run at once ` +
        `(LOCAL_MAX_JOBS_PER_USER=${options.maxPerUser}); this one is number ${ownWaiting} of its waiting jobs and starts when one of them ends.`
      );
    }
    const position = fairOrder(queue, counts).findIndex((q) => q.jobId === request.jobId) + 1;
    return (
      `Queued: all ${plural(options.maxConcurrent, 'local job slot', 'local job slots')} of this server are in use ` +
      `(LOCAL_MAX_CONCURRENT=${options.maxConcurrent}); this one is number ${position} in line.`
    );
  }

  function spawnTrainer(request: LaunchRequest): Running {
    mkdirSync(options.logDir, { recursive: true });
    // The child gets its own descriptor on the file: nothing of this server sits between the
    // trainer and its output, so the trainer can write after this server is gone.
    const out = openSync(logFile(request.jobId), 'a');
    let child: ChildProcess;
    try {
      child = spawn(command.file, command.args, {
        cwd: options.projectRoot,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? options.projectRoot,
          JOB_ID: request.env.JOB_ID,
          JOB_TOKEN: request.env.JOB_TOKEN,
          API_URL: request.env.API_URL,
          TRAINER_SPOOL_DIR: options.spoolDir,
        },
        stdio: ['ignore', out, out],
        // Its own process group: cancel reaches everything a wrapper command (sh -c, npm run)
        // started, and a signal to this server's group (Ctrl-C, a supervisor) does not reach it.
        detached: true,
      });
    } finally {
      closeSync(out);
    }
    const entry: Running = {
      jobId: request.jobId,
      userId: request.userId,
      process: child.pid === undefined ? { pid: 0, startTime: null } : readLocalProcess(child.pid),
      child,
      timer: null,
      cancelled: false,
    };
    running.set(request.jobId, entry);
    // The child does not hold this server's event loop open, nor does this server wait for it.
    child.unref();
    let spawnError: string | null = null;
    child.once('error', (error) => {
      spawnError = error.message;
      if (child.pid === undefined) ended(entry, { code: null, signal: null }, spawnError);
    });
    child.once('exit', (code, signal) => ended(entry, { code, signal }, spawnError));
    return entry;
  }

  function follow(entry: Running): void {
    entry.timer = setInterval(() => {
      if (!isRunning(entry.process)) ended(entry, 'adopted', null);
    }, options.pollMs ?? 1_000);
    entry.timer.unref();
  }

  /** A followed process is gone: free its place, and unless it was cancelled, tell the jobs service how it went. */
  function ended(entry: Running, exit: Exit, spawnError: string | null): void {
    if (running.get(entry.jobId) !== entry) return;
    running.delete(entry.jobId);
    if (entry.timer) clearInterval(entry.timer);
    pump();
    if (entry.cancelled || closed) return;
    void settle(entry, exit, spawnError).catch(report(`recording the end of ${entry.jobId}`));
  }

  const ERROR_TAIL_LINES = 8;

  async function settle(entry: Pick<Running, 'jobId' | 'userId'>, exit: Exit, spawnError: string | null): Promise<void> {
    const output = tailOf(logFile(entry.jobId), SUMMARY_SEARCH_BYTES);
    const reported = reportedOutcome(output);
    // The last whole lines only (a byte tail starts mid-line), and few of them: the job's error is
    // read on the job page, the full output is in the job's log.
    const cut = output.length > STDERR_TAIL_BYTES;
    const lastLines = output.slice(-STDERR_TAIL_BYTES).split('\n').slice(cut ? 1 : 0).filter((line) => line.trim()).slice(-ERROR_TAIL_LINES).join('\n');
    const tail = `${lastLines}${spawnError ? `\n${spawnError}` : ''}`.trim();
    const how =
      exit === 'while-down'
        ? 'while the server was down'
        : exit === 'adopted'
          ? '(its exit status is unknown: it was started before the server restarted)'
          : exit.signal
            ? `(killed by ${exit.signal})`
            : `(exit code ${exit.code})`;
    const ok = typeof exit === 'object' && exit.code === 0;
    const outcome: ExitOutcome = {
      ok,
      reported,
      ...(ok ? {} : { error: `The trainer process ended ${how}${tail ? `:\n${tail}` : ''}` }),
    };
    // Rows the trainer kept on disk are uploaded before the job ends, with a new token: the dead
    // trainer's own is revoked by it, so nothing it might still have sent can interleave.
    if (existsSync(spoolFile(entry.jobId)) && statSync(spoolFile(entry.jobId)).size > 0) {
      const env = await options.events.renewEnv(entry.jobId, entry.userId);
      if (env) {
        await options.events.log(entry.jobId, 'info', `The trainer left rows in its spool ${spoolFile(entry.jobId)}; this server is uploading them.`);
        outcome.spoolUpload = await uploadSpool(entry.jobId, env);
      }
    }
    if (closed) return; // this server is stopping: the next start does it again
    await options.events.exited(entry.jobId, entry.userId, outcome);
  }

  /** Runs `sync --spool FILE` for a job (its output goes to the job's log file too) and reads its verdict. */
  function uploadSpool(jobId: string, env: PodEnv): Promise<{ ok: boolean; summary: string }> {
    return new Promise((resolve) => {
      const child = spawn(syncCommand.file, [...syncCommand.args, 'sync', '--spool', spoolFile(jobId)], {
        cwd: options.projectRoot,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? options.projectRoot, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: SYNC_TIMEOUT_MS,
      });
      syncs.add(child);
      let output = '';
      const keep = (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-SUMMARY_SEARCH_BYTES);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      child.once('error', (error) => {
        output += `\n${error.message}`;
      });
      child.once('close', (code, signal) => {
        syncs.delete(child);
        const summary = output.match(/SYNC SUMMARY [^\n]*/g)?.at(-1) ?? `sync ${signal ? `killed by ${signal}` : `exited with code ${code}`}: ${output.trim().split('\n').at(-1) ?? ''}`;
        resolve({ ok: code === 0, summary: summary.trim() });
      });
    });
  }

  async function cancelEntry(entry: Running): Promise<void> {
    entry.cancelled = true;
    signalGroup(entry.process, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(entry.process, 'SIGKILL'), KILL_GRACE_MS);
    timer.unref();
    if (entry.child) entry.child.once('exit', () => clearTimeout(timer));
  }

  return {
    name: 'local',
    description: `Runs the trainer as a process on this server (at most ${options.maxConcurrent} at once, ${options.maxPerUser} per account; the rest queue, taking turns between accounts). It keeps running through a restart of the server.`,
    async start(request) {
      queue.push(request);
      // Every other waiting job was already passed over by the last pump, so this one alone can start now.
      const mine = pump().find((started) => started.jobId === request.jobId);
      if (mine) await mine.recorded;
      else await options.events.log(request.jobId, 'info', whyQueued(request));
      // The pid is recorded through events.started when the process exists (now, or when its turn comes).
      return { ref: null, revealEnv: false };
    },
    async cancel({ jobId }) {
      const index = queue.findIndex((q) => q.jobId === jobId);
      if (index >= 0) queue.splice(index, 1);
      // Only a process this server follows: another instance's pid may be another machine's. That
      // trainer stops by itself at its next call, which is refused with reason job_ended.
      const entry = running.get(jobId);
      if (entry) await cancelEntry(entry);
    },
    async adopt(jobs: AdoptRequest[]) {
      const counts = { following: 0, ended: 0, queued: 0 };
      const waiting: AdoptRequest[] = [];
      for (const job of jobs) {
        if (running.has(job.jobId) || queue.some((q) => q.jobId === job.jobId)) continue;
        const target = parseLocalRef(job.ref);
        if (!target) {
          waiting.push(job);
        } else if (isRunning(target)) {
          const entry: Running = { jobId: job.jobId, userId: job.userId, process: target, child: null, timer: null, cancelled: false };
          running.set(job.jobId, entry);
          follow(entry);
          counts.following++;
        } else {
          counts.ended++;
          void settle(job, 'while-down', null).catch(report(`recovering ${job.jobId}`));
        }
      }
      // Jobs that were waiting for a turn wait again, in their order; the token they were deployed
      // with lived only in the old process, so each gets a new one.
      for (const job of waiting) {
        const env = await options.events.renewEnv(job.jobId, job.userId);
        if (!env) continue;
        queue.push({ jobId: job.jobId, userId: job.userId, env });
        counts.queued++;
      }
      pump();
      return counts;
    },
    async close() {
      // The trainers keep running (the next start adopts them); only what this process holds goes.
      closed = true;
      queue.length = 0;
      for (const entry of running.values()) {
        if (entry.timer) clearInterval(entry.timer);
      }
      running.clear();
      for (const child of syncs) child.kill('SIGTERM');
    },
  };
}
