// auth.register, auth.login, auth.me, auth.signupPolicy; sessions: auth.logout, auth.logoutEverywhere,
// auth.changePassword, auth.sessions, auth.revokeSession, auth.streamTicket
import { credentialsInput, meOutput, registerInput, sessionOutput, signupPolicyOutput } from '#contract/auth.schemas';
import {
  changePasswordInput,
  revokedOutput,
  revokeSessionInput,
  sessionsOutput,
  streamTicketInput,
  streamTicketOutput,
} from '#contract/auth.schemas';
import { changePassword, listSessions, login, logout, logoutEverywhere, me, revokeSession, streamTicket } from '../auth/auth.service';
import { register, signupPolicy } from '../auth/signup';
import { publicProcedure, router, userProcedure } from '../trpc/init';

export const authRouter = router({
  register: publicProcedure
    .input(registerInput)
    .output(sessionOutput)
    .mutation(({ ctx, input }) => register(ctx.deps, input, { ip: ctx.clientIp, userAgent: ctx.userAgent })),
  login: publicProcedure
    .input(credentialsInput)
    .output(sessionOutput)
    .mutation(({ ctx, input }) => login(ctx.deps, input, { ip: ctx.clientIp, userAgent: ctx.userAgent })),
  me: userProcedure.output(meOutput).query(({ ctx }) => me(ctx.deps, ctx.userId)),
  signupPolicy: publicProcedure.output(signupPolicyOutput).query(({ ctx }) => signupPolicy(ctx.deps)),
  logout: userProcedure.output(revokedOutput).mutation(({ ctx }) => logout(ctx.deps, ctx)),
  logoutEverywhere: userProcedure.output(revokedOutput).mutation(({ ctx }) => logoutEverywhere(ctx.deps, ctx)),
  changePassword: userProcedure
    .input(changePasswordInput)
    .output(revokedOutput)
    .mutation(({ ctx, input }) => changePassword(ctx.deps, ctx, input)),
  sessions: userProcedure.output(sessionsOutput).query(({ ctx }) => listSessions(ctx.deps, ctx)),
  revokeSession: userProcedure
    .input(revokeSessionInput)
    .output(revokedOutput)
    .mutation(({ ctx, input }) => revokeSession(ctx.deps, ctx, input.sessionId)),
  streamTicket: userProcedure
    .input(streamTicketInput)
    .output(streamTicketOutput)
    .mutation(({ ctx, input }) => streamTicket(ctx.deps, ctx, input.path)),
});
