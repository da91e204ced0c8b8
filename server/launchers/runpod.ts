// The RunPod launcher: one on-demand GPU pod per job through RunPod's REST API (create
// `POST /pods`, read `GET /pods/{id}`, terminate `DELETE /pods/{id}`). RunPod has no secret
// store for a pod's environment, so the job token travels in the pod's env; it is scoped to
// this one job and revoked when the job ends or is cancelled. A pod is watched while its job
// is live: a pod that stops or disappears first fails the job, and a pod whose job has ended
// is terminated so it stops costing money (RunPod restarts a container that exits).
import { z } from 'zod';
import type { RunpodSettings } from '../env';
import { describeError } from '../log-safe';
import type { Launcher, LauncherEvents, LaunchRequest } from './types';

export interface RunpodLauncherOptions {
  settings: RunpodSettings;
  events: LauncherEvents;
  /** Whether the job is still pending, starting or running; read from the database by the caller. */
  isJobLive(jobId: string, userId: string): Promise<boolean>;
  /**
   * Every live RunPod job with its pod id, whichever instance created it: pods outlive the
   * instance that started them, so each instance follows them all (reads are idempotent, and
   * an end is recorded once).
   */
  liveJobs?(): Promise<Array<{ jobId: string; userId: string; ref: string | null }>>;
  fetch?: typeof fetch;
}

const REQUEST_TIMEOUT_MS = 30_000;
/** How often an instance following no pod looks for live RunPod jobs started elsewhere. */
const DISCOVERY_MS = 60_000;

const createdPod = z.object({ id: z.string().min(1) });
const podState = z.object({
  id: z.string(),
  desiredStatus: z.string().optional(),
  lastStatusChange: z.string().nullish(),
});

export class RunpodApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RunpodApiError';
  }
}

export function runpodPodName(jobId: string): string {
  return `predictions-${jobId}`;
}

export function createRunpodLauncher(options: RunpodLauncherOptions): Launcher {
  const { settings, events } = options;
  const doFetch = options.fetch ?? fetch;
  const pollMs = settings.pollSeconds * 1000;
  /** Pods this server started and follows, by pod id. */
  const tracked = new Map<string, { jobId: string; userId: string }>();
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let closed = false;
  let discovered = false;

  async function request(method: 'GET' | 'POST' | 'DELETE', route: string, what: string, body?: object): Promise<unknown> {
    let response: Response;
    try {
      response = await doFetch(`${settings.apiUrl}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${settings.apiKey}`,
          accept: 'application/json',
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`Could not reach RunPod at ${settings.apiUrl} to ${what}: ${redact(describe(error))}`);
    }
    const text = await response.text();
    if (!response.ok) {
      throw new RunpodApiError(response.status, `RunPod refused to ${what} (HTTP ${response.status}): ${redact(errorMessage(text))}`);
    }
    if (!text) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new Error(`RunPod answered the request to ${what} with something that is not JSON`);
    }
  }

  // The key is a secret: it must not reach a job's error even if an answer echoed it.
  function redact(text: string): string {
    return settings.apiKey ? text.split(settings.apiKey).join('[redacted]') : text;
  }

  async function terminate(podId: string): Promise<void> {
    try {
      await request('DELETE', `/pods/${encodeURIComponent(podId)}`, `terminate pod ${podId}`);
    } catch (error) {
      if (error instanceof RunpodApiError && error.status === 404) return;
      throw error;
    }
  }

  function schedule(): void {
    if (closed || polling || (tracked.size === 0 && !options.liveJobs)) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      polling = poll()
        .catch((error: unknown) => console.warn(`[runpod-launcher] checking pods failed: ${describeError(error)}`))
        .finally(() => {
          polling = undefined;
          schedule();
        });
    }, tracked.size > 0 || !discovered ? pollMs : Math.max(pollMs, DISCOVERY_MS));
    timer.unref();
  }

  async function poll(): Promise<void> {
    for (const job of (await options.liveJobs?.()) ?? []) {
      if (job.ref && !tracked.has(job.ref)) tracked.set(job.ref, { jobId: job.jobId, userId: job.userId });
    }
    discovered = true;
    for (const [podId, { jobId, userId }] of [...tracked]) {
      if (!(await options.isJobLive(jobId, userId))) {
        // Finished, failed or cancelled (perhaps on another instance): nothing should run any more.
        tracked.delete(podId);
        await terminate(podId);
        continue;
      }
      let state: z.infer<typeof podState> | null;
      try {
        state = podState.parse(await request('GET', `/pods/${encodeURIComponent(podId)}`, `read pod ${podId}`));
      } catch (error) {
        if (!(error instanceof RunpodApiError && error.status === 404)) throw error;
        state = null;
      }
      if (!state || state.desiredStatus === 'TERMINATED') {
        tracked.delete(podId);
        await events.exited(jobId, userId, { ok: false, error: `The RunPod pod ${podId} was terminated before the job finished.` });
      } else if (state.desiredStatus === 'EXITED') {
        tracked.delete(podId);
        const why = state.lastStatusChange ? ` (${state.lastStatusChange})` : '';
        await events.exited(jobId, userId, { ok: false, error: `The RunPod pod ${podId} stopped before the job finished${why}.` });
        await terminate(podId);
      }
    }
  }

  async function start(launch: LaunchRequest) {
    const body = {
      name: runpodPodName(launch.jobId),
      imageName: settings.image,
      gpuTypeIds: settings.gpuTypeIds,
      gpuCount: settings.gpuCount,
      containerDiskInGb: settings.containerDiskInGb,
      ...(settings.cloudType ? { cloudType: settings.cloudType } : {}),
      dockerStartCmd: settings.command,
      env: { JOB_ID: launch.env.JOB_ID, JOB_TOKEN: launch.env.JOB_TOKEN, API_URL: launch.env.API_URL },
    };
    const answer = createdPod.safeParse(await request('POST', '/pods', 'create a pod', body));
    if (!answer.success) throw new Error('RunPod created a pod but its answer has no pod id');
    const podId = answer.data.id;
    tracked.set(podId, { jobId: launch.jobId, userId: launch.userId });
    schedule();
    await events.log(launch.jobId, 'info', `Created RunPod pod ${podId} (image ${settings.image}, ${settings.gpuCount}× ${settings.gpuTypeIds.join(' or ')}).`);
    return { ref: podId, revealEnv: false };
  }

  // Pods created before a restart, or by an instance that has since gone, are found on the first poll.
  schedule();

  return {
    name: 'runpod',
    description: `Runs each job on a RunPod GPU pod (${settings.gpuCount}× ${settings.gpuTypeIds.join(' or ')}).`,
    start,
    async cancel({ ref }) {
      if (!ref) return;
      tracked.delete(ref);
      await terminate(ref);
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await polling;
    },
  };
}

/** RunPod's own message from an error answer ({"error": …} or {"message": …}), else the text. */
function errorMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as unknown;
    const candidates = Array.isArray(parsed) ? parsed : [parsed];
    const messages = candidates
      .map((item: unknown) => {
        if (typeof item === 'string') return item;
        if (typeof item !== 'object' || item === null) return undefined;
        if ('error' in item && typeof item.error === 'string') return item.error;
        if ('message' in item && typeof item.message === 'string') return item.message;
        return undefined;
      })
      .filter((m): m is string => Boolean(m));
    if (messages.length > 0) return messages.join('; ').slice(0, 1_000);
  } catch {
    // Not JSON: show the text.
  }
  return text.trim().slice(0, 1_000) || 'no message';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
