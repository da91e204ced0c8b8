// "/": the user's jobs, newest first, with live statuses (jobs.onUpdate writes into the cache)
// and keyset "load more"; with no jobs yet, the way to the first deploy.
import { useInfiniteQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import type { RouterOutputs } from '../../api/client';
import { ProgressBar } from '../components/ProgressBar';
import { Loading, QueryError } from '../components/QueryError';
import { StatusBadge } from '../components/StatusBadge';
import { formatDateTime, timeAgo, TRIGGER_LABEL } from '../lib/format';
import { useNow } from '../lib/hooks';
import { applyJobUpdate } from '../lib/job-cache';
import { Link } from '../lib/router';
import { useTRPC } from '../lib/trpc';

type JobSummary = RouterOutputs['jobs']['list']['items'][number];

const PAGE_SIZE = 20;

export function JobsListPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const now = useNow();
  const jobs = useInfiniteQuery(
    trpc.jobs.list.infiniteQueryOptions({ limit: PAGE_SIZE }, { getNextPageParam: (page) => page.nextCursor ?? undefined }),
  );
  useSubscription(
    trpc.jobs.onUpdate.subscriptionOptions({}, { onData: (job) => applyJobUpdate(queryClient, trpc, job) }),
  );

  const items = jobs.data?.pages.flatMap((page) => page.items) ?? [];
  return (
    <>
      <div className="page-head">
        <div>
          <h1>Training jobs</h1>
          <p className="muted">Every job's predictions, as they arrive, and why when they don't.</p>
        </div>
        {items.length > 0 && (
          <Link to="/jobs/new" className="button-primary">
            New job
          </Link>
        )}
      </div>
      {jobs.isPending ? (
        <Loading label="Loading your jobs…" />
      ) : !jobs.data ? (
        <QueryError error={jobs.error} what="Your jobs" onRetry={() => void jobs.refetch()} />
      ) : items.length === 0 ? (
        <section className="empty-state">
          <h2>No jobs yet</h2>
          <p className="muted">
            Deploy a fine-tuning job and watch its predictions appear while it trains. An example dataset is ready for you
            to try: it runs in a few seconds on this server.
          </p>
          <Link to="/jobs/new" className="button-primary">
            Deploy your first job
          </Link>
        </section>
      ) : (
        <>
          <div className="table-wrap">
            <table className="table jobs-table" aria-label="Training jobs">
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Status</th>
                  <th scope="col">Predictions sampled</th>
                  <th scope="col">Progress</th>
                  <th scope="col" className="num">
                    Predictions
                  </th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {items.map((job) => (
                  <JobRow key={job.id} job={job} now={now} />
                ))}
              </tbody>
            </table>
          </div>
          {jobs.hasNextPage && (
            <div className="load-more">
              <button type="button" className="button-quiet" onClick={() => void jobs.fetchNextPage()} disabled={jobs.isFetchingNextPage}>
                {jobs.isFetchingNextPage ? 'Loading…' : 'Load more jobs'}
              </button>
            </div>
          )}
          {jobs.isFetchNextPageError && <QueryError error={jobs.error} what="More jobs" onRetry={() => void jobs.fetchNextPage()} />}
        </>
      )}
    </>
  );
}

function JobRow({ job, now }: { job: JobSummary; now: number }) {
  return (
    <tr data-testid="job-row" data-job-id={job.id}>
      <td data-label="Job">
        <div>
          <Link to={`/jobs/${job.id}`} className="job-link">
            {job.name}
          </Link>
          <div className="cell-sub">
            {job.datasetName ?? 'deleted dataset'} · {job.launcher === 'local' ? 'on this server' : job.launcher}
          </div>
        </div>
      </td>
      <td data-label="Status">
        <StatusBadge status={job.status} />
      </td>
      <td data-label="Sampled">{job.predictionsEnabled ? TRIGGER_LABEL[job.trigger] : <span className="muted">Disabled</span>}</td>
      <td data-label="Progress" className="cell-progress">
        <ProgressBar progress={job.progress} compact />
      </td>
      <td data-label="Predictions" className="num">
        {job.predictionCount.toLocaleString()}
      </td>
      <td data-label="Created">
        <time dateTime={job.createdAt} title={formatDateTime(job.createdAt)}>
          {timeAgo(job.createdAt, now)}
        </time>
      </td>
    </tr>
  );
}
