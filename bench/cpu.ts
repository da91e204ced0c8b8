// CPU time (user + system) of processes, read from /proc: what a deployment pays per stored row,
// which a ratio of wall times hides on a shared machine (whoever gets the two cores wins).
// Linux only; elsewhere every reading is null and the tables say so.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type pg from 'pg';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ; 100 on Linux). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU milliseconds (user + system) a process has used so far, from /proc/<pid>/stat (10 ms
 * resolution); null when the process is gone or /proc is not there.
 */
export function processCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name and state.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS : null;
  } catch {
    return null;
  }
}

/** This process's CPU milliseconds (user + system, all threads), at microsecond resolution. */
export function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** CPU milliseconds per pid, for a set of PostgreSQL backends. */
export type BackendCpu = Map<number, number>;

/**
 * The CPU used so far by each client backend connected to `client`'s database, except `client`'s
 * own and those whose application_name is `excludeApplication` (a load generator measuring its
 * own connections). The server must run on this machine: backends are read from /proc.
 */
export async function databaseBackendsCpu(client: pg.Client, excludeApplication: string): Promise<BackendCpu> {
  const { rows } = await client.query<{ pid: number }>(
    `select pid from pg_stat_activity
     where datname = current_database() and backend_type = 'client backend'
       and pid <> pg_backend_pid() and coalesce(application_name, '') <> $1`,
    [excludeApplication],
  );
  const out: BackendCpu = new Map();
  for (const { pid } of rows) {
    const ms = processCpuMs(pid);
    if (ms !== null) out.set(pid, ms);
  }
  return out;
}

/**
 * CPU used between two readings of the same backends. A backend that appeared in between counts
 * from zero (its start-up is part of the work); one that ended in between is lost, which is why
 * the callers keep their connections open across a measured case.
 */
export function backendCpuDelta(before: BackendCpu, after: BackendCpu): number {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** Milliseconds of CPU per 1 000 rows, rounded for tables; null when nothing was measured. */
export function perThousandRows(cpuMs: number | null, rows: number): number | null {
  if (cpuMs === null || rows <= 0) return null;
  return Math.round((cpuMs / rows) * 1000 * 10) / 10;
}
