// What the Kubernetes launcher asks the cluster for, as plain objects: the per-job Secret holding
// the token, the batch/v1 Job that reads it, their names and labels, and how a finished Job's
// conditions read. No client calls here (kubernetes-client.ts), so the spec is testable alone.
import type * as K8s from '@kubernetes/client-node';
import type { KubernetesSettings } from '../env';
import type { LaunchRequest } from './types';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGER = 'predictions-server';
export const JOB_ID_LABEL = 'predictions/job-id';
export const USER_ID_LABEL = 'predictions/user-id';
const TOKEN_KEY = 'JOB_TOKEN';
const CONTAINER_NAME = 'trainer';

export type KubernetesNames = { job: string; secret: string };

/** Kubernetes object names for a job: DNS labels, 63 characters at most (a uuid leaves room). */
export function kubernetesNames(jobId: string): KubernetesNames {
  return { job: `predictions-${jobId}`, secret: `predictions-${jobId}-token` };
}

/** The Secret holding a job's token; the Job reads it by reference, so the token is never in the Job spec. */
export function secretSpec(namespace: string, request: LaunchRequest, names: KubernetesNames, labels: Record<string, string>): K8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: names.secret, namespace, labels },
    type: 'Opaque',
    stringData: { [TOKEN_KEY]: request.env.JOB_TOKEN },
  };
}

/** The labels by which this server finds its Jobs again (after a restart, or another instance's). */
export function jobLabels(request: LaunchRequest): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGER, [JOB_ID_LABEL]: request.jobId, [USER_ID_LABEL]: request.userId };
}

/** The batch/v1 Job for one training job. */
export function jobSpec(
  settings: KubernetesSettings,
  request: LaunchRequest,
  names: KubernetesNames,
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
