// Builds this server's launchers from its config (server/env.ts decides which are enabled and
// with what settings), and describes them for launchers.list without any secret.
import path from 'node:path';
import type * as K8s from '@kubernetes/client-node';
import type { AppDeps } from '../app-deps';
import type { LaunchersConfig } from '../env';
import { LAUNCHERS, type LauncherName } from '#contract/job-config';
import { launcherEvents } from '../jobs/jobs.service';
import { getJob, unsafeListLiveJobsOfLauncher } from '../../db/queries/jobs';
import { isLiveStatus } from '#contract/statuses';
import { PROJECT_ROOT } from '../paths';
import type { Launcher, LauncherRegistry } from './types';
import { createLocalLauncher } from './local';
import { createManualLauncher } from './manual';
import { createKubernetesLauncher } from './kubernetes';
import { createRunpodLauncher } from './runpod';

export interface RegistryOptions {
  /** Overrides how the Kubernetes client finds its cluster (tests point it at a local server). */
  kubeConfig?: (k8s: typeof K8s) => K8s.KubeConfig;
}

export function createLauncherRegistry(deps: AppDeps, options: RegistryOptions = {}): LauncherRegistry {
  const config = deps.config.launchers;
  const events = launcherEvents(() => deps);
  const build: Record<LauncherName, () => Launcher | undefined> = {
    local: () =>
      createLocalLauncher({
        projectRoot: PROJECT_ROOT,
        spoolDir: path.resolve(deps.config.dataDir, 'spool'),
        logDir: path.resolve(deps.config.dataDir, 'local-jobs'),
        maxConcurrent: deps.config.localMaxConcurrent,
        maxPerUser: deps.config.localMaxJobsPerUser,
        events,
        ...(config.local.command ? { command: argvCommand(config.local.command) } : {}),
      }),
    manual: () => createManualLauncher(),
    kubernetes: () =>
      config.kubernetes
        ? createKubernetesLauncher({ settings: config.kubernetes, events, ...(options.kubeConfig ? { kubeConfig: options.kubeConfig } : {}) })
        : undefined,
    runpod: () =>
      config.runpod
        ? createRunpodLauncher({
            settings: config.runpod,
            events,
            async isJobLive(jobId, userId) {
              const job = await getJob(deps.database.db, { userId, jobId });
              return job !== undefined && isLiveStatus(job.status);
            },
            liveJobs: () => unsafeListLiveJobsOfLauncher(deps.database.db, { launcher: 'runpod' }),
          })
        : undefined,
  };
  const registry: LauncherRegistry = {};
  for (const name of config.enabled) {
    const launcher = build[name]();
    if (launcher) registry[name] = launcher;
  }
  return registry;
}

function argvCommand([file, ...args]: string[]): { file: string; args: string[] } {
  if (!file) throw new Error('LOCAL_TRAINER_COMMAND is empty');
  return { file, args };
}

export interface LauncherInfo {
  name: LauncherName;
  description: string;
  /** What the UI may show about how the launcher is set up: never a key, token or kubeconfig. */
  settings: Record<string, string | number | boolean | null>;
}

/** The launchers a job may ask for on this server, with their non-secret settings. */
export function describeLaunchers(registry: LauncherRegistry, config: LaunchersConfig): LauncherInfo[] {
  const infos: LauncherInfo[] = [];
  for (const name of LAUNCHERS) {
    const launcher = registry[name];
    if (launcher) infos.push({ name, description: launcher.description, settings: publicSettings(name, config) });
  }
  return infos;
}

function publicSettings(name: LauncherName, config: LaunchersConfig): LauncherInfo['settings'] {
  if (name === 'kubernetes' && config.kubernetes) {
    const k = config.kubernetes;
    return {
      namespace: k.namespace,
      image: k.image,
      gpuCount: k.gpuCount,
      gpuResource: k.gpuResource,
      cpu: k.cpu,
      memory: k.memory,
      nodeSelector: Object.keys(k.nodeSelector).length > 0 ? JSON.stringify(k.nodeSelector) : null,
      tolerations: k.tolerations.length,
      ttlSecondsAfterFinished: k.ttlSecondsAfterFinished,
    };
  }
  if (name === 'runpod' && config.runpod) {
    const r = config.runpod;
    // Deliberately not apiKey, and not apiUrl either (it could carry credentials in a proxy URL).
    return { image: r.image, gpuTypes: r.gpuTypeIds.join(', '), gpuCount: r.gpuCount, cloudType: r.cloudType, containerDiskInGb: r.containerDiskInGb };
  }
  if (name === 'local') return { customCommand: config.local.command !== null };
  return {};
}
