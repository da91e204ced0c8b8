// The two credentials the server issues, both JWTs signed with jose (HS256, separate keys):
// user session tokens (audience "user") and job tokens for pods (audience "pod", subject the
// job id). Verification pins algorithm, issuer and audience and requires exp. A job token issued
// for a job that has already ended carries `upl: true`: an upload token, which may only write
// predictions, metrics and logs (a spool a pod kept), never heartbeat or finish.
import { errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { z } from 'zod';

export const TOKEN_ISSUER = 'predictions-server';
const ALGORITHM = 'HS256';

export interface SessionClaims {
  userId: string;
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

export async function signSessionToken(key: Uint8Array, userId: string, ttlSeconds: number): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('user')
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

export async function verifySessionToken(key: Uint8Array, token: string): Promise<VerifyResult<SessionClaims>> {
  const result = await verify(key, token, 'user');
  if (!result.ok) return { ok: false, reason: result.reason };
  const sub = uuid.safeParse(result.payload.sub);
  return sub.success ? { ok: true, claims: { userId: sub.data } } : { ok: false, reason: 'invalid' };
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
 * Verifies a job token. An expired token whose signature is good still yields its claims,
 * so the refusal can be recorded on the job it was for.
 */
export async function verifyJobToken(key: Uint8Array, token: string): Promise<VerifyResult<JobTokenClaims>> {
  const result = await verify(key, token, 'pod');
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

async function verify(key: Uint8Array, token: string, audience: 'user' | 'pod' | 'export'): Promise<RawVerify> {
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: [ALGORITHM],
      issuer: TOKEN_ISSUER,
      audience,
      requiredClaims: ['exp', 'sub', 'iat'],
    });
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
export async function signExportToken(key: Uint8Array, claims: { jobId: string; userId: string }, ttlSeconds = 300): Promise<string> {
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
  const result = await verify(key, token, 'export');
  if (!result.ok) return null;
  const parsed = exportClaimsShape.safeParse(result.payload);
  return parsed.success ? { jobId: parsed.data.sub, userId: parsed.data.own } : null;
}
