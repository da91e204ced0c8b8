// The Kubernetes launcher: one batch/v1 Job per training job, in one namespace. The job token
// goes into a per-job Secret (never into the Job spec) that the Job owns, so both go together; the
// objects themselves are built in kubernetes-spec.ts, the client calls wrapped in
// kubernetes-client.ts. The end of a Job is read from its conditions by a poll of the Jobs this
// server manages (found by label), so a Job started by another instance, or before a restart, is
// still seen to end. Pod logs arrive through pod.log, not from here.
import type * as K8s from '@kubernetes/client-node';
import type { KubernetesSettings } from '../env';
import { describeError } from '../log-safe';
import { call, deleteIgnoringMissing, describe, loadKubeConfig, type K8sModule } from './kubernetes-client';
import { JOB_ID_LABEL, jobLabels, jobSpec, kubernetesNames, MANAGED_BY_LABEL, MANAGER, outcomeOf, secretSpec, USER_ID_LABEL } from './kubernetes-spec';
import type { Launcher, LauncherEvents, LaunchRequest } from './types';

export interface KubernetesLauncherOptions {
  settings: KubernetesSettings;
  events: LauncherEvents;
  /** The cluster and credentials; by default loaded from settings.kubeconfig. Tests pass their own. */
  kubeConfig?: (k8s: K8sModule) => K8s.KubeConfig;
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
    const labels = jobLabels(request);
    await call(k8s, `create the Secret ${names.secret}`, () =>
      core.createNamespacedSecret({ namespace, body: secretSpec(namespace, request, names, labels) }),
    );

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
