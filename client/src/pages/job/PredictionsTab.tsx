// The predictions table: epoch / trigger filters and a debounced search (all three in the
// address: ?epoch=2&trigger=eval&q=word), keyset "load more", and rows that arrive live. The list answers with latestId; predictions.onNew resumes from it, so
// nothing stored between the list and the stream is missed or shown twice.
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useEffect, useId, useMemo, useState } from 'react';
import type { RouterOutputs } from '../../../api/client';
import { tokenF1 } from '#contract/scoring';
import { PREDICTION_TRIGGERS, type PredictionTrigger } from '#contract/triggers';
import { ExpandableText } from '../../components/ExpandableText';
import { Loading, QueryError } from '../../components/QueryError';
import { ALTERED_EXPLANATION, formatScore, isLive, plural, TRIGGER_LABEL } from '../../lib/format';
import { useDebounced } from '../../lib/hooks';
import { liveRefetchInterval } from '../../lib/live';
import { parseIntegerParam, useSearchParam } from '../../lib/url-state';
import { Link } from '../../lib/router';
import { useTRPC } from '../../lib/trpc';
import type { JobDetail } from './job-detail';
import { MetricsPanel } from './MetricsPanel';

type Prediction = RouterOutputs['predictions']['list']['items'][number];

const PAGE_SIZE = 50;

interface Filters {
  epoch: number | undefined;
  trigger: PredictionTrigger | undefined;
  search: string;
}

function matches(row: Prediction, filters: Filters): boolean {
  if (filters.epoch !== undefined && row.epoch !== filters.epoch) return false;
  if (filters.trigger !== undefined && row.trigger !== filters.trigger) return false;
  const needle = filters.search.trim().toLowerCase();
  if (!needle) return true;
  return [row.prompt, row.groundTruth, row.prediction].some((text) => text.toLowerCase().includes(needle));
}

export function PredictionsTab({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const ids = useId();
  const live = isLive(job.status);
  const [epochParam, setEpochParam] = useSearchParam('epoch');
  const [triggerParam, setTriggerParam] = useSearchParam('trigger');
  const [searchParam, setSearchParam] = useSearchParam('q');
  const epoch = parseIntegerParam(epochParam);
  const trigger = PREDICTION_TRIGGERS.find((t) => t === triggerParam);
  const setEpoch = (value: number | undefined) => setEpochParam(value === undefined ? null : String(value));
  const setTrigger = (value: PredictionTrigger | undefined) => setTriggerParam(value ?? null);
  // The box is the user's while they type; the address (and the query) follow it once it settles.
  const [searchText, setSearchText] = useState(searchParam ?? '');
  const search = useDebounced(searchText.trim(), 300);
  useEffect(() => {
    if (search !== (searchParam ?? '')) setSearchParam(search || null);
    // Only a settled search writes the address (the parameter itself is read above).
  }, [search]);
  const filtered = epoch !== undefined || trigger !== undefined || search !== '';

  // New epochs appear in the filter on the live rhythm (lib/live.ts), not once per arriving row.
  const epochs = useQuery({ ...trpc.predictions.epochs.queryOptions({ jobId: job.id }), refetchInterval: liveRefetchInterval(live) });
  const list = useInfiniteQuery(
    trpc.predictions.list.infiniteQueryOptions(
      { jobId: job.id, limit: PAGE_SIZE, ...(epoch !== undefined ? { epoch } : {}), ...(trigger ? { trigger } : {}), ...(search ? { search } : {}) },
      { getNextPageParam: (page) => page.nextCursor ?? undefined },
    ),
  );
  const firstPage = list.data?.pages[0];
  const latestId = firstPage?.latestId;

  // Rows stored after the list was read, in arrival order.
  const [arrived, setArrived] = useState<Prediction[]>([]);
  const subscription = useSubscription(
    trpc.predictions.onNew.subscriptionOptions(
      { jobId: job.id, lastEventId: latestId === undefined ? null : String(latestId) },
      {
        enabled: live && latestId !== undefined,
        onData: (event) => {
          const row = event.data;
          setArrived((old) => (old.some((r) => r.id === row.id) ? old : [...old, row]));
        },
      },
    ),
  );

  const loaded = useMemo(() => list.data?.pages.flatMap((page) => page.items) ?? [], [list.data]);
  const fresh = useMemo(() => {
    if (latestId === undefined || list.hasNextPage) return [];
    const seen = new Set(loaded.map((row) => row.id));
    return arrived.filter((row) => row.id > latestId && !seen.has(row.id) && matches(row, { epoch, trigger, search }));
  }, [arrived, loaded, latestId, list.hasNextPage, epoch, trigger, search]);
  const rows = [...loaded, ...fresh];
  // A search counts its matches up to a cap; past it the total is "at least", shown as "1,000+".
  const atLeast = firstPage?.totalCountIsLowerBound ?? false;
  const total = Math.max((firstPage?.totalCount ?? 0) + fresh.length, rows.length);
  const totalText = atLeast ? `${total.toLocaleString()}+ predictions` : plural(total, 'prediction');
  const alteredShown = rows.reduce((count, row) => count + (row.altered ? 1 : 0), 0);

  return (
    <>
      <MetricsPanel job={job} />
      <section className="panel" aria-labelledby={`${ids}-title`}>
        <div className="panel-head">
          <h2 id={`${ids}-title`} className="panel-title">
            Predictions
          </h2>
          <LiveIndicator live={live} status={subscription.status} error={subscription.error?.message} onReconnect={subscription.reset} />
        </div>
        <div className="filters" role="search">
          <div className="filter">
            <label htmlFor={`${ids}-epoch`}>Epoch</label>
            <select
              id={`${ids}-epoch`}
              value={epoch ?? ''}
              onChange={(e) => setEpoch(e.target.value === '' ? undefined : Number(e.target.value))}
            >
              <option value="">All epochs</option>
              {epochs.data?.map((e) => (
                <option key={e.epoch} value={e.epoch}>
                  Epoch {e.epoch} ({e.count})
                </option>
              ))}
            </select>
          </div>
          <div className="filter">
            <label htmlFor={`${ids}-trigger`}>Sampled</label>
            <select
              id={`${ids}-trigger`}
              value={trigger ?? ''}
              onChange={(e) => setTrigger(e.target.value === '' ? undefined : (e.target.value as PredictionTrigger))}
            >
              <option value="">Any trigger</option>
              {PREDICTION_TRIGGERS.map((t) => (
                <option key={t} value={t}>
                  {TRIGGER_LABEL[t]}
                </option>
              ))}
            </select>
          </div>
          <div className="filter filter-grow">
            <label htmlFor={`${ids}-search`}>Search</label>
            <input
              id={`${ids}-search`}
              type="search"
              placeholder="Words in the prompt, truth or prediction"
              value={searchText}
              maxLength={200}
              onChange={(e) => setSearchText(e.target.value)}
            />
          </div>
        </div>
        {epochs.isError && <QueryError error={epochs.error} what="The epoch list" onRetry={() => void epochs.refetch()} />}

        {list.isPending ? (
          <Loading label="Loading predictions…" />
        ) : !list.data ? (
          <QueryError error={list.error} what="Predictions" onRetry={() => void list.refetch()} />
        ) : rows.length === 0 ? (
          <EmptyPredictions job={job} filtered={filtered} onClear={() => {
            setEpoch(undefined);
            setTrigger(undefined);
            setSearchText('');
          }} />
        ) : (
          <>
            <p className="table-caption muted" aria-live="polite" data-testid="predictions-count">
              Showing {rows.length.toLocaleString()} of {totalText}
              {filtered ? ' matching the filters' : ''}
              {list.isFetching && !list.isFetchingNextPage ? ' · refreshing…' : ''}
            </p>
            {alteredShown > 0 && (
              <p className="altered-note muted" data-testid="altered-note">
                {alteredShown === 1 ? 'One row shown is' : `${alteredShown.toLocaleString()} rows shown are`} marked{' '}
                <span className="badge badge-altered">altered</span>: {ALTERED_EXPLANATION.charAt(0).toLowerCase()}
                {ALTERED_EXPLANATION.slice(1)}.
              </p>
            )}
            <div className="table-wrap">
              <table className="table predictions-table" aria-label="Predictions">
                <thead>
                  <tr>
                    <th scope="col">Epoch</th>
                    <th scope="col">Step</th>
                    <th scope="col">Prompt</th>
                    <th scope="col">Ground truth</th>
                    <th scope="col">Prediction</th>
                    <th scope="col" className="num" title="Token F1 of the prediction against the ground truth">
                      F1
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((row) => (
                    <PredictionRow key={row.id} row={row} fresh={row.id > (latestId ?? Infinity)} />
                  ))}
                </tbody>
              </table>
            </div>
            {list.hasNextPage && (
              <div className="load-more">
                <button type="button" className="button-quiet" onClick={() => void list.fetchNextPage()} disabled={list.isFetchingNextPage}>
                  {list.isFetchingNextPage ? 'Loading…' : atLeast ? 'Load more' : `Load more (${(total - rows.length).toLocaleString()} left)`}
                </button>
              </div>
            )}
            {list.isFetchNextPageError && (
              <QueryError error={list.error} what="More predictions" onRetry={() => void list.fetchNextPage()} />
            )}
          </>
        )}
      </section>
    </>
  );
}

function PredictionRow({ row, fresh }: { row: Prediction; fresh: boolean }) {
  const f1 = tokenF1(row.prediction, row.groundTruth);
  return (
    <tr className={fresh ? 'row-new' : undefined} data-testid="prediction-row">
      <td data-label="Epoch" className="cell-short">{row.epoch}</td>
      <td data-label="Step" className="cell-short">
        <div>
          {row.step}
          <div className="cell-sub">sample #{row.sampleIndex}</div>
          {row.altered && <AlteredMarker />}
        </div>
      </td>
      <td data-label="Prompt" className="cell-text">
        <TextCell text={row.prompt} />
      </td>
      <td data-label="Ground truth" className="cell-text">
        <TextCell text={row.groundTruth} />
      </td>
      <td data-label="Prediction" className="cell-text cell-prediction">
        <TextCell text={row.prediction} />
      </td>
      <td data-label="F1" className="num cell-short">
        <span className={f1 >= 0.999 ? 'score score-exact' : f1 > 0 ? 'score' : 'score score-zero'}>{formatScore(f1)}</span>
      </td>
    </tr>
  );
}

/**
 * Model output in any script: dir="auto" lets an Arabic or Hebrew text run right to left on its
 * own line while the cell (and its label on a phone) keeps the page's direction.
 */
function TextCell({ text }: { text: string }) {
  return (
    <div className="cell-text-body" dir="auto">
      <ExpandableText text={text} />
    </div>
  );
}

/** The row was stored with characters replaced by U+FFFD; the title says which, and so does the screen reader. */
function AlteredMarker() {
  return (
    <span className="badge badge-altered" title={ALTERED_EXPLANATION} data-testid="altered-marker">
      altered
      <span className="visually-hidden">: {ALTERED_EXPLANATION}</span>
    </span>
  );
}

function LiveIndicator({
  live,
  status,
  error,
  onReconnect,
}: {
  live: boolean;
  status: 'idle' | 'connecting' | 'pending' | 'error';
  error: string | undefined;
  onReconnect: () => void;
}) {
  if (!live) return <span className="live live-off">Not live: the job has stopped</span>;
  if (status === 'error') {
    return (
      <span className="live live-error" role="alert">
        Live updates interrupted{error ? `: ${error}` : ''}{' '}
        <button type="button" className="link-button" onClick={onReconnect}>
          Reconnect
        </button>
      </span>
    );
  }
  if (status === 'pending') {
    return (
      <span className="live live-on" data-testid="live-indicator">
        <span className="live-dot" aria-hidden="true" />
        Live
      </span>
    );
  }
  return <span className="live live-off">Connecting…</span>;
}

function EmptyPredictions({ job, filtered, onClear }: { job: JobDetail; filtered: boolean; onClear: () => void }) {
  if (filtered) {
    return (
      <div className="empty-inline">
        <p>No predictions match these filters.</p>
        <button type="button" className="button-quiet" onClick={onClear}>
          Clear filters
        </button>
      </div>
    );
  }
  if (!job.predictionsEnabled) {
    return (
      <div className="empty-inline">
        <p>Predictions are disabled for this job, so none were sampled.</p>
      </div>
    );
  }
  if (isLive(job.status)) {
    return (
      <div className="empty-inline" data-testid="waiting-for-predictions">
        <p>
          <span className="spinner" aria-hidden="true" /> Waiting for the first predictions. They are sampled{' '}
          {TRIGGER_LABEL[job.trigger].toLowerCase()} and appear here as soon as they are stored.
        </p>
        <p className="muted">
          Nothing after a while? <Link to={`/jobs/${job.id}/diagnostics`}>Diagnostics</Link> names what is wrong.
        </p>
      </div>
    );
  }
  return (
    <div className="empty-inline">
      <p>This job stored no predictions.</p>
      <p>
        <Link to={`/jobs/${job.id}/diagnostics`}>See the diagnostics</Link> for why.
      </p>
    </div>
  );
}
