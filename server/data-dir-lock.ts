// One embedded data directory, one process. PGlite reads its directory into memory and writes
// it back as it goes; two processes on one directory both start, and one's acknowledged writes
// vanish after a restart. So the server takes a lock file beside the directory before opening
// it, and a second server refuses to start, naming the process that holds it.
//
// Why a file of our own and not a library: proper-lockfile (the common choice) locks with a
// directory and judges staleness by mtime, which it must keep refreshing; it records no owner,
// so a refusal could not say which process holds the directory. Here the lock is created with
// O_EXCL (atomic on local filesystems) and holds the owner's pid and start time; a lock whose
// process is gone (killed with SIGKILL, a crashed container) is taken over at the next start.
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

export interface DataDirLock {
  /** The lock file's path. */
  file: string;
  /** Set when this start took over a lock left by a process that is gone. */
  tookOverFrom: LockOwner | null;
  release(): void;
}

interface LockOwner {
  pid: number;
  /** The owner's start time in clock ticks since boot (/proc/<pid>/stat), so a reused pid is not mistaken for it. */
  startTicks: number | null;
  command: string;
  since: string;
}

// Locks this process holds: a lock naming our own pid is ours only if it is in here; otherwise it
// was left by an earlier process that had the same pid (a container's pid 1 after a restart).
const heldHere = new Set<string>();

/** Refusal to start: the directory is held by a live process. Its message names the process. */
export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly owner: LockOwner,
    readonly lockFile: string,
  ) {
    super(
      `The data directory ${dataDir} is in use by another server process (pid ${owner.pid}` +
        `${owner.command ? `: ${owner.command}` : ''}, since ${owner.since}). ` +
        'Only one process may open an embedded database: stop that process first, point DATA_DIR elsewhere, ' +
        `or set DATABASE_URL to share a PostgreSQL server between instances. Nothing in ${dataDir} was changed.`,
    );
    this.name = 'DataDirLockedError';
  }
}

/** The lock file that guards `dataDir`: beside it, so nothing is added to the database's own directory. */
export function lockFileFor(dataDir: string): string {
  const resolved = path.resolve(dataDir);
  return path.join(path.dirname(resolved), `.${path.basename(resolved)}.lock`);
}

/** Takes the directory for this process, or throws DataDirLockedError naming the live holder. */
export async function acquireDataDirLock(dataDir: string): Promise<DataDirLock> {
  const file = lockFileFor(dataDir);
  await mkdir(path.dirname(file), { recursive: true });
  const me: LockOwner = { pid: process.pid, startTicks: startTicksOf(process.pid), command: commandOf(process.pid), since: new Date().toISOString() };
  let tookOverFrom: LockOwner | null = null;
  // Two rounds at most: a stale lock is moved aside once, then the create must win or lose cleanly.
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(file, me)) {
      heldHere.add(file);
      return held(file, me, tookOverFrom);
    }
    const owner = readOwner(file);
    if (owner === undefined) continue; // Removed between our create and our read: try again.
    if (owner && (isAlive(owner) || (owner.pid === process.pid && heldHere.has(file)))) throw new DataDirLockedError(dataDir, withCurrentCommand(owner), file);
    // Gone (or unreadable: a torn write by a process killed mid-create). Move it aside under a
    // name only we use, then check that what we moved is what we judged: if another starter
    // replaced it in between, its lock goes back (link fails rather than overwrite a newer one).
    const aside = `${file}.stale-${process.pid}`;
    try {
      renameSync(file, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    const moved = readOwner(aside);
    if (moved && isAlive(moved)) {
      try {
        linkSync(aside, file);
      } finally {
        unlinkSync(aside);
      }
      throw new DataDirLockedError(dataDir, withCurrentCommand(moved), file);
    }
    unlinkSync(aside);
    tookOverFrom = owner ?? { pid: 0, startTicks: null, command: '(unreadable lock file)', since: '?' };
  }
  throw new Error(`Could not take the lock ${file}: it keeps changing; is another server starting on ${dataDir}?`);
}

function held(file: string, me: LockOwner, tookOverFrom: LockOwner | null): DataDirLock {
  let released = false;
  return {
    file,
    tookOverFrom,
    release() {
      if (released) return;
      released = true;
      heldHere.delete(file);
      // Only our own lock: never remove one that a later owner wrote after ours was taken over.
      if (readOwner(file)?.pid === me.pid) unlinkSync(file);
    },
  };
}

function tryCreate(file: string, me: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, `${JSON.stringify(me)}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock's owner; null when the file is there but unreadable as a lock; undefined when it is gone. */
function readOwner(file: string): LockOwner | null | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockOwner>;
    if (typeof parsed.pid !== 'number' || !Number.isSafeInteger(parsed.pid) || parsed.pid <= 0) return null;
    return {
      pid: parsed.pid,
      startTicks: typeof parsed.startTicks === 'number' ? parsed.startTicks : null,
      command: typeof parsed.command === 'string' ? parsed.command : '',
      since: typeof parsed.since === 'string' ? parsed.since : '?',
    };
  } catch {
    return null;
  }
}

function isAlive(owner: LockOwner): boolean {
  // Our own pid in the lock is a previous life of this container's pid 1 (or the like), not us.
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user; it is alive all the same.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const ticks = startTicksOf(owner.pid);
  // A live pid that started at another moment is another process that reused the number.
  return owner.startTicks === null || ticks === null || ticks === owner.startTicks;
}

/** The holder as it is now: its command line from /proc when readable, else what it recorded. */
function withCurrentCommand(owner: LockOwner): LockOwner {
  return { ...owner, command: commandOf(owner.pid) || owner.command };
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 300);
  } catch {
    return '';
  }
}

function startTicksOf(pid: number): number | null {
  try {
    // Field 22 of /proc/<pid>/stat; the command name (field 2) may hold spaces, so count after its ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}
