// Renders the results as Markdown tables (readable in a terminal too) and bench/README.md.
import type { Results } from './run';
import { describeSpoolBench } from './spool';

function table(headers: string[], rows: Array<Array<string | number | null>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null ? '–' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

export function renderTable(r: Results): string {
  const parts: string[] = [];
  const m = r.machine;
  parts.push(`Machine: ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}, PostgreSQL ${m.postgres}, load average at start ${m.loadAverageAtStart.join(' ')}${r.quick ? '  (QUICK RUN: small sizes)' : ''}`);
  if (r.ingest.length > 0) {
    parts.push(
      '### Ingest (PostgreSQL; rows/s, batches of 100)\n\n' +
        table(
          ['pods', 'case', 'rows', 'stack rows/s', 'INSERT…VALUES rows/s', 'COPY rows/s', 'stack / INSERT', 'stack req p50 ms', 'stack req p99 ms'],
          r.ingest.map((x) => [x.pods, x.variant, x.rows, x.stackRowsPerSec, x.baselineRowsPerSec, x.copyRowsPerSec, x.ratio, x.stackRequestP50Ms, x.stackRequestP99Ms]),
        ),
    );
  }
  if (r.ingestDecomposition.length > 0) {
    parts.push(
      '### Ingest decomposition, 8 pods (raw pg, no HTTP): where the stack\'s time goes\n\n' +
        table(
          ['mode', 'rows/s', '÷ INSERT…VALUES', 'batch p50 ms', 'batch p99 ms'],
          r.ingestDecomposition.map((x) => [x.mode, x.rowsPerSec, x.ratioToInsert, x.requestP50Ms, x.requestP99Ms]),
        ),
    );
  }
  if (r.list.length > 0 && r.seed) {
    parts.push(
      `### predictions.list (limit 50; ${r.seed.rows.toLocaleString('en')} rows, ${r.seed.jobs} jobs, ${r.seed.users} users; big job ${r.seed.bigJobRows.toLocaleString('en')} rows)\n\n` +
        table(
          ['case', 'p50 ms', 'p95 ms', 'p99 ms', 'n', 'in-process service p50', 'raw page SQL p50 (baseline)', 'proposed SQL p50 (see below)', 'zod output p50'],
          [
            ...r.list.map((x) => [x.case, x.p50Ms, x.p95Ms, x.p99Ms, x.n, x.serviceP50Ms, x.baselineP50Ms, x.proposedSqlP50Ms, x.zodOutputP50Ms]),
            ...(r.diagnostics ? [['diagnostics.job (big job)', r.diagnostics.p50Ms, r.diagnostics.p95Ms, r.diagnostics.p99Ms, r.diagnostics.n, r.diagnostics.serviceP50Ms, null, null, null]] : []),
          ],
        ),
    );
  }
  if (r.explain.length > 0) {
    parts.push(
      '### EXPLAIN (ANALYZE, BUFFERS) of the page query\n\n' +
        table(
          ['case', 'query', 'index', 'Sort node', 'index serves order', 'rows removed by filter', 'shared buffers hit', 'exec ms'],
          r.explain.map((x) => [x.case, x.query, x.indexes.join(', '), x.sortNode ? 'yes' : 'no', x.indexServesOrder ? 'yes' : 'no', x.rowsRemovedByFilter, x.sharedHitBlocks, x.executionMs]),
        ),
    );
  }
  if (r.live.length > 0) {
    parts.push(
      '### Live (write acknowledged → row received over SSE; 10 rows per write, one write per 100 ms)\n\n' +
        table(
          ['subscribers', 'p50 ms', 'p99 ms', 'max ms', 'from send p50', 'from send p99', 'arrived before ack', 'delivered'],
          r.live.map((x) => [x.subscribers, x.p50Ms, x.p99Ms, x.maxMs, x.fromSendP50Ms, x.fromSendP99Ms, x.beforeAck, `${x.deliveries}/${x.expected}`]),
        ),
    );
  }
  if (r.spa) {
    parts.push(
      `### SPA (vite build; gzip level ${r.spa.gzipLevel})\n\n` +
        table(
          ['what', 'files', 'raw', 'gzip'],
          [
            ['initial JS (entry + modulepreload)', r.spa.initial.length, kib(r.spa.initialJsBytes), kib(r.spa.initialJsGzipBytes)],
            ['lazy JS chunks', r.spa.lazy.length, kib(r.spa.lazy.reduce((a, f) => a + f.bytes, 0)), kib(r.spa.lazyJsGzipBytes)],
            ['CSS', '', '', kib(r.spa.cssGzipBytes)],
          ],
        ),
    );
  }
  if (r.pglite) {
    parts.push(
      `### PGlite (embedded default)\n\n` +
        table(
          ['what', 'value'],
          [
            ...r.pglite.ingest.map((x) => [`ingest ${x.pods} pod(s), ${x.variant}`, `${x.stackRowsPerSec} rows/s (req p50 ${x.stackRequestP50Ms} ms, p99 ${x.stackRequestP99Ms} ms)`]),
            ...r.pglite.list.map((x) => [`list ${x.case} (${r.pglite?.seedRows.toLocaleString('en')} rows, one job)`, `p50 ${x.p50Ms} ms, p95 ${x.p95Ms} ms, p99 ${x.p99Ms} ms`]),
          ],
        ),
    );
  }
  if (r.spool) {
    parts.push(`### Trainer write-ahead spool (cost per trigger fire on the training loop)\n\n${describeSpoolBench(r.spool).map((line) => `- ${line}`).join('\n')}`);
  }
  if (r.targets.length > 0) {
    parts.push('### Targets\n\n' + table(['target', 'measured', 'met'], r.targets.map((t) => [t.target, t.value, t.met === null ? '?' : t.met ? 'yes' : 'NO'])));
  }
  return parts.join('\n\n');
}

export function renderReadme(r: Results, rendered: string): string {
  const plans = r.explain.map((x) => `#### ${x.case} (${x.query})\n\n\`\`\`\n${x.plan}\n\`\`\``).join('\n\n');
  return `# Benchmarks (issue 7)

\`npm run bench\` runs everything in one process tree (the real server in-process, a worker
thread generating load) and prints the tables below; it writes \`bench/results.json\` and this
file. A full run takes a few minutes.

## Running

\`\`\`sh
npm run bench                      # needs PostgreSQL; creates and drops the database below
BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/predictions_bench npm run bench
BENCH_QUICK=1 npm run bench        # small sizes, for working on the bench (writes bench/out/ only)
BENCH_ONLY=list,live npm run bench # some sections only (writes bench/out/ only)
BENCH_KEEP_DB=1 npm run bench      # keep the database, and reuse its seed on the next run
\`\`\`

\`BENCH_DATABASE_URL\` defaults to \`postgres://postgres@127.0.0.1:5432/predictions_bench\`; the role
must be allowed to create databases. The SPA is built into \`bench/out/spa\` (not \`dist/\`).

## What is measured

- **Ingest**: 1, 8 and 32 concurrent pods, each with its own job and job token, POSTing batches
  of 100 realistic rows (prompt ≈200 chars, ground truth ≈150, prediction ≈200) to
  \`pod.writePredictions\` over keep-alive HTTP. Baselines in the same run, into the same table:
  the same rows as one multi-row \`INSERT … VALUES … ON CONFLICT DO NOTHING\` per batch, and as one
  \`COPY … FROM STDIN\` (text format) per batch, through \`pg\` with the same pool size as the
  server (10). Each case writes a fixed number of rows into fresh jobs after a warm-up. *Replay*
  sends the 8-pod batches again (every row a duplicate); *gzip* sends them gzipped. The stack's
  statement also maintains \`prediction_epoch_stats\`; the baselines do not.
- **Listing**: a seed written with \`generate_series\` (not the API) of ${r.seed ? r.seed.rows.toLocaleString('en') : '1,000,000'} predictions over
  ${r.seed?.users ?? 10} users and ${r.seed?.jobs ?? 1000} jobs, one job holding ${r.seed ? r.seed.bigJobRows.toLocaleString('en') : '200,000'}; per-epoch totals computed in one
  \`INSERT … SELECT … GROUP BY\`, then \`VACUUM (ANALYZE)\`. Sequential GET requests to
  \`predictions.list\` on the big job (limit 50): page 1; page 1000, reached by walking the cursor
  once and then timing requests at that cursor; the epoch filter (first and 50th page); a search
  that matches${r.seed ? ` ${r.seed.searchMatches.toLocaleString('en')} rows ("${r.seed.searchTerm}")` : ''} and one that matches none. For each case, the same call in-process
  (the service function: every query, no HTTP) and the page query alone through raw \`pg\`, with
  the exact SQL Drizzle generates (the baseline). "row-compare SQL" is the proposed rewrite of the
  keyset condition as \`(step, sample_index) > ($1, $2)\`.
- **Live**: a pod writes 10 rows every 100 ms; each subscriber (1, then 50 on the same job, via
  the typed client and \`eventsource\`) records when each row arrives. Latency = arrival minus the
  moment the writer had read the HTTP response. Clocks are comparable (one process).
- **SPA**: \`vite build\` with the repo's config; the initial JavaScript is the entry script plus
  the \`modulepreload\` links of \`index.html\`, gzipped; lazy chunks are listed separately.
- **PGlite**: the embedded default, ingest with 1 and 8 pods and listing on a smaller one-job seed.

The machine is shared (other test suites and a headless browser may be running): figures move
by tens of percent between runs; compare ratios within one run rather than across runs.

## Latest results (${r.generatedAt}, ${r.durationSeconds} s)

${rendered}

## Query plans

${plans}
`;
}
