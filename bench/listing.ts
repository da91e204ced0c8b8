// Listing: predictions.list over HTTP on the seeded big job (page 1, page 1000 reached by
// cursor, the epoch filter, searches) and diagnostics.job; for each, the same work in-process
// (the service function, no HTTP) and the page query alone through raw `pg` (the baseline).
// EXPLAIN (ANALYZE, BUFFERS) shows whether an index serves the order.
import pg from 'pg';
import type { AppDeps } from '../server/app-deps';
import { listPredictions, type ListInput } from '../server/predictions/predictions.service';
import { diagnoseJob } from '../server/diagnostics/diagnostics.service';
import { listPredictionsPage, searchMatchKeys, SEARCH_COUNT_CAP } from '../db/queries/predictions';
import { listPredictionsOutput } from '#contract/predictions.schemas';
import { createHttpClient, round, summarize, timeSequential, trpcQueryPath, VOCABULARY } from './common';
import type { SeededListing } from './seed';

export interface ListRow {
  case: string;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  n: number;
  /** The same listPredictions call in-process: every query, no HTTP, no tRPC. */
  serviceP50Ms: number;
  /** The page query alone, same SQL and parameters, through raw pg. */
  baselineP50Ms: number;
  /** A proposed rewrite of the page query (see README), where there is one. */
  proposedSqlP50Ms: number | null;
  /** listPredictionsOutput.parse on the page alone. */
  zodOutputP50Ms: number;
  totalCount: number;
}

export interface ExplainRow {
  case: string;
  query: 'current' | 'proposed';
  indexes: string[];
  nodeTypes: string[];
  sortNode: boolean;
  indexServesOrder: boolean;
  rowsRemovedByFilter: number;
  sharedHitBlocks: number;
  sharedReadBlocks: number;
  executionMs: number;
  plan: string;
}

export interface ListingResults {
  list: ListRow[];
  diagnostics: { p50Ms: number; p95Ms: number; p99Ms: number; n: number; serviceP50Ms: number };
  explain: ExplainRow[];
  seed: {
    rows: number;
    jobs: number;
    users: number;
    bigJobRows: number;
    seconds: number;
    reused: boolean;
    searchTerm: string;
    searchMatches: number;
    rareTerm?: string;
    rareMatches?: number;
  };
}

const LIMIT = 50;

interface ListResponse {
  result: { data: { items: Array<{ step: number; sampleIndex: number }>; nextCursor: string | null; totalCount: number; totalCountIsLowerBound: boolean } };
}

/** A search term of middling frequency: a long, mid-ranked word of the generated vocabulary. */
function searchTerm(): string {
  return VOCABULARY.slice(40).find((w) => w.length >= 8) ?? 'question';
}

/** Rows of a job matching a term (as the API matches it), counted up to `cap` + 1. */
async function countMatches(client: pg.Client, jobId: string, term: string, cap: number): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `select count(*)::int as n from (select 1 from training_predictions
     where job_id = $1 and (prompt ilike $2 or ground_truth ilike $2 or prediction ilike $2) limit $3) t`,
    [jobId, `%${term}%`, cap + 1],
  );
  return rows[0]?.n ?? 0;
}

/**
 * A rare word: going from the rare end of the vocabulary, the first word of 7 letters or more
 * that matches more rows of the job than one page holds (so the page is not the whole answer)
 * and at most a tenth of the count cap.
 */
async function rareTerm(client: pg.Client, jobId: string): Promise<{ term: string; matches: number }> {
  for (const term of [...VOCABULARY].reverse()) {
    if (term.length < 7) continue;
    const matches = await countMatches(client, jobId, term, SEARCH_COUNT_CAP);
    if (matches > LIMIT && matches <= SEARCH_COUNT_CAP / 10) return { term, matches };
  }
  throw new Error('no rare word in the vocabulary matches the big job');
}

export async function runListing(
  deps: AppDeps,
  options: { url: string; databaseUrl: string; seeded: SeededListing; quick: boolean; log: (line: string) => void },
): Promise<ListingResults> {
  const { seeded, log } = options;
  const big = seeded.bigJob;
  const http = createHttpClient(options.url, 1);
  const raw = new pg.Client({ connectionString: options.databaseUrl });
  await raw.connect();
  const timing = options.quick
    ? { warmup: 3, iterations: 40, minIterations: 10, budgetMs: 2_000 }
    : { warmup: 15, iterations: 400, minIterations: 30, budgetMs: 6_000 };
  try {
    const list = async (input: Record<string, unknown>): Promise<ListResponse['result']['data']> => {
      const res = await http.get(trpcQueryPath('predictions.list', input), big.token);
      if (res.status !== 200) throw new Error(`predictions.list ${JSON.stringify(input)}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
      return (JSON.parse(res.body) as ListResponse).result.data;
    };
    /**
     * The cursor that starts the page `page` (1-based) of `LIMIT` rows, found by walking the API with
     * big pages. The walk is also the keyset check at size (it moved here from the test suite): every
     * row comes once, in (step, sampleIndex) order, or the bench stops.
     */
    const cursorForPage = async (filters: Record<string, unknown>, page: number) => {
      let remaining = (page - 1) * LIMIT;
      let cursor: string | null = null;
      let last: { step: number; sampleIndex: number } | undefined;
      while (remaining > 0) {
        const take = Math.min(200, remaining);
        const data = await list({ jobId: big.jobId, ...filters, limit: take, ...(cursor ? { cursor } : {}) });
        for (const item of data.items) {
          if (last && !(last.step < item.step || (last.step === item.step && last.sampleIndex < item.sampleIndex))) {
            throw new Error(`the page walk went back or repeated: (${last.step}, ${last.sampleIndex}) then (${item.step}, ${item.sampleIndex})`);
          }
          last = item;
        }
        cursor = data.nextCursor;
        remaining -= data.items.length;
        if (!cursor) throw new Error(`the job has fewer than ${page} pages`);
      }
      return { cursor, last };
    };

    // A middle epoch of the big job (20 of 40 at full size).
    const EPOCH = Math.max(1, Math.floor(big.rows / (big.samples * big.firesPerEpoch) / 2));
    const term = searchTerm();
    const { rows: matchRows } = await raw.query<{ n: number }>(
      `select count(*)::int as n from training_predictions where job_id = $1 and (prompt ilike $2 or ground_truth ilike $2 or prediction ilike $2)`,
      [big.jobId, `%${term}%`],
    );
    const searchMatches = matchRows[0]?.n ?? 0;
    const rare = await rareTerm(raw, big.jobId);
    const deepPage = options.quick ? 200 : 1000;
    const deep = await cursorForPage({}, deepPage);
    const epochDeep = await cursorForPage({ epoch: EPOCH }, 50);
    log(`  cursors collected (page ${deepPage} starts after step ${deep.last?.step}, sample ${deep.last?.sampleIndex}); search "${term}" matches ${searchMatches} rows, rare "${rare.term}" ${rare.matches}`);

    const cases: Array<{ name: string; input: Omit<ListInput, 'limit'>; after?: { step: number; sampleIndex: number } | undefined }> = [
      { name: 'page 1', input: { jobId: big.jobId } },
      { name: `page ${deepPage}`, input: { jobId: big.jobId, cursor: deep.cursor }, after: deep.last },
      { name: `epoch ${EPOCH}, page 1`, input: { jobId: big.jobId, epoch: EPOCH } },
      { name: `epoch ${EPOCH}, page 50`, input: { jobId: big.jobId, epoch: EPOCH, cursor: epochDeep.cursor }, after: epochDeep.last },
      { name: `search, broad word (${searchMatches} matches)`, input: { jobId: big.jobId, search: term } },
      { name: `search, rare word (${rare.matches} matches)`, input: { jobId: big.jobId, search: rare.term } },
      { name: 'search, no match', input: { jobId: big.jobId, search: 'zzqxvk' } },
    ];

    const rows: ListRow[] = [];
    const explain: ExplainRow[] = [];
    for (const c of cases) {
      const input = { ...c.input, limit: LIMIT };
      const first = await list(input);
      const caseTiming = timing;
      const httpMs = await timeSequential(() => list(input), caseTiming);
      const serviceMs = await timeSequential(() => listPredictions(deps, big.userId, input), caseTiming);
      const filters = { jobId: big.jobId, userId: big.userId, epoch: c.input.epoch, search: c.input.search };
      const orderedPage = listPredictionsPage(deps.database.db, { ...filters, limit: LIMIT + 1, ...(c.after ? { after: c.after } : {}) }).toSQL();
      // A search's first query is the capped pass over its matches' keys (searchMatchKeys): that is its baseline.
      const pageQuery = c.input.search ? searchMatchKeys(deps.database.db, { ...filters, limit: SEARCH_COUNT_CAP + 1 }).toSQL() : orderedPage;
      const baselineMs = await timeSequential(() => raw.query(pageQuery.sql, pageQuery.params), caseTiming);
      // The procedure's output validation alone (zod over the page), as tRPC runs it on every response.
      const output = await listPredictions(deps, big.userId, input);
      const zodMs = await timeSequential(async () => listPredictionsOutput.parse(output), timing);
      let proposedP50: number | null = null;
      if (c.after) {
        const proposed = proposedPageSql(big.jobId, big.userId, c.input.epoch, c.after);
        proposedP50 = summarize(await timeSequential(() => raw.query(proposed.sql, proposed.params), timing)).p50;
        explain.push(await explainQuery(raw, c.name, 'proposed', proposed.sql, proposed.params));
      }
      if (c.input.search) {
        // The keys pass, and the ordered page that follows it only past the count cap.
        explain.push(await explainQuery(raw, `${c.name}: match keys`, 'current', pageQuery.sql, pageQuery.params));
        if (first.totalCountIsLowerBound) explain.push(await explainQuery(raw, `${c.name}: ordered page`, 'current', orderedPage.sql, orderedPage.params));
      } else if (c.after || c.input.epoch !== undefined) explain.push(await explainQuery(raw, c.name, 'current', pageQuery.sql, pageQuery.params));
      const s = summarize(httpMs);
      rows.push({
        case: c.name,
        p50Ms: s.p50,
        p95Ms: s.p95,
        p99Ms: s.p99,
        n: s.n,
        serviceP50Ms: summarize(serviceMs).p50,
        baselineP50Ms: summarize(baselineMs).p50,
        proposedSqlP50Ms: proposedP50,
        zodOutputP50Ms: summarize(zodMs).p50,
        totalCount: first.totalCount,
      });
      log(`  ${c.name}: p50 ${s.p50} ms, p99 ${s.p99} ms (n=${s.n}); service ${summarize(serviceMs).p50} ms; raw page query ${summarize(baselineMs).p50} ms${proposedP50 !== null ? `; proposed ${proposedP50} ms` : ''}`);
    }

    const diagPath = trpcQueryPath('diagnostics.job', { jobId: big.jobId });
    const diagFirst = await http.get(diagPath, big.token);
    if (diagFirst.status !== 200) throw new Error(`diagnostics.job: HTTP ${diagFirst.status} ${diagFirst.body.slice(0, 300)}`);
    const diag = summarize(await timeSequential(() => http.get(diagPath, big.token), timing));
    const diagService = summarize(await timeSequential(() => diagnoseJob(deps, big.userId, big.jobId), timing));
    log(`  diagnostics.job: p50 ${diag.p50} ms, p99 ${diag.p99} ms; service ${diagService.p50} ms`);

    return {
      list: rows,
      diagnostics: { p50Ms: diag.p50, p95Ms: diag.p95, p99Ms: diag.p99, n: diag.n, serviceP50Ms: diagService.p50 },
      explain,
      seed: {
        rows: seeded.total,
        jobs: seeded.jobs,
        users: seeded.users.length,
        bigJobRows: big.rows,
        seconds: seeded.seconds,
        reused: seeded.reused,
        searchTerm: term,
        searchMatches,
        rareTerm: rare.term,
        rareMatches: rare.matches,
      },
    };
  } finally {
    http.close();
    await raw.end();
  }
}

/**
 * The page query with the keyset as a row comparison, `(step, sample_index) > ($s, $i)`, which
 * PostgreSQL turns into an index bound; the current `step > $s or (step = $s and …)` is only
 * a filter, so every row before the cursor is read and discarded.
 */
function proposedPageSql(jobId: string, userId: string, epoch: number | undefined, after: { step: number; sampleIndex: number }) {
  const columns = 'id, epoch, step, sample_index, trigger, prompt, ground_truth, prediction, created_at';
  const epochClause = epoch !== undefined ? 'and epoch = $5' : '';
  const order = epoch !== undefined ? 'epoch, step, sample_index' : 'step, sample_index';
  return {
    sql: `select ${columns} from training_predictions
          where job_id = $1 and user_id = $2 ${epochClause} and (step, sample_index) > ($3, $4)
          order by ${order} limit ${LIMIT + 1}`,
    params: [jobId, userId, after.step, after.sampleIndex, ...(epoch !== undefined ? [epoch] : [])],
  };
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

async function explainQuery(client: pg.Client, name: string, query: 'current' | 'proposed', sql: string, params: unknown[]): Promise<ExplainRow> {
  // Run once first so the buffers figures describe a warm cache, like the timed runs.
  await client.query(sql, params);
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }> }>(
    `explain (analyze, buffers, format json) ${sql}`,
    params,
  );
  const { rows: textRows } = await client.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off) ${sql}`, params);
  const root = rows[0]?.['QUERY PLAN'][0];
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode | undefined) => {
    if (!node) return;
    nodes.push(node);
    node.Plans?.forEach(walk);
  };
  walk(root?.Plan);
  const indexes = [...new Set(nodes.flatMap((n) => (n['Index Name'] ? [n['Index Name']] : [])))];
  const sortNode = nodes.some((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort');
  return {
    case: name,
    query,
    indexes,
    nodeTypes: nodes.map((n) => n['Node Type']),
    sortNode,
    indexServesOrder: !sortNode && indexes.length > 0,
    rowsRemovedByFilter: nodes.reduce((sum, n) => sum + (n['Rows Removed by Filter'] ?? 0), 0),
    sharedHitBlocks: root?.Plan['Shared Hit Blocks'] ?? 0,
    sharedReadBlocks: root?.Plan['Shared Read Blocks'] ?? 0,
    executionMs: round(root?.['Execution Time'] ?? NaN, 3),
    plan: textRows.map((r) => r['QUERY PLAN']).join('\n'),
  };
}
