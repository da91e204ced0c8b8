// Wire schemas for the administrator's procedures (admin.*): invitations. Shared by server and
// SPA (zod only: no server-only imports here).
import { z } from 'zod';
import { email } from './auth.schemas';

/** An invitation is valid for this long unless the administrator says otherwise (7 days). */
export const INVITATION_TTL_HOURS_DEFAULT = 24 * 7;
/** The longest an invitation may stay valid (30 days): a forgotten link should not work for ever. */
export const INVITATION_TTL_HOURS_MAX = 24 * 30;
/** How many invitations admin.listInvitations returns at most (newest first). */
export const INVITATION_LIST_MAX = 500;

export const INVITATION_STATUSES = ['pending', 'used', 'expired', 'revoked'] as const;
export type InvitationStatus = (typeof INVITATION_STATUSES)[number];

export const createInvitationInput = z.object({
  /** When set, only an account with this email may use the invitation. */
  email: email.optional(),
  expiresInHours: z
    .number({ error: 'expiresInHours must be a number' })
    .int('expiresInHours must be a whole number')
    .min(1, 'expiresInHours must be at least 1')
    .max(INVITATION_TTL_HOURS_MAX, `expiresInHours must be at most ${INVITATION_TTL_HOURS_MAX} (30 days)`)
    .default(INVITATION_TTL_HOURS_DEFAULT),
});
export type CreateInvitationInput = z.infer<typeof createInvitationInput>;

/** An invitation as administrators see it: never its secret (only its hash is stored). */
export const invitationSummary = z.object({
  id: z.uuid(),
  email: z.string().nullable(),
  status: z.enum(INVITATION_STATUSES),
  createdAt: z.string(),
  expiresAt: z.string(),
  /** The administrator who created it (null once that account is deleted). */
  createdByEmail: z.string().nullable(),
  usedAt: z.string().nullable(),
  /** The account that registered with it (null while unused, or once that account is deleted). */
  usedByEmail: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export type InvitationSummary = z.infer<typeof invitationSummary>;

/** admin.createInvitation: the invitation, and its link, which holds the secret and is shown this once. */
export const createInvitationOutput = z.object({ invitation: invitationSummary, link: z.string() });
export type CreateInvitationOutput = z.infer<typeof createInvitationOutput>;

export const listInvitationsInput = z
  .object({
    limit: z
      .number()
      .int('limit must be a whole number')
      .min(1, 'limit must be at least 1')
      .max(INVITATION_LIST_MAX, `limit must be at most ${INVITATION_LIST_MAX}`)
      .default(100),
  })
  .default({ limit: 100 });

export const listInvitationsOutput = z.object({ items: z.array(invitationSummary) });

export const revokeInvitationInput = z.object({ invitationId: z.uuid('invitationId must be a UUID') });
