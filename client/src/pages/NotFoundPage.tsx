// Any path the app does not know.
import { Link } from '../lib/router';

export function NotFoundPage() {
  return (
    <section className="empty-state">
      <h1>Page not found</h1>
      <p className="muted">There is nothing at this address.</p>
      <Link to="/">Back to your jobs</Link>
    </section>
  );
}
