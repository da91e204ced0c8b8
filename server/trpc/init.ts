// The one tRPC initialisation: procedure kinds, the error formatter and the caller factory.
// Domain code throws AppError; this file alone turns it into a TRPCError, and makes sure no
// stack trace, SQL or internal message ever reaches a client.
import { initTRPC, TRPCError } from '@trpc/server';
import { ZodError } from 'zod';
import { AppError, databaseUnavailable, isDatabaseUnavailable } from '../errors';
import { toStorableValue, type AlteredPath } from '#contract/text';
import { authorizePod } from '../pod/pod-auth';
import { releaseWhenEnded } from '../live/live-hub';
import { findLiveSession, touchSession } from '../../db/queries/sessions';
import type { Context } from './context';

export interface ErrorDetails {
  /** The input field an error is about, for forms to show it in place. */
  field: string | null;
  /** Per-field messages when the input failed validation. */
  fieldErrors: Record<string, string[]> | null;
  retryAfterSeconds: number | null;
  /** A machine-readable cause (see AppErrorReason), for clients that act on it. */
  reason: string | null;
}

const t = initTRPC.context<Context>().create({
  isDev: false,
  // Live subscriptions over server-sent events: a ping keeps proxies from closing idle streams,
  // and the client reconnects (resuming from the last event id) when pings stop arriving.
  sse: { ping: { enabled: true, intervalMs: 10_000 }, client: { reconnectAfterInactivityMs: 25_000 } },
  errorFormatter({ shape, error }): typeof shape & { data: typeof shape.data & ErrorDetails } {
    const cause = error.cause;
    const details: ErrorDetails = { field: null, fieldErrors: null, retryAfterSeconds: null, reason: null };
    let message = shape.message;
    if (cause instanceof ZodError) {
      message = describeZodError(cause);
      details.fieldErrors = fieldErrorsOf(cause);
      details.field = Object.keys(details.fieldErrors)[0] ?? null;
    } else if (cause instanceof AppError) {
      details.field = cause.field ?? null;
      details.retryAfterSeconds = cause.retryAfterSeconds ?? null;
      details.reason = cause.reason ?? null;
    } else if (error.code === 'INTERNAL_SERVER_ERROR') {
      message = 'Internal server error';
    }
    const { stack: _stack, ...data } = shape.data;
    return { ...shape, message, data: { ...data, ...details } };
  },
});

function fieldErrorsOf(error: ZodError): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const issue of error.issues) {
    const key = issue.path.join('.') || '(input)';
    (out[key] ??= []).push(issue.message);
  }
  return out;
}

function describeZodError(error: ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.join('.') || 'input'}: ${issue.message}`)
    .join('; ');
}

const APP_TO_TRPC: Record<AppError['code'], TRPCError['code']> = {
  BAD_REQUEST: 'BAD_REQUEST',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  PRECONDITION_FAILED: 'PRECONDITION_FAILED',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
};

/**
 * Turns a domain AppError thrown anywhere below into the matching tRPC error, and an unreachable
 * database into SERVICE_UNAVAILABLE (503 with Retry-After): pods and the web app retry a 503,
 * and it is not a bug in this server, so it must not read as a 500.
 */
const appErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (result.ok) return result;
  const { error } = result;
  const cause =
    error.cause instanceof AppError
      ? error.cause
      : error.code === 'INTERNAL_SERVER_ERROR' && isDatabaseUnavailable(error.cause ?? error)
        ? databaseUnavailable(error.cause ?? error)
        : undefined;
  if (cause) throw new TRPCError({ code: APP_TO_TRPC[cause.code], message: cause.message, cause });
  return result;
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;
export const middleware = t.middleware;

/**
 * Every procedure's input is made storable before it is parsed: U+0000 and lone surrogates
 * (which JSON carries and PostgreSQL refuses, failing a whole statement with a 500) become
 * U+FFFD, in values and keys alike. `ctx.inputAltered` lists where, for procedures that tell
 * the caller (pod.writePredictions marks such rows altered).
 */
const storableInput = t.middleware(async ({ ctx, getRawInput, next }) => {
  const { value, altered } = toStorableValue(await getRawInput());
  const inputAltered: readonly AlteredPath[] = altered;
  return next({ ctx: { ...ctx, inputAltered, storableRawInput: value } });
  // tRPC's types take a new context or a new raw input from one next(), not both: the pipe hands on the input.
}).unstable_pipe(({ ctx, next }) => next({ getRawInput: async () => ctx.storableRawInput }));

export const publicProcedure = t.procedure.use(appErrors).use(storableInput);

/** How often a session's last_used_at is written at most (seconds): the sessions list needs no finer. */
const SESSION_TOUCH_INTERVAL_SECONDS = 60;

/** The answer for a well-signed token whose session was revoked, has expired, or whose user is gone. */
export const SESSION_ENDED_MESSAGE = 'Your session has ended; sign in again';

/**
 * Signed-in users only; narrows ctx to the user's id and session id. The session's row is read
 * on every call (it exists, is not revoked or expired, its user exists), so signing out anywhere
 * takes effect on the next request. Ownership is still checked by every query.
 */
export const userProcedure = publicProcedure.use(async ({ ctx, next }) => {
  const { credential } = ctx;
  if (credential.kind === 'user') {
    const scope = { userId: credential.userId, sessionId: credential.sessionId };
    const session = await findLiveSession(ctx.db, scope);
    if (!session) throw new TRPCError({ code: 'UNAUTHORIZED', message: SESSION_ENDED_MESSAGE });
    if (Date.now() - session.lastUsedAt.getTime() > SESSION_TOUCH_INTERVAL_SECONDS * 1000) {
      await touchSession(ctx.db, { ...scope, intervalSeconds: SESSION_TOUCH_INTERVAL_SECONDS });
    }
    return next({ ctx: { ...ctx, ...scope, isAdmin: session.isAdmin } });
  }
  if (credential.kind === 'pod' || (credential.kind === 'rejected' && credential.audience === 'pod')) {
    throw new TRPCError({ code: 'FORBIDDEN', message: 'A job token cannot be used here; sign in as a user' });
  }
  throw new TRPCError({
    code: 'UNAUTHORIZED',
    message: credential.kind === 'none' ? 'Sign in first' : 'Your session is invalid or has expired; sign in again',
  });
}).use(async ({ ctx, type, signal, next }) => {
  // A live stream holds one of its user's slots (MAX_LIVE_STREAMS_PER_USER) from open to end;
  // past the cap it is refused with TOO_MANY_REQUESTS before it opens.
  if (type !== 'subscription') return next();
  const release = ctx.deps.live.holdStream(ctx.userId);
  const result = await next();
  if (!result.ok || !isAsyncIterable(result.data)) {
    release();
    return result;
  }
  // The stream ends the moment its session does (sign-out, sign-out everywhere, a password
  // change, on any instance): an open stream must not outlive the credential that opened it.
  const scope = { userId: ctx.userId, sessionId: ctx.sessionId };
  const watch = ctx.deps.live.watchSession(scope.sessionId, async () => (await findLiveSession(ctx.db, scope)) !== undefined);
  const endsWithSession = endWhenSessionEnds(result.data, watch);
  return { ...result, data: releaseWhenEnded(endsWithSession, release, signal) };
});

/**
 * Passes a stream's events through until `watch.ended` resolves, then stops it and fails with
 * UNAUTHORIZED (the client signs out); nothing the stream would have sent after that is sent.
 */
async function* endWhenSessionEnds<T>(stream: AsyncIterable<T>, watch: { ended: Promise<void>; dispose(): void }): AsyncGenerator<T> {
  const iterator = stream[Symbol.asyncIterator]();
  let ended = false;
  const endedSignal = watch.ended.then(() => {
    ended = true;
    return 'ended' as const;
  });
  try {
    for (;;) {
      const step = await Promise.race([iterator.next(), endedSignal]);
      if (step === 'ended' || ended) throw new TRPCError({ code: 'UNAUTHORIZED', message: SESSION_ENDED_MESSAGE });
      if (step.done) return;
      yield step.value;
    }
  } finally {
    watch.dispose();
    // Not awaited: a generator's return waits for its pending next, which may wait for data forever.
    iterator.return?.()?.catch(() => undefined);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/**
 * Administrators of this server only (users.is_admin, read with the session on every call, so
 * taking the flag away takes effect at once). Anyone else signed in gets FORBIDDEN.
 */
export const adminProcedure = userProcedure.use(async ({ ctx, next }) => {
  if (!ctx.isAdmin) {
    throw new TRPCError({ code: 'FORBIDDEN', message: 'Only an administrator of this server may do this' });
  }
  return next();
});

/**
 * Pods only: a verified job token for a live job at its current version. Narrows ctx to the
 * job and its owner, both from the token; no pod input ever names a job or a user.
 */
export const podProcedure = publicProcedure.use(async ({ ctx, next }) => {
  const pod = await authorizePod(ctx.deps, ctx.credential);
  return next({ ctx: { ...ctx, pod } });
});
