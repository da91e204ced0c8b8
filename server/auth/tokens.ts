// The credentials the server issues, all JWTs signed with jose (HS256): user session tokens
// (audience "user", `jti` the server-side session row, see db/queries/sessions.ts), job tokens
// for pods (audience "pod", subject the job id, their own key), export links (audience "export")
// and stream tickets (audience "stream": one live subscription, about a minute). Verification
// pins algorithm, issuer and audience, requires exp and iat, refuses a token issued in the future
// (beyond CLOCK_SKEW_SECONDS) and one whose lifetime (exp - iat) is longer than its kind is ever
// issued for: a token minted with a stolen key or by a bug cannot outlive the configured TTL.
// A job token issued for a job that has already ended carries `upl: true`: an upload token,
// which may only write predictions, metrics and logs (a spool a pod kept), never heartbeat or finish.
import { errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { z } from 'zod';

export const TOKEN_ISSUER = 'predictions-server';
const ALGORITHM = 'HS256';

/** How far in the future a token's `iat` may be (clocks of several instances drift a little), in seconds. */
export const CLOCK_SKEW_SECONDS = 60;
/** How long a stream ticket is valid, in seconds: long enough to open one connection. */
export const STREAM_TICKET_SECONDS = 60;
/** The longest an export link is ever issued for, in seconds. */
export const EXPORT_TOKEN_MAX_SECONDS = 300;

export interface SessionClaims {
  userId: string;
  /** The sessions row this token stands for (`jti`); checked on every request by userProcedure. */
  sessionId: string;
}

export interface StreamTicketClaims {
  userId: string;
  sessionId: string;
  /** The subscription path the ticket was minted for (e.g. "predictions.onNew"). */
  path: string;
}

export interface JobTokenClaims {
  jobId: string;
  userId: string;
  tokenVersion: number;
  expiresAt: Date;
  /** An upload token (issued for an ended job): writes only, see server/pod/pod-auth.ts. */
  upload: boolean;
}

export type TokenFailure = 'expired' | 'invalid';

export type VerifyResult<T> = { ok: true; claims: T } | { ok: false; reason: TokenFailure; claims?: T };

const uuid = z.uuid();
const jobClaimsShape = z.object({ sub: uuid, own: uuid, ver: z.number().int().min(1), exp: z.number(), upl: z.literal(true).optional() });

/**
 * Signs a session token for `userId`, valid `ttlSeconds`, standing for the sessions row
 * `sessionId` (claim `jti`). The token is honoured only while that row is live: mint sessions
 * with auth.service's startSession, which inserts the row.
 */
export async function signSessionToken(key: Uint8Array, userId: string, ttlSeconds: number, sessionId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('user')
    .setSubject(userId)
    .setJti(sessionId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

/**
 * Verifies a session token: signature, audience "user", a uuid subject and session id (`jti`),
 * and a lifetime of at most `maxLifetimeSeconds` (SESSION_TTL_HOURS). The session row itself
 * (revoked? expired? user deleted?) is checked by userProcedure, not here.
 */
export async function verifySessionToken(key: Uint8Array, token: string, maxLifetimeSeconds: number): Promise<VerifyResult<SessionClaims>> {
  const result = await verify(key, token, 'user', maxLifetimeSeconds);
  if (!result.ok) return { ok: false, reason: result.reason };
  const claims = sessionClaimsShape.safeParse(result.payload);
  return claims.success ? { ok: true, claims: { userId: claims.data.sub, sessionId: claims.data.jti } } : { ok: false, reason: 'invalid' };
}

const sessionClaimsShape = z.object({ sub: uuid, jti: uuid });
const ticketClaimsShape = z.object({ sub: uuid, sid: uuid, pth: z.string().min(1).max(200) });

/**
 * A stream ticket: lets one live subscription (`path`) be opened as this user's session for
 * STREAM_TICKET_SECONDS. EventSource cannot send headers, so the credential has to travel in the
 * URL; a ticket is what travels there, never the session token. Signed with the session key,
 * audience "stream", so it is refused wherever a session token is expected and vice versa.
 */
export async function signStreamTicket(key: Uint8Array, claims: StreamTicketClaims): Promise<{ ticket: string; expiresAt: Date }> {
  const exp = Math.floor(Date.now() / 1000) + STREAM_TICKET_SECONDS;
  const ticket = await new SignJWT({ sid: claims.sessionId, pth: claims.path })
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('stream')
    .setSubject(claims.userId)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key);
  return { ticket, expiresAt: new Date(exp * 1000) };
}

/** Verifies a stream ticket (audience "stream", lifetime at most STREAM_TICKET_SECONDS); null when refused. */
export async function verifyStreamTicket(key: Uint8Array, ticket: string): Promise<StreamTicketClaims | null> {
  const result = await verify(key, ticket, 'stream', STREAM_TICKET_SECONDS);
  if (!result.ok) return null;
  const parsed = ticketClaimsShape.safeParse(result.payload);
  return parsed.success ? { userId: parsed.data.sub, sessionId: parsed.data.sid, path: parsed.data.pth } : null;
}

export async function signJobToken(
  key: Uint8Array,
  claims: { jobId: string; userId: string; tokenVersion: number; upload?: boolean },
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: Date }> {
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  const token = await new SignJWT({ own: claims.userId, ver: claims.tokenVersion, ...(claims.upload ? { upl: true } : {}) })
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('pod')
    .setSubject(claims.jobId)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key);
  return { token, expiresAt: new Date(exp * 1000) };
}

/**
 * Verifies a job token, whose lifetime may be at most `maxLifetimeSeconds` (JOB_TOKEN_TTL_HOURS).
 * An expired token whose signature is good still yields its claims, so the refusal can be
 * recorded on the job it was for.
 */
export async function verifyJobToken(key: Uint8Array, token: string, maxLifetimeSeconds: number): Promise<VerifyResult<JobTokenClaims>> {
  const result = await verify(key, token, 'pod', maxLifetimeSeconds);
  const payload = result.ok ? result.payload : result.expiredPayload;
  const parsed = payload ? jobClaimsShape.safeParse(payload) : undefined;
  const claims = parsed?.success
    ? {
        jobId: parsed.data.sub,
        userId: parsed.data.own,
        tokenVersion: parsed.data.ver,
        expiresAt: new Date(parsed.data.exp * 1000),
        upload: parsed.data.upl === true,
      }
    : undefined;
  if (result.ok) return claims ? { ok: true, claims } : { ok: false, reason: 'invalid' };
  return { ok: false, reason: result.reason, ...(claims ? { claims } : {}) };
}

type RawVerify =
  | { ok: true; payload: JWTPayload }
  | { ok: false; reason: TokenFailure; expiredPayload?: JWTPayload };

// Tokens are signed with whole seconds and a little later than their iat; this covers that.
const LIFETIME_SLACK_SECONDS = 5;

async function verify(key: Uint8Array, token: string, audience: 'user' | 'pod' | 'export' | 'stream', maxLifetimeSeconds: number): Promise<RawVerify> {
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: [ALGORITHM],
      issuer: TOKEN_ISSUER,
      audience,
      requiredClaims: ['exp', 'sub', 'iat'],
    });
    const iat = payload.iat ?? Number.NaN;
    const exp = payload.exp ?? Number.NaN;
    // Issued in the future, or for longer than this kind of token is ever issued: not ours to honour.
    if (!(iat <= Date.now() / 1000 + CLOCK_SKEW_SECONDS)) return { ok: false, reason: 'invalid' };
    if (!(exp - iat <= maxLifetimeSeconds + LIFETIME_SLACK_SECONDS)) return { ok: false, reason: 'invalid' };
    return { ok: true, payload };
  } catch (error) {
    // jose checks the signature before the claims, so an expired token's payload is authentic.
    if (error instanceof errors.JWTExpired) return { ok: false, reason: 'expired', expiredPayload: error.payload };
    return { ok: false, reason: 'invalid' };
  }
}

/**
 * A short-lived link token for one export download (browsers cannot send headers on a plain
 * link). Audience "export", subject the job, signed with the session key.
 */
export async function signExportToken(key: Uint8Array, claims: { jobId: string; userId: string }, ttlSeconds = EXPORT_TOKEN_MAX_SECONDS): Promise<string> {
  return new SignJWT({ own: claims.userId })
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('export')
    .setSubject(claims.jobId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

const exportClaimsShape = z.object({ sub: uuid, own: uuid });

export async function verifyExportToken(key: Uint8Array, token: string): Promise<{ jobId: string; userId: string } | null> {
  const result = await verify(key, token, 'export', EXPORT_TOKEN_MAX_SECONDS);
  if (!result.ok) return null;
  const parsed = exportClaimsShape.safeParse(result.payload);
  return parsed.success ? { jobId: parsed.data.sub, userId: parsed.data.own } : null;
}
