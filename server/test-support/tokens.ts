// Crafted job tokens for security tests: expired, foreign-key, unsigned, wrong version.
import { SignJWT } from 'jose';
import { TOKEN_ISSUER } from '../auth/tokens';

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export async function craftJobToken(
  key: Uint8Array,
  claims: { jobId: string; userId: string; tokenVersion?: number; expiresInSeconds?: number },
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ own: claims.userId, ver: claims.tokenVersion ?? 1 })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience('pod')
    .setSubject(claims.jobId)
    .setIssuedAt(now - 10)
    .setExpirationTime(now + (claims.expiresInSeconds ?? 3600))
    .sign(key);
}

export function unsignedJobToken(claims: { jobId: string; userId: string }): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: TOKEN_ISSUER, aud: 'pod', sub: claims.jobId, own: claims.userId, ver: 1, iat: now, exp: now + 3600 };
  return `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url(payload)}.`;
}

export const FOREIGN_KEY = new TextEncoder().encode('another-server-entirely-0123456789abcdef');
