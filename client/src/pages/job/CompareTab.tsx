// The same sampled rows across chosen epochs, side by side: each prediction diffed word by word
// against the ground truth, scored (token F1, exact match), and marked improved / regressed /
// unchanged between the first and last chosen epoch. Loaded lazily with the word diff.
// Samples come a page at a time; the page always says how many of how many it shows, and the
// mean F1 covers every sample, loaded or not.
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { Fragment, useMemo } from 'react';
import type { RouterOutputs } from '../../../api/client';
import { COMPARE_EPOCHS_MAX, COMPARE_PAGE_DEFAULT } from '#contract/predictions.schemas';
import { ExpandableText } from '../../components/ExpandableText';
import { Loading, QueryError } from '../../components/QueryError';
import { ALTERED_EXPLANATION, formatScore, isLive, plural } from '../../lib/format';
import { liveRefetchInterval } from '../../lib/live';
import { parseIntegerListParam, useSearchParam } from '../../lib/url-state';
import { useTRPC } from '../../lib/trpc';
import { wordDiff } from '../../lib/word-diff';
import type { JobDetail } from './job-detail';

type ComparePage = RouterOutputs['predictions']['compare'];
type Sample = ComparePage['samples'][number];
const OUTCOMES = ['improved', 'regressed', 'unchanged', 'incomplete'] as const;
type Outcome = (typeof OUTCOMES)[number];
const isOutcome = (value: string | null): value is Outcome => OUTCOMES.some((o) => o === value);

/** The pages loaded so far, joined: the totals and means are the server's, over every sample. */
interface Comparison extends Omit<ComparePage, 'samples' | 'nextCursor' | 'limit'> {
  samples: Sample[];
}

const EPSILON = 1e-9;

const OUTCOME_LABEL: Record<Outcome, string> = {
  improved: 'Improved',
  regressed: 'Regressed',
  unchanged: 'Unchanged',
  incomplete: 'Not in every epoch',
};

function outcomeOf(sample: Sample): Outcome {
  const first = sample.predictions[0];
  const last = sample.predictions.at(-1);
  if (!first || !last || sample.predictions.length < 2) return 'incomplete';
  if (last.f1 > first.f1 + EPSILON) return 'improved';
  if (last.f1 < first.f1 - EPSILON) return 'regressed';
  return 'unchanged';
}

export default function CompareTab({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const live = isLive(job.status);
  const epochs = useQuery({ ...trpc.predictions.epochs.queryOptions({ jobId: job.id }), refetchInterval: liveRefetchInterval(live) });
  // The chosen epochs and the outcome filter live in the address (?epochs=1,4&show=regressed).
  const [epochsParam, setEpochsParam] = useSearchParam('epochs');
  const [showParam, setShowParam] = useSearchParam('show');
  const chosen = useMemo(() => parseIntegerListParam(epochsParam), [epochsParam]);
  const show: Outcome | 'all' = isOutcome(showParam) ? showParam : 'all';
  const setShow = (outcome: Outcome | 'all') => setShowParam(outcome === 'all' ? null : outcome);

  const available = useMemo(() => epochs.data?.map((e) => e.epoch) ?? [], [epochs.data]);
  // Until the user picks, compare the first epoch with the latest one.
  const selected = useMemo(() => {
    if (chosen) return chosen;
    const first = available[0];
    const last = available.at(-1);
    if (first === undefined || last === undefined) return [];
    return first === last ? [first] : [first, last];
  }, [chosen, available]);

  const pages = useInfiniteQuery({
    ...trpc.predictions.compare.infiniteQueryOptions(
      { jobId: job.id, epochs: selected, limit: COMPARE_PAGE_DEFAULT },
      { getNextPageParam: (page) => page.nextCursor ?? undefined },
    ),
    enabled: selected.length > 0,
    refetchInterval: liveRefetchInterval(live),
  });
  const comparison = useMemo((): Comparison | undefined => {
    const loaded = pages.data?.pages;
    const first = loaded?.[0];
    if (!loaded || !first) return undefined;
    // Every page states the totals; the first page's are the ones the loaded samples began with.
    return { epochs: first.epochs, sampleCount: first.sampleCount, epochSampleCounts: first.epochSampleCounts, meanF1: first.meanF1, samples: loaded.flatMap((page) => page.samples) };
  }, [pages.data]);

  const toggle = (epoch: number) => {
    const next = selected.includes(epoch) ? selected.filter((e) => e !== epoch) : [...selected, epoch];
    // "none" keeps an emptied selection empty (no parameter means "first and latest").
    setEpochsParam(next.length === 0 ? 'none' : [...next].sort((a, b) => a - b).join(','));
  };

  if (epochs.isPending) return <Loading label="Loading epochs…" />;
  if (epochs.isError) return <QueryError error={epochs.error} what="Epochs" onRetry={() => void epochs.refetch()} />;
  if (available.length === 0) {
    return (
      <section className="empty-state">
        <h2>Nothing to compare yet</h2>
        <p className="muted">
          {live
            ? 'The comparison fills in as soon as the first predictions are stored.'
            : 'This job stored no predictions; the Diagnostics tab says why.'}
        </p>
      </section>
    );
  }

  return (
    <>
      <section className="panel">
        <fieldset className="epoch-picker">
          <legend>Epochs to compare</legend>
          <div className="epoch-options">
            {epochs.data.map((e) => {
              const checked = selected.includes(e.epoch);
              return (
                <label key={e.epoch} className={checked ? 'epoch-option epoch-option-on' : 'epoch-option'}>
                  <input
                    type="checkbox"
                    checked={checked}
                    disabled={!checked && selected.length >= COMPARE_EPOCHS_MAX}
                    onChange={() => toggle(e.epoch)}
                  />
                  Epoch {e.epoch}
                  <span className="muted"> · {plural(e.count, 'row')}</span>
                </label>
              );
            })}
          </div>
          <p className="hint">
            {selected.length < 2
              ? available.length < 2
                ? 'Only one epoch has predictions so far; a second one makes a comparison.'
                : 'Choose at least two epochs to see what changed.'
              : `${comparison ? plural(comparison.sampleCount, 'sample') : 'The same samples'} across these epochs; changes are measured from epoch ${selected[0]} to epoch ${selected.at(-1)}.`}
          </p>
        </fieldset>
      </section>
      {selected.length === 0 ? null : pages.isPending ? (
        <Loading label="Comparing…" />
      ) : !comparison ? (
        <QueryError error={pages.error} what="The comparison" onRetry={() => void pages.refetch()} />
      ) : (
        <>
          <ComparisonView comparison={comparison} show={show} onShow={setShow} />
          <MoreSamples
            shown={comparison.samples.length}
            total={comparison.sampleCount}
            hasMore={pages.hasNextPage}
            loading={pages.isFetchingNextPage}
            onMore={() => void pages.fetchNextPage()}
          />
          {pages.isFetchNextPageError && <QueryError error={pages.error} what="More samples" onRetry={() => void pages.fetchNextPage()} />}
        </>
      )}
    </>
  );
}

function ComparisonView({ comparison, show, onShow }: { comparison: Comparison; show: Outcome | 'all'; onShow: (o: Outcome | 'all') => void }) {
  const outcomes = useMemo(() => comparison.samples.map(outcomeOf), [comparison.samples]);
  const counts = { improved: 0, regressed: 0, unchanged: 0, incomplete: 0 };
  for (const outcome of outcomes) counts[outcome]++;
  const visible = comparison.samples.filter((_, i) => show === 'all' || outcomes[i] === show);
  const multi = comparison.epochs.length > 1;
  const bestMean = Math.max(...comparison.meanF1.map((v) => v ?? 0));
  const partial = comparison.samples.length < comparison.sampleCount;

  return (
    <>
      <section className="panel" aria-labelledby="mean-f1-title">
        <h2 id="mean-f1-title" className="panel-title">
          Mean token F1 per epoch
        </h2>
        <p className="hint">Over every sample each epoch has, loaded below or not.</p>
        <ul className="mean-f1" data-testid="mean-f1">
          {comparison.epochs.map((epoch, i) => {
            const mean = comparison.meanF1[i] ?? null;
            return (
              <li key={epoch} className={mean !== null && mean === bestMean && multi ? 'mean-best' : undefined}>
                <span className="mean-epoch">
                  Epoch {epoch}
                  <span className="cell-sub" style={{ display: 'block' }} data-testid="epoch-sample-count">
                    {plural(comparison.epochSampleCounts[i] ?? 0, 'sample')}
                  </span>
                </span>
                <span className="mean-bar" aria-hidden="true">
                  <span style={{ width: `${Math.round((mean ?? 0) * 100)}%` }} />
                </span>
                <span className="mean-value">{formatScore(mean)}</span>
              </li>
            );
          })}
        </ul>
        {multi && (
          <div className="outcome-filter" role="group" aria-label="Show samples">
            {(['all', 'improved', 'regressed', 'unchanged', 'incomplete'] as const)
              .filter((o) => o === 'all' || counts[o] > 0 || o !== 'incomplete')
              .map((o) => (
                <button
                  key={o}
                  type="button"
                  className={show === o ? 'chip chip-on' : 'chip'}
                  aria-pressed={show === o}
                  onClick={() => onShow(o)}
                >
                  {o === 'all' ? `All ${comparison.samples.length}` : `${OUTCOME_LABEL[o]} ${counts[o]}`}
                </button>
              ))}
          </div>
        )}
        {multi && partial && <p className="hint">These counts cover the samples loaded so far.</p>}
        <p className="diff-legend hint">
          Words the prediction shares with the truth are plain; <span className="diff-extra">extra words</span> are struck
          out; <span className="diff-missing">missing words</span> are shown where they belong.
        </p>
      </section>
      <p className="table-caption muted" data-testid="compare-shown">
        {partial
          ? `Showing ${comparison.samples.length.toLocaleString()} of ${plural(comparison.sampleCount, 'sample')}, in sample order.`
          : `Showing all ${plural(comparison.sampleCount, 'sample')}.`}
      </p>
      {visible.length === 0 ? (
        <p className="muted empty-inline">No samples here.</p>
      ) : (
        <ol className="samples">
          {visible.map((sample) => (
            <SampleCard key={sample.sampleIndex} sample={sample} epochs={comparison.epochs} outcome={multi ? outcomeOf(sample) : null} />
          ))}
        </ol>
      )}
    </>
  );
}

function SampleCard({ sample, epochs, outcome }: { sample: Sample; epochs: number[]; outcome: Outcome | null }) {
  return (
    <li className="sample" data-testid="compare-sample" data-outcome={outcome ?? undefined}>
      <div className="sample-head">
        <h3>Sample #{sample.sampleIndex}</h3>
        {outcome && <span className={`outcome outcome-${outcome}`}>{OUTCOME_LABEL[outcome]}</span>}
      </div>
      <dl className="sample-texts">
        <div>
          <dt>Prompt</dt>
          <dd>
            <ExpandableText text={sample.prompt} />
          </dd>
        </div>
        <div>
          <dt>Ground truth</dt>
          <dd className="truth">
            <ExpandableText text={sample.groundTruth} />
          </dd>
        </div>
      </dl>
      <div className="sample-epochs" style={{ gridTemplateColumns: `repeat(${Math.min(epochs.length, 4)}, minmax(0, 1fr))` }}>
        {epochs.map((epoch, i) => {
          const scored = sample.predictions[i] ?? null;
          return (
            <div className="sample-epoch" key={epoch} data-testid="compare-cell">
              <div className="sample-epoch-head">
                <span>
                  Epoch {epoch}
                  {scored && <span className="muted"> · step {scored.step}</span>}
                </span>
                {scored?.altered && (
                  <span className="badge badge-altered" title={ALTERED_EXPLANATION} data-testid="altered-marker">
                    altered
                  </span>
                )}
                {scored && (
                  <span className="scores">
                    <span className="score" title="Token F1 against the ground truth" data-testid="f1">
                      F1 {formatScore(scored.f1)}
                    </span>
                    {scored.exact && <span className="score score-exact">exact</span>}
                  </span>
                )}
              </div>
              {scored ? <Diff prediction={scored.prediction} truth={sample.groundTruth} /> : <p className="muted">No prediction in this epoch.</p>}
            </div>
          );
        })}
      </div>
    </li>
  );
}

/** The way to the samples not loaded yet: never fewer samples without saying so. */
function MoreSamples({ shown, total, hasMore, loading, onMore }: { shown: number; total: number; hasMore: boolean; loading: boolean; onMore: () => void }) {
  if (!hasMore) return null;
  return (
    <div className="load-more">
      <button type="button" className="button-quiet" onClick={onMore} disabled={loading}>
        {loading ? 'Loading…' : `Load more samples (${Math.max(total - shown, 0).toLocaleString()} left)`}
      </button>
    </div>
  );
}

function Diff({ prediction, truth }: { prediction: string; truth: string }) {
  const parts = useMemo(() => wordDiff(prediction, truth), [prediction, truth]);
  if (parts.length === 0) return <p className="diff muted">(empty prediction)</p>;
  return (
    <p className="diff">
      {parts.map((part, i) => (
        <Fragment key={i}>
          {i > 0 && ' '}
          {part.kind === 'extra' ? (
            <del className="diff-extra" title="Not in the ground truth">
              {part.text}
            </del>
          ) : part.kind === 'missing' ? (
            <ins className="diff-missing" title="In the ground truth, missing from the prediction">
              {part.text}
            </ins>
          ) : (
            <span>{part.text}</span>
          )}
        </Fragment>
      ))}
    </p>
  );
}
