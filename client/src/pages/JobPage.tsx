// "/jobs/:jobId/:tab?": one job's header (status, progress, cancel, export) and its tabs.
// jobs.onUpdate keeps the header live; when the job stops, everything it shows is re-read once.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { lazy, Suspense, useEffect, useRef, useState } from 'react';
import { errorDetails, type RouterOutputs } from '../../api/client';
import { ConfirmDialog } from '../components/Modal';
import { PodEnvDialog } from '../components/PodEnvDialog';
import { ProgressBar } from '../components/ProgressBar';
import { Loading, QueryError } from '../components/QueryError';
import { StatusBadge } from '../components/StatusBadge';
import { formatDateTime, formatDuration, isLive, timeAgo, TRIGGER_LABEL } from '../lib/format';
import { useNow } from '../lib/hooks';
import { applyJobUpdate } from '../lib/job-cache';
import { Link } from '../lib/router';
import { useTRPC } from '../lib/trpc';
import { DiagnosticsTab } from './job/DiagnosticsTab';
import type { JobDetail } from './job/job-detail';
import { LogsTab } from './job/LogsTab';
import { PredictionsTab } from './job/PredictionsTab';

// The comparison (with its word diff) is only needed when opened: its own chunk.
const CompareTab = lazy(() => import('./job/CompareTab'));

export const JOB_TABS = [
  { id: 'predictions', label: 'Predictions' },
  { id: 'compare', label: 'Compare epochs' },
  { id: 'diagnostics', label: 'Diagnostics' },
  { id: 'logs', label: 'Logs' },
] as const;
export type JobTab = (typeof JOB_TABS)[number]['id'];

export function isJobTab(value: string): value is JobTab {
  return JOB_TABS.some((tab) => tab.id === value);
}

export function JobPage({ jobId, tab }: { jobId: string; tab: JobTab }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const job = useQuery(trpc.jobs.get.queryOptions({ jobId }));
  useSubscription(
    trpc.jobs.onUpdate.subscriptionOptions(
      { jobId },
      { enabled: job.isSuccess, onData: (summary) => applyJobUpdate(queryClient, trpc, summary) },
    ),
  );

  // When the job stops, re-read what it produced, so the page shows the final state exactly.
  const live = job.data ? isLive(job.data.status) : false;
  const wasLive = useRef(live);
  useEffect(() => {
    if (wasLive.current && !live) {
      for (const key of [
        trpc.jobs.get.queryKey({ jobId }),
        trpc.jobs.metrics.queryKey({ jobId }),
        trpc.predictions.pathKey(),
        trpc.diagnostics.job.queryKey({ jobId }),
        trpc.jobs.logs.queryKey({ jobId }),
      ]) {
        void queryClient.invalidateQueries({ queryKey: key });
      }
    }
    wasLive.current = live;
  }, [live, jobId, queryClient, trpc]);

  if (job.isPending) return <Loading label="Loading the job…" />;
  if (job.isError) {
    return (
      <>
        <Link to="/" className="back-link">
          ← All jobs
        </Link>
        <QueryError error={job.error} what="This job" onRetry={() => void job.refetch()} />
      </>
    );
  }
  return (
    <>
      <JobHeader job={job.data} />
      <nav className="tabs" aria-label="Job sections">
        {JOB_TABS.map((item) => (
          <Link
            key={item.id}
            to={item.id === 'predictions' ? `/jobs/${jobId}` : `/jobs/${jobId}/${item.id}`}
            className={item.id === tab ? 'tab tab-active' : 'tab'}
            aria-current={item.id === tab ? 'page' : undefined}
          >
            {item.label}
          </Link>
        ))}
      </nav>
      <div className="tab-panel">
        {tab === 'predictions' && <PredictionsTab job={job.data} />}
        {tab === 'compare' && (
          <Suspense fallback={<Loading label="Loading the comparison…" />}>
            <CompareTab job={job.data} />
          </Suspense>
        )}
        {tab === 'diagnostics' && <DiagnosticsTab job={job.data} />}
        {tab === 'logs' && <LogsTab job={job.data} />}
      </div>
    </>
  );
}

function JobHeader({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const now = useNow(5_000);
  const live = isLive(job.status);
  const [confirming, setConfirming] = useState(false);
  const [newPod, setNewPod] = useState<RouterOutputs['jobs']['rotateToken'] | null>(null);

  const cancel = useMutation(
    trpc.jobs.cancel.mutationOptions({
      onSuccess: (summary) => {
        applyJobUpdate(queryClient, trpc, summary);
        setConfirming(false);
      },
    }),
  );
  const rotate = useMutation(trpc.jobs.rotateToken.mutationOptions({ onSuccess: setNewPod }));
  const exportLink = useMutation(
    trpc.predictions.exportLink.mutationOptions({ onSuccess: (link) => window.location.assign(link.url) }),
  );
  const actionError = exportLink.error ?? rotate.error;

  return (
    <header className="job-header">
      <Link to="/" className="back-link">
        ← All jobs
      </Link>
      <div className="job-title-row">
        <h1>{job.name}</h1>
        <StatusBadge status={job.status} />
      </div>
      <dl className="job-meta">
        <div>
          <dt>Dataset</dt>
          <dd>{job.datasetName ?? 'deleted dataset'}</dd>
        </div>
        <div>
          <dt>Runs</dt>
          <dd>{job.launcher === 'local' ? 'On this server' : job.launcher === 'manual' ? 'Manual pod' : job.launcher}</dd>
        </div>
        <div>
          <dt>Predictions</dt>
          <dd>
            {job.predictionsEnabled ? TRIGGER_LABEL[job.trigger] : 'Disabled'}
            {job.predictionsEnabled && job.trigger === 'steps' && job.config.predictions.stepInterval
              ? ` (${job.config.predictions.stepInterval})`
              : ''}
            {' · '}
            <span data-testid="prediction-count">{job.predictionCount.toLocaleString()}</span> stored
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>
            <time dateTime={job.createdAt} title={formatDateTime(job.createdAt)}>
              {timeAgo(job.createdAt, now)}
            </time>
            {job.startedAt && ` · ${live ? 'running for' : 'ran'} ${formatDuration(job.startedAt, job.finishedAt, now)}`}
          </dd>
        </div>
        {job.lastHeartbeatAt && live && (
          <div>
            <dt>Last heartbeat</dt>
            <dd>{timeAgo(job.lastHeartbeatAt, now)}</dd>
          </div>
        )}
      </dl>
      <ProgressBar progress={job.progress} />
      {job.error && (
        <p className="notice notice-fail" role="alert">
          <strong>{job.status === 'failed' ? 'The job failed: ' : ''}</strong>
          {job.error}
        </p>
      )}
      <div className="job-actions">
        <button type="button" className="button-quiet" onClick={() => exportLink.mutate({ jobId: job.id, format: 'jsonl' })} disabled={exportLink.isPending}>
          Export JSONL
        </button>
        <button type="button" className="button-quiet" onClick={() => exportLink.mutate({ jobId: job.id, format: 'csv' })} disabled={exportLink.isPending}>
          Export CSV
        </button>
        {job.launcher === 'manual' && live && (
          <button type="button" className="button-quiet" onClick={() => rotate.mutate({ jobId: job.id })} disabled={rotate.isPending}>
            {rotate.isPending ? 'Issuing…' : 'Rotate token'}
          </button>
        )}
        {!live && (
          // An ended job's token no longer writes; an upload token (writes only) lets a pod's kept spool be synced.
          <>
            <button
              type="button"
              className="button-quiet"
              onClick={() => rotate.mutate({ jobId: job.id })}
              disabled={rotate.isPending}
              aria-describedby="upload-token-why"
            >
              {rotate.isPending ? 'Issuing…' : 'New upload token'}
            </button>
            <span id="upload-token-why" className="muted">
              to upload a spool a pod kept
            </span>
          </>
        )}
        {live && (
          <button type="button" className="button-danger-quiet" onClick={() => setConfirming(true)}>
            Cancel job
          </button>
        )}
      </div>
      {actionError && (
        <p className="form-error" role="alert">
          {errorDetails(actionError).message}
        </p>
      )}
      {confirming && (
        <ConfirmDialog
          title="Cancel this job?"
          message="The trainer is stopped and its token revoked. Predictions stored so far are kept."
          confirmLabel="Cancel job"
          cancelLabel="Keep running"
          busy={cancel.isPending}
          error={cancel.error ? errorDetails(cancel.error).message : null}
          onConfirm={() => cancel.mutate({ jobId: job.id })}
          onClose={() => {
            setConfirming(false);
            cancel.reset();
          }}
        />
      )}
      {newPod && <PodEnvDialog pod={newPod} closeLabel="Done" onClose={() => setNewPod(null)} />}
    </header>
  );
}
