// The Kubernetes launcher: one batch/v1 Job per training job, in one namespace, through
// @kubernetes/client-node. The job token goes into a per-job Secret (never into the Job spec)
// that the Job owns, so both go together. The end of a Job is read from its conditions by a
// poll of the Jobs this server manages (found by label), so a Job started by another instance,
// or before a restart, is still seen to end. Pod logs arrive through pod.log, not from here.
import { homedir } from 'node:os';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type * as K8s from '@kubernetes/client-node';
import type { KubeConfigSource, KubernetesSettings } from '../env';
import { describeError } from '../log-safe';
import type { Launcher, LauncherEvents, LaunchRequest } from './types';

type K8sModule = typeof K8s;

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGER = 'predictions-server';
export const JOB_ID_LABEL = 'predictions/job-id';
export const USER_ID_LABEL = 'predictions/user-id';
const TOKEN_KEY = 'JOB_TOKEN';
const CONTAINER_NAME = 'trainer';

export interface KubernetesLauncherOptions {
  settings: KubernetesSettings;
  events: LauncherEvents;
  /** The cluster and credentials; by default loaded from settings.kubeconfig. Tests pass their own. */
  kubeConfig?: (k8s: K8sModule) => K8s.KubeConfig;
}

/** Kubernetes object names for a job: DNS labels, 63 characters at most (a uuid leaves room). */
export function kubernetesNames(jobId: string): { job: string; secret: string } {
  return { job: `predictions-${jobId}`, secret: `predictions-${jobId}-token` };
}

export function loadKubeConfig(k8s: K8sModule, source: KubeConfigSource): K8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (source.kind === 'in-cluster') {
    kc.loadFromCluster();
    return kc;
  }
  // KUBECONFIG may list several files, as kubectl allows; they are merged in order.
  const files =
    source.kind === 'file' ? source.path.split(path.delimiter).filter(Boolean) : [path.join(homedir(), '.kube', 'config')];
  const present = files.filter((file) => existsSync(file));
  const [first, ...rest] = present;
  if (!first) {
    throw new Error(
      `no kubeconfig found at ${files.join(', ')}: set KUBECONFIG, run the server inside the cluster, or create ~/.kube/config`,
    );
  }
  kc.loadFromFile(first);
  for (const file of rest) {
    const more = new k8s.KubeConfig();
    more.loadFromFile(file);
    kc.mergeConfig(more);
  }
  return kc;
}

interface Tracked {
  userId: string;
  /** When this server began to follow the Job: a list started earlier may not show it yet. */
  since: number;
}

export function createKubernetesLauncher(options: KubernetesLauncherOptions): Launcher {
  const { settings, events } = options;
  const { namespace } = settings;
  const pollMs = settings.pollSeconds * 1000;
  // With nothing live here, still look now and then, for Jobs another instance started and
  // can no longer follow (it stopped), and for Jobs left from before this server's restart.
  const idleMs = Math.max(60_000, pollMs * 6);

  let clients: Promise<{ k8s: K8sModule; batch: K8s.BatchV1Api; core: K8s.CoreV1Api }> | undefined;
  // Loaded on first use: the client library is large, and most servers never enable this launcher.
  function api() {
    if (!clients) {
      clients = import('@kubernetes/client-node').then((k8s) => {
        const kc = options.kubeConfig ? options.kubeConfig(k8s) : loadKubeConfig(k8s, settings.kubeconfig);
        return { k8s, batch: kc.makeApiClient(k8s.BatchV1Api), core: kc.makeApiClient(k8s.CoreV1Api) };
      });
      // A bad kubeconfig is retried on the next call rather than remembered forever.
      clients.catch(() => {
        clients = undefined;
      });
    }
    return clients;
  }

  const tracked = new Map<string, Tracked>();
  const reported = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let closed = false;

  function schedule(delay = tracked.size > 0 ? pollMs : idleMs): void {
    if (closed || polling) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      polling = poll()
        .catch((error: unknown) => console.warn(`[kubernetes-launcher] checking Jobs in namespace ${namespace} failed: ${describeError(error)}`))
        .finally(() => {
          polling = undefined;
          schedule();
        });
    }, delay);
    timer.unref();
  }

  async function poll(): Promise<void> {
    const startedAt = Date.now();
    const { batch } = await api();
    const list = await batch.listNamespacedJob({ namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGER}` });
    const seen = new Set<string>();
    for (const job of list.items) {
      const jobId = job.metadata?.labels?.[JOB_ID_LABEL];
      const userId = job.metadata?.labels?.[USER_ID_LABEL];
      if (!jobId || !userId) continue;
      seen.add(jobId);
      const outcome = outcomeOf(job);
      if (!outcome) {
        if (!tracked.has(jobId)) tracked.set(jobId, { userId, since: startedAt });
        continue;
      }
      tracked.delete(jobId);
      if (reported.has(jobId)) continue;
      reported.add(jobId);
      // Recording is idempotent (only a live job changes), so several instances may all report.
      await events.exited(jobId, userId, outcome);
      // The Secret goes with the Job through its owner reference; deleting it now also covers
      // a Secret whose owner reference could not be set.
      const secretName = kubernetesNames(jobId).secret;
      await deleteIgnoringMissing(() => api().then(({ core }) => core.deleteNamespacedSecret({ namespace, name: secretName }))).catch((error: unknown) =>
        console.warn(`[kubernetes-launcher] deleting the Secret ${secretName} failed: ${describeError(error)}`),
      );
    }
    for (const [jobId, entry] of tracked) {
      if (seen.has(jobId) || entry.since >= startedAt) continue;
      tracked.delete(jobId);
      await events.exited(jobId, entry.userId, {
        ok: false,
        error: `The Kubernetes Job ${namespace}/${kubernetesNames(jobId).job} was deleted before it finished.`,
      });
    }
    for (const jobId of reported) if (!seen.has(jobId)) reported.delete(jobId);
  }

  async function start(request: LaunchRequest) {
    const { k8s, batch, core } = await api();
    const names = kubernetesNames(request.jobId);
    const labels = { [MANAGED_BY_LABEL]: MANAGER, [JOB_ID_LABEL]: request.jobId, [USER_ID_LABEL]: request.userId };

    const secret: K8s.V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: names.secret, namespace, labels },
      type: 'Opaque',
      stringData: { [TOKEN_KEY]: request.env.JOB_TOKEN },
    };
    await call(k8s, `create the Secret ${names.secret}`, () => core.createNamespacedSecret({ namespace, body: secret }));

    let created: K8s.V1Job;
    try {
      created = await call(k8s, `create the Job ${names.job}`, () =>
        batch.createNamespacedJob({ namespace, body: jobSpec(settings, request, names, labels) }),
      );
    } catch (error) {
      await deleteIgnoringMissing(() => core.deleteNamespacedSecret({ namespace, name: names.secret })).catch(() => undefined);
      throw error;
    }

    const uid = created.metadata?.uid;
    try {
      if (!uid) throw new Error('the created Job has no uid');
      const patch = [
        { op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'batch/v1', kind: 'Job', name: names.job, uid }] },
      ];
      await call(k8s, `tie the Secret ${names.secret} to its Job`, () => core.patchNamespacedSecret({ namespace, name: names.secret, body: patch }));
    } catch (error) {
      // Not fatal: the Secret is still deleted on cancel and when this server sees the Job end.
      await events.log(request.jobId, 'warn', `The token Secret could not be given an owner reference (${describe(error)}); it will be deleted when the Job ends or is cancelled.`);
    }

    tracked.set(request.jobId, { userId: request.userId, since: Date.now() });
    schedule(pollMs);
    const gpus = settings.gpuCount > 0 ? `, ${settings.gpuCount}× ${settings.gpuResource}` : '';
    await events.log(request.jobId, 'info', `Created Kubernetes Job ${namespace}/${names.job} (image ${settings.image}${gpus}).`);
    return { ref: `${namespace}/${names.job}`, revealEnv: false };
  }

  async function cancel({ jobId, ref }: { jobId: string; ref: string | null }) {
    tracked.delete(jobId);
    const { k8s, batch, core } = await api();
    // The ref names the namespace the Job was created in, which may differ from today's setting.
    const [refNamespace, refName] = ref?.split('/') ?? [];
    const jobNamespace = refNamespace && refName ? refNamespace : namespace;
    const names = kubernetesNames(jobId);
    await deleteIgnoringMissing(() =>
      call(k8s, `delete the Job ${names.job}`, () =>
        batch.deleteNamespacedJob({ namespace: jobNamespace, name: refName ?? names.job, propagationPolicy: 'Background' }),
      ),
    );
    await deleteIgnoringMissing(() =>
      call(k8s, `delete the Secret ${names.secret}`, () => core.deleteNamespacedSecret({ namespace: jobNamespace, name: names.secret })),
    );
  }

  schedule(0);

  return {
    name: 'kubernetes',
    description: `Runs each job as a Kubernetes Job in namespace "${namespace}"${settings.gpuCount > 0 ? ` with ${settings.gpuCount}× ${settings.gpuResource}` : ''}.`,
    start,
    cancel,
    async close() {
      closed = true;
      clearTimeout(timer);
      await polling;
    },
  };
}

function jobSpec(
  settings: KubernetesSettings,
  request: LaunchRequest,
  names: { job: string; secret: string },
  labels: Record<string, string>,
): K8s.V1Job {
  const resources: Record<string, string> = {};
  if (settings.gpuCount > 0) resources[settings.gpuResource] = String(settings.gpuCount);
  if (settings.cpu) resources.cpu = settings.cpu;
  if (settings.memory) resources.memory = settings.memory;
  const hasResources = Object.keys(resources).length > 0;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: names.job, namespace: settings.namespace, labels },
    spec: {
      // A failed training run is reported, not silently retried with the same token.
      backoffLimit: 0,
      ttlSecondsAfterFinished: settings.ttlSecondsAfterFinished,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          // The pod holds one credential, its job token; it gets no Kubernetes API token.
          automountServiceAccountToken: false,
          ...(Object.keys(settings.nodeSelector).length > 0 ? { nodeSelector: settings.nodeSelector } : {}),
          ...(settings.tolerations.length > 0 ? { tolerations: settings.tolerations } : {}),
          ...(settings.imagePullSecret ? { imagePullSecrets: [{ name: settings.imagePullSecret }] } : {}),
          containers: [
            {
              name: CONTAINER_NAME,
              image: settings.image,
              command: settings.command,
              env: [
                { name: 'JOB_ID', value: request.env.JOB_ID },
                { name: 'API_URL', value: request.env.API_URL },
                { name: 'JOB_TOKEN', valueFrom: { secretKeyRef: { name: names.secret, key: TOKEN_KEY } } },
              ],
              // Extended resources (GPUs) must have requests equal to limits; the same for all keeps it simple.
              ...(hasResources ? { resources: { requests: resources, limits: { ...resources } } } : {}),
              securityContext: { allowPrivilegeEscalation: false },
            },
          ],
        },
      },
    },
  };
}

/** A finished Job's outcome from its conditions; undefined while it runs. */
export function outcomeOf(job: K8s.V1Job): { ok: boolean; error?: string } | undefined {
  const conditions = job.status?.conditions ?? [];
  const failed = conditions.find((c) => c.type === 'Failed' && c.status === 'True');
  if (failed) {
    const why = [failed.reason, failed.message].filter(Boolean).join(': ');
    return { ok: false, error: `The Kubernetes Job failed${why ? ` (${why})` : ''}. The pod's last log lines are on the job page.` };
  }
  if (conditions.some((c) => c.type === 'Complete' && c.status === 'True')) return { ok: true };
  return undefined;
}

/** Runs a Kubernetes call, turning its ApiException into an Error whose message the job can show. */
async function call<T>(k8s: K8sModule, what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof k8s.ApiException) {
      throw new KubernetesApiError(error.code, `Kubernetes refused to ${what} (HTTP ${error.code}): ${statusMessage(error.body)}`);
    }
    throw new Error(`Could not reach Kubernetes to ${what}: ${describe(error)}`);
  }
}

class KubernetesApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'KubernetesApiError';
  }
}

async function deleteIgnoringMissing(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (error instanceof KubernetesApiError && error.status === 404) return;
    if (typeof error === 'object' && error !== null && 'code' in error && error.code === 404) return;
    throw error;
  }
}

/** The message of a Kubernetes Status body (JSON text), or the text itself, kept short. */
function statusMessage(body: unknown): string {
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as unknown;
      if (typeof parsed === 'object' && parsed !== null && 'message' in parsed && typeof parsed.message === 'string') return parsed.message;
    } catch {
      // Not JSON: show the text.
    }
    return body.slice(0, 500) || 'no message';
  }
  return 'no message';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
