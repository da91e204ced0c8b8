// `trainer train` (the default command): the pod's side of a run. It connects (or names what is
// missing and runs in local mode), loads the job, hands the demo model's run (demo-model/run.ts)
// a writer, metrics and heartbeats, and at the end flushes, reports and finishes the job. Exit
// codes are listed in main.ts.
import type { HeartbeatInput } from '#contract/pod.schemas';
import { UsageError, type Cli } from '../cli';
import { trainDemoModel } from '../demo-model/run';
import type { TrainerState } from '../demo-model/trainer-loop';
import type { TrainerEnv } from '../env';
import { classifyPodError, createPodApi } from '../pod/api';
import { PodConnection } from '../pod/connection';
import { Heartbeat } from '../pod/heartbeat';
import { configWarnings, fetchJobPlan, JobSourceError, loadJobPlanFromFiles, type JobPlan } from '../pod/job-source';
import { watchForStop } from '../pod/lifecycle';
import { createPodLogger, type ShippingLogger } from '../pod/logger';
import { MetricsReporter } from '../pod/metrics';
import { Spool, spoolFileFor } from '../pod/spool';
import { alteredNote, PredictionWriter, type WriterCounters } from '../pod/writer';
import { localModeBanner, missingNote, resyncCommand, syncCommand } from './messages';

/** Exit code of a run stopped because its job ended on the server (cancelled). */
export const JOB_ENDED_EXIT_CODE = 3;

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

/** Runs `trainer train`; resolves to the process exit code. */
export async function runTrain(cli: Cli, env: TrainerEnv): Promise<number> {
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

    const result = await trainDemoModel(
      plan,
      plan.jobId ?? env.jobId ?? '(local)',
      {
        log,
        onStart(at) {
          status = 'running';
          state = at;
          void heartbeat.beat();
        },
        onState(at) {
          state = at;
        },
        ship(rows) {
          triggerFires++;
          predictionWriter.enqueue(rows);
        },
        metric,
        epochNote() {
          const c = predictionWriter.counters;
          return `predictions generated ${c.generated}, persisted ${c.persisted}, spooled ${c.spooled}, rejected ${c.rejected}; trigger fires ${triggerFires}.${env.mode === 'local' ? ` [${localModeBanner(env)}]` : ''}`;
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

  reportRunEnd({ env, log, connection, writer, metrics, counters, failure, heartbeatOk, triggerFires, state, seconds: (performance.now() - startedAt) / 1000 });
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


interface RunEnd {
  env: TrainerEnv;
  log: ShippingLogger;
  connection: PodConnection;
  writer: PredictionWriter | null;
  metrics: MetricsReporter | null;
  counters: WriterCounters;
  failure: Error | null;
  heartbeatOk: boolean;
  triggerFires: number;
  state: TrainerState | null;
  /** Wall time of the run, in seconds. */
  seconds: number;
}

/**
 * The end of a run in the log: the SUMMARY line (the scenario suite and the job page read it),
 * then, for whatever did not reach the server, where it is and the exact command that uploads it.
 */
function reportRunEnd({ env, log, connection, writer, metrics, counters, failure, heartbeatOk, triggerFires, state, seconds: wall }: RunEnd): void {
  const seconds = wall.toFixed(1);
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
}
