// The only reader of process.env: parses the environment once at start, so a bad value stops
// the server with a message naming the variable instead of surfacing later as odd behaviour.
import { isIP } from 'node:net';
import { z } from 'zod';
import { LAUNCHERS, type LauncherName } from '#contract/job-config';
import { SIGNUP_POLICIES, type SignupPolicy } from '#contract/auth.schemas';

// 0 asks the OS for a free port (used by tests).
const port = z.coerce.number().int().min(0).max(65_535);
const optionalSecret = z
  .string()
  .min(32, 'must be at least 32 characters (generate one with: openssl rand -base64 48)')
  .optional();
const flag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
/**
 * TRUST_PROXY, handed to Express's own `trust proxy` setting: a hop count (how many proxies stand
 * in front of this server; 0 = none) or a comma-separated list of trusted proxy addresses/subnets
 * (or Express's names loopback, linklocal, uniquelocal). `true` is refused: Express would then take
 * the left-most X-Forwarded-For entry, which the client writes itself (audit F9).
 */
const trustProxy = z.string().transform((text, ctx): number | string[] => {
  const value = text.trim();
  if (value === 'false') return 0;
  if (/^\d+$/.test(value)) {
    const hops = Number(value);
    if (hops <= 32) return hops;
    ctx.addIssue({ code: 'custom', message: 'must be at most 32 proxy hops' });
    return z.NEVER;
  }
  if (value === 'true') {
    ctx.addIssue({
      code: 'custom',
      message: 'true would trust any X-Forwarded-For a client sends; give the number of proxies in front of this server (e.g. 1) or their addresses (e.g. 10.0.0.0/8)',
    });
    return z.NEVER;
  }
  const entries = value.split(',').map((entry) => entry.trim()).filter(Boolean);
  const bad = entries.filter((entry) => !isProxyAddress(entry));
  if (entries.length === 0 || bad.length > 0) {
    ctx.addIssue({ code: 'custom', message: 'must be a number of proxy hops (e.g. 1) or a comma-separated list of proxy addresses or subnets (e.g. 10.0.0.1,10.1.0.0/16)' });
    return z.NEVER;
  }
  return entries;
});

function isProxyAddress(entry: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(entry)) return true;
  const [address = '', bits, extra] = entry.split('/');
  const version = isIP(address);
  if (version === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d+$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128);
}

/** A variable holding JSON, checked against a schema (used for argv lists, selectors, tolerations). */
function jsonOf<T extends z.ZodType>(schema: T, example: string) {
  return z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: `must be JSON, e.g. ${example}` });
        return z.NEVER;
      }
    })
    .pipe(schema);
}
const argv = jsonOf(z.array(z.string().min(1)).min(1), '["python3","train.py"]');
const launcherList = z
  .string()
  .transform((text) => text.split(',').map((name) => name.trim()).filter(Boolean))
  .pipe(z.array(z.enum(LAUNCHERS)).min(1, 'must name at least one launcher'));
/** A Kubernetes resource quantity such as "16Gi" or "4" or "500m". */
const quantity = z.string().regex(/^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$/, 'must be a Kubernetes quantity such as 16Gi or 4');
const toleration = z.strictObject({
  key: z.string().optional(),
  operator: z.enum(['Exists', 'Equal']).optional(),
  value: z.string().optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
  tolerationSeconds: z.number().int().optional(),
});
export type Toleration = z.infer<typeof toleration>;
/** What the bundled trainer runs as inside the app image (WORKDIR /app). */
const IMAGE_TRAINER_COMMAND = ['node', '--import', 'tsx', 'trainer/main.ts'];

const envSchema = z.object({
  PORT: port.default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  PUBLIC_URL: z.url().optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  DATA_DIR: z.string().min(1).default('./data'),
  SESSION_SECRET: optionalSecret,
  JOB_TOKEN_SECRET: optionalSecret,
  SESSION_TTL_HOURS: z.coerce.number().int().min(1).max(24 * 90).default(24 * 7),
  JOB_TOKEN_TTL_HOURS: z.coerce.number().int().min(1).max(24 * 365).default(24 * 14),
  // Bounded on both sides: zero, negative or absurd limits are refused rather than meaning "no limit".
  MAX_BODY_BYTES: z.coerce.number().int().min(16 * 1024).max(64 * 1024 * 1024).default(8 * 1024 * 1024),
  MAX_BATCH_CALLS: z.coerce.number().int().min(1).max(100).default(16),
  TRUST_PROXY: trustProxy.default(0),
  LOCAL_MAX_CONCURRENT: z.coerce.number().int().min(1).max(64).default(2),
  // Secure by default on a self-hosted server: new accounts need an administrator's invitation
  // (the first account on an empty server may always register, and becomes the administrator).
  SIGNUP: z.enum(SIGNUP_POLICIES).default('invite'),
  LOCAL_MAX_JOBS_PER_USER: z.coerce.number().int().min(1).max(64).default(1),
  // 100 000 steps is hours of CPU for the bundled trainer; a deploy planning more is refused.
  LOCAL_MAX_STEPS_PER_JOB: z.coerce.number().int().min(1).max(100_000_000).default(100_000),
  DIAGNOSTICS_CONNECT_GRACE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(60),
  // After pod.finish({status:'completed'}) the job's token may still write for this long (0: not at all).
  FINISHED_JOB_WRITE_GRACE_SECONDS: z.coerce.number().int().min(0).max(7 * 86_400).default(3_600),
  // Open live streams (predictions.onNew, jobs.onUpdate) per user on one instance; each holds a socket and a re-read timer.
  MAX_LIVE_STREAMS_PER_USER: z.coerce.number().int().min(1).max(1_000).default(16),
  // On SIGTERM, how long requests in flight may take to finish before their connections are closed.
  SHUTDOWN_GRACE_SECONDS: z.coerce.number().int().min(0).max(300).default(10),
  LOG_REQUESTS: flag.default(false),

  // Launchers. Unset LAUNCHERS: local and manual, plus kubernetes / runpod when configured below.
  LAUNCHERS: launcherList.optional(),
  LOCAL_TRAINER_COMMAND: argv.optional(),

  KUBERNETES_ENABLED: flag.optional(),
  KUBECONFIG: z.string().optional(),
  // Set by Kubernetes in every pod: the server itself runs in a cluster (service account config).
  KUBERNETES_SERVICE_HOST: z.string().optional(),
  KUBERNETES_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a Kubernetes namespace name').max(63).default('default'),
  KUBERNETES_IMAGE: z.string().min(1).optional(),
  KUBERNETES_IMAGE_PULL_SECRET: z.string().min(1).optional(),
  KUBERNETES_COMMAND: argv.optional(),
  KUBERNETES_GPU_COUNT: z.coerce.number().int().min(0).max(64).default(1),
  KUBERNETES_GPU_RESOURCE: z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'must be an extended resource name such as nvidia.com/gpu').default('nvidia.com/gpu'),
  KUBERNETES_CPU: quantity.optional(),
  KUBERNETES_MEMORY: quantity.optional(),
  KUBERNETES_NODE_SELECTOR: jsonOf(z.record(z.string(), z.string()), '{"cloud.google.com/gke-accelerator":"nvidia-l4"}').optional(),
  KUBERNETES_TOLERATIONS: jsonOf(z.array(toleration), '[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]').optional(),
  KUBERNETES_TTL_SECONDS_AFTER_FINISHED: z.coerce.number().int().min(0).max(30 * 86_400).default(3_600),
  KUBERNETES_POLL_SECONDS: z.coerce.number().int().min(1).max(3_600).default(10),

  RUNPOD_API_KEY: z.string().min(1).optional(),
  RUNPOD_API_URL: z.url().default('https://rest.runpod.io/v1'),
  RUNPOD_IMAGE: z.string().min(1).optional(),
  RUNPOD_GPU_TYPE: z
    .string()
    .transform((text) => text.split(',').map((name) => name.trim()).filter(Boolean))
    .pipe(z.array(z.string()).min(1))
    .optional(),
  RUNPOD_GPU_COUNT: z.coerce.number().int().min(1).max(16).default(1),
  RUNPOD_CLOUD_TYPE: z.enum(['SECURE', 'COMMUNITY']).optional(),
  RUNPOD_CONTAINER_DISK_GB: z.coerce.number().int().min(1).max(2_000).default(20),
  RUNPOD_COMMAND: argv.optional(),
  RUNPOD_POLL_SECONDS: z.coerce.number().int().min(1).max(3_600).default(15),
});

/** Where the Kubernetes client finds its cluster and credentials. */
export type KubeConfigSource = { kind: 'file'; path: string } | { kind: 'in-cluster' } | { kind: 'home' };

export interface KubernetesSettings {
  kubeconfig: KubeConfigSource;
  namespace: string;
  image: string;
  imagePullSecret: string | null;
  /** The container's command: runs the trainer with JOB_ID, JOB_TOKEN and API_URL set. */
  command: string[];
  gpuCount: number;
  gpuResource: string;
  cpu: string | null;
  memory: string | null;
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
  ttlSecondsAfterFinished: number;
  pollSeconds: number;
}

export interface RunpodSettings {
  /** Secret: never logged, never returned by launchers.list. */
  apiKey: string;
  apiUrl: string;
  image: string;
  gpuTypeIds: string[];
  gpuCount: number;
  cloudType: 'SECURE' | 'COMMUNITY' | null;
  containerDiskInGb: number;
  command: string[];
  pollSeconds: number;
}

export interface LaunchersConfig {
  /** The launchers this server offers, in order. */
  enabled: LauncherName[];
  local: { command: string[] | null };
  /** Present exactly when the kubernetes launcher is enabled. */
  kubernetes: KubernetesSettings | null;
  /** Present exactly when the runpod launcher is enabled. */
  runpod: RunpodSettings | null;
}

export interface AppConfig {
  port: number;
  host: string;
  /** The URL pods use to reach this server (handed to them as API_URL); null: derived from the port once listening. */
  publicUrl: string | null;
  database: { kind: 'pglite'; dataDir: string } | { kind: 'postgres'; url: string; poolSize: number };
  dataDir: string;
  secrets: { session?: string; jobToken?: string };
  sessionTtlSeconds: number;
  jobTokenTtlSeconds: number;
  maxBodyBytes: number;
  maxBatchCalls: number;
  /** Express's `trust proxy`: proxy hops in front of this server (0: none), or trusted proxy addresses/subnets. */
  trustProxy: number | string[];
  logRequests: boolean;
  /** How many local-launcher trainer processes may run at once; more wait in a queue. */
  localMaxConcurrent: number;
  /** How many local-launcher trainers one user may have running at once; their others wait without holding a slot. */
  localMaxJobsPerUser: number;
  /** The most optimizer steps (epochs × steps per epoch) a local job may plan; more is refused at deploy. */
  localMaxStepsPerJob: number;
  /** Who may create an account; the first account on an empty server always may. */
  signup: SignupPolicy;
  /** How long after deploy a pod may take to connect before diagnostics call it a failure. */
  connectGraceSeconds: number;
  /**
   * How long after a completed pod.finish the job's token may still write predictions, metrics
   * and logs (late rows: evaluate() after train()); 0 refuses them at once.
   */
  finishedJobWriteGraceSeconds: number;
  /** Live subscriptions one user may hold open on this instance; the next is refused with TOO_MANY_REQUESTS. */
  maxLiveStreamsPerUser: number;
  /** How long close() lets requests in flight finish (live streams are ended at once) before it cuts connections. */
  shutdownGraceSeconds: number;
  launchers: LaunchersConfig;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses an environment (normally process.env) into the server's config; throws ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  // An empty variable means "not set", as in most shells' `FOO= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    // Values are never echoed: some of these variables are secrets.
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  const e = parsed.data;
  const launchers = launchersConfig(e);
  return {
    port: e.PORT,
    host: e.HOST,
    publicUrl: e.PUBLIC_URL ? e.PUBLIC_URL.replace(/\/+$/, '') : null,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE }
      : { kind: 'pglite', dataDir: `${e.DATA_DIR}/pglite` },
    dataDir: e.DATA_DIR,
    secrets: { session: e.SESSION_SECRET, jobToken: e.JOB_TOKEN_SECRET },
    sessionTtlSeconds: e.SESSION_TTL_HOURS * 3600,
    jobTokenTtlSeconds: e.JOB_TOKEN_TTL_HOURS * 3600,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxBatchCalls: e.MAX_BATCH_CALLS,
    trustProxy: e.TRUST_PROXY,
    logRequests: e.LOG_REQUESTS,
    localMaxConcurrent: e.LOCAL_MAX_CONCURRENT,
    localMaxJobsPerUser: e.LOCAL_MAX_JOBS_PER_USER,
    localMaxStepsPerJob: e.LOCAL_MAX_STEPS_PER_JOB,
    signup: e.SIGNUP,
    connectGraceSeconds: e.DIAGNOSTICS_CONNECT_GRACE_SECONDS,
    finishedJobWriteGraceSeconds: e.FINISHED_JOB_WRITE_GRACE_SECONDS,
    maxLiveStreamsPerUser: e.MAX_LIVE_STREAMS_PER_USER,
    shutdownGraceSeconds: e.SHUTDOWN_GRACE_SECONDS,
    launchers,
  };
}

/** Which launchers are on, and their settings; a launcher asked for but not fully configured is a ConfigError. */
function launchersConfig(e: z.output<typeof envSchema>): LaunchersConfig {
  const problems: string[] = [];
  const kubernetesWanted = e.LAUNCHERS ? e.LAUNCHERS.includes('kubernetes') : e.KUBERNETES_ENABLED === true;
  const runpodWanted = e.LAUNCHERS ? e.LAUNCHERS.includes('runpod') : e.RUNPOD_API_KEY !== undefined;
  if (e.LAUNCHERS?.includes('kubernetes') && e.KUBERNETES_ENABLED === false) {
    problems.push('LAUNCHERS: lists kubernetes, but KUBERNETES_ENABLED is false');
  }

  let kubernetes: KubernetesSettings | null = null;
  if (kubernetesWanted) {
    if (!e.KUBERNETES_IMAGE) problems.push('KUBERNETES_IMAGE: required when the kubernetes launcher is enabled (the image that runs the trainer)');
    kubernetes = {
      // A kubeconfig named explicitly wins; inside a cluster the service account; otherwise ~/.kube/config.
      kubeconfig: e.KUBECONFIG
        ? { kind: 'file', path: e.KUBECONFIG }
        : e.KUBERNETES_SERVICE_HOST
          ? { kind: 'in-cluster' }
          : { kind: 'home' },
      namespace: e.KUBERNETES_NAMESPACE,
      image: e.KUBERNETES_IMAGE ?? '',
      imagePullSecret: e.KUBERNETES_IMAGE_PULL_SECRET ?? null,
      command: e.KUBERNETES_COMMAND ?? IMAGE_TRAINER_COMMAND,
      gpuCount: e.KUBERNETES_GPU_COUNT,
      gpuResource: e.KUBERNETES_GPU_RESOURCE,
      cpu: e.KUBERNETES_CPU ?? null,
      memory: e.KUBERNETES_MEMORY ?? null,
      nodeSelector: e.KUBERNETES_NODE_SELECTOR ?? {},
      tolerations: e.KUBERNETES_TOLERATIONS ?? [],
      ttlSecondsAfterFinished: e.KUBERNETES_TTL_SECONDS_AFTER_FINISHED,
      pollSeconds: e.KUBERNETES_POLL_SECONDS,
    };
  }

  let runpod: RunpodSettings | null = null;
  if (runpodWanted) {
    if (!e.RUNPOD_API_KEY) problems.push('RUNPOD_API_KEY: required when the runpod launcher is enabled');
    if (!e.RUNPOD_IMAGE) problems.push('RUNPOD_IMAGE: required when the runpod launcher is enabled (the image that runs the trainer)');
    if (!e.RUNPOD_GPU_TYPE) problems.push('RUNPOD_GPU_TYPE: required when the runpod launcher is enabled, e.g. "NVIDIA GeForce RTX 4090" (several: comma-separated)');
    runpod = {
      apiKey: e.RUNPOD_API_KEY ?? '',
      apiUrl: e.RUNPOD_API_URL.replace(/\/+$/, ''),
      image: e.RUNPOD_IMAGE ?? '',
      gpuTypeIds: e.RUNPOD_GPU_TYPE ?? [],
      gpuCount: e.RUNPOD_GPU_COUNT,
      cloudType: e.RUNPOD_CLOUD_TYPE ?? null,
      containerDiskInGb: e.RUNPOD_CONTAINER_DISK_GB,
      command: e.RUNPOD_COMMAND ?? IMAGE_TRAINER_COMMAND,
      pollSeconds: e.RUNPOD_POLL_SECONDS,
    };
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const enabled = e.LAUNCHERS
    ? [...new Set(e.LAUNCHERS)]
    : LAUNCHERS.filter((name) => name === 'local' || name === 'manual' || (name === 'kubernetes' && kubernetes) || (name === 'runpod' && runpod));
  return { enabled, local: { command: e.LOCAL_TRAINER_COMMAND ?? null }, kubernetes, runpod };
}
