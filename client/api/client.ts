// The typed client library for this server, used by the SPA, the trainer and any other
// TypeScript service:
//
//   import { createApiClient } from '<this repo>/client/api/client';
//   const api = createApiClient({ url: 'http://localhost:3000', token });
//   const me = await api.auth.me.query();
//
// It speaks tRPC's plain-JSON wire format over HTTP (batched); live subscriptions arrive as
// server-sent events. Browsers have EventSource; in Node pass one, e.g. from the `eventsource`
// package: createApiClient({ url, token, EventSource }).
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink, TRPCClientError } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from '../../server/routers/app.router';

export type { AppRouter };
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
export type ApiClient = ReturnType<typeof createApiClient>;

export interface ApiClientOptions {
  /** The server's base URL ("http://host:3000"), or "" for the page's own origin in a browser. */
  url: string;
  /** A user session token or a pod's job token; a function is asked before every request. */
  token?: string | (() => string | null | undefined);
  fetch?: typeof fetch;
  /** Extra headers for every request (not for credentials: use `token`). */
  headers?: Record<string, string>;
  /** An EventSource implementation for subscriptions where there is no global one (Node 20). */
  EventSource?: typeof globalThis.EventSource;
}

export function trpcUrl(base: string): string {
  return `${base.replace(/\/+$/, '')}/trpc`;
}

export function authHeaders(token: ApiClientOptions['token']): Record<string, string> {
  const value = typeof token === 'function' ? token() : token;
  return value ? { authorization: `Bearer ${value}` } : {};
}

export function createApiClient(options: ApiClientOptions) {
  const url = trpcUrl(options.url);
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url,
          // EventSource cannot send headers: the token travels as a connection parameter.
          connectionParams: () => {
            const token = authHeaders(options.token).authorization?.slice('Bearer '.length);
            return token ? { token } : {};
          },
          ...(options.EventSource ? { EventSource: options.EventSource } : {}),
        }),
        false: httpBatchLink({
          url,
          maxURLLength: 4000,
          maxItems: 10,
          headers: () => ({ ...options.headers, ...authHeaders(options.token) }),
          ...(options.fetch ? { fetch: options.fetch } : {}),
        }),
      }),
    ],
  });
}

/** The server's error details (field, per-field messages, retry-after) from any client error. */
export function errorDetails(error: unknown): {
  message: string;
  code: string | undefined;
  httpStatus: number | undefined;
  field: string | null;
  fieldErrors: Record<string, string[]> | null;
  retryAfterSeconds: number | null;
  /** A machine-readable cause, when the server gives one (e.g. `job_ended` for a pod). */
  reason: string | null;
} {
  if (error instanceof TRPCClientError) {
    const data = (error as TRPCClientError<AppRouter>).data;
    return {
      message: error.message,
      code: data?.code,
      httpStatus: data?.httpStatus,
      field: data?.field ?? null,
      fieldErrors: data?.fieldErrors ?? null,
      retryAfterSeconds: data?.retryAfterSeconds ?? null,
      reason: data?.reason ?? null,
    };
  }
  return {
    message: error instanceof Error ? error.message : String(error),
    code: undefined,
    httpStatus: undefined,
    field: null,
    fieldErrors: null,
    retryAfterSeconds: null,
    reason: null,
  };
}
