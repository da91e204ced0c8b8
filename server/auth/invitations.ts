// Invitations (SIGNUP=invite): an administrator creates one, hands its link to a person, and that
// person registers with it once. The secret lives only in the link; the database keeps its
// SHA-256, so a leaked database (or backup) holds no usable invitation.
import { createHash, randomBytes } from 'node:crypto';
import { notFound } from '../errors';
import type { AppDeps } from '../app-deps';
import type { CreateInvitationInput, CreateInvitationOutput, InvitationSummary } from '#contract/admin.schemas';
import { insertInvitation, listInvitations, revokeInvitation, type InvitationRecord } from '../../db/queries/invitations';

/** 32 random bytes: guessing one is as hopeless as guessing a session key. */
const SECRET_BYTES = 32;

/** The stored form of an invitation secret: its SHA-256, hex. (A fast hash is right here: the secret is random, not a password.) */
export function hashInvitationSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The link a person registers with: the SPA's register page, carrying the secret. */
export function invitationLink(publicUrl: string, secret: string): string {
  return `${publicUrl}/register?invitation=${encodeURIComponent(secret)}`;
}

function toSummary(row: InvitationRecord): InvitationSummary {
  return {
    id: row.id,
    email: row.email,
    status: row.status,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    createdByEmail: row.createdByEmail,
    usedAt: row.usedAt?.toISOString() ?? null,
    usedByEmail: row.usedByEmail,
    revokedAt: row.revokedAt?.toISOString() ?? null,
  };
}

/**
 * admin.createInvitation: a new invitation, valid for `expiresInHours` (1 to 720 h, checked by the
 * input schema), bound to `email` when given. Returns the link with the secret, the only time it
 * exists outside the person's hands.
 */
export async function createInvitation(deps: AppDeps, adminId: string, input: CreateInvitationInput): Promise<CreateInvitationOutput> {
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  const row = await insertInvitation(deps.database.db, {
    tokenHash: hashInvitationSecret(secret),
    email: input.email ?? null,
    createdBy: adminId,
    expiresInSeconds: input.expiresInHours * 3600,
  });
  return { invitation: toSummary(row), link: invitationLink(deps.config.publicUrl, secret) };
}

/** admin.listInvitations: the newest `limit` invitations with their status; never a secret. */
export async function listServerInvitations(deps: AppDeps, input: { limit: number }): Promise<{ items: InvitationSummary[] }> {
  return { items: (await listInvitations(deps.database.db, input)).map(toSummary) };
}

/** admin.revokeInvitation: an unused invitation stops working at once; a used one stays as it was. NOT_FOUND for an unknown id. */
export async function revokeServerInvitation(deps: AppDeps, invitationId: string): Promise<InvitationSummary> {
  const row = await revokeInvitation(deps.database.db, { invitationId });
  if (!row) throw notFound('Invitation');
  return toSummary(row);
}
