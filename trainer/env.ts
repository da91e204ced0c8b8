// The trainer's configuration: the only reader of process.env in trainer/ (lint enforces it).
// The three pod variables decide the mode; a missing one is named, never its value, and never
// silently: the caller prints it at start and in every summary, and the server shows it.
import path from 'node:path';
import { POD_ENV_VARS } from '#contract/pod.schemas';

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
  /** Pod variables that were set but unusable (named in `problems`; also in `missing`). */
  unusable: PodEnvVar[];
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

/** Printable ASCII and Latin-1: what an HTTP header (or a fetch Headers object) can carry. */
function headerProblem(name: PodEnvVar, value: string): string | null {
  if (/[\u0000-\u001f\u007f]/.test(value)) return `${name} contains a control character (a line break or tab inside the value?), which cannot be sent in an HTTP header; treating it as missing`;
  if (/[^\u0000-\u00ff]/.test(value)) return `${name} contains characters outside Latin-1, which cannot be sent in an HTTP header; treating it as missing`;
  return null;
}

function base64UrlJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

/**
 * A job token is a JWT (three base64url parts, the payload a JSON object naming its audience
 * and subject). Checked here so a truncated paste or a wrong variable is named at start rather
 * than as a stream of 401s; the value itself is never echoed.
 */
function jobTokenProblem(token: string): string | null {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((part) => !/^[A-Za-z0-9_-]+$/.test(part))) {
    return 'JOB_TOKEN is set but is not a job token (expected a JWT: three base64url parts separated by dots; copy it again from the job page); treating it as missing';
  }
  const payload = base64UrlJson(parts[1] ?? '');
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload) || !('aud' in payload) || !('sub' in payload)) {
    return 'JOB_TOKEN is set but its payload is not a job token (a JSON object with aud and sub); copy it again from the job page; treating it as missing';
  }
  return null;
}

export function readTrainerEnv(source: Source = process.env): TrainerEnv {
  const problems: string[] = [];
  const unusable: PodEnvVar[] = [];
  // Each value trimmed (a token read from a file ends with a newline), then checked.
  const podVar = (name: PodEnvVar, check: (value: string) => string | null): string | null => {
    const value = present(source[name]);
    if (value === null) return null;
    const problem = headerProblem(name, value) ?? check(value);
    if (problem === null) return value;
    problems.push(problem);
    unusable.push(name);
    return null;
  };
  // The job id names the spool file too: a path separator or a dot-dot must not reach the disk.
  const jobId = podVar('JOB_ID', (value) => (/^[A-Za-z0-9_-]+$/.test(value) ? null : 'JOB_ID is set but is not a job id (letters, digits, - and _ only); treating it as missing'));
  const jobToken = podVar('JOB_TOKEN', jobTokenProblem);
  let apiUrl = podVar('API_URL', () => null);
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
      unusable.push('API_URL');
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
    unusable,
    mode: missing.length === 0 ? 'cloud' : 'local',
    canConnect: jobToken !== null && apiUrl !== null,
    problems,
  };
}
