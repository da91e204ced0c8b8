// Words and numbers as the pages show them: statuses, triggers, ages and progress.
import type { MetricValue, NonFiniteValue } from '#contract/pod.schemas';
import { isLiveStatus, type JobStatusName } from '#contract/statuses';
import { REPLACEMENT_CHARACTER } from '#contract/text';
import type { PredictionTrigger } from '#contract/triggers';

/** A live job may still run and write (the contract's LIVE_JOB_STATUSES); the pages' short name for it. */
export const isLive = isLiveStatus;

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

/** What the "altered" marker on a prediction means: the server stored it with these characters replaced. */
export const ALTERED_EXPLANATION = `Characters that cannot be stored (a NUL or half of an emoji) were replaced by ${REPLACEMENT_CHARACTER}`;

/** A metric value as the charts print it: learning rates like 5e-5 stay readable instead of "0.000". */
export function formatMetricValue(value: MetricValue, digits = 3): string {
  if (typeof value !== 'number') return value;
  if (value !== 0 && Math.abs(value) < 10 ** -digits) return value.toExponential(1);
  return value.toFixed(digits);
}

/** "2 NaN, 1 Infinity": how many points of each non-finite kind, the most frequent first. */
export function nonFiniteBreakdown(counts: ReadonlyMap<NonFiniteValue, number>): string {
  return [...counts.entries()]
    .sort(([, a], [, b]) => b - a)
    .map(([kind, count]) => `${count.toLocaleString()} ${kind}`)
    .join(', ');
}
