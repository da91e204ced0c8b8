// auth.register, auth.login, auth.me
import { credentialsInput, publicUser, sessionOutput } from '../contract/auth.schemas';
import { login, me } from '../auth/auth.service';
import { register } from '../auth/signup';
import { publicProcedure, router, userProcedure } from '../trpc/init';

export const authRouter = router({
  register: publicProcedure
    .input(credentialsInput)
    .output(sessionOutput)
    .mutation(({ ctx, input }) => register(ctx.deps, input)),
  login: publicProcedure
    .input(credentialsInput)
    .output(sessionOutput)
    .mutation(({ ctx, input }) => login(ctx.deps, input, ctx.clientIp)),
  me: userProcedure.output(publicUser).query(({ ctx }) => me(ctx.deps, ctx.userId)),
});
