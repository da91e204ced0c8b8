// The launcher interface every way of running a pod implements (local child process, manual,
// Kubernetes, RunPod). The jobs service calls it; it never touches the database itself.
import type { LauncherName } from '../contract/job-config';

export interface PodEnv {
  JOB_ID: string;
  JOB_TOKEN: string;
  API_URL: string;
}

export interface LaunchRequest {
  jobId: string;
  userId: string;
  env: PodEnv;
}

export interface LaunchResult {
  /** The launcher's handle on what it started (pid, pod name…), kept on the job. */
  ref: string | null;
  /** Whether the pod's environment should be shown to the user (manual launcher only). */
  revealEnv: boolean;
}

/** What a launcher reports about a job after starting it. */
export interface LauncherEvents {
  /** The pod's process ended; a job still live then failed (or never reported completion). */
  exited(jobId: string, userId: string, outcome: { ok: boolean; error?: string }): Promise<void>;
  /** A line for the job's log, from the launcher rather than the pod. */
  log(jobId: string, level: 'info' | 'warn' | 'error', message: string): Promise<void>;
}

export interface Launcher {
  readonly name: LauncherName;
  /** One line for the UI: what this launcher does on this server. */
  readonly description: string;
  start(request: LaunchRequest): Promise<LaunchResult>;
  /** Stops what start() started; must be safe to call for something already gone. */
  cancel(job: { jobId: string; ref: string | null }): Promise<void>;
  close?(): Promise<void>;
}

export type LauncherRegistry = Partial<Record<LauncherName, Launcher>>;
