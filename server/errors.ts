// Domain errors: code that is not the tRPC layer throws AppError with one of these codes;
// server/trpc/init.ts is the one place that turns them into tRPC errors and HTTP statuses.
export type AppErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'PRECONDITION_FAILED';

/** Machine-readable causes of a refused job token; the message says the same in words. */
export type AppErrorReason = 'token_expired' | 'token_revoked' | 'job_ended' | 'job_missing';

export class AppError extends Error {
  readonly code: AppErrorCode;
  /** The input field the error is about, when there is one (shown next to that field). */
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  /** Why, for programs that act on it rather than show it (a pod whose job has ended stops training). */
  readonly reason: AppErrorReason | undefined;

  constructor(code: AppErrorCode, message: string, options: { field?: string; retryAfterSeconds?: number; reason?: AppErrorReason } = {}) {
    super(message);
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
