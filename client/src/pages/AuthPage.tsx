// Sign in and sign up: one form, two modes, with the server's messages shown where they apply.
// Sign-up follows the server's policy (auth.signupPolicy): closed shows no form, invitation-only
// needs the invitation link (`/register?invitation=…`), and the first account on a new server
// is told it becomes the administrator.
import { useMutation, useQuery } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { errorDetails } from '../../api/client';
import type { SignupPolicyOutput } from '#contract/auth.schemas';
import { useTRPC } from '../lib/trpc';
import { setToken, useSessionEndedMessage } from '../lib/session';
import { Link, navigate, useLocation } from '../lib/router';
import { Loading } from '../components/QueryError';

/** Whether the register form can succeed at all for this visitor (the server decides again). */
function mayRegister(policy: SignupPolicyOutput | undefined, invitation: string | null): boolean {
  if (!policy) return true; // unknown policy: show the form and let the server say
  return policy.firstAccount || policy.signup === 'open' || (policy.signup === 'invite' && invitation !== null);
}

export function AuthPage({ mode }: { mode: 'signin' | 'signup' }) {
  const trpc = useTRPC();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const { path, search } = useLocation();
  const invitation = search.get('invitation')?.trim() || null;
  const policy = useQuery(trpc.auth.signupPolicy.queryOptions());
  // Set when the server ended the session (revoked, signed out elsewhere): say so above the form.
  const sessionEnded = useSessionEndedMessage();
  const onSuccess = (session: { token: string }) => {
    setToken(session.token);
    // Signed out on a bookmarked page (a job, a tab): stay there once signed in.
    if (path === '/signin' || path === '/signup' || path === '/register') navigate('/', { replace: true });
  };
  const login = useMutation(trpc.auth.login.mutationOptions({ onSuccess }));
  const register = useMutation(trpc.auth.register.mutationOptions({ onSuccess }));
  const mutation = mode === 'signup' ? register : login;
  const details = mutation.error ? errorDetails(mutation.error) : null;
  const fieldError = (field: string) => details?.fieldErrors?.[field]?.[0] ?? (details?.field === field ? details.message : undefined);
  const invitationError = fieldError('invitation');
  const formError = details && !details.fieldErrors && !details.field ? details.message : undefined;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (mode === 'signup') register.mutate({ email, password, ...(invitation ? { invitation } : {}) });
    else login.mutate({ email, password });
  };

  const showForm = mode === 'signin' || mayRegister(policy.data, invitation);
  const title = mode === 'signup' ? 'Create your account' : 'Sign in';
  return (
    <main className="auth">
      <div className="auth-card">
        <div className="brand auth-brand">
          <span className="brand-mark" aria-hidden="true" />
          Predictions
        </div>
        <h1>{title}</h1>
        <p className="muted">See what your model predicts while it fine-tunes, and why when it doesn't.</p>
        {sessionEnded && (
          <p className="notice notice-warn" role="alert" data-testid="session-ended">
            {sessionEnded}
          </p>
        )}
        {mode === 'signup' && policy.isPending ? (
          <Loading label="Checking who may sign up…" />
        ) : (
          <>
            {mode === 'signup' && <SignupNotice policy={policy.data} invitation={invitation} />}
            {showForm && (
              <form onSubmit={submit} noValidate>
                {invitationError && (
                  <p id="invitation-error" className="form-error" role="alert">
                    {invitationError}
                  </p>
                )}
                <label htmlFor="email">Email</label>
                <input
                  id="email"
                  name="email"
                  type="email"
                  autoComplete="email"
                  value={email}
                  onChange={(e) => setEmail(e.target.value)}
                  aria-invalid={Boolean(fieldError('email'))}
                  aria-describedby={fieldError('email') ? 'email-error' : undefined}
                  required
                />
                {fieldError('email') && <p id="email-error" className="field-error">{fieldError('email')}</p>}
                <label htmlFor="password">Password</label>
                <input
                  id="password"
                  name="password"
                  type="password"
                  autoComplete={mode === 'signup' ? 'new-password' : 'current-password'}
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                  aria-invalid={Boolean(fieldError('password'))}
                  aria-describedby={fieldError('password') ? 'password-error' : 'password-hint'}
                  required
                />
                {fieldError('password') ? (
                  <p id="password-error" className="field-error">{fieldError('password')}</p>
                ) : (
                  mode === 'signup' && <p id="password-hint" className="hint">At least 10 characters.</p>
                )}
                {formError && <p className="form-error" role="alert">{formError}</p>}
                <button type="submit" className="button-primary" disabled={mutation.isPending}>
                  {mutation.isPending ? 'Please wait…' : mode === 'signup' ? 'Create account' : 'Sign in'}
                </button>
              </form>
            )}
          </>
        )}
        <p className="auth-switch">
          {mode === 'signup' ? (
            <>Already have an account? <Link to="/signin">Sign in</Link></>
          ) : (
            <SignupHint policy={policy.data} />
          )}
        </p>
      </div>
    </main>
  );
}

/** Above the register form (or instead of it): what this server's sign-up policy means for this visitor. */
function SignupNotice({ policy, invitation }: { policy: SignupPolicyOutput | undefined; invitation: string | null }) {
  if (!policy) return null;
  if (policy.firstAccount) {
    return (
      <p className="notice notice-warn" data-testid="signup-notice">
        This is the first account on this server: it becomes the administrator, who can invite others.
      </p>
    );
  }
  if (policy.signup === 'closed') {
    return (
      <p className="notice notice-warn" role="status" data-testid="signup-notice">
        Sign-up is closed on this server. Ask its administrator to create an account for you.
      </p>
    );
  }
  if (policy.signup === 'invite') {
    return invitation ? (
      <p className="hint" data-testid="signup-notice">
        You are signing up with an invitation.
      </p>
    ) : (
      <p className="notice notice-warn" role="status" data-testid="signup-notice">
        Sign-up on this server is by invitation. Open the invitation link an administrator sent you to create your account.
      </p>
    );
  }
  return null;
}

/** Under the sign-in form: the way to sign up, as far as this server allows one. */
function SignupHint({ policy }: { policy: SignupPolicyOutput | undefined }) {
  if (policy && !policy.firstAccount && policy.signup === 'closed') return <>Sign-up is closed on this server; ask its administrator for an account.</>;
  if (policy && !policy.firstAccount && policy.signup === 'invite') return <>New here? Open the invitation link an administrator sent you.</>;
  return (
    <>
      New here? <Link to="/signup">Create an account</Link>
    </>
  );
}
