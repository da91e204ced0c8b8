// admin.*: what only an administrator of this server may do (adminProcedure): invitations.
import {
  createInvitationInput,
  createInvitationOutput,
  invitationSummary,
  listInvitationsInput,
  listInvitationsOutput,
  revokeInvitationInput,
} from '#contract/admin.schemas';
import { createInvitation, listServerInvitations, revokeServerInvitation } from '../auth/invitations';
import { adminProcedure, router } from '../trpc/init';

export const adminRouter = router({
  createInvitation: adminProcedure
    .input(createInvitationInput)
    .output(createInvitationOutput)
    .mutation(({ ctx, input }) => createInvitation(ctx.deps, ctx.userId, input)),
  listInvitations: adminProcedure
    .input(listInvitationsInput)
    .output(listInvitationsOutput)
    .query(({ ctx, input }) => listServerInvitations(ctx.deps, input)),
  revokeInvitation: adminProcedure
    .input(revokeInvitationInput)
    .output(invitationSummary)
    .mutation(({ ctx, input }) => revokeServerInvitation(ctx.deps, input.invitationId)),
});
