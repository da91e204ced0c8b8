// Where the server's CPU goes while pods write: starts the server on a fresh PostgreSQL database,
// runs 8 pods through pod.writePredictions (the load generator in a child process) and records a
// V8 CPU profile of the server's main thread over exactly that window, plus the process's CPU
// time. Open the .cpuprofile in Chrome DevTools or VS Code; the summary printed here groups
// self time by package and by function.
//
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/predictions_profile npx tsx bench/profile-ingest.ts [rows] [--before19]
//
// --before19 profiles the write path as it was before issue 19 (advisory lock and notification
// as statements of their own), for a before/after of the profile itself.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../server/env';
import { startServer } from '../server/server';
import { createDataset, createManualJob, createUser } from '../server/test-support/factories';
import { writePathForBench } from '../server/pod/pod.service';
import { ownCpuMs } from './cpu';
import { startLoadWorker } from './load-client';
import type { PodTarget } from './load-worker';

const databaseUrl = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/predictions_profile';
const rows = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 64_000);
writePathForBench.before19 = process.argv.includes('--before19');
const PODS = 8;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

async function recreate(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  await client.query(`create database ${pg.escapeIdentifier(name)}`);
  await client.end();
}

/** Self time per key, in ms, largest first. */
function selfTime(profile: Profile, key: (node: ProfileNode) => string): Array<[string, number]> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const k = key(node);
    totals.set(k, (totals.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

function packageOf(node: ProfileNode): string {
  const url = node.callFrame.url;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1]) return nm[1];
  const own = /\/(server|db|bench)\/([^/]+)/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  return url ? url.replace(/^node:/, 'node:').split('/').slice(0, 2).join('/') : node.callFrame.functionName || '(native)';
}

async function main(): Promise<void> {
  await recreate(databaseUrl);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'predictions-profile-'));
  const server = await startServer(
    loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: '10', SESSION_SECRET: randomBytes(48).toString('base64'), JOB_TOKEN_SECRET: randomBytes(48).toString('base64') }),
  );
  const load = startLoadWorker();
  const session = new Session();
  session.connect();
  try {
    const user = await createUser(server.deps);
    const dataset = await createDataset(server.deps, user.id, { count: 40 });
    const makePods = async (seedBase: number) => {
      const pods: PodTarget[] = [];
      for (let i = 0; i < PODS; i++) {
        const job = await createManualJob(server.deps, user.id, { datasetId: dataset.id, name: `profile pod ${i}` });
        pods.push({ jobId: job.jobId, userId: user.id, token: job.token, seed: seedBase + i });
      }
      return pods;
    };
    const common = { url: server.url, databaseUrl, batchSize: 100, poolSize: 10, gzip: false };
    await load.ingest({ ...common, mode: 'stack', pods: await makePods(1), batchesPerPod: 20 });
    const pods = await makePods(100);
    const batchesPerPod = Math.max(1, Math.round(rows / (PODS * 100)));
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    const cpuStart = ownCpuMs();
    const result = await load.ingest({ ...common, mode: 'stack', pods, batchesPerPod });
    const cpuMs = ownCpuMs() - cpuStart;
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
    const file = path.join(tmpdir(), `ingest-${Date.now()}.cpuprofile`);
    await writeFile(file, JSON.stringify(profile));
    const sampled = profile.timeDeltas.reduce((a, b) => a + b, 0) / 1000;
    const busy = selfTime(profile, packageOf).filter(([k]) => k !== '(idle)');
    const busyMs = busy.reduce((a, [, ms]) => a + ms, 0);
    console.log(`write path: ${writePathForBench.before19 ? 'before issue 19 (7 round trips per batch)' : 'current (5 round trips per batch)'}`);
    console.log(`${result.rows} rows in ${(result.ms / 1000).toFixed(1)} s (${result.errors.length} errors); server process CPU ${cpuMs.toFixed(0)} ms = ${((cpuMs / result.rows) * 1000).toFixed(1)} ms per 1 000 rows`);
    console.log(`main thread busy ${busyMs.toFixed(0)} ms of ${sampled.toFixed(0)} ms sampled; profile: ${file}`);
    console.log('\nself time by package:');
    for (const [k, ms] of busy.slice(0, 25)) console.log(`  ${ms.toFixed(0).padStart(6)} ms ${((100 * ms) / busyMs).toFixed(1).padStart(5)}%  ${k}`);
    console.log('\nself time by function:');
    const fn = selfTime(profile, (n) => `${n.callFrame.functionName || '(anonymous)'}  ${packageOf(n)}:${n.callFrame.lineNumber}`).filter(([k]) => !k.startsWith('(idle)'));
    for (const [k, ms] of fn.slice(0, 30)) console.log(`  ${ms.toFixed(0).padStart(6)} ms ${((100 * ms) / busyMs).toFixed(1).padStart(5)}%  ${k}`);
  } finally {
    session.disconnect();
    await load.close();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
