// Request context. createContextInner takes plain values (no HTTP) so router tests can call
// procedures through createCaller; createContext adapts an Express request to it.
// Context creation never throws: a missing or bad token yields a credential the procedure
// kinds in init.ts refuse. It also never touches the database: whether a session is still live
// is checked by userProcedure, so an unreachable database answers 503 there, not a 500 here.
//
// Where a credential may come from: queries and mutations read only the Authorization header.
// A subscription (EventSource cannot send headers) may instead carry a stream ticket in its
// connection params (`?connectionParams={"ticket":…}`), minted by auth.streamTicket for that
// subscription's path and valid about a minute. A session token is never read from a URL, where
// proxy logs would keep it (audit F7).
import { decodeJwt } from 'jose';
import type { CreateExpressContextOptions } from '@trpc/server/adapters/express';
import type { Db } from '../../db/client';
import type { AppDeps } from '../app-deps';
import { verifyJobToken, verifySessionToken, verifyStreamTicket, type JobTokenClaims, type TokenFailure } from '../auth/tokens';

export type Credential =
  | { kind: 'none' }
  /** A verified session token (or stream ticket) naming its session; userProcedure checks the session's row. */
  | { kind: 'user'; userId: string; sessionId: string }
  | { kind: 'pod'; claims: JobTokenClaims }
  /** A token that failed verification; for pod tokens with a good signature, its claims. */
  | { kind: 'rejected'; audience: 'user' | 'pod'; reason: TokenFailure; claims?: JobTokenClaims };

export interface Context {
  deps: AppDeps;
  db: Db;
  credential: Credential;
  /** The client's address as Express computes it under TRUST_PROXY (for throttles). */
  clientIp: string;
  /** The User-Agent header, for the sessions list (cut to USER_AGENT_MAX when stored). */
  userAgent: string | null;
}

export async function createContextInner(opts: {
  deps: AppDeps;
  authorization?: string | undefined;
  /** A stream ticket and the subscription path it must be for (subscriptions only). */
  streamTicket?: { ticket: string; path: string } | undefined;
  clientIp?: string;
  userAgent?: string | null;
}): Promise<Context> {
  const credential = opts.authorization
    ? await readCredential(opts.deps, opts.authorization)
    : opts.streamTicket
      ? await readStreamTicket(opts.deps, opts.streamTicket)
      : { kind: 'none' as const };
  return {
    deps: opts.deps,
    db: opts.deps.database.db,
    credential,
    clientIp: opts.clientIp ?? 'unknown',
    userAgent: opts.userAgent ?? null,
  };
}

export function contextFactory(deps: AppDeps) {
  return ({ req, info }: CreateExpressContextOptions) => {
    // Connection params are looked at only for one subscription call, and only for a ticket.
    const ticket = info.type === 'subscription' && info.calls.length === 1 ? info.connectionParams?.ticket : undefined;
    const path = info.calls[0]?.path ?? '';
    return createContextInner({
      deps,
      authorization: req.headers.authorization,
      streamTicket: ticket ? { ticket, path } : undefined,
      clientIp: req.ip ?? 'unknown',
      userAgent: req.headers['user-agent'] ?? null,
    });
  };
}

async function readStreamTicket(deps: AppDeps, opts: { ticket: string; path: string }): Promise<Credential> {
  const claims = await verifyStreamTicket(deps.secrets.session, opts.ticket);
  // A ticket opens only the subscription it was minted for.
  if (!claims || claims.path !== opts.path) return { kind: 'rejected', audience: 'user', reason: 'invalid' };
  return { kind: 'user', userId: claims.userId, sessionId: claims.sessionId };
}

async function readCredential(deps: AppDeps, authorization: string | undefined): Promise<Credential> {
  const match = authorization?.match(/^Bearer\s+(\S+)\s*$/i);
  const token = match?.[1];
  if (!token) return { kind: 'none' };

  // The unverified audience only picks which key to verify with; nothing is trusted from it.
  const audience = peekAudience(token);
  if (audience === 'pod') {
    const result = await verifyJobToken(deps.secrets.jobToken, token, deps.config.jobTokenTtlSeconds);
    if (result.ok) return { kind: 'pod', claims: result.claims };
    return { kind: 'rejected', audience: 'pod', reason: result.reason, ...(result.claims ? { claims: result.claims } : {}) };
  }
  const result = await verifySessionToken(deps.secrets.session, token, deps.config.sessionTtlSeconds);
  return result.ok
    ? { kind: 'user', userId: result.claims.userId, sessionId: result.claims.sessionId }
    : { kind: 'rejected', audience: 'user', reason: result.reason };
}

function peekAudience(token: string): 'user' | 'pod' {
  try {
    const { aud } = decodeJwt(token);
    return aud === 'pod' || (Array.isArray(aud) && aud.includes('pod')) ? 'pod' : 'user';
  } catch {
    return 'user';
  }
}
