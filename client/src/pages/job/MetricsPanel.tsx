// The job's loss and evaluation curves, polled while the job runs so the chart grows live.
import { useQuery } from '@tanstack/react-query';
import { lazy, Suspense } from 'react';
import { Loading, QueryError } from '../../components/QueryError';
import { isLive } from '../../lib/format';
import { liveRefetchInterval } from '../../lib/live';
import { useTRPC } from '../../lib/trpc';
import type { JobDetail } from './job-detail';

const MetricsChart = lazy(() => import('./MetricsChart'));

export function MetricsPanel({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const live = isLive(job.status);
  const metrics = useQuery({
    ...trpc.jobs.metrics.queryOptions({ jobId: job.id }),
    refetchInterval: liveRefetchInterval(live),
  });
  return (
    <section className="panel" aria-labelledby="metrics-title">
      <h2 id="metrics-title" className="panel-title">
        Training curves
      </h2>
      {metrics.isPending ? (
        <Loading label="Loading metrics…" />
      ) : metrics.isError ? (
        <QueryError error={metrics.error} what="Metrics" onRetry={() => void metrics.refetch()} />
      ) : metrics.data.points.length === 0 ? (
        <p className="muted">{live ? 'The curves appear once the trainer reports its first loss.' : 'This job reported no metrics.'}</p>
      ) : (
        <Suspense fallback={<Loading label="Drawing the chart…" />}>
          <MetricsChart points={metrics.data.points} />
        </Suspense>
      )}
    </section>
  );
}
