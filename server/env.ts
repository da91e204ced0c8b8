// The only reader of process.env: parses the environment once at start, so a bad value stops
// the server with a message naming the variable instead of surfacing later as odd behaviour.
import { z } from 'zod';

// 0 asks the OS for a free port (used by tests).
const port = z.coerce.number().int().min(0).max(65_535);
const optionalSecret = z
  .string()
  .min(32, 'must be at least 32 characters (generate one with: openssl rand -base64 48)')
  .optional();
const flag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

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
  TRUST_PROXY: flag.default(false),
  LOCAL_MAX_CONCURRENT: z.coerce.number().int().min(1).max(64).default(2),
  DIAGNOSTICS_CONNECT_GRACE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(60),
  LOG_REQUESTS: flag.default(false),
});

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
  trustProxy: boolean;
  logRequests: boolean;
  /** How many local-launcher trainer processes may run at once; more wait in a queue. */
  localMaxConcurrent: number;
  /** How long after deploy a pod may take to connect before diagnostics call it a failure. */
  connectGraceSeconds: number;
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
    connectGraceSeconds: e.DIAGNOSTICS_CONNECT_GRACE_SECONDS,
  };
}
