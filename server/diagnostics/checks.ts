// The diagnostics as a pure function of what is known about a job: its config, what the pod
// reported, the ledger and the stored totals. Ordered like the path a prediction travels
// (enabled → can fire → pod connected → cloud mode → token accepted → fired → written →
// accepted → job alive → stored), so the first failure is the cause, not a symptom.
import { checkJobConfig, splitSizes, stepsPerEpoch, type JobConfig } from '#contract/job-config';
import type { CheckId, DiagnosticCheck, DiagnosticsOutput } from '#contract/diagnostics.schemas';
import type { PodReport } from '../../db/schema';
import { isLiveStatus, type JobStatusName } from '#contract/statuses';
import { STEP_NOT_GLOBAL } from '#contract/pod.schemas';

export interface JobFacts {
  now: Date;
  status: JobStatusName;
  launcher: string;
  config: JobConfig;
  datasetRows: number | null;
  createdAt: Date;
  finishedAt: Date | null;
  error: string | null;
  podReport: PodReport | null;
  lastHeartbeatAt: Date | null;
  stored: { count: number; lastWriteAt: Date | null };
  events: Array<{ kind: string; reason: string; count: number; counted: number; lastAt: Date; steps: { min: number; max: number } | null; lastDetail: Record<string, unknown> }>;
  connectGraceSeconds: number;
}

const SILENT_AFTER_SECONDS = 60;

function ago(from: Date, now: Date): string {
  const seconds = Math.max(0, Math.round((now.getTime() - from.getTime()) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86_400)} days ago`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

type Check = Omit<DiagnosticCheck, 'id'>;
const pass = (title: string, message: string): Check => ({ status: 'pass', title, message, fix: '' });
const warn = (title: string, message: string, fix: string): Check => ({ status: 'warn', title, message, fix });
const fail = (title: string, message: string, fix: string): Check => ({ status: 'fail', title, message, fix });

/** The optimizer step at which the configured trigger first fires, or null when it never can. */
function firstFireStep(config: JobConfig, datasetRows: number | null): number | null {
  if (datasetRows === null) return null;
  const perEpoch = stepsPerEpoch(splitSizes(datasetRows).train, config.training.batchSize);
  const { sampleFrequency, stepInterval } = config.predictions;
  if (sampleFrequency === 'epoch') return perEpoch;
  if (sampleFrequency === 'steps') return stepInterval ?? null;
  if (config.training.evalStrategy === 'epoch') return perEpoch;
  if (config.training.evalStrategy === 'steps') return config.training.evalSteps ?? null;
  return null;
}

function triggerWords(config: JobConfig): string {
  const { sampleFrequency, stepInterval } = config.predictions;
  if (sampleFrequency === 'epoch') return 'at the end of each epoch';
  if (sampleFrequency === 'steps') return `every ${stepInterval ?? '?'} steps`;
  return 'after each evaluation';
}

export function diagnose(facts: JobFacts): Omit<DiagnosticsOutput, 'checkedAt'> {
  const { config, podReport: report, now } = facts;
  const live = isLiveStatus(facts.status);
  const connected = facts.lastHeartbeatAt !== null;
  const checks: Array<[CheckId, Check]> = [];
  const event = (kind: string) => facts.events.filter((e) => e.kind === kind);

  // 1. Predictions enabled
  checks.push([
    'predictions_enabled',
    config.predictions.enabled
      ? pass('Predictions are enabled', `${plural(config.predictions.sampleCount, 'sample')} predicted ${triggerWords(config)}.`)
      : fail('Predictions are disabled', 'This job was deployed with predictions turned off, so it never samples any.', 'Deploy the job again with predictions enabled.'),
  ]);

  // 2. The trigger can fire under this configuration
  const triggerErrors = checkJobConfig(config, facts.datasetRows === null ? null : { rows: facts.datasetRows }).filter(
    (p) => p.severity === 'error' && p.field !== 'datasetId',
  );
  const triggerError = triggerErrors[0];
  checks.push([
    'trigger_can_fire',
    triggerError
      ? fail('The trigger can never fire', triggerError.message, triggerError.fix)
      : pass('The trigger can fire', `Predictions are sampled ${triggerWords(config)}.`),
  ]);

  // 3. The pod has connected
  const sinceDeploy = (now.getTime() - facts.createdAt.getTime()) / 1000;
  const podFix =
    facts.launcher === 'manual'
      ? 'Run the command shown at deploy (JOB_ID, JOB_TOKEN and API_URL set) on a machine that can reach API_URL. Lost it? Rotate the token to get a new one. A pod started without API_URL or JOB_TOKEN runs in local mode: its log names the missing variables and its predictions wait in a spool file for `npm run trainer -- sync --spool FILE`.'
      : 'Open the logs tab and the job error: the pod process did not start or could not reach the server.';
  if (!connected) {
    checks.push([
      'pod_connected',
      !live || sinceDeploy >= facts.connectGraceSeconds
        ? fail('The pod never connected', `No heartbeat has arrived since the job was deployed ${ago(facts.createdAt, now)}.`, podFix)
        : warn('Waiting for the pod to connect', `Deployed ${ago(facts.createdAt, now)}; no heartbeat yet.`, podFix),
    ]);
  } else {
    const last = facts.lastHeartbeatAt as Date;
    const silentFor = (now.getTime() - last.getTime()) / 1000;
    checks.push([
      'pod_connected',
      live && silentFor > SILENT_AFTER_SECONDS
        ? warn('The pod has gone quiet', `The last heartbeat arrived ${ago(last, now)}; a running pod reports every few seconds.`, 'Check the logs tab: the pod may have crashed, lost its network, or be stuck.')
        : pass('The pod connected', `Last heartbeat ${ago(last, now)}.`),
    ]);
  }

  // 4. The pod runs in cloud mode with every variable present
  const missing = report ? Object.entries(report.env).filter(([, present]) => !present).map(([name]) => name) : [];
  const localEvents = event('pod_local_mode');
  const missingFromLedger = localEvents.flatMap((e) => (Array.isArray(e.lastDetail.missing) ? e.lastDetail.missing.map(String) : []));
  const allMissing = [...new Set([...missing, ...missingFromLedger])].sort();
  if ((report?.mode === 'local' || allMissing.length > 0) && facts.stored.count > 0 && !live) {
    // Local mode, but the spool has since been uploaded (trainer sync): nothing is missing now.
    checks.push([
      'pod_mode',
      warn(
        'The pod ran in local mode',
        `The pod started without ${allMissing.length ? allMissing.join(', ') : 'its cloud settings'} and kept its predictions on its own disk; ${plural(facts.stored.count, 'prediction')} have been uploaded since.`,
        `Set ${allMissing.length ? allMissing.join(', ') : 'JOB_ID, JOB_TOKEN and API_URL'} on the next run so predictions arrive while it trains.`,
      ),
    ]);
  } else if (report?.mode === 'local' || allMissing.length > 0) {
    checks.push([
      'pod_mode',
      fail(
        'The pod ran in local mode',
        allMissing.length
          ? `The pod started without ${allMissing.join(', ')}, so it kept its predictions on its own disk instead of sending them.`
          : 'The pod reported local mode, so it kept its predictions on its own disk instead of sending them.',
        `Restart the pod with ${allMissing.length ? allMissing.join(', ') : 'JOB_ID, JOB_TOKEN and API_URL'} set. Its spooled predictions can be uploaded with \`npm run trainer -- sync --spool FILE\` (already-stored rows are skipped).`,
      ),
    ]);
  } else {
    checks.push(['pod_mode', report ? pass('The pod is in cloud mode', 'JOB_ID, JOB_TOKEN and API_URL were all present.') : warn('Pod mode not known yet', 'The pod reports its mode with its first heartbeat.', '')]);
  }

  // 5. The server accepted the pod's token
  const rejections = event('token_rejected');
  const rejection = rejections.sort((a, b) => b.lastAt.getTime() - a.lastAt.getTime())[0];
  if (rejection) {
    const reasons: Record<string, [string, string]> = {
      expired: [
        `The job token expired${typeof rejection.lastDetail.expiredAt === 'string' ? ` at ${rejection.lastDetail.expiredAt}` : ''}, and the pod's writes were refused from then on.`,
        'Rotate the token (job page → Rotate token) and restart the pod with the new JOB_TOKEN; raise JOB_TOKEN_TTL_HOURS for long runs.',
      ],
      revoked: [
        'The pod used a revoked job token (a newer one was issued by a rotation), so its writes were refused.',
        'Restart the pod with the newest JOB_TOKEN.',
      ],
      job_ended: [
        `The pod kept writing after the job had ended (${String(rejection.lastDetail.status ?? 'ended')}), so those writes were refused.`,
        'Deploy a new job for a new run; an ended job accepts no more writes.',
      ],
    };
    const [message, fix] = reasons[rejection.reason] ?? ['The server refused the pod\'s job token.', 'Restart the pod with the job token from the deploy (or a rotated one).'];
    checks.push(['token_rejections', fail('The pod\'s token was refused', `${message} Last refusal ${ago(rejection.lastAt, now)}.`, fix)]);
  } else {
    checks.push(['token_rejections', pass('No token was refused', 'Every call the pod made carried a valid job token.')]);
  }

  // 6. The trigger fired
  const fireAt = firstFireStep(config, facts.datasetRows);
  if (!report) {
    checks.push(['trigger_fired', warn('Trigger fires not known yet', 'The pod reports how often the trigger fired in its heartbeats.', '')]);
  } else if (report.triggerFires > 0) {
    checks.push(['trigger_fired', pass('The trigger fired', `It fired ${plural(report.triggerFires, 'time')} so far.`)]);
  } else if (config.predictions.enabled && fireAt !== null && ((report.step ?? 0) >= fireAt || facts.status === 'completed')) {
    checks.push([
      'trigger_fired',
      fail(
        'The trigger never fired',
        `Training reached step ${report.step ?? '?'}, past step ${fireAt} where predictions should first have been sampled ${triggerWords(config)}, but the pod reports no trigger fire.`,
        'Check that the pod\'s callback is registered and uses this job\'s trigger settings (Hugging Face: add the callback and turn evaluation on for "after each evaluation").',
      ),
    ]);
  } else {
    checks.push(['trigger_fired', pass('Not due yet', fireAt !== null ? `The trigger first fires at step ${fireAt}.` : 'The trigger has not been due yet.')]);
  }

  // 7. Generated predictions were persisted
  const counters = report?.counters;
  if (!counters) {
    checks.push(['writes_persisted', warn('Write counters not known yet', 'The pod reports generated / persisted / spooled / rejected counts in its heartbeats.', '')]);
  } else {
    const unaccounted = counters.generated - counters.persisted - counters.rejected - counters.spooled;
    const summary = `Generated ${counters.generated}, persisted ${counters.persisted}, spooled ${counters.spooled}, rejected ${counters.rejected}.`;
    // The counters are the pod's last heartbeat; a spool uploaded afterwards (`sync`, an upload
    // token, the server's own upload for a local trainer that died) sends no heartbeat. Once the
    // table holds at least what the pod generated, nothing is missing whatever that report said.
    const storedSince = !live && facts.stored.count >= counters.generated - counters.rejected && (counters.spooled > 0 || unaccounted > 0);
    if (storedSince) {
      checks.push([
        'writes_persisted',
        pass(
          'Every prediction is accounted for',
          `${summary} (the pod's last report). ${plural(facts.stored.count, 'prediction')} are stored now: what was spooled or in flight was uploaded afterwards.`,
        ),
      ]);
    } else if (counters.spooled > 0) {
      checks.push([
        'writes_persisted',
        fail(
          'Predictions are waiting on the pod',
          `${summary} ${plural(counters.spooled, 'prediction')} could not reach the server and were spooled to the pod's disk.`,
          'The pod retries and drains its spool when the server is reachable again; if the pod is gone, upload the spool file with `npm run trainer -- sync --spool FILE`.',
        ),
      ]);
    } else if (unaccounted > 0 && !live) {
      checks.push(['writes_persisted', fail('Predictions went missing', `${summary} ${plural(unaccounted, 'prediction')} are unaccounted for.`, 'Check the pod logs for write errors around the end of the run.')]);
    } else if (counters.generated > 0 && facts.stored.count === 0 && counters.rejected < counters.generated) {
      checks.push(['writes_persisted', fail('Nothing arrived', `${summary} But no prediction is stored for this job.`, 'Check that the pod writes to this server (API_URL) with this job\'s token.')]);
    } else {
      checks.push(['writes_persisted', pass('Every prediction is accounted for', summary)]);
    }
  }

  // 8. Rows refused by validation, and steps that restart each epoch
  const refused = event('predictions_rejected');
  const stepReuse = refused.filter((e) => e.reason === STEP_NOT_GLOBAL);
  const refusedCount = refused.reduce((n, e) => n + e.counted, 0);
  const reasonOf = (events: typeof refused) =>
    events
      .flatMap((e) => (Array.isArray(e.lastDetail.examples) ? e.lastDetail.examples : []))
      .map((x) => (typeof x === 'object' && x !== null && 'reason' in x ? String((x as { reason: unknown }).reason) : ''))
      .find(Boolean);
  if (stepReuse.length > 0) {
    const reused = stepReuse.reduce((n, e) => n + e.counted, 0);
    const example = reasonOf(stepReuse);
    checks.push([
      'rows_rejected',
      fail(
        'Steps restart each epoch',
        `The server refused ${plural(reused, 'prediction row')} whose step is already stored under an earlier epoch${example ? `, for example: ${example}` : ''}. Every epoch after the first is lost this way.`,
        "Send the global step, which keeps growing across epochs (Hugging Face's `state.global_step`), not the step within the epoch; then run the job again.",
      ),
    ]);
  } else if (refused.length > 0 || (counters?.rejected ?? 0) > 0) {
    const reason = reasonOf(refused);
    const total = Math.max(refusedCount, counters?.rejected ?? 0);
    const status = facts.stored.count === 0 ? fail : warn;
    checks.push([
      'rows_rejected',
      status(
        'Some rows were refused',
        `The server refused ${plural(total, 'prediction row')} as invalid${reason ? `, for example: ${reason}` : ''}.`,
        'Fix what the reason names in the pod (field lengths, integer epoch/step/sampleIndex, trigger one of eval, epoch, steps); the other rows of each batch were stored.',
      ),
    ]);
  } else {
    checks.push(['rows_rejected', pass('No row was refused', 'Every prediction row the pod sent was valid.')]);
  }

  // 8b. Rows a resumed run replaced: nothing is lost (the newer text is kept), but the user should know.
  const replacedEvents = event('predictions_replaced');
  const replacedCount = replacedEvents.reduce((n, e) => n + e.counted, 0);
  if (replacedCount > 0) {
    const steps = replacedEvents.find((e) => e.steps)?.steps;
    const range = steps ? (steps.min === steps.max ? ` at step ${steps.min}` : ` at steps ${steps.min} to ${steps.max}`) : '';
    checks.push([
      'rows_replaced',
      pass(
        'A resumed run replaced earlier predictions',
        `${plural(replacedCount, 'prediction')}${range} ${replacedCount === 1 ? 'was' : 'were'} replaced by a resumed run: the pod sent new text for steps already stored, and the newer text is kept.`,
      ),
    ]);
  } else {
    checks.push(['rows_replaced', pass('Nothing was replaced', 'No step was predicted twice with different text.')]);
  }

  // 9. The job did not fail
  if (facts.status === 'failed') {
    const tail = (facts.error ?? 'no error message').trim().split('\n').slice(-6).join('\n');
    checks.push(['job_failure', fail('The job failed', tail, 'Read the error and the logs tab, fix the cause, and deploy again.')]);
  } else if (facts.status === 'cancelled') {
    checks.push(['job_failure', warn('The job was cancelled', `Cancelled ${facts.finishedAt ? ago(facts.finishedAt, now) : ''}.`.trim(), 'Deploy it again to continue.')]);
  } else {
    const title = facts.status === 'completed' ? 'The job completed' : facts.status === 'running' ? 'The job is running' : 'Waiting for the pod to start';
    checks.push(['job_failure', pass(title, `Status: ${facts.status}.`)]);
  }

  // 10. Predictions are stored
  if (facts.stored.count > 0) {
    checks.push([
      'predictions_present',
      pass('Predictions are stored', `${plural(facts.stored.count, 'prediction')} stored; the last arrived ${facts.stored.lastWriteAt ? ago(facts.stored.lastWriteAt, now) : 'recently'}.`),
    ]);
  } else {
    checks.push([
      'predictions_present',
      live
        ? warn('No predictions yet', 'None has been stored for this job so far.', 'They appear as soon as the trigger fires and the pod writes them.')
        : fail('No predictions were stored', 'The job ended without a single stored prediction.', 'The checks above say where they were lost.'),
    ]);
  }

  const list = checks.map(([id, check]) => ({ id, ...check }));
  const firstFail = list.find((c) => c.status === 'fail');
  const firstWarn = list.find((c) => c.status === 'warn' && c.fix);
  const cause = firstFail ?? firstWarn;
  return {
    status: firstFail ? 'failing' : list.some((c) => c.status === 'warn') ? 'warning' : 'healthy',
    rootCause: cause ? `${cause.title}: ${cause.message}` : null,
    rootCauseCheck: cause?.id ?? null,
    checks: list,
  };
}
