// A job's status as a coloured badge; live statuses pulse so a glance tells what is moving.
import type { JobStatusName } from '#contract/statuses';
import { isLive, STATUS_LABEL } from '../lib/format';

export function StatusBadge({ status }: { status: JobStatusName }) {
  return (
    <span className={`badge badge-${status}`} data-testid="job-status" data-status={status}>
      {isLive(status) && <span className="badge-pulse" aria-hidden="true" />}
      {STATUS_LABEL[status]}
    </span>
  );
}
