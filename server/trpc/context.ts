// Request context. createContextInner takes plain values (no HTTP) so router tests can call
// procedures through createCaller; createContext adapts an Express request to it.
// Context creation never throws: a missing or bad token yields a credential the procedure
// kinds in init.ts refuse.
import { decodeJwt } from 'jose';
import type { CreateExpressContextOptions } from '@trpc/server/adapters/express';
import type { Db } from '../../db/client';
import type { AppDeps } from '../deps';
import { verifyJobToken, verifySessionToken, type JobTokenClaims, type TokenFailure } from '../auth/tokens';

export type Credential =
  | { kind: 'none' }
  | { kind: 'user'; userId: string }
  | { kind: 'pod'; claims: JobTokenClaims }
  /** A token that failed verification; for pod tokens with a good signature, its claims. */
  | { kind: 'rejected'; audience: 'user' | 'pod'; reason: TokenFailure; claims?: JobTokenClaims };

export interface Context {
  deps: AppDeps;
  db: Db;
  credential: Credential;
  clientIp: string;
}

export async function createContextInner(opts: {
  deps: AppDeps;
  authorization?: string | undefined;
  clientIp?: string;
}): Promise<Context> {
  return {
    deps: opts.deps,
    db: opts.deps.database.db,
    credential: await readCredential(opts.deps, opts.authorization),
    clientIp: opts.clientIp ?? 'unknown',
  };
}

export function contextFactory(deps: AppDeps) {
  return ({ req, info }: CreateExpressContextOptions) => {
    // EventSource (live subscriptions) cannot send headers; the client sends the token as a connection param.
    const paramToken = info.connectionParams?.token;
    const authorization = req.headers.authorization ?? (paramToken ? `Bearer ${paramToken}` : undefined);
    return createContextInner({ deps, authorization, clientIp: req.ip ?? 'unknown' });
  };
}

async function readCredential(deps: AppDeps, authorization: string | undefined): Promise<Credential> {
  const match = authorization?.match(/^Bearer\s+(\S+)\s*$/i);
  const token = match?.[1];
  if (!token) return { kind: 'none' };

  // The unverified audience only picks which key to verify with; nothing is trusted from it.
  const audience = peekAudience(token);
  if (audience === 'pod') {
    const result = await verifyJobToken(deps.secrets.jobToken, token);
    if (result.ok) return { kind: 'pod', claims: result.claims };
    return { kind: 'rejected', audience: 'pod', reason: result.reason, ...(result.claims ? { claims: result.claims } : {}) };
  }
  const result = await verifySessionToken(deps.secrets.session, token);
  return result.ok
    ? { kind: 'user', userId: result.claims.userId }
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
