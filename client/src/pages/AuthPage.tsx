// Sign in and sign up: one form, two modes, with the server's messages shown where they apply.
import { useMutation } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { errorDetails } from '../../api/client';
import { useTRPC } from '../lib/trpc';
import { setToken } from '../lib/session';
import { Link, navigate, useLocation } from '../lib/router';

export function AuthPage({ mode }: { mode: 'signin' | 'signup' }) {
  const trpc = useTRPC();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const { path } = useLocation();
  const onSuccess = (session: { token: string }) => {
    setToken(session.token);
    // Signed out on a bookmarked page (a job, a tab): stay there once signed in.
    if (path === '/signin' || path === '/signup') navigate('/', { replace: true });
  };
  const login = useMutation(trpc.auth.login.mutationOptions({ onSuccess }));
  const register = useMutation(trpc.auth.register.mutationOptions({ onSuccess }));
  const mutation = mode === 'signup' ? register : login;
  const details = mutation.error ? errorDetails(mutation.error) : null;
  const fieldError = (field: string) => details?.fieldErrors?.[field]?.[0] ?? (details?.field === field ? details.message : undefined);
  const formError = details && !details.fieldErrors && !details.field ? details.message : undefined;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    mutation.mutate({ email, password });
  };

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
        <form onSubmit={submit} noValidate>
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
        <p className="auth-switch">
          {mode === 'signup' ? (
            <>Already have an account? <Link to="/signin">Sign in</Link></>
          ) : (
            <>New here? <Link to="/signup">Create an account</Link></>
          )}
        </p>
      </div>
    </main>
  );
}
