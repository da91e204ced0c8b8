// "/admin/invitations" (administrators): create an invitation link (optionally for one email,
// valid for a chosen time), copy it while it is shown (its secret is never shown again), and see
// and revoke the invitations made so far.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { errorDetails, type RouterOutputs } from '../../api/client';
import { INVITATION_TTL_HOURS_DEFAULT, type InvitationStatus } from '#contract/admin.schemas';
import { CopyButton } from '../components/CopyButton';
import { Loading, QueryError } from '../components/QueryError';
import { formatDateTime } from '../lib/format';
import { useTRPC } from '../lib/trpc';

type Invitation = RouterOutputs['admin']['listInvitations']['items'][number];

const EXPIRY_CHOICES = [
  { hours: 24, label: '1 day' },
  { hours: 72, label: '3 days' },
  { hours: INVITATION_TTL_HOURS_DEFAULT, label: '7 days' },
  { hours: 24 * 14, label: '14 days' },
  { hours: 24 * 30, label: '30 days' },
];

const STATUS_LABEL: Record<InvitationStatus, string> = { pending: 'Pending', used: 'Used', expired: 'Expired', revoked: 'Revoked' };
// The job status badges' colours: waiting, done, greyed out, refused.
const STATUS_BADGE: Record<InvitationStatus, string> = { pending: 'badge-pending', used: 'badge-completed', expired: 'badge-cancelled', revoked: 'badge-failed' };

export function InvitationsPage() {
  const trpc = useTRPC();
  const invitations = useQuery(trpc.admin.listInvitations.queryOptions({}));
  const policy = useQuery(trpc.auth.signupPolicy.queryOptions());
  const items = invitations.data?.items ?? [];
  // Someone who is not an administrator (a shared link, a revoked flag): say so, offer nothing.
  if (invitations.error && errorDetails(invitations.error).code === 'FORBIDDEN') {
    return <QueryError error={invitations.error} what="Invitations" />;
  }
  return (
    <>
      <div className="page-head">
        <div>
          <h1>Invitations</h1>
          <p className="muted">People join this server through an invitation link that you create here. Each link makes one account.</p>
        </div>
      </div>
      {policy.data && policy.data.signup !== 'invite' && (
        <p className="notice notice-warn" role="status">
          {policy.data.signup === 'open'
            ? 'Sign-up on this server is open (SIGNUP=open): anyone can register without an invitation.'
            : 'Sign-up on this server is closed (SIGNUP=closed): invitations cannot be used until it is set to invite.'}
        </p>
      )}
      <CreateInvitation />
      <section className="panel" aria-labelledby="invitations-title">
        <h2 className="panel-title" id="invitations-title">
          Invitations made
        </h2>
        {invitations.isPending ? (
          <Loading label="Loading invitations…" />
        ) : !invitations.data ? (
          <QueryError error={invitations.error} what="Invitations" onRetry={() => void invitations.refetch()} />
        ) : items.length === 0 ? (
          <div className="empty-inline">
            <p>No invitations yet.</p>
            <p>Create one above and send its link to the person you want to invite.</p>
          </div>
        ) : (
          <div className="table-wrap">
            <table className="table" aria-label="Invitations">
              <thead>
                <tr>
                  <th scope="col">For</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Used by</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((invitation) => (
                  <InvitationRow key={invitation.id} invitation={invitation} />
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function CreateInvitation() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [email, setEmail] = useState('');
  const [hours, setHours] = useState(INVITATION_TTL_HOURS_DEFAULT);
  const create = useMutation(
    trpc.admin.createInvitation.mutationOptions({
      onSuccess: () => {
        setEmail('');
        void queryClient.invalidateQueries({ queryKey: trpc.admin.listInvitations.queryKey() });
      },
    }),
  );
  const details = create.error ? errorDetails(create.error) : null;
  const fieldError = (field: string) => details?.fieldErrors?.[field]?.[0] ?? (details?.field === field ? details.message : undefined);
  const formError = details && !fieldError('email') && !fieldError('expiresInHours') ? details.message : undefined;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ ...(email.trim() ? { email: email.trim() } : {}), expiresInHours: hours });
  };

  return (
    <section className="panel" aria-labelledby="create-invitation-title">
      <h2 className="panel-title" id="create-invitation-title">
        New invitation
      </h2>
      <form onSubmit={submit} noValidate>
        <div className="field-grid">
          <div className="field">
            <label htmlFor="invitation-email">Email (optional)</label>
            <input
              id="invitation-email"
              type="email"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              aria-invalid={Boolean(fieldError('email'))}
              aria-describedby={fieldError('email') ? 'invitation-email-error' : 'invitation-email-hint'}
            />
            {fieldError('email') ? (
              <p id="invitation-email-error" className="field-error">{fieldError('email')}</p>
            ) : (
              <p id="invitation-email-hint" className="hint">When set, only this address can use the link.</p>
            )}
          </div>
          <div className="field">
            <label htmlFor="invitation-expiry">Valid for</label>
            <select id="invitation-expiry" value={hours} onChange={(e) => setHours(Number(e.target.value))} aria-invalid={Boolean(fieldError('expiresInHours'))}>
              {EXPIRY_CHOICES.map((choice) => (
                <option key={choice.hours} value={choice.hours}>
                  {choice.label}
                </option>
              ))}
            </select>
            {fieldError('expiresInHours') && <p className="field-error">{fieldError('expiresInHours')}</p>}
          </div>
        </div>
        {formError && <p className="form-error" role="alert">{formError}</p>}
        <button type="submit" className="button-primary" disabled={create.isPending}>
          {create.isPending ? 'Creating…' : 'Create invitation link'}
        </button>
      </form>
      {create.data && (
        <div className="notice notice-warn" role="status" data-testid="invitation-link">
          <p>
            Copy this link now and send it to {create.data.invitation.email ?? 'the person you invite'}: it is shown only once. It is valid
            until {formatDateTime(create.data.invitation.expiresAt)}.
          </p>
          <p>
            <code>{create.data.link}</code> <CopyButton value={create.data.link} label="invitation link" />
          </p>
        </div>
      )}
    </section>
  );
}

function InvitationRow({ invitation }: { invitation: Invitation }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const revoke = useMutation(
    trpc.admin.revokeInvitation.mutationOptions({
      onSuccess: () => void queryClient.invalidateQueries({ queryKey: trpc.admin.listInvitations.queryKey() }),
    }),
  );
  return (
    <tr data-testid="invitation-row" data-invitation-id={invitation.id}>
      <td data-label="For">{invitation.email ?? <span className="muted">anyone with the link</span>}</td>
      <td data-label="Status">
        <span className={`badge ${STATUS_BADGE[invitation.status]}`}>{STATUS_LABEL[invitation.status]}</span>
      </td>
      <td data-label="Created">
        <time dateTime={invitation.createdAt}>{formatDateTime(invitation.createdAt)}</time>
        {invitation.createdByEmail && <div className="cell-sub">by {invitation.createdByEmail}</div>}
      </td>
      <td data-label="Expires">
        <time dateTime={invitation.expiresAt}>{formatDateTime(invitation.expiresAt)}</time>
      </td>
      <td data-label="Used by">
        {invitation.usedAt ? (
          <>
            {invitation.usedByEmail ?? <span className="muted">a deleted account</span>}
            <div className="cell-sub">
              <time dateTime={invitation.usedAt}>{formatDateTime(invitation.usedAt)}</time>
            </div>
          </>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
      <td data-label="Actions">
        {invitation.status === 'pending' && (
          <button
            type="button"
            className="button-danger-quiet button-small"
            onClick={() => revoke.mutate({ invitationId: invitation.id })}
            disabled={revoke.isPending}
            aria-label={`Revoke the invitation for ${invitation.email ?? 'anyone with the link'}`}
          >
            {revoke.isPending ? 'Revoking…' : 'Revoke'}
          </button>
        )}
        {revoke.error && <p className="field-error" role="alert">{errorDetails(revoke.error).message}</p>}
      </td>
    </tr>
  );
}
