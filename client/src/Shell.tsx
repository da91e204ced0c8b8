// The signed-in frame: header with navigation, the user and sign-out, and the routed page.
import { lazy, Suspense } from 'react';
import type { RouterOutputs } from '../api/client';
import { Link, matchPath, useLocation } from './lib/router';
import { JobsListPage } from './pages/JobsListPage';
import { JobPage, isJobTab } from './pages/JobPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { AccountPage } from './pages/AccountPage';
import { Loading } from './components/QueryError';

// The deploy form carries the config schema (zod): loaded when opened, not on every page.
const NewJobPage = lazy(() => import('./pages/NewJobPage').then((m) => ({ default: m.NewJobPage })));
// Administrators only, and it carries the invitation limits (zod): loaded when opened.
const InvitationsPage = lazy(() => import('./pages/InvitationsPage').then((m) => ({ default: m.InvitationsPage })));

function Page({ path, user }: { path: string; user: RouterOutputs['auth']['me'] }) {
  if (path === '/' || path === '/jobs') return <JobsListPage />;
  if (path === '/account') return <AccountPage email={user.email} />;
  if (matchPath('/jobs/new', path)) {
    return (
      <Suspense fallback={<Loading label="Loading the form…" />}>
        <NewJobPage />
      </Suspense>
    );
  }
  if (path === '/admin/invitations') {
    return (
      <Suspense fallback={<Loading label="Loading invitations…" />}>
        <InvitationsPage />
      </Suspense>
    );
  }
  const job = matchPath('/jobs/:jobId/:tab?', path);
  if (job?.jobId) {
    const tab = job.tab ?? 'predictions';
    if (isJobTab(tab)) return <JobPage key={job.jobId} jobId={job.jobId} tab={tab} />;
  }
  return <NotFoundPage />;
}

export function Shell({ user, onSignOut }: { user: RouterOutputs['auth']['me']; onSignOut: () => void }) {
  const { path } = useLocation();
  const onJobs = path === '/' || (path.startsWith('/jobs/') && path !== '/jobs/new');
  return (
    <div className="shell">
      <a className="skip-link" href="#content">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/" className="brand">
          <span className="brand-mark" aria-hidden="true" />
          Predictions
        </Link>
        <nav className="topnav" aria-label="Main">
          <Link to="/" aria-current={onJobs ? 'page' : undefined}>
            Jobs
          </Link>
          <Link to="/jobs/new" aria-current={path === '/jobs/new' ? 'page' : undefined}>
            New job
          </Link>
          {user.isAdmin && (
            <Link to="/admin/invitations" aria-current={path === '/admin/invitations' ? 'page' : undefined}>
              Invitations
            </Link>
          )}
        </nav>
        <div className="topbar-user">
          <Link to="/account" className="user-email" data-testid="user-email" aria-current={path === '/account' ? 'page' : undefined} title="Account: password and sessions">
            {user.email}
          </Link>
          <button type="button" className="button-quiet" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main className="content" id="content" tabIndex={-1}>
        <Page path={path} user={user} />
      </main>
    </div>
  );
}
