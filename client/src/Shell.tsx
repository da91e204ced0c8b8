// The signed-in frame: header with navigation, the user and sign-out, and the routed page.
import { lazy, Suspense } from 'react';
import type { RouterOutputs } from '../api/client';
import { Link, matchPath, useLocation } from './lib/router';
import { JobsListPage } from './pages/JobsListPage';
import { JobPage, isJobTab } from './pages/JobPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { Loading } from './components/QueryError';

// The deploy form carries the config schema (zod): loaded when opened, not on every page.
const NewJobPage = lazy(() => import('./pages/NewJobPage').then((m) => ({ default: m.NewJobPage })));

function Page({ path }: { path: string }) {
  if (path === '/' || path === '/jobs') return <JobsListPage />;
  if (matchPath('/jobs/new', path)) {
    return (
      <Suspense fallback={<Loading label="Loading the form…" />}>
        <NewJobPage />
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
        </nav>
        <div className="topbar-user">
          <span className="user-email" data-testid="user-email">
            {user.email}
          </span>
          <button type="button" className="button-quiet" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main className="content" id="content" tabIndex={-1}>
        <Page path={path} />
      </main>
    </div>
  );
}
