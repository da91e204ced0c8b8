// Renders the results as Markdown tables (readable in a terminal too) and bench/README.md.
import type { Results } from './results';
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
  if (r.loadDuring && r.loadDuring.length > 0) {
    parts.push(`Load average (1 min, sampled every 5 s) during the run: ${r.loadDuring.map((x) => `${x.section} mean ${x.mean}, max ${x.max}`).join('; ')}`);
  }
  if (r.ingest.length > 0) {
    parts.push(
      '### Ingest (PostgreSQL; rows/s, batches of 100)\n\n' +
        table(
          ['pods', 'case', 'rows', 'stack rows/s', 'INSERT…VALUES rows/s', 'COPY rows/s', 'stack / INSERT', 'stack req p50 ms', 'stack req p99 ms'],
          r.ingest.map((x) => [x.pods, x.variant, x.rows, x.stackRowsPerSec, x.baselineRowsPerSec, x.copyRowsPerSec, x.ratio, x.stackRequestP50Ms, x.stackRequestP99Ms]),
        ),
    );
  }
  const withCpu = r.ingest.filter((x) => x.cpu);
  if (withCpu.length > 0) {
    const sum = (a: number | null | undefined, b: number | null | undefined) => (a === null || a === undefined || b === null || b === undefined ? null : Math.round((a + b) * 10) / 10);
    parts.push(
      '### CPU per 1 000 stored rows (ms of user + system CPU, same run; /proc)\n\n' +
        'app = the process that turns rows into SQL: the server for the stack, the load generator\'s `pg` client for INSERT…VALUES. ' +
        'PostgreSQL = its client backends for this database. The load generator\'s HTTP client is not counted in the stack\'s app figure.\n\n' +
        table(
          ['pods', 'case', 'stack: server', 'stack: PostgreSQL', 'stack: total', 'INSERT: app (pg client)', 'INSERT: PostgreSQL', 'INSERT: total', 'server ÷ INSERT total', 'load client (HTTP)'],
          withCpu.map((x) => {
            const stackTotal = sum(x.cpu?.stack.app, x.cpu?.stack.postgres);
            const insertTotal = sum(x.cpu?.insert?.app, x.cpu?.insert?.postgres);
            return [
              x.pods,
              x.variant,
              x.cpu?.stack.app ?? null,
              x.cpu?.stack.postgres ?? null,
              stackTotal,
              x.cpu?.insert?.app ?? null,
              x.cpu?.insert?.postgres ?? null,
              insertTotal,
              x.cpu?.stack.app !== null && x.cpu?.stack.app !== undefined && insertTotal ? (x.cpu.stack.app / insertTotal).toFixed(2) : null,
              x.cpu?.stack.client ?? null,
            ];
          }),
        ),
    );
  }
  if (r.trigram) {
    const t = r.trigram;
    parts.push(
      `### Write cost of the search's trigram indexes (8 pods, back to back on the ${t.tableRows.toLocaleString('en')}-row table)\n\n` +
        `Indexes: ${(t.indexBytes / 1024 ** 2).toFixed(0)} MiB; rebuilt on ${t.tableRows.toLocaleString('en')} rows in ${t.rebuildSeconds} s (what migration 0004 costs an existing database of this size). ` +
        'CPU in ms per 1 000 rows; PostgreSQL includes flushing the GIN pending lists the case filled.\n\n' +
        table(
          ['indexes', 'mode', 'rows', 'rows/s', 'req p50 ms', 'req p99 ms', 'app CPU', 'PostgreSQL CPU', 'of which pending-list flush'],
          t.rows.map((x) => [x.indexes, x.mode, x.rows, x.rowsPerSec, x.requestP50Ms, x.requestP99Ms, x.cpu.app, x.cpu.postgres, x.pendingFlushPer1k]),
        ),
    );
  }
  if (r.writePaths && r.writePaths.length > 0) {
    parts.push(
      '### Server CPU per 1 000 stored rows, write path before and after issue 19 (same run, alternated A B B A)\n\n' +
        'before: the advisory lock and the live notification as statements of their own (job lookup, BEGIN, lock, guard, insert, COMMIT, NOTIFY: 7 round trips per batch); ' +
        'after: both inside the insert statement (5). CPU in ms of user + system per 1 000 stored rows.\n\n' +
        table(
          ['pods', 'path', 'rows', 'rows/s', 'req p50 ms', 'req p99 ms', 'server CPU', 'PostgreSQL CPU'],
          r.writePaths.map((x) => [x.pods, x.path, x.rows, x.rowsPerSec, x.requestP50Ms, x.requestP99Ms, x.serverCpu, x.postgresCpu]),
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
            ...r.pglite.ingest.map((x) => [
              `ingest ${x.pods} pod(s), ${x.variant}`,
              `${x.stackRowsPerSec} rows/s (req p50 ${x.stackRequestP50Ms} ms, p99 ${x.stackRequestP99Ms} ms)${x.cpu ? `; server + PGlite CPU ${x.cpu.stack.app} ms per 1 000 rows` : ''}`,
            ]),
            ...r.pglite.list.map((x) => [`${x.case.startsWith('compare') ? '' : 'list '}${x.case} (${r.pglite?.seedRows.toLocaleString('en')} rows, one job)`, `p50 ${x.p50Ms} ms, p95 ${x.p95Ms} ms, p99 ${x.p99Ms} ms`]),
            ...(r.pglite.trigramBuildSeconds !== undefined ? [[`trigram indexes built on ${r.pglite.seedRows.toLocaleString('en')} rows`, `${r.pglite.trigramBuildSeconds} s`]] : []),
            ...(r.pglite.trigramWrite ?? []).map((x) => [`ingest 8 pods, ${x.indexes} (back to back)`, `${x.rowsPerSec} rows/s (req p99 ${x.requestP99Ms} ms); server + PGlite CPU ${x.cpuPer1k} ms per 1 000 rows`]),
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
  return `# Benchmarks (issues 7 and 19)

\`npm run bench\` runs everything in one process tree (the real server in-process, the load
generator in a child process so that the bench process's CPU time is the server's alone) and
prints the tables below; it writes \`bench/results.json\` and this file. A full run takes 10 to
20 minutes on the shared two-core machine (more when the trigram indexes must be built).

## Running

\`\`\`sh
npm run bench                      # needs PostgreSQL; creates and drops the database below
BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/predictions_bench npm run bench
BENCH_QUICK=1 npm run bench        # small sizes, for working on the bench (writes bench/out/ only)
BENCH_ONLY=list,live npm run bench # some sections only (writes bench/out/ only)
BENCH_KEEP_DB=1 npm run bench      # keep the database, and reuse its seed on the next run
npx tsx bench/profile-ingest.ts    # a CPU profile of the server while 8 pods write
npx tsx bench/profile-ingest.ts 48000 --before19  # the same on the write path before issue 19
npx tsx bench/trigram-variants.ts  # write cost of the index designs of docs/decisions/0007
\`\`\`

Sections (\`BENCH_ONLY\`): \`list,ingest,live,trigram,pglite,spool,spa\`. \`BENCH_DATABASE_URL\` defaults to
\`postgres://postgres@127.0.0.1:5432/predictions_bench\`; the role must be allowed to create databases.
The seed (1 M rows) is written with the trigram indexes dropped and builds them at the end; a
kept database (\`BENCH_KEEP_DB=1\`) is reused as it is, so its seed costs nothing the next time.
Use a database of your own: the run drops and rebuilds indexes in it. The SPA is built into
\`bench/out/spa\` (not \`dist/\`).

## What is measured

- **Ingest**: 1, 8 and 32 concurrent pods, each with its own job and job token, POSTing batches
  of 100 realistic rows (prompt ≈200 chars, ground truth ≈150, prediction ≈200) to
  \`pod.writePredictions\` over keep-alive HTTP. Baselines in the same run, into the same table:
  the same rows as one multi-row \`INSERT … VALUES … ON CONFLICT DO NOTHING\` per batch, and as one
  \`COPY … FROM STDIN\` (text format) per batch, through \`pg\` with the same pool size as the
  server (10). Each case writes a fixed number of rows into fresh jobs after a warm-up. *Replay*
  sends the 8-pod batches again (every row a duplicate); *gzip* sends them gzipped. The stack's
  statement also maintains \`prediction_epoch_stats\`; the baselines do not. Every case writes into
  the 1 M-row table, trigram indexes included.
- **CPU per 1 000 stored rows** (issue 19): user + system CPU read from \`/proc/<pid>/stat\` before
  and after each case (bench/cpu.ts). *Server* is the bench process (the server, with the load
  generator in its own process); *PostgreSQL* is the client backends of the bench database (the
  server's pool and its LISTEN connection for the stack; for the baseline, the load generator's
  own pool, whose backends it reads itself while they are still open). For INSERT…VALUES the
  *app* figure is the load generator's \`pg\` client, the part that plays the server's role.
  Background processes (WAL writer, checkpointer, autovacuum) are not counted.
- **Write path before/after** (issue 19, same run): 1 and 8 pods through the stack on the write
  path as it was (the job's advisory lock and the live notification each a statement of its own:
  job lookup, BEGIN, lock, guard, insert, COMMIT, NOTIFY = 7 round trips per batch) and as it is
  (both inside the insert statement, the notification delivered at its commit: 5), alternated
  before, after, after, before on fresh jobs so that the machine's load falls on both; the old
  path is chosen by a switch only the bench sets (\`writePathForBench\` in server/pod/pod.service.ts).
- **Trigram write cost**: 8 pods through the stack and the INSERT baseline with the search's
  trigram indexes, then with them dropped, back to back; the GIN pending lists are flushed
  (\`gin_clean_pending_list\`) after each case and that CPU counted in it. Then the indexes are
  built again, timed: what migration 0004 costs an existing database of this size.
- **Listing**: a seed written with \`generate_series\` (not the API) of ${r.seed ? r.seed.rows.toLocaleString('en') : '1,000,000'} predictions over
  ${r.seed?.users ?? 10} users and ${r.seed?.jobs ?? 1000} jobs, one job holding ${r.seed ? r.seed.bigJobRows.toLocaleString('en') : '200,000'}; per-epoch totals computed in one
  \`INSERT … SELECT … GROUP BY\`, then \`VACUUM (ANALYZE)\`. Sequential GET requests to
  \`predictions.list\` on the big job (limit 50): page 1; page 1000, reached by walking the cursor
  once and then timing requests at that cursor; the epoch filter (first and 50th page); three
  searches: a broad word${r.seed ? ` ("${r.seed.searchTerm}", ${r.seed.searchMatches.toLocaleString('en')} rows)` : ''}, a rare word${r.seed?.rareTerm ? ` ("${r.seed.rareTerm}", ${r.seed.rareMatches ?? '?'} rows: from the rare end of the vocabulary, the first of 7+ letters matching more than a page and at most 100 rows)` : ''} and one that matches
  nothing. For each case, the same call in-process (the service function: every query, no HTTP)
  and the first query alone through raw \`pg\` with the exact SQL Drizzle generates (for a search,
  the capped pass over its matches' keys). The texts come from a 3 000-word vocabulary built
  from 20 syllables, so trigrams are far commoner than in natural text: a hard case for a
  trigram index (many candidates to recheck).
- **Live**: a pod writes 10 rows every 100 ms; each subscriber (1, then 50 on the same job, via
  the typed client and \`eventsource\`) records when each row arrives. Latency = arrival minus the
  moment the writer had read the HTTP response (both clocks are the load generator's).
- **SPA**: \`vite build\` with the repo's config; the initial JavaScript is the entry script plus
  the \`modulepreload\` links of \`index.html\`, gzipped; lazy chunks are listed separately.
- **PGlite** (the embedded default of \`npm start\`): ingest with 1 and 8 pods (CPU: PGlite runs in
  the server process), the 8-pod case with and without the trigram indexes, then a 200 000-row
  job: list, the three searches and compare.

The machine is shared (other agents' test suites run on the same two cores): figures move by tens
of percent between runs, and p99s with the load; compare within one run rather than across runs.
The load average at the start of the run is printed with the machine.

## Latest results (${r.generatedAt}, ${r.durationSeconds} s)

${rendered}

## Query plans

${plans}
`;
}
