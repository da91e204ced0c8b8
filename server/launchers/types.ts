// The launcher interface every way of running a pod implements (local child process, manual,
// Kubernetes, RunPod). The jobs service calls it; it never touches the database itself.
import type { LauncherName } from '#contract/job-config';

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

/** How a pod's process ended, as far as its launcher can tell. */
export interface ExitOutcome {
  ok: boolean;
  error?: string;
  /**
   * What the pod said of its own training before it ended (the trainer's SUMMARY line), when the
   * launcher can read its output: a trainer that completed training but could not reach the
   * server to finish is then completed, not failed.
   */
  reported?: 'completed' | 'failed' | null;
  /** The launcher uploaded the spool the pod left behind: whether every row is stored now, and its summary line. */
  spoolUpload?: { ok: boolean; summary: string } | null;
}

/** What a launcher reports about a job after starting it. */
export interface LauncherEvents {
  /** The launcher has a handle on the job's process (a queued local job gets its pid later than deploy). */
  started(jobId: string, userId: string, ref: string): Promise<void>;
  /** The pod's process ended; a job still live then ends (failed, unless the pod reported completion). */
  exited(jobId: string, userId: string, outcome: ExitOutcome): Promise<void>;
  /**
   * A new token for a live job, revoking the ones before (its process is gone, or never got
   * one); null when the job has ended, so there is nothing to start or upload for it.
   */
  renewEnv(jobId: string, userId: string): Promise<PodEnv | null>;
  /** A line for the job's log, from the launcher rather than the pod. */
  log(jobId: string, level: 'info' | 'warn' | 'error', message: string): Promise<void>;
}

/** A live job that this server instance launched before it restarted, with the handle it kept. */
export interface AdoptRequest {
  jobId: string;
  userId: string;
  ref: string | null;
}

export interface Launcher {
  readonly name: LauncherName;
  /** One line for the UI: what this launcher does on this server. */
  readonly description: string;
  start(request: LaunchRequest): Promise<LaunchResult>;
  /** Stops what start() started; must be safe to call for something already gone. */
  cancel(job: { jobId: string; ref: string | null }): Promise<void>;
  /**
   * After a restart, takes back the live jobs this instance launched before (oldest first):
   * follows the processes still running, ends the ones whose process is gone (through
   * events.exited), and queues again the ones that were waiting. Only launchers whose processes
   * belong to one server instance have it (local).
   */
  adopt?(jobs: AdoptRequest[]): Promise<{ following: number; ended: number; queued: number }>;
  /** Releases what the launcher holds in this process; pods it started keep running. */
  close?(): Promise<void>;
}

export type LauncherRegistry = Partial<Record<LauncherName, Launcher>>;
