// A failed request, said where it happened, with a way to try again.
import { errorDetails } from '../../api/client';

export function QueryError({ error, what, onRetry }: { error: unknown; what: string; onRetry?: () => void }) {
  const details = errorDetails(error);
  const message =
    details.httpStatus === 404 || details.code === 'NOT_FOUND'
      ? `${what}: not found. It may have been deleted, or it belongs to another account.`
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
