// Queries on users. Users own themselves: lookups are by id (from a verified session) or by
// email (sign-in); the password hash leaves this module only to be checked (findUserForLogin,
// getPasswordHash for a password change).
import { eq, sql } from 'drizzle-orm';
import type { Db } from '../client';
import { users } from '../schema';

const publicColumns = { id: users.id, email: users.email, createdAt: users.createdAt };

export type UserRecord = { id: string; email: string; createdAt: Date };

export async function findUserForLogin(db: Db, params: { email: string }) {
  const rows = await db
    .select({ ...publicColumns, passwordHash: users.passwordHash })
    .from(users)
    .where(eq(sql`lower(${users.email})`, params.email.toLowerCase()))
    .limit(1);
  return rows[0];
}

/** The user, and whether they administer this server; undefined for a user who does not exist. */
export async function getUser(db: Db, params: { userId: string }): Promise<(UserRecord & { isAdmin: boolean }) | undefined> {
  const rows = await db.select({ ...publicColumns, isAdmin: users.isAdmin }).from(users).where(eq(users.id, params.userId)).limit(1);
  return rows[0];
}

/** The user's password hash, for a password change that must prove the current one (undefined: no such user). */
export async function getPasswordHash(db: Db, params: { userId: string }): Promise<string | undefined> {
  const rows = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, params.userId)).limit(1);
  return rows[0]?.passwordHash;
}

/** Replaces the user's password hash; false when the user does not exist. */
export async function updatePasswordHash(db: Db, params: { userId: string; passwordHash: string }): Promise<boolean> {
  const rows = await db.update(users).set({ passwordHash: params.passwordHash }).where(eq(users.id, params.userId)).returning({ id: users.id });
  return rows.length > 0;
}
