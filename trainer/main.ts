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
import { parseArgs } from 'node:util';
import path from 'node:path';
import type { HeartbeatInput, PredictionRowInput } from '../server/contract/pod.schemas';
import { readTrainerEnv, type TrainerEnv } from './env';
import { scorePredictions } from './model/metrics';
import { generatePredictions, PredictionSampler } from './model/sampler';
import { Trainer, type TrainerState } from './model/trainer-loop';
import { classifyPodError, createPodApi } from './pod/api';
import { PodConnection } from './pod/connection';
import { Heartbeat } from './pod/heartbeat';
import { configWarnings, fetchJobPlan, JobSourceError, loadJobPlanFromFiles, type JobPlan } from './pod/job-source';
import { watchForStop } from './pod/lifecycle';
import { createPodLogger, processConsole, survivePipeLoss, type ShippingLogger } from './pod/logger';
import { MetricsReporter } from './pod/metrics';
import { Spool, spoolFileFor } from './pod/spool';
import { syncSpoolFile } from './pod/sync';
import { alteredNote, PredictionWriter } from './pod/writer';

const JOB_ENDED_EXIT_CODE = 3;

const USAGE = `Usage:
  npm run trainer                                   train the job named by JOB_ID, JOB_TOKEN, API_URL
  npm run trainer -- --config FILE --dataset FILE   train offline (local mode), spooling predictions
  npm run trainer -- sync --spool FILE [--finish]   upload a spool file with JOB_TOKEN and API_URL

Options:
  --drain-timeout SECONDS   at the end, how long to wait for an unreachable server (default 120; sync: 30)
  --verbose                 print debug lines (each retry)
Environment: JOB_ID, JOB_TOKEN, API_URL; optional TRAINER_SPOOL_DIR (default ./data/spool),
TRAINER_HEARTBEAT_MS (default 3000), TRAINER_PARENT_PID (stop when that process dies).`;

interface Cli {
  command: 'train' | 'sync' | 'help';
  config?: string;
  dataset?: string;
  spool?: string;
  finish: boolean;
  /** null: the command's default (120 s for a run, 30 s for sync). */
  drainTimeoutMs: number | null;
  verbose: boolean;
}

function parseCli(argv: string[]): Cli {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      dataset: { type: 'string' },
      spool: { type: 'string' },
      finish: { type: 'boolean', default: false },
      'drain-timeout': { type: 'string' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const command = positionals[0] ?? 'train';
  if (positionals.length > 1 || !['train', 'sync', 'help'].includes(command)) throw new UsageError(`Unknown command: ${positionals.join(' ')}`);
  const drain = values['drain-timeout'] === undefined ? null : Number(values['drain-timeout']);
  if (drain !== null && (!Number.isFinite(drain) || drain < 0)) throw new UsageError('--drain-timeout takes a number of seconds');
  return {
    command: values.help ? 'help' : (command as Cli['command']),
    ...(values.config !== undefined ? { config: values.config } : {}),
    ...(values.dataset !== undefined ? { dataset: values.dataset } : {}),
    ...(values.spool !== undefined ? { spool: values.spool } : {}),
    finish: values.finish,
    drainTimeoutMs: drain === null ? null : drain * 1000,
    verbose: values.verbose,
  };
}

class UsageError extends Error {}

function missingNote(env: TrainerEnv): string {
  return env.missing.length === 0 ? 'none' : env.missing.join(',');
}

/** The line every summary carries while a variable is missing: loud, names only. */
function localModeBanner(env: TrainerEnv): string {
  const notSet = env.missing.filter((name) => !env.unusable.includes(name));
  const parts = [
    ...(notSet.length > 0 ? [`${notSet.join(', ')} ${notSet.length === 1 ? 'is' : 'are'} not set`] : []),
    ...(env.unusable.length > 0 ? [`${env.unusable.join(', ')} ${env.unusable.length === 1 ? 'is' : 'are'} set but unusable`] : []),
  ];
  return `LOCAL MODE: ${parts.join('; ')}`;
}

function syncCommand(file: string, env: TrainerEnv, finish: boolean): string {
  const vars = ['JOB_TOKEN', 'API_URL'].filter((name) => !(name === 'JOB_TOKEN' ? env.presence.JOB_TOKEN : env.presence.API_URL));
  const prefix = vars.map((name) => `${name}=<${name === 'JOB_TOKEN' ? "the job's token" : 'the server URL'}>`).join(' ');
  return `${prefix ? `${prefix} ` : ''}npm run trainer -- sync --spool ${path.resolve(file)}${finish ? ' --finish' : ''}`;
}

/** The sync command for a user who must first get a new token (the URL's origin only: it may embed credentials). */
function resyncCommand(file: string, env: TrainerEnv): string {
  const origin = env.apiUrl ? new URL(env.apiUrl).origin : '<the server URL>';
  return `API_URL=${origin} npm run trainer -- sync --spool ${path.resolve(file)}`;
}

async function runSync(cli: Cli, env: TrainerEnv): Promise<number> {
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

async function loadPlan(cli: Cli, env: TrainerEnv, connection: PodConnection, log: ShippingLogger, signal: AbortSignal): Promise<JobPlan> {
  if (connection.api) {
    if (cli.config || cli.dataset) log.warn('--config/--dataset are ignored: the job comes from the server (JOB_TOKEN and API_URL are set).');
    const plan = await fetchJobPlan({ connection, log, signal });
    if (env.jobId !== null && env.jobId !== plan.jobId) {
      throw new JobSourceError(`JOB_ID does not match the job this JOB_TOKEN was issued for (${plan.jobId}); set both from the same deploy.`);
    }
    if (env.jobId === null) log.warn(`JOB_ID is not set; the token names job ${plan.jobId}, so predictions are still sent there. Set JOB_ID to silence this.`);
    return plan;
  }
  if (!cli.config || !cli.dataset) {
    throw new UsageError(
      `Without ${env.missing.filter((name) => name !== 'JOB_ID').join(' and ')} the trainer cannot fetch its job from a server. Set them (the job page shows them), or train offline with --config FILE --dataset FILE.`,
    );
  }
  return loadJobPlanFromFiles(cli.config, cli.dataset);
}

async function runTrain(cli: Cli, env: TrainerEnv): Promise<number> {
  const startedAt = performance.now();
  const connection = new PodConnection(env.canConnect && env.apiUrl && env.jobToken ? createPodApi({ apiUrl: env.apiUrl, token: env.jobToken }) : null);
  const log = createPodLogger({ connection, verbose: cli.verbose, ...(env.jobToken ? { secrets: [env.jobToken] } : {}) });
  log.shipper.start();
  // A pod variable set but unusable is a configuration error (named, never echoed); others are warnings.
  for (const problem of env.problems) (env.unusable.some((name) => problem.startsWith(name)) ? log.error : log.warn)(problem);
  if (env.mode === 'local') {
    log.error(
      `${localModeBanner(env)}. ${
        connection.api
          ? 'The token and server URL are present, so the trainer still connects and sends predictions; the job page shows the missing variable.'
          : `Predictions cannot be sent to a server: every one is kept in the spool under ${env.spoolDir}, and the command to upload it is printed at the end.`
      }`,
    );
  } else {
    log.info(`Cloud mode: JOB_ID, JOB_TOKEN and API_URL are set; sending to ${new URL(env.apiUrl ?? '').origin}.`);
  }

  // What the heartbeats and the summary report; filled in as the run goes.
  let status: HeartbeatInput['status'] = 'starting';
  let state: TrainerState | null = null;
  let triggerFires = 0;
  let writer: PredictionWriter | null = null;
  let metrics: MetricsReporter | null = null;
  const snapshot = (): HeartbeatInput => ({
    status,
    mode: env.mode,
    env: env.presence,
    ...(state ? { epoch: state.epoch, step: state.globalStep, totalSteps: state.totalSteps } : {}),
    counters: writer ? { ...writer.counters } : { generated: 0, persisted: 0, spooled: 0, rejected: 0 },
    triggerFires,
  });
  const heartbeat = new Heartbeat({ connection, intervalMs: env.heartbeatMs, snapshot, log });
  const stopWatch = watchForStop({ parentPid: env.parentPid, onStop: (reason) => log.warn(`Stopping: ${reason}. Flushing what is generated.`) });
  // A job cancelled (or ended) on the server refuses the token with reason job_ended: nothing this
  // run produces can be stored any more, so it stops instead of training on for nobody.
  connection.onRefused((_message, reason) => {
    if (reason === 'job_ended') stopWatch.stop('the job has ended on the server (cancelled from the job page?)', JOB_ENDED_EXIT_CODE);
  });
  if (connection.api) heartbeat.start();

  // Non-finite values are sent too (as 'NaN', 'Infinity', '-Infinity'): a diverging loss is news.
  const metric = (at: TrainerState, name: string, value: number) => metrics?.record({ step: at.globalStep, epoch: at.epoch }, name, value);

  let failure: Error | null = null;
  let completed = false;
  let plan: JobPlan | null = null;
  try {
    plan = await loadPlan(cli, env, connection, log, stopWatch.signal);
    // One write-ahead spool for the run's predictions and metric points (see pod/spool.ts).
    const spool = new Spool(spoolFileFor(env.spoolDir, plan.jobId ?? env.jobId));
    writer = new PredictionWriter({ connection, spool, log, syncCommand: (file) => resyncCommand(file, env) });
    metrics = new MetricsReporter({ connection, log, spool });
    const predictionWriter = writer;
    for (const warning of configWarnings(plan)) log.warn(`Config: ${warning}`);

    const trainer = new Trainer(plan.rows, plan.training);
    const sampler = new PredictionSampler(trainer.split.eval, plan.predictions, plan.training.seed);
    const { predictions, training } = plan;
    const triggerWords =
      !predictions.enabled
        ? 'predictions disabled'
        : predictions.sampleFrequency === 'eval'
          ? `after each evaluation (evalStrategy ${training.evalStrategy}${training.evalStrategy === 'steps' ? `, every ${training.evalSteps} steps` : ''})`
          : predictions.sampleFrequency === 'epoch'
            ? 'at each epoch end'
            : `every ${predictions.stepInterval} steps`;
    log.info(
      `Job ${plan.jobId ?? env.jobId ?? '(local)'} "${plan.name}": ${plan.rows.length} rows (${trainer.split.train.length} train, ${trainer.split.eval.length} held out), ${training.epochs} epoch(s) × ${trainer.stepsPerEpoch} steps = ${trainer.totalSteps} steps; ${sampler.samples.length} prediction sample(s) ${triggerWords}.`,
    );
    status = 'running';
    state = { globalStep: 0, epoch: 0, epochNumber: 1, stepsPerEpoch: trainer.stepsPerEpoch, totalSteps: trainer.totalSteps, numEpochs: training.epochs };
    void heartbeat.beat();

    let lastEvalLoss: number | null = null;
    const fire = (rows: PredictionRowInput[], at: TrainerState) => {
      if (rows.length === 0) return rows;
      triggerFires++;
      predictionWriter.enqueue(rows);
      const score = scorePredictions(rows);
      metric(at, 'predictions/f1', score.meanF1);
      log.info(`Trigger "${rows[0]?.trigger}" fired at step ${at.globalStep} (epoch ${at.epochNumber}): ${rows.length} prediction(s), mean F1 ${score.meanF1.toFixed(3)}.`);
      return rows;
    };
    const result = await trainer.train(
      {
        onStepEnd(at, logs) {
          state = at;
          metric(at, 'train/loss', logs.loss);
          metric(at, 'train/learning_rate', logs.learningRate);
          fire(sampler.rowsAt('stepEnd', at, trainer), at);
        },
        onEvaluate(at, evalMetrics) {
          state = at;
          lastEvalLoss = evalMetrics.evalLoss;
          metric(at, 'eval/loss', evalMetrics.evalLoss);
          const fired = fire(sampler.rowsAt('evaluate', at, trainer), at);
          // F1 of the sampled rows at every evaluation, whether or not predictions fire here.
          const scored = fired.length > 0 ? fired : generatePredictions(trainer, sampler.samples, predictions.maxNewTokens);
          if (scored.length > 0) metric(at, 'eval/f1', scorePredictions(scored).meanF1);
        },
        onEpochEnd(at, logs) {
          state = at;
          metric(at, 'train/epoch_loss', logs.trainLoss);
          fire(sampler.rowsAt('epochEnd', at, trainer), at);
          const c = predictionWriter.counters;
          log.info(
            `Epoch ${at.epochNumber}/${at.numEpochs} done (step ${at.globalStep}/${at.totalSteps}): train loss ${logs.trainLoss.toFixed(4)}${lastEvalLoss !== null ? `, last eval loss ${lastEvalLoss.toFixed(4)}` : ''}; predictions generated ${c.generated}, persisted ${c.persisted}, spooled ${c.spooled}, rejected ${c.rejected}; trigger fires ${triggerFires}.${env.mode === 'local' ? ` [${localModeBanner(env)}]` : ''}`,
          );
        },
      },
      stopWatch.signal,
    );
    state = result.state;
    completed = result.completed;
    if (!completed) failure = new Error(`Training ${stopWatch.reason() ?? 'was stopped'} at step ${result.state.globalStep}/${result.state.totalSteps}`);
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    if (!(error instanceof JobSourceError) && !(error instanceof UsageError)) log.error(`Training failed: ${failure.stack ?? failure.message}`);
    else log.error(failure.message);
  }

  // Flush: predictions first (they matter most), then metrics, the final numbers, the logs, finish.
  status = 'finishing';
  const stoppedByParent = stopWatch.exitCode() === 1;
  const drainMs = connection.api ? (stoppedByParent ? 5_000 : (cli.drainTimeoutMs ?? 120_000)) : 0;
  if (writer && writer.pending + writer.counters.spooled > 0 && connection.usable) {
    log.info(`Sending the last ${writer.pending} queued and ${writer.counters.spooled} spooled prediction(s) (waiting up to ${Math.round(drainMs / 1000)}s for the server).`);
  }
  const [counters] = await Promise.all([
    writer ? writer.close(drainMs) : { generated: 0, persisted: 0, spooled: 0, rejected: 0 },
    // In parallel with the predictions, with the same patience: a point left behind stays in the spool.
    metrics?.close(drainMs),
  ]);
  const heartbeatOk = await heartbeat.final(Math.min(5_000, drainMs));

  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
  const outcome = failure ? 'failed' : 'completed';
  log.info(
    `SUMMARY status=${outcome} mode=${env.mode} missing=${missingNote(env)} generated=${counters.generated} persisted=${counters.persisted} spooled=${counters.spooled} rejected=${counters.rejected} replaced=${writer?.stored.replaced ?? 0} altered=${writer?.altered ?? 0} metricsRefused=${metrics?.answered.rejected ?? 0} metricsSpooled=${metrics?.pending ?? 0} triggerFires=${triggerFires} step=${state?.globalStep ?? 0}/${state?.totalSteps ?? '?'} seconds=${seconds}${writer && writer.recovered > 0 ? ` recoveredFromSpool=${writer.recovered}` : ''}`,
  );
  if (env.mode === 'local') log.error(`${localModeBanner(env)}: set ${env.missing.join(', ')} so the next run reaches the server.`);
  if (counters.spooled > 0 && writer && connection.tokenRefusedReason === 'job_ended') {
    // An ended job still takes rows through an upload token (docs/decisions/0005-upload-tokens.md).
    log.warn(
      `${counters.spooled} prediction(s) are in the spool ${writer.spoolFile}; the job has ended. To keep them, press "New upload token" on the job page (or jobs.rotateToken), then run:\n  JOB_TOKEN=<the upload token> ${resyncCommand(writer.spoolFile, env)}`,
    );
  } else if (counters.spooled > 0 && writer && connection.tokenRefused !== null) {
    log.error(
      `${counters.spooled} prediction(s) are in the spool ${writer.spoolFile}, not on the server. Rotate the token on the job page (or jobs.rotateToken), then upload them with:\n  JOB_TOKEN=<the new token> ${resyncCommand(writer.spoolFile, env)}${failure ? '' : ' --finish'}`,
    );
  } else if (counters.spooled > 0 && writer) {
    log.error(`${counters.spooled} prediction(s) are in the spool ${writer.spoolFile}, not on the server. Upload them with:\n  ${syncCommand(writer.spoolFile, env, !failure)}`);
  }
  if (counters.spooled === 0 && writer && metrics && metrics.pending > 0) {
    const token = connection.tokenRefused !== null ? 'JOB_TOKEN=<a new token or upload token from the job page> ' : '';
    log.warn(`${metrics.pending} metric point(s) are in the spool ${writer.spoolFile}, not on the server; \`${token}npm run trainer -- sync --spool ${writer.spoolFile}\` uploads them.`);
  }
  if (counters.rejected > 0) log.error(`${counters.rejected} prediction(s) were rejected by the server; the reasons are logged above.`);
  if (writer && writer.altered > 0) log.warn(alteredNote(writer.altered));
  if (metrics && metrics.answered.rejected > 0) log.warn(`${metrics.answered.rejected} metric point(s) were refused by the server; the reasons are logged above.`);
  if (connection.tokenRefused) log.error(`The server refused the job token: ${connection.tokenRefused}`);
  if (connection.api && !heartbeatOk && connection.usable) log.warn('The final heartbeat did not reach the server; the job page shows the last one that did.');
  await log.shipper.close(5_000);

  // Finishing retires the token, so a job with predictions still in the spool stays open for `sync`.
  if (connection.usable && plan?.source === 'server') {
    if (counters.spooled > 0) {
      log.warn('The job is left running so its token can still upload the spool; `sync --finish` completes it.');
    } else {
      try {
        await connection.api?.pod.finish.mutate(
          failure ? { status: 'failed', error: (failure.stack ?? failure.message).slice(-4_000) } : { status: 'completed' },
        );
      } catch (error) {
        log.error(`Reporting the end of the job failed: ${classifyPodError(error).message}`);
      }
    }
  }
  stopWatch.dispose();
  if (stopWatch.exitCode() !== null) return stopWatch.exitCode() ?? 1;
  if (failure) return 1;
  return counters.persisted === counters.generated ? 0 : 2;
}

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
