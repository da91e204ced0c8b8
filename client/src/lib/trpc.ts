// The SPA's tRPC + React Query binding; components call useTRPC() and React Query hooks.
import { createTRPCContext } from '@trpc/tanstack-react-query';
import type { AppRouter } from '../../api/client';

export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();
