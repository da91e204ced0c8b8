// "/account": change the password (every other session is signed out), see where this account is
// signed in, revoke one of those sessions, or sign out everywhere.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { errorDetails, type RouterOutputs } from '../../api/client';
import { PASSWORD_MIN } from '#contract/auth.schemas';
import { Loading, QueryError } from '../components/QueryError';
import { formatDateTime, plural, timeAgo } from '../lib/format';
import { navigate } from '../lib/router';
import { setToken } from '../lib/session';
import { useTRPC } from '../lib/trpc';

type Session = RouterOutputs['auth']['sessions'][number];

export function AccountPage({ email }: { email: string }) {
  return (
    <>
      <div className="page-head">
        <div>
          <h1>Account</h1>
          <p className="muted">Signed in as {email}.</p>
        </div>
      </div>
      <ChangePassword />
      <Sessions />
    </>
  );
}

function ChangePassword() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [currentPassword, setCurrentPassword] = useState('');
  const [newPassword, setNewPassword] = useState('');
  const change = useMutation(
    trpc.auth.changePassword.mutationOptions({
      onSuccess: () => {
        setCurrentPassword('');
        setNewPassword('');
        void queryClient.invalidateQueries({ queryKey: trpc.auth.sessions.queryKey() });
      },
    }),
  );
  const details = change.error ? errorDetails(change.error) : null;
  const fieldError = (field: string) => details?.fieldErrors?.[field]?.[0] ?? (details?.field === field ? details.message : undefined);
  const formError = details && !fieldError('currentPassword') && !fieldError('newPassword') ? details.message : undefined;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    change.mutate({ currentPassword, newPassword });
  };

  return (
    <section className="panel" aria-labelledby="password-title">
      <h2 className="panel-title" id="password-title">
        Change password
      </h2>
      <form onSubmit={submit} noValidate>
        <div className="field-grid">
          <div className="field">
            <label htmlFor="current-password">Current password</label>
            <input
              id="current-password"
              type="password"
              autoComplete="current-password"
              value={currentPassword}
              onChange={(e) => setCurrentPassword(e.target.value)}
              aria-invalid={Boolean(fieldError('currentPassword'))}
              aria-describedby={fieldError('currentPassword') ? 'current-password-error' : undefined}
            />
            {fieldError('currentPassword') && (
              <p id="current-password-error" className="field-error">
                {fieldError('currentPassword')}
              </p>
            )}
          </div>
          <div className="field">
            <label htmlFor="new-password">New password</label>
            <input
              id="new-password"
              type="password"
              autoComplete="new-password"
              value={newPassword}
              onChange={(e) => setNewPassword(e.target.value)}
              aria-invalid={Boolean(fieldError('newPassword'))}
              aria-describedby={fieldError('newPassword') ? 'new-password-error' : 'new-password-hint'}
            />
            {fieldError('newPassword') ? (
              <p id="new-password-error" className="field-error">
                {fieldError('newPassword')}
              </p>
            ) : (
              <p id="new-password-hint" className="hint">
                At least {PASSWORD_MIN} characters. Every other session is signed out; this one stays.
              </p>
            )}
          </div>
        </div>
        {formError && (
          <p className="form-error" role="alert">
            {formError}
          </p>
        )}
        {change.isSuccess && (
          <p className="notice notice-ok" role="status" data-testid="password-changed">
            Password changed. {plural(change.data.revokedSessions, 'other session')} signed out.
          </p>
        )}
        <button type="submit" className="button-primary" disabled={change.isPending}>
          {change.isPending ? 'Changing…' : 'Change password'}
        </button>
      </form>
    </section>
  );
}

function Sessions() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const sessions = useQuery(trpc.auth.sessions.queryOptions());
  const everywhere = useMutation(
    trpc.auth.logoutEverywhere.mutationOptions({
      onSuccess: () => {
        // This session was among those revoked: forget it here too.
        setToken(null);
        queryClient.clear();
        navigate('/signin');
      },
    }),
  );
  return (
    <section className="panel" aria-labelledby="sessions-title">
      <div className="panel-head">
        <h2 className="panel-title" id="sessions-title">
          Where you are signed in
        </h2>
        <button type="button" className="button-danger-quiet" onClick={() => everywhere.mutate()} disabled={everywhere.isPending}>
          {everywhere.isPending ? 'Signing out…' : 'Sign out everywhere'}
        </button>
      </div>
      {everywhere.error && (
        <p className="form-error" role="alert">
          Could not sign out everywhere: {errorDetails(everywhere.error).message}
        </p>
      )}
      {sessions.isPending ? (
        <Loading label="Loading sessions…" />
      ) : !sessions.data ? (
        <QueryError error={sessions.error} what="Sessions" onRetry={() => void sessions.refetch()} />
      ) : sessions.data.length === 0 ? (
        <div className="empty-inline">
          <p>No sessions are active.</p>
        </div>
      ) : (
        <div className="table-wrap">
          <table className="table" aria-label="Sessions">
            <thead>
              <tr>
                <th scope="col">Browser or client</th>
                <th scope="col">Signed in</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {sessions.data.map((session) => (
                <SessionRow key={session.id} session={session} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function SessionRow({ session }: { session: Session }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const revoke = useMutation(
    trpc.auth.revokeSession.mutationOptions({
      onSettled: () => void queryClient.invalidateQueries({ queryKey: trpc.auth.sessions.queryKey() }),
    }),
  );
  return (
    <tr data-testid="session-row">
      <td>
        {session.userAgent ?? 'Unknown client'}
        {session.current && <span className="badge badge-completed session-current">This browser</span>}
      </td>
      <td title={formatDateTime(session.createdAt)}>{timeAgo(session.createdAt)}</td>
      <td title={formatDateTime(session.lastUsedAt)}>{timeAgo(session.lastUsedAt)}</td>
      <td>
        {!session.current && (
          <button type="button" className="button-danger-quiet" onClick={() => revoke.mutate({ sessionId: session.id })} disabled={revoke.isPending}>
            {revoke.isPending ? 'Revoking…' : 'Revoke'}
          </button>
        )}
        {revoke.error && (
          <p className="field-error" role="alert">
            {errorDetails(revoke.error).message}
          </p>
        )}
      </td>
    </tr>
  );
}
