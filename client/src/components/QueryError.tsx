// A failed request, said where it happened, with a way to try again.
import { useEffect } from 'react';
import { errorDetails } from '../../api/client';

/** The server's wait when it names none (it sends Retry-After with every 503 it answers itself). */
const DEFAULT_RETRY_SECONDS = 5;

export function QueryError({ error, what, onRetry }: { error: unknown; what: string; onRetry?: () => void }) {
  const details = errorDetails(error);
  // A 503 is the server saying its database is away for now: nothing is wrong with the request
  // and nothing stored is lost. React Query gives up after two retries (main.tsx), so this keeps
  // retrying at the pace the server asks for, and says so, until the answer changes.
  const unavailable = details.httpStatus === 503 || details.code === 'SERVICE_UNAVAILABLE';
  const retryAfterMs = (details.retryAfterSeconds ?? DEFAULT_RETRY_SECONDS) * 1000;
  useEffect(() => {
    if (!unavailable || !onRetry) return;
    const timer = setTimeout(onRetry, retryAfterMs);
    return () => clearTimeout(timer);
  }, [error, unavailable, onRetry, retryAfterMs]);

  const message =
    details.httpStatus === 404 || details.code === 'NOT_FOUND'
      ? `${what}: not found. It may have been deleted, or it belongs to another account.`
      : unavailable
        ? `${what}: the database is unreachable; retrying. Nothing stored is lost.`
        : `Could not load ${what.toLowerCase()}: ${details.message}`;
  return (
    <div className="notice notice-fail" role="alert">
      <span>{message}</span>
      {onRetry && details.code !== 'NOT_FOUND' && (
        <button type="button" className="button-quiet" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ label }: { label: string }) {
  return (
    <div className="loading" role="status">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}
