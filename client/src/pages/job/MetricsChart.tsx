// Training curves as small SVG line charts: losses in one, evaluation scores in the other.
// Loaded lazily (its own chunk), so the first page load does not pay for it.
import { useMemo } from 'react';

export interface MetricPoint {
  step: number;
  epoch: number;
  name: string;
  value: number;
}

const COLORS = ['#4f46e5', '#0891b2', '#d97706', '#db2777', '#16a34a', '#7c3aed'];
const WIDTH = 560;
const HEIGHT = 200;
const PAD = { top: 12, right: 16, bottom: 28, left: 48 };

interface Series {
  name: string;
  color: string;
  points: MetricPoint[];
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
      .map(([name, list], index) => ({
        name,
        color: COLORS[index % COLORS.length] ?? '#4f46e5',
        points: [...list].sort((a, b) => a.step - b.step),
      }));
    const isLoss = (s: Series) => s.name.includes('loss');
    const isSchedule = (s: Series) => /learning_rate|(^|\/)lr$/.test(s.name);
    return [
      { title: 'Loss', series: all.filter(isLoss) },
      { title: 'Scores', series: all.filter((s) => !isLoss(s) && !isSchedule(s)) },
      { title: 'Learning rate', series: all.filter(isSchedule) },
    ].filter((group) => group.series.length > 0);
  }, [points]);
  const maxStep = Math.max(1, ...points.map((p) => p.step));

  return (
    <div className="charts">
      {groups.map((group) => (
        <LineChart key={group.title} title={group.title} series={group.series} maxStep={maxStep} />
      ))}
    </div>
  );
}

function niceRange(values: number[]): [number, number] {
  let min = Math.min(...values);
  let max = Math.max(...values);
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
  return value.toFixed(2);
}

function LineChart({ title, series, maxStep }: { title: string; series: Series[]; maxStep: number }) {
  const values = series.flatMap((s) => s.points.map((p) => p.value));
  const [min, max] = niceRange(values);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (step: number) => PAD.left + (step / maxStep) * plotW;
  const y = (value: number) => PAD.top + (1 - (value - min) / (max - min)) * plotH;
  const yTicks = [0, 1, 2, 3, 4].map((i) => min + ((max - min) * i) / 4);
  const xTicks = [0, 1, 2, 3, 4].map((i) => Math.round((maxStep * i) / 4)).filter((v, i, all) => all.indexOf(v) === i);
  const latest = series.map((s) => ({ name: s.name, color: s.color, last: s.points.at(-1) }));
  const summary = latest.map((s) => `${s.name} ${s.last ? s.last.value.toFixed(3) : 'no value'}`).join(', ');

  return (
    <figure className="chart">
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
            <path
              d={s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}
              fill="none"
              stroke={s.color}
              strokeWidth={2}
              strokeLinejoin="round"
            />
            {s.points.length <= 60 &&
              s.points.map((p, i) => (
                <circle key={i} cx={x(p.step)} cy={y(p.value)} r={3} fill={s.color}>
                  <title>{`${s.name} at step ${p.step} (epoch ${p.epoch}): ${p.value.toFixed(4)}`}</title>
                </circle>
              ))}
          </g>
        ))}
      </svg>
      <ul className="chart-legend">
        {latest.map((s) => (
          <li key={s.name}>
            <span className="swatch" style={{ background: s.color }} aria-hidden="true" />
            {s.name}
            {s.last && <span className="muted"> {s.last.value.toFixed(3)}</span>}
          </li>
        ))}
      </ul>
    </figure>
  );
}
