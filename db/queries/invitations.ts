// Queries on invitations, and the one transaction that creates an account under the sign-up
// policy (it decides "first account", consumes an invitation and inserts the user together).
// Invitations belong to the server, not to a user: every function here except the account
// transaction is reached only through adminProcedure (server/trpc/init.ts).
import { and, desc, eq, gt, isNull, sql, TransactionRollbackError } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { Db } from '../client';
import { invitations, users, type DatasetRow } from '../schema';
import { insertDataset } from './datasets';
import type { UserRecord } from './users';

/** Why an invitation cannot be used: the caller turns these into words. */
export type InvitationRefusal = 'unknown' | 'used' | 'revoked' | 'expired' | 'other_email';
export type InvitationState = 'pending' | 'used' | 'expired' | 'revoked';

/** Status by the database's clock, the same clock the consuming UPDATE compares with. */
const status = sql<InvitationState>`case
  when ${invitations.usedAt} is not null then 'used'
  when ${invitations.revokedAt} is not null then 'revoked'
  when ${invitations.expiresAt} <= now() then 'expired'
  else 'pending' end`;

const creator = alias(users, 'creator');
const invitee = alias(users, 'invitee');

const summaryColumns = {
  id: invitations.id,
  email: invitations.email,
  status,
  createdAt: invitations.createdAt,
  expiresAt: invitations.expiresAt,
  createdByEmail: creator.email,
  usedAt: invitations.usedAt,
  usedByEmail: invitee.email,
  revokedAt: invitations.revokedAt,
};

export type InvitationRecord = {
  id: string;
  email: string | null;
  status: InvitationState;
  createdAt: Date;
  expiresAt: Date;
  createdByEmail: string | null;
  usedAt: Date | null;
  usedByEmail: string | null;
  revokedAt: Date | null;
};

async function getInvitation(db: Db, invitationId: string): Promise<InvitationRecord | undefined> {
  const rows = await db
    .select(summaryColumns)
    .from(invitations)
    .leftJoin(creator, eq(creator.id, invitations.createdBy))
    .leftJoin(invitee, eq(invitee.id, invitations.usedBy))
    .where(eq(invitations.id, invitationId))
    .limit(1);
  return rows[0];
}

/** Stores an invitation by the SHA-256 of its secret (the secret itself is never stored). `expiresInSeconds` from now, by the database's clock. */
export async function insertInvitation(
  db: Db,
  params: { tokenHash: string; email: string | null; createdBy: string; expiresInSeconds: number },
): Promise<InvitationRecord> {
  const [row] = await db
    .insert(invitations)
    .values({
      tokenHash: params.tokenHash,
      email: params.email,
      createdBy: params.createdBy,
      expiresAt: sql`now() + make_interval(secs => ${params.expiresInSeconds})`,
    })
    .returning({ id: invitations.id });
  if (!row) throw new Error('insert into invitations returned no row');
  const created = await getInvitation(db, row.id);
  if (!created) throw new Error('a new invitation could not be read back');
  return created;
}

/** The newest invitations of this server, with who created and who used each. */
export function listInvitations(db: Db, params: { limit: number }): Promise<InvitationRecord[]> {
  return db
    .select(summaryColumns)
    .from(invitations)
    .leftJoin(creator, eq(creator.id, invitations.createdBy))
    .leftJoin(invitee, eq(invitee.id, invitations.usedBy))
    .orderBy(desc(invitations.createdAt), desc(invitations.id))
    .limit(params.limit);
}

/**
 * Revokes an invitation that is still unused; returns it as it is now (revoked, or unchanged
 * when it had been used or revoked already), undefined when there is no such invitation.
 */
export async function revokeInvitation(db: Db, params: { invitationId: string }): Promise<InvitationRecord | undefined> {
  await db
    .update(invitations)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(invitations.id, params.invitationId), isNull(invitations.usedAt), isNull(invitations.revokedAt)));
  return getInvitation(db, params.invitationId);
}

/**
 * Why an invitation could not be used by `email` (undefined: it can). Read-only: sign-up uses it
 * to refuse early (before hashing a password) and to say why the consuming UPDATE matched nothing.
 */
export async function invitationRefusal(db: Db, params: { tokenHash: string; email: string }): Promise<InvitationRefusal | undefined> {
  const rows = await db
    .select({ status, email: invitations.email })
    .from(invitations)
    .where(eq(invitations.tokenHash, params.tokenHash))
    .limit(1);
  const row = rows[0];
  if (!row) return 'unknown';
  if (row.status === 'used' || row.status === 'revoked' || row.status === 'expired') return row.status;
  if (row.email !== null && row.email.toLowerCase() !== params.email.toLowerCase()) return 'other_email';
  return undefined;
}

/** True when the server has no account yet (the next one becomes its administrator). */
export async function noAccountsYet(db: Db): Promise<boolean> {
  const rows = await db.select({ id: users.id }).from(users).limit(1);
  return rows.length === 0;
}

// The first key of the sign-up lock (pg_advisory_xact_lock(int, int)); any constant apart from the
// migration and prediction-write locks works.
const SIGNUP_LOCK_CLASS = 727_274_103;

export type CreateAccountResult =
  | { kind: 'created'; user: UserRecord; isAdmin: boolean }
  | { kind: 'email_taken' }
  | { kind: 'closed' }
  | { kind: 'invitation_required' }
  | { kind: 'invitation_refused'; why: InvitationRefusal };

/**
 * Creates an account under the sign-up policy, in one transaction:
 * - on a server with no account, the account is created whatever the policy, as administrator;
 * - otherwise `closed` refuses, `invite` consumes the invitation (unused, unrevoked, unexpired,
 *   and bound to this email if bound at all) in the same transaction as the insert, so an
 *   invitation makes exactly one account and a refused insert (taken email) leaves it unused.
 * A transaction-scoped advisory lock serialises sign-ups: two concurrent "first" registrations
 * would otherwise both see an empty table (READ COMMITTED) and both become administrators.
 */
export async function createAccount(
  db: Db,
  params: {
    email: string;
    passwordHash: string;
    policy: 'open' | 'invite' | 'closed';
    invitationHash: string | null;
    /** Datasets every new account starts with, stored in the same transaction (a crash leaves no account without them). */
    startingDatasets?: Array<{ name: string; rows: DatasetRow[] }>;
  },
): Promise<CreateAccountResult> {
  return db.transaction(async (tx): Promise<CreateAccountResult> => {
    await tx.execute(sql`select pg_advisory_xact_lock(${SIGNUP_LOCK_CLASS}, 0)`);
    const first = await noAccountsYet(tx);
    if (!first && params.policy === 'closed') return { kind: 'closed' };
    let invitationId: string | null = null;
    if (!first && params.policy === 'invite') {
      if (!params.invitationHash) return { kind: 'invitation_required' };
      const [consumed] = await tx
        .update(invitations)
        .set({ usedAt: sql`now()` })
        .where(
          and(
            eq(invitations.tokenHash, params.invitationHash),
            isNull(invitations.usedAt),
            isNull(invitations.revokedAt),
            gt(invitations.expiresAt, sql`now()`),
            sql`(${invitations.email} is null or lower(${invitations.email}) = lower(${params.email}))`,
          ),
        )
        .returning({ id: invitations.id });
      if (!consumed) {
        return { kind: 'invitation_refused', why: (await invitationRefusal(tx, { tokenHash: params.invitationHash, email: params.email })) ?? 'unknown' };
      }
      invitationId = consumed.id;
    }
    const [user] = await tx
      .insert(users)
      .values({ email: params.email, passwordHash: params.passwordHash, isAdmin: first })
      .onConflictDoNothing()
      .returning({ id: users.id, email: users.email, createdAt: users.createdAt });
    // Undo the consumed invitation with the rest: a taken email must not spend it.
    if (!user) return tx.rollback();
    if (invitationId) await tx.update(invitations).set({ usedBy: user.id }).where(eq(invitations.id, invitationId));
    for (const dataset of params.startingDatasets ?? []) await insertDataset(tx, { userId: user.id, ...dataset });
    return { kind: 'created', user, isAdmin: first };
  }).catch((error: unknown) => {
    if (error instanceof TransactionRollbackError) return { kind: 'email_taken' } as const;
    throw error;
  });
}
