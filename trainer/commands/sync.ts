// `trainer sync --spool FILE [--finish]`: uploads a spool a run left behind (pod/sync.ts does
// the work); exit 0 when every row is stored (and, with --finish, the job completed), else 2.
import path from 'node:path';
import type { Cli } from '../cli';
import { UsageError } from '../cli';
import type { TrainerEnv } from '../env';
import { createPodApi } from '../pod/api';
import { PodConnection } from '../pod/connection';
import { createPodLogger, processConsole } from '../pod/logger';
import { syncSpoolFile } from '../pod/sync';
import { resyncCommand } from './messages';

export async function runSync(cli: Cli, env: TrainerEnv): Promise<number> {
  if (!cli.spool) throw new UsageError('sync needs --spool FILE');
  const missing = (['JOB_TOKEN', 'API_URL'] as const).filter((name) => !env.presence[name]);
  if (missing.length > 0 || !env.jobToken || !env.apiUrl) {
    processConsole.err(`[trainer] sync needs ${missing.join(' and ')} (the job's token and the server URL); nothing was sent.`);
    return 1;
  }
  const connection = new PodConnection(createPodApi({ apiUrl: env.apiUrl, token: env.jobToken }));
  const log = createPodLogger({ connection, verbose: cli.verbose, secrets: [env.jobToken] });
  log.shipper.start();
  for (const problem of env.problems) log.warn(problem);
  const result = await syncSpoolFile({
    file: path.resolve(cli.spool),
    connection,
    log,
    finish: cli.finish,
    timeoutMs: cli.drainTimeoutMs ?? 30_000,
    syncCommand: (file) => resyncCommand(file, env),
  });
  const stored = result.inserted + result.duplicates + result.replaced;
  const m = result.metrics;
  log.info(
    `SYNC SUMMARY rows=${result.rows} stored=${stored} (new=${result.inserted} already-stored=${result.duplicates} replaced=${result.replaced}) altered=${result.altered} rejected=${result.rejected} not-sent=${result.unsent} metrics=${m.points} metrics-stored=${m.stored} metrics-refused=${m.rejected} metrics-not-sent=${m.unsent}${cli.finish ? ` finished=${result.finished}` : ''}`,
  );
  if (!result.ok) log.error(`${result.rejected + result.unsent} row(s) of ${cli.spool} are not stored; see the lines above.`);
  await log.shipper.close(5_000);
  return result.ok && (!cli.finish || result.finished) ? 0 : 2;
}
