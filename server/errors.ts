// Domain errors: code that is not the tRPC layer throws AppError with one of these codes;
// server/trpc/init.ts is the one place that turns them into tRPC errors and HTTP statuses.
import type { PodErrorReason } from '#contract/pod.schemas';
export type AppErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'PRECONDITION_FAILED'
  /** The database cannot be reached just now; the client should try again after a pause. */
  | 'SERVICE_UNAVAILABLE';

/** Machine-readable causes of a refused job token; the message says the same in words. */
export type AppErrorReason = PodErrorReason;

export class AppError extends Error {
  readonly code: AppErrorCode;
  /** The input field the error is about, when there is one (shown next to that field). */
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  /** Why, for programs that act on it rather than show it (a pod whose job has ended stops training). */
  readonly reason: AppErrorReason | undefined;

  constructor(
    code: AppErrorCode,
    message: string,
    options: { field?: string; retryAfterSeconds?: number; reason?: AppErrorReason; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.reason = options.reason;
  }
}

/** The answer for an id that does not exist and for one that belongs to someone else: the same. */
export function notFound(what: string): AppError {
  return new AppError('NOT_FOUND', `${what} not found`);
}

/** How long a client is asked to wait (Retry-After) while the database is unreachable. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

// Node's socket errors and PostgreSQL's SQLSTATEs that mean "the database is not there right now",
// as opposed to "this statement is wrong": class 08 (connection exception), 57P01/57P02 (admin
// or crash shutdown), 57P03 (cannot connect now: starting up, recovering), 53300 (too many connections).
const UNREACHABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
// node-postgres says these in words only, without a code.
const UNREACHABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
];

/** The error and everything it wraps (`cause`, and the attempts of an AggregateError), outermost first. */
export function errorChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  const queue: unknown[] = [error];
  // Bounded: a cause cycle or a huge AggregateError cannot make logging or mapping expensive.
  while (queue.length > 0 && chain.length < 16) {
    const next = queue.shift();
    if (next === undefined || next === null || chain.includes(next)) continue;
    chain.push(next);
    if (typeof next === 'object') {
      const { cause, errors } = next as { cause?: unknown; errors?: unknown };
      queue.push(cause);
      if (Array.isArray(errors)) queue.push(...errors.slice(0, 4));
    }
  }
  return chain;
}

/** True when an error (or what it wraps) says the database is unreachable or refusing connections. */
export function isDatabaseUnavailable(error: unknown): boolean {
  return errorChain(error).some((link) => {
    if (typeof link !== 'object' || link === null) return false;
    const { code, message } = link as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (UNREACHABLE_SOCKET_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
    return typeof message === 'string' && UNREACHABLE_MESSAGES.some((words) => message.startsWith(words));
  });
}

/** The answer for any request that needed the database while it was unreachable. */
export function databaseUnavailable(cause?: unknown): AppError {
  return new AppError('SERVICE_UNAVAILABLE', `The database is unreachable; try again in ${DATABASE_RETRY_AFTER_SECONDS} seconds`, {
    retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
    reason: 'database_unavailable',
    cause,
  });
}
