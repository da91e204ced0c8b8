// Talking to a cluster through @kubernetes/client-node: where the kubeconfig comes from, and
// turning the client's exceptions into messages a job page can show.
import { homedir } from 'node:os';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type * as K8s from '@kubernetes/client-node';
import type { KubeConfigSource } from '../env';

export type K8sModule = typeof K8s;

/** Loads the cluster and credentials; throws naming the files it looked for when none exists. */
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

/** Runs a Kubernetes call, turning its ApiException into an Error whose message the job can show. */
export async function call<T>(k8s: K8sModule, what: string, run: () => Promise<T>): Promise<T> {
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

/** Runs a delete, treating an object that is already gone as deleted. */
export async function deleteIgnoringMissing(run: () => Promise<unknown>): Promise<void> {
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

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
