// Queries on sessions: the server-side state behind every session token (its `jti`). A token is
// honoured only while its row exists, is not revoked and has not expired, so signing out,
// "sign out everywhere" and a password change take effect on the very next request.
// Every function takes the owner (userId) and puts it in the `where`: another user's session id
// behaves like one that does not exist.
import { and, desc, eq, gt, isNull, lt, ne, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { sessions, users } from '../schema';

/** The longest user agent kept (characters); longer ones are cut, never refused. */
export const USER_AGENT_MAX = 256;

export interface SessionRecord {
  id: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  userAgent: string | null;
}

const listColumns = {
  id: sessions.id,
  createdAt: sessions.createdAt,
  lastUsedAt: sessions.lastUsedAt,
  expiresAt: sessions.expiresAt,
  userAgent: sessions.userAgent,
};

/** Inserts a session for a user who has just proven who they are; `expiresAt` matches the token's exp. */
export async function insertSession(
  db: Db,
  params: { userId: string; expiresAt: Date; userAgent: string | null },
): Promise<{ id: string }> {
  const [row] = await db
    .insert(sessions)
    .values({ userId: params.userId, expiresAt: params.expiresAt, userAgent: params.userAgent?.slice(0, USER_AGENT_MAX) ?? null })
    .returning({ id: sessions.id });
  if (!row) throw new Error('insert into sessions returned no row');
  return row;
}

/**
 * The session if it may still be used: it exists, belongs to `userId`, is not revoked, has not
 * expired, and its user still exists (the join says so even if the cascade ever changed).
 * Returns undefined otherwise, whichever the reason.
 */
export async function findLiveSession(
  db: Db,
  params: { userId: string; sessionId: string },
): Promise<{ id: string; lastUsedAt: Date; isAdmin: boolean } | undefined> {
  const rows = await db
    .select({ id: sessions.id, lastUsedAt: sessions.lastUsedAt, isAdmin: users.isAdmin })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(
      and(
        eq(sessions.id, params.sessionId),
        eq(sessions.userId, params.userId),
        isNull(sessions.revokedAt),
        gt(sessions.expiresAt, sql`now()`),
      ),
    )
    .limit(1);
  return rows[0];
}

/**
 * Marks the session used now, unless it was marked less than `intervalSeconds` ago: one write a
 * minute at most per session rather than one per request.
 */
export async function touchSession(db: Db, params: { userId: string; sessionId: string; intervalSeconds: number }): Promise<void> {
  await db
    .update(sessions)
    .set({ lastUsedAt: sql`now()` })
    .where(
      and(
        eq(sessions.id, params.sessionId),
        eq(sessions.userId, params.userId),
        lt(sessions.lastUsedAt, sql`now() - make_interval(secs => ${params.intervalSeconds})`),
      ),
    );
}

/** The user's sessions that may still be used, newest first (at most `limit`). */
export async function listLiveSessions(db: Db, params: { userId: string; limit: number }): Promise<SessionRecord[]> {
  return db
    .select(listColumns)
    .from(sessions)
    .where(and(eq(sessions.userId, params.userId), isNull(sessions.revokedAt), gt(sessions.expiresAt, sql`now()`)))
    .orderBy(desc(sessions.createdAt))
    .limit(params.limit);
}

/** Revokes one of the user's sessions; false when there is no such live session of theirs. */
export async function revokeSession(db: Db, params: { userId: string; sessionId: string }): Promise<boolean> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(sessions.id, params.sessionId), eq(sessions.userId, params.userId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length > 0;
}

/**
 * Revokes every live session of the user, except `exceptSessionId` when given (a password
 * change keeps the session that made it). Returns the ids of the sessions it revoked.
 */
export async function revokeUserSessions(db: Db, params: { userId: string; exceptSessionId?: string }): Promise<string[]> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()` })
    .where(
      and(
        eq(sessions.userId, params.userId),
        isNull(sessions.revokedAt),
        params.exceptSessionId ? ne(sessions.id, params.exceptSessionId) : undefined,
      ),
    )
    .returning({ id: sessions.id });
  return rows.map((row) => row.id);
}
