// The app router: one sub-router per area. Its type is what every client is typed from.
import { router } from '../trpc/init';
import { adminRouter } from './admin.router';
import { authRouter } from './auth.router';
import { datasetsRouter } from './datasets.router';
import { diagnosticsRouter } from './diagnostics.router';
import { jobsRouter } from './jobs.router';
import { launchersRouter } from './launchers.router';
import { podRouter } from './pod.router';
import { predictionsRouter } from './predictions.router';

export const appRouter = router({
  admin: adminRouter,
  auth: authRouter,
  datasets: datasetsRouter,
  diagnostics: diagnosticsRouter,
  jobs: jobsRouter,
  launchers: launchersRouter,
  pod: podRouter,
  predictions: predictionsRouter,
});

export type AppRouter = typeof appRouter;
