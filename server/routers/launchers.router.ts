// launchers.list: which launchers this server offers (so the SPA offers only those), with their
// non-secret settings.
import { z } from 'zod';
import { LAUNCHERS } from '#contract/job-config';
import { describeLaunchers } from '../launchers/registry';
import { router, userProcedure } from '../trpc/init';

const listLaunchersOutput = z.object({
  items: z.array(
    z.object({
      name: z.enum(LAUNCHERS),
      description: z.string(),
      settings: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
    }),
  ),
});

export const launchersRouter = router({
  list: userProcedure.output(listLaunchersOutput).query(({ ctx }) => ({ items: describeLaunchers(ctx.deps.launchers, ctx.deps.config.launchers) })),
});
