// Top-level routing: signed-out visitors see sign-in / sign-up; signed-in users get the shell.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect } from 'react';
import { useTRPC } from './lib/trpc';
import { setToken, useToken } from './lib/session';
import { navigate, useLocation } from './lib/router';
import { AuthPage } from './pages/AuthPage';
import { Shell } from './Shell';

export function App() {
  const token = useToken();
  const { path } = useLocation();
  if (!token) {
    // /register is where invitation links point (`/register?invitation=…`).
    const mode = path === '/signup' || path === '/register' ? 'signup' : 'signin';
    return <AuthPage mode={mode} />;
  }
  return <SignedIn />;
}

function SignedIn() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const { path } = useLocation();
  const me = useQuery(trpc.auth.me.queryOptions());

  useEffect(() => {
    if (path === '/signin' || path === '/signup' || path === '/register') navigate('/', { replace: true });
  }, [path]);

  const logout = useMutation(trpc.auth.logout.mutationOptions());
  // The server revokes the session first, so the token is dead wherever it was copied; the
  // browser forgets it whatever the answer (an unreachable server must not keep anyone signed in here).
  const signOut = () => {
    logout.mutate(undefined, {
      onSettled: () => {
        setToken(null);
        queryClient.clear();
        navigate('/signin');
      },
    });
  };

  if (me.isPending) return <div className="page-loading" role="status">Loading your workspace…</div>;
  if (me.isError) {
    return (
      <div className="page-loading" role="alert">
        <p>Could not load your account: {me.error.message}</p>
        <button type="button" onClick={() => void me.refetch()}>Try again</button>
      </div>
    );
  }
  return <Shell user={me.data} onSignOut={signOut} />;
}
