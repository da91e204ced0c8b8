// SPA entry: React Query + the tRPC client (with the session token) around the app.
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { createApiClient, errorDetails } from '../api/client';
import { TRPCProvider } from './lib/trpc';
import { endSession, getToken } from './lib/session';
import { App } from './App';
import './styles.css';

/** Any request answered 401 means the session is over (revoked, expired, signed out elsewhere): back to sign-in, saying why. */
function signOutOnExpiredSession(error: unknown): void {
  const details = errorDetails(error);
  if (details.httpStatus === 401 && getToken()) endSession(details.message);
}

function Root() {
  const [queryClient] = useState(
    () =>
      new QueryClient({
        queryCache: new QueryCache({ onError: signOutOnExpiredSession }),
        mutationCache: new MutationCache({ onError: signOutOnExpiredSession }),
        defaultOptions: {
          queries: {
            staleTime: 5_000,
            retry: (count, error) => (errorDetails(error).httpStatus ?? 500) >= 500 && count < 2,
          },
        },
      }),
  );
  const [trpcClient] = useState(() => createApiClient({ url: '', token: getToken }));
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        <App />
      </TRPCProvider>
    </QueryClientProvider>
  );
}

const container = document.getElementById('root');
if (!container) throw new Error('#root is missing from index.html');
createRoot(container).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);
