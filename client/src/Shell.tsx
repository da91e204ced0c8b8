// The signed-in frame: header with the user and sign-out, and the page area the routes fill.
import type { RouterOutputs } from '../api/client';
import { Link } from './lib/router';

export function Shell({ user, onSignOut }: { user: RouterOutputs['auth']['me']; onSignOut: () => void }) {
  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/" className="brand">
          <span className="brand-mark" aria-hidden="true" />
          Predictions
        </Link>
        <nav className="topnav" aria-label="Main">
          <Link to="/">Jobs</Link>
        </nav>
        <div className="topbar-user">
          <span className="user-email" data-testid="user-email">{user.email}</span>
          <button type="button" className="button-quiet" onClick={onSignOut}>Sign out</button>
        </div>
      </header>
      <main className="content">
        <section className="empty-state">
          <h1>Welcome, {user.email}</h1>
          <p>Your training jobs will appear here. Deploy one to watch its predictions arrive as it trains.</p>
        </section>
      </main>
    </div>
  );
}
