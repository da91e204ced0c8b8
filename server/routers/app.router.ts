// The app router: one sub-router per area. Its type is what every client is typed from.
import { router } from '../trpc/init';
import { authRouter } from './auth.router';

export const appRouter = router({
  auth: authRouter,
});

export type AppRouter = typeof appRouter;
