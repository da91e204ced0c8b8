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
//
// EventSource cannot send headers, so a subscription's credential travels in its URL. The
// session token never does: for each connection (and each reconnection) the client first asks
// auth.streamTicket for a ticket bound to that subscription's path and valid about a minute, and
// sends that as the connection parameter `ticket`.
import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  httpSubscriptionLink,
  splitLink,
  TRPCClientError,
  type TRPCLink,
} from '@trpc/client';
import { observable } from '@trpc/server/observable';
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
  /**
   * Whether calls made in the same tick share one HTTP request (tRPC's batch link; the default).
   * Pods turn it off: the server's body limit judges each request, so a 413 must belong to the one
   * call that was too large, not to a row that shared a request with a log flush.
   */
  batching?: boolean;
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
  const http = {
    url,
    headers: () => ({ ...options.headers, ...authHeaders(options.token) }),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  const batch = options.batching === false ? httpLink(http) : httpBatchLink({ ...http, maxURLLength: 4000, maxItems: 10 });
  // Tickets are minted over plain HTTP with the session token in the header.
  const ticketClient = createTRPCClient<AppRouter>({ links: [batch] });
  const mintTicket = async (path: string): Promise<string | null> =>
    authHeaders(options.token).authorization ? (await ticketClient.auth.streamTicket.mutate({ path })).ticket : null;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: ticketedSubscriptionLink({ url, mintTicket, ...(options.EventSource ? { EventSource: options.EventSource } : {}) }),
        false: batch,
      }),
    ],
  });
}

/** Reopenings of one stream in a row (no event in between) before its error reaches the caller. */
const MAX_STREAM_REOPENS = 5;

/**
 * Subscriptions over server-sent events, each connection opened with a fresh stream ticket.
 *
 * tRPC's httpSubscriptionLink (11.22) asks for connectionParams without saying which subscription
 * they are for, so one link instance is made per connection: its connectionParams know the path
 * and mint a ticket for it (tRPC calls them again when it reopens a silent stream). The browser's
 * own EventSource reconnect (after a dropped connection, a server restart) reuses the URL, whose
 * ticket may have expired by then; the server answers UNAUTHORIZED and the stream is reopened here
 * with a new ticket, resuming from the last event id. A refused ticket request (the session ended)
 * and every other error reach the caller as they are.
 */
function ticketedSubscriptionLink(opts: {
  url: string;
  mintTicket: (path: string) => Promise<string | null>;
  EventSource?: typeof globalThis.EventSource;
}): TRPCLink<AppRouter> {
  return (runtime) =>
    ({ op, next }) =>
      observable((observer) => {
        let lastEventId: string | undefined;
        let reopens = 0;
        let stopped = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        let current: { unsubscribe(): void } | undefined;
        const connect = () => {
          let ticketRefused: unknown = null;
          const link = httpSubscriptionLink<AppRouter, typeof globalThis.EventSource>({
            url: opts.url,
            connectionParams: async () => {
              try {
                const ticket = await opts.mintTicket(op.path);
                // Without a session there is nothing to reopen with: the server's refusal is the answer.
                if (!ticket) ticketRefused = 'signed out';
                return ticket ? { ticket } : {};
              } catch (error) {
                ticketRefused = error;
                throw error;
              }
            },
            ...(opts.EventSource ? { EventSource: opts.EventSource } : {}),
          })(runtime);
          const input = lastEventId !== undefined && isObject(op.input) ? { ...op.input, lastEventId } : op.input;
          current = link({ op: { ...op, input }, next }).subscribe({
            next(envelope) {
              const { result } = envelope;
              if (!('type' in result) || result.type === 'data' || result.type === undefined) {
                reopens = 0;
                if ('id' in result && typeof result.id === 'string') lastEventId = result.id;
              }
              observer.next(envelope);
            },
            error(error) {
              const stale = !ticketRefused && (error.data === undefined || error.data?.code === 'UNAUTHORIZED');
              if (stopped) return;
              if (!stale || reopens >= MAX_STREAM_REOPENS) {
                observer.error(ticketRefused instanceof TRPCClientError ? (ticketRefused as TRPCClientError<AppRouter>) : error);
                return;
              }
              reopens += 1;
              timer = setTimeout(connect, Math.min(250 * 2 ** reopens, 10_000));
            },
            complete() {
              observer.complete();
            },
          });
        };
        connect();
        return () => {
          stopped = true;
          clearTimeout(timer);
          current?.unsubscribe();
        };
      });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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
