// The pod program: `npm run trainer` (or `node --import tsx trainer/main.ts`).
//
//   trainer [train] [--config FILE --dataset FILE] [--drain-timeout SECONDS] [--verbose]
//   trainer sync --spool FILE [--finish]
//
// train: with JOB_ID, JOB_TOKEN and API_URL (cloud mode) it fetches the job (config + dataset)
// from the server, trains, samples predictions on the job's trigger and ships them, with
// heartbeats, logs and metrics. Without them (local mode) it names what is missing, trains from
// --config/--dataset, keeps every prediction in the spool and prints the `sync` command that
// uploads them. Only JOB_ID missing: the token still names the job, so it connects and writes
// as usual, but reports mode "local" with JOB_ID:false so the job page names the variable.
//
// sync: uploads a spool file with JOB_TOKEN and API_URL; --finish then marks the job completed.
//
// Every prediction and metric point is written to the spool (pod/spool.ts) before it is sent
// and marked done when the server answers for it, so a run killed at any instant (kill -9
// included) loses nothing it had generated: the next run of the same job with the same
// TRAINER_SPOOL_DIR, or `sync`, uploads the rest. How each answer of the server is handled is
// written once, in pod/writer.ts. A refused token (token_revoked, token_expired) keeps the rows
// in the spool and prints how to rotate the token and sync; job_ended stops training (exit 3).
// The console may go away (the server that started us died): training and spooling go on.
//
// Exit codes: 0 done and every prediction stored; 2 training done but some predictions are not
// stored (spooled or rejected: the summary says which); 3 stopped because the job ended on the
// server (cancelled from the job page); 1 failure; 128+n stopped by signal n.
import { parseCli, USAGE, UsageError, type Cli } from './cli';
import { runSync } from './commands/sync';
import { runTrain } from './commands/train';
import { readTrainerEnv } from './env';
import { processConsole, survivePipeLoss } from './pod/logger';

async function main(): Promise<number> {
  let cli: Cli;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (error) {
    processConsole.err(`[trainer] ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 1;
  }
  if (cli.command === 'help') {
    processConsole.out(USAGE);
    return 0;
  }
  survivePipeLoss();
  const env = readTrainerEnv();
  try {
    return cli.command === 'sync' ? await runSync(cli, env) : await runTrain(cli, env);
  } catch (error) {
    processConsole.err(`[trainer] ${error instanceof Error ? error.message : String(error)}${error instanceof UsageError ? `\n\n${USAGE}` : ''}`);
    return 1;
  }
}

process.exitCode = await main();
// Timers are unref'd and requests have deadlines, but an open socket must not keep a finished pod alive.
setTimeout(() => process.exit(), 1_000).unref();
