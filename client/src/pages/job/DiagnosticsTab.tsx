// Why predictions are (or are not) arriving: the root cause in one line, then every check
// along a prediction's path with what to do about it. Re-checked every few seconds while live.
import { useQuery } from '@tanstack/react-query';
import type { RouterOutputs } from '../../../api/client';
import { Loading, QueryError } from '../../components/QueryError';
import { isLive, timeAgo } from '../../lib/format';
import { liveRefetchInterval } from '../../lib/live';
import { useNow } from '../../lib/hooks';
import { withInlineCode } from '../../lib/inline-code';
import { useTRPC } from '../../lib/trpc';
import type { JobDetail } from './job-detail';

type Check = RouterOutputs['diagnostics']['job']['checks'][number];

const ICON: Record<Check['status'], string> = { pass: '✓', warn: '!', fail: '✕' };
const STATUS_WORD: Record<Check['status'], string> = { pass: 'Passed', warn: 'Warning', fail: 'Failed' };

export function DiagnosticsTab({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const now = useNow(5_000);
  const live = isLive(job.status);
  const diagnostics = useQuery({
    ...trpc.diagnostics.job.queryOptions({ jobId: job.id }),
    refetchInterval: liveRefetchInterval(live),
  });

  if (diagnostics.isPending) return <Loading label="Checking the job…" />;
  if (diagnostics.isError && !diagnostics.data) {
    return <QueryError error={diagnostics.error} what="Diagnostics" onRetry={() => void diagnostics.refetch()} />;
  }
  const result = diagnostics.data;
  const healthy = result.status === 'healthy';
  const cause = result.checks.find((c) => c.id === result.rootCauseCheck);
  return (
    <>
      <section className={`diagnosis diagnosis-${result.status}`} aria-labelledby="diagnosis-title" data-testid="diagnosis">
        <span className="diagnosis-icon" aria-hidden="true">
          {healthy ? ICON.pass : result.status === 'warning' ? ICON.warn : ICON.fail}
        </span>
        <div>
          <p className="diagnosis-kicker">{healthy ? 'Healthy' : result.status === 'warning' ? 'Needs attention' : 'Root cause'}</p>
          <h2 id="diagnosis-title" data-testid="root-cause">
            {healthy ? 'Everything looks healthy' : (cause?.title ?? result.rootCause ?? 'Something needs attention')}
          </h2>
          {healthy ? (
            <p className="muted">Every check along a prediction's path passes.</p>
          ) : (
            cause && <p>{withInlineCode(cause.message)}</p>
          )}
          {!healthy && cause?.fix && (
            <p className="diagnosis-fix">
              <strong>What to do:</strong> {withInlineCode(cause.fix)}
            </p>
          )}
        </div>
        <div className="diagnosis-meta">
          <span className="muted">Checked {timeAgo(result.checkedAt, now)}</span>
          <button type="button" className="button-quiet button-small" onClick={() => void diagnostics.refetch()} disabled={diagnostics.isFetching}>
            {diagnostics.isFetching ? 'Checking…' : 'Check again'}
          </button>
        </div>
      </section>
      {diagnostics.isError && (
        <QueryError error={diagnostics.error} what="The latest check" onRetry={() => void diagnostics.refetch()} />
      )}
      <ol className="checks" aria-label="Checks, in the order a prediction passes them">
        {result.checks.map((check) => (
          <li key={check.id} className={`check check-${check.status}`} data-testid="check" data-check={check.id} data-status={check.status}>
            <span className="check-icon" role="img" aria-label={STATUS_WORD[check.status]}>
              {ICON[check.status]}
            </span>
            <div className="check-body">
              <h3>{check.title}</h3>
              <p>{withInlineCode(check.message)}</p>
              {check.fix && (
                <p className="check-fix">
                  <strong>Fix:</strong> {withInlineCode(check.fix)}
                </p>
              )}
            </div>
          </li>
        ))}
      </ol>
    </>
  );
}
