// Training curves as small SVG line charts: losses in one, evaluation scores in the other.
// Loaded lazily (its own chunk), so the first page load does not pay for it.
// A NaN or infinite point is never drawn through: the line breaks there and a red marker on the
// plot's edge (top for NaN and Infinity, bottom for -Infinity) says what and at which steps.
import { useMemo } from 'react';
import type { NonFiniteValue } from '#contract/pod.schemas';
import type { RouterOutputs } from '../../../api/client';
import { formatMetricValue, nonFiniteBreakdown, plural } from '../../lib/format';

export type MetricPoint = RouterOutputs['jobs']['metrics']['points'][number];
type FinitePoint = MetricPoint & { value: number };

const COLORS = ['#4f46e5', '#0891b2', '#d97706', '#db2777', '#16a34a', '#7c3aed'];
const WIDTH = 560;
const HEIGHT = 200;
const PAD = { top: 12, right: 16, bottom: 28, left: 48 };
/** Above this many points a series is drawn as a bare line: one circle per point would cost more than it shows. */
const MAX_CIRCLES = 60;
/** Above this many marker runs in one chart their "NaN" labels would overlap; the titles and the legend still say it all. */
const MAX_MARKER_LABELS = 8;
/** Room a marker's label needs to its right ("NaN" at the chart's font size), or it goes to the left. */
const LABEL_ROOM = 24;
const NON_FINITE_SYMBOL: Record<NonFiniteValue, string> = { NaN: 'NaN', Infinity: '+∞', '-Infinity': '−∞' };

/** Consecutive points of one non-finite kind: one marker, however long a diverged run stays NaN. */
interface NonFiniteRun {
  kind: NonFiniteValue;
  first: MetricPoint;
  last: MetricPoint;
  count: number;
}

interface Series {
  name: string;
  color: string;
  count: number;
  last: MetricPoint | undefined;
  /** Runs of finite points; the line is drawn within each and broken between them. */
  segments: FinitePoint[][];
  runs: NonFiniteRun[];
  nonFinite: Map<NonFiniteValue, number>;
  nonFiniteCount: number;
}

function toSeries(name: string, color: string, unsorted: MetricPoint[]): Series {
  const points = [...unsorted].sort((a, b) => a.step - b.step);
  const segments: FinitePoint[][] = [];
  const runs: NonFiniteRun[] = [];
  const nonFinite = new Map<NonFiniteValue, number>();
  let segment: FinitePoint[] = [];
  let run: NonFiniteRun | undefined;
  for (const point of points) {
    const kind = point.value;
    if (typeof kind === 'number') {
      segment.push({ ...point, value: kind });
      run = undefined;
      continue;
    }
    if (segment.length > 0) segments.push(segment);
    segment = [];
    nonFinite.set(kind, (nonFinite.get(kind) ?? 0) + 1);
    if (run && run.kind === kind) {
      run.last = point;
      run.count += 1;
    } else {
      run = { kind, first: point, last: point, count: 1 };
      runs.push(run);
    }
  }
  if (segment.length > 0) segments.push(segment);
  const nonFiniteCount = points.length - segments.reduce((sum, s) => sum + s.length, 0);
  return { name, color, count: points.length, last: points.at(-1), segments, runs, nonFinite, nonFiniteCount };
}

export default function MetricsChart({ points }: { points: MetricPoint[] }) {
  const groups = useMemo(() => {
    const byName = new Map<string, MetricPoint[]>();
    for (const point of points) {
      const list = byName.get(point.name) ?? [];
      list.push(point);
      byName.set(point.name, list);
    }
    const all: Series[] = [...byName.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, list], index) => toSeries(name, COLORS[index % COLORS.length] ?? '#4f46e5', list));
    const isLoss = (s: Series) => s.name.includes('loss');
    const isSchedule = (s: Series) => /learning_rate|(^|\/)lr$/.test(s.name);
    return [
      { title: 'Loss', series: all.filter(isLoss) },
      { title: 'Scores', series: all.filter((s) => !isLoss(s) && !isSchedule(s)) },
      { title: 'Learning rate', series: all.filter(isSchedule) },
    ].filter((group) => group.series.length > 0);
  }, [points]);
  // A loop, not Math.max(...points): a long run has more points than a call may take arguments.
  const maxStep = useMemo(() => points.reduce((max, p) => Math.max(max, p.step), 1), [points]);

  return (
    <div className="charts">
      {groups.map((group) => (
        <LineChart key={group.title} title={group.title} series={group.series} maxStep={maxStep} />
      ))}
    </div>
  );
}

function niceRange(series: Series[]): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const s of series) {
    for (const segment of s.segments) {
      for (const point of segment) {
        min = Math.min(min, point.value);
        max = Math.max(max, point.value);
      }
    }
  }
  // Only non-finite points: an arbitrary scale, the markers on the edges carry the news.
  if (min > max) return [0, 1];
  if (min >= 0 && min < (max - min) * 0.5) min = 0;
  if (max === min) {
    max += Math.abs(max) * 0.1 || 1;
    min -= Math.abs(min) * 0.1;
  }
  return [min, max];
}

function formatTick(value: number): string {
  if (value === 0) return '0';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  if (Math.abs(value) < 0.01) return value.toExponential(0);
  return value.toFixed(2);
}

function stepsText(run: NonFiniteRun): string {
  return run.count === 1 ? `step ${run.first.step}` : `steps ${run.first.step} to ${run.last.step} (${run.count} points)`;
}

/** "1 of 8 points not finite: NaN", "3 of 8 points not finite: 2 NaN, 1 Infinity", or '' when every point is a number. */
function nonFiniteText(s: Series): string {
  if (s.nonFiniteCount === 0) return '';
  const kinds = s.nonFinite.size === 1 ? [...s.nonFinite.keys()].join('') : nonFiniteBreakdown(s.nonFinite);
  return `${s.nonFiniteCount.toLocaleString()} of ${plural(s.count, 'point')} not finite: ${kinds}`;
}

function LineChart({ title, series, maxStep }: { title: string; series: Series[]; maxStep: number }) {
  const [min, max] = niceRange(series);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (step: number) => PAD.left + (step / maxStep) * plotW;
  const y = (value: number) => PAD.top + (1 - (value - min) / (max - min)) * plotH;
  const yTicks = [0, 1, 2, 3, 4].map((i) => min + ((max - min) * i) / 4);
  const xTicks = [0, 1, 2, 3, 4].map((i) => Math.round((maxStep * i) / 4)).filter((v, i, all) => all.indexOf(v) === i);
  const summary = series
    .map((s) => {
      const latest = s.last ? formatMetricValue(s.last.value) : 'no value';
      const odd = nonFiniteText(s);
      return `${s.name} ${latest}${odd ? ` (${odd})` : ''}`;
    })
    .join(', ');
  const labelMarkers = series.reduce((sum, s) => sum + s.runs.length, 0) <= MAX_MARKER_LABELS;

  return (
    <figure className="chart" data-testid="metrics-chart">
      <figcaption className="chart-title">{title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${title} by step; latest: ${summary}`} className="chart-svg">
        {yTicks.map((tick) => (
          <g key={tick}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(tick)} y2={y(tick)} className="chart-grid" />
            <text x={PAD.left - 6} y={y(tick)} className="chart-tick" textAnchor="end" dominantBaseline="middle">
              {formatTick(tick)}
            </text>
          </g>
        ))}
        {xTicks.map((tick) => (
          <text key={tick} x={x(tick)} y={HEIGHT - 8} className="chart-tick" textAnchor="middle">
            {tick}
          </text>
        ))}
        <text x={WIDTH - PAD.right} y={HEIGHT - 8} className="chart-tick" textAnchor="end" dy="-12">
          step
        </text>
        {series.map((s) => (
          <g key={s.name}>
            {s.segments.map((segment) => (
              <path
                key={segment[0]?.step}
                d={segment.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}
                fill="none"
                stroke={s.color}
                strokeWidth={2}
                strokeLinejoin="round"
              />
            ))}
            {s.segments.map((segment) =>
              // A lone point between two non-finite ones has no line: its circle is all there is of it.
              s.count <= MAX_CIRCLES || segment.length === 1
                ? segment.map((p) => (
                    <circle key={p.step} cx={x(p.step)} cy={y(p.value)} r={3} fill={s.color}>
                      <title>{`${s.name} at step ${p.step} (epoch ${p.epoch}): ${formatMetricValue(p.value, 4)}`}</title>
                    </circle>
                  ))
                : null,
            )}
            {s.runs.map((run) => {
              const atBottom = run.kind === '-Infinity';
              const left = x(run.first.step);
              const width = x(run.last.step) - left;
              const edge = atBottom ? PAD.top + plotH : PAD.top;
              return (
                <g key={run.first.step} className="chart-nonfinite" data-testid="metric-non-finite" data-kind={run.kind}>
                  <title>{`${s.name}: ${run.kind} at ${stepsText(run)}`}</title>
                  {run.count === 1 ? (
                    <line x1={left} x2={left} y1={PAD.top} y2={PAD.top + plotH} className="chart-nonfinite-rule" />
                  ) : (
                    <rect x={left} y={PAD.top} width={width} height={plotH} className="chart-nonfinite-band" />
                  )}
                  <rect x={left - 4} y={edge - 4} width={width + 8} height={8} rx={4} className="chart-nonfinite-mark" />
                  {labelMarkers && (
                    // Beside the marker, on whichever side has room for the word.
                    <text
                      x={left + width + 7 + LABEL_ROOM > WIDTH ? left - 7 : left + width + 7}
                      textAnchor={left + width + 7 + LABEL_ROOM > WIDTH ? 'end' : 'start'}
                      y={edge}
                      dy={atBottom ? '-0.2em' : '0.9em'}
                      className="chart-nonfinite-label"
                    >
                      {NON_FINITE_SYMBOL[run.kind]}
                    </text>
                  )}
                </g>
              );
            })}
          </g>
        ))}
      </svg>
      <ul className="chart-legend">
        {series.map((s) => {
          const odd = nonFiniteText(s);
          return (
            <li key={s.name} data-testid="metric-legend">
              <span className="swatch" style={{ background: s.color }} aria-hidden="true" />
              <span>
                <bdi>{s.name}</bdi>
                {s.last && (
                  <span className={typeof s.last.value === 'number' ? 'muted' : 'text-fail'}> {formatMetricValue(s.last.value)}</span>
                )}
                {odd && (
                  <span className="chart-legend-nonfinite" title={s.runs.map((run) => `${run.kind} at ${stepsText(run)}`).join('; ')}>
                    {' '}
                    · {odd}
                  </span>
                )}
              </span>
            </li>
          );
        })}
      </ul>
    </figure>
  );
}
