// Words and numbers as the pages show them: statuses, triggers, ages and progress.
import type { JobStatusName } from '../../../server/contract/statuses';
import type { PredictionTrigger } from '../../../server/contract/triggers';

export const LIVE_STATUSES: ReadonlySet<JobStatusName> = new Set(['pending', 'starting', 'running']);

export function isLive(status: JobStatusName): boolean {
  return LIVE_STATUSES.has(status);
}

export const STATUS_LABEL: Record<JobStatusName, string> = {
  pending: 'Pending',
  starting: 'Starting',
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export const TRIGGER_LABEL: Record<PredictionTrigger, string> = {
  eval: 'After each evaluation',
  epoch: 'At the end of each epoch',
  steps: 'Every N steps',
};

export const TRIGGER_SHORT: Record<PredictionTrigger, string> = {
  eval: 'each eval',
  epoch: 'each epoch',
  steps: 'every N steps',
};

export function timeAgo(iso: string, now: number = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 10) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days < 30) return `${days} d ago`;
  return new Date(iso).toLocaleDateString();
}

export function formatDateTime(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatDuration(fromIso: string, toIso: string | null, now: number = Date.now()): string {
  const end = toIso ? new Date(toIso).getTime() : now;
  const seconds = Math.max(0, Math.round((end - new Date(fromIso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export interface Progress {
  epoch: number | null;
  step: number | null;
  totalSteps: number | null;
}

/** 0..1 when the total is known, null otherwise. */
export function progressFraction(progress: Progress): number | null {
  if (!progress.totalSteps || progress.step === null) return null;
  return Math.min(1, Math.max(0, progress.step / progress.totalSteps));
}

export function progressText(progress: Progress): string {
  const parts: string[] = [];
  if (progress.epoch !== null) parts.push(`epoch ${formatEpoch(progress.epoch)}`);
  if (progress.step !== null) parts.push(progress.totalSteps ? `step ${progress.step} / ${progress.totalSteps}` : `step ${progress.step}`);
  else if (progress.totalSteps) parts.push(`not started · ${progress.totalSteps} steps`);
  return parts.length ? parts.join(' · ') : 'not started';
}

/** Hugging Face epochs are fractional under step-based evaluation; show at most two decimals. */
export function formatEpoch(epoch: number): string {
  return Number.isInteger(epoch) ? String(epoch) : epoch.toFixed(2);
}

export function formatScore(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : value.toFixed(2);
}

export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}
