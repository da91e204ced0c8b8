// Training progress: a bar when the total is known, and "epoch 2 · step 30 / 90" beside it.
import { progressFraction, progressText, type Progress } from '../lib/format';

export function ProgressBar({ progress, compact = false }: { progress: Progress; compact?: boolean }) {
  const fraction = progressFraction(progress);
  const text = progressText(progress);
  return (
    <div className={compact ? 'progress progress-compact' : 'progress'}>
      <div
        className="progress-track"
        role="progressbar"
        aria-label="Training progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={fraction === null ? undefined : Math.round(fraction * 100)}
        aria-valuetext={text}
      >
        <div className="progress-fill" style={{ width: `${Math.round((fraction ?? 0) * 100)}%` }} />
      </div>
      <span className="progress-text">{text}</span>
    </div>
  );
}
