// The trainer's configuration: the only reader of process.env in trainer/ (lint enforces it).
// The three pod variables decide the mode; a missing one is named, never its value, and never
// silently: the caller prints it at start and in every summary, and the server shows it.
import path from 'node:path';
import { POD_ENV_VARS } from '../server/contract/pod.schemas';

export type PodEnvVar = (typeof POD_ENV_VARS)[number];

export const DEFAULT_SPOOL_DIR = './data/spool';
export const DEFAULT_HEARTBEAT_MS = 3000;

export interface TrainerEnv {
  jobId: string | null;
  jobToken: string | null;
  apiUrl: string | null;
  /** Absolute directory of the spool files (`<jobId or 'local'>.jsonl`). */
  spoolDir: string;
  /** Set by the server's local launcher: the trainer stops when that process dies. */
  parentPid: number | null;
  heartbeatMs: number;
  /** Which pod variables were present: names and booleans, never values. */
  presence: Record<PodEnvVar, boolean>;
  /** Names of the pod variables that are missing (or unusable), in POD_ENV_VARS order. */
  missing: PodEnvVar[];
  /** `cloud` only when JOB_ID, JOB_TOKEN and API_URL are all present and usable. */
  mode: 'cloud' | 'local';
  /**
   * The token and URL are enough to reach the server: the token names the job, so a pod missing
   * only JOB_ID still connects (and reports mode `local` with JOB_ID:false so the job page says why).
   */
  canConnect: boolean;
  /** Values that were present but unusable, described without echoing secrets. */
  problems: string[];
}

type Source = Record<string, string | undefined>;

function present(value: string | undefined): string | null {
  const trimmed = value?.trim();
  return trimmed ? trimmed : null;
}

function positiveInt(source: Source, name: string, fallback: number, problems: string[]): number {
  const raw = present(source[name]);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    problems.push(`${name} must be a positive whole number; using ${fallback}`);
    return fallback;
  }
  return value;
}

export function readTrainerEnv(source: Source = process.env): TrainerEnv {
  const problems: string[] = [];
  const jobId = present(source.JOB_ID);
  const jobToken = present(source.JOB_TOKEN);
  let apiUrl = present(source.API_URL);
  if (apiUrl !== null) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(apiUrl);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      // A URL is not a secret, but it may embed credentials: say what is wrong, not what it is.
      problems.push('API_URL is set but is not an http(s) URL (expected e.g. http://host:3000); treating it as missing');
      apiUrl = null;
    } else {
      apiUrl = apiUrl.replace(/\/+$/, '');
    }
  }
  const presence: Record<PodEnvVar, boolean> = { JOB_ID: jobId !== null, JOB_TOKEN: jobToken !== null, API_URL: apiUrl !== null };
  const missing = POD_ENV_VARS.filter((name) => !presence[name]);
  const parentRaw = present(source.TRAINER_PARENT_PID);
  let parentPid: number | null = null;
  if (parentRaw !== null) {
    const pid = Number(parentRaw);
    if (Number.isInteger(pid) && pid > 1) parentPid = pid;
    else problems.push('TRAINER_PARENT_PID is not a process id; ignoring it');
  }
  return {
    jobId,
    jobToken,
    apiUrl,
    spoolDir: path.resolve(present(source.TRAINER_SPOOL_DIR) ?? DEFAULT_SPOOL_DIR),
    parentPid,
    heartbeatMs: positiveInt(source, 'TRAINER_HEARTBEAT_MS', DEFAULT_HEARTBEAT_MS, problems),
    presence,
    missing,
    mode: missing.length === 0 ? 'cloud' : 'local',
    canConnect: jobToken !== null && apiUrl !== null,
    problems,
  };
}
