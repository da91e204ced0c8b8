// A tiny History-API router: the path is the state, so every page can be bookmarked and shared.
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener('popstate', listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener('popstate', listener);
  };
}

const currentLocation = () => window.location.pathname + window.location.search;

export function useLocation(): { path: string; search: URLSearchParams } {
  const location = useSyncExternalStore(subscribe, currentLocation, () => '/');
  const [path = '/', query = ''] = location.split('?');
  return { path, search: new URLSearchParams(query) };
}

/** Goes to `to`; `replace` rewrites the current entry, `keepScroll` stays where the reader is (a filter changed, not the page). */
export function navigate(to: string, options: { replace?: boolean; keepScroll?: boolean } = {}): void {
  if (to === currentLocation()) return;
  if (options.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  for (const listener of listeners) listener();
  if (!options.keepScroll) window.scrollTo(0, 0);
}

/** Matches "/jobs/:jobId/:tab?" style patterns; returns the params or null. */
export function matchPath(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const have = path.split('/').filter(Boolean);
  const params: Record<string, string> = {};
  for (let i = 0; i < Math.max(want.length, have.length); i++) {
    const w = want[i];
    const h = have[i];
    if (w === undefined) return null;
    const optional = w.endsWith('?');
    if (w.startsWith(':')) {
      if (h === undefined) {
        if (optional) continue;
        return null;
      }
      params[w.slice(1).replace(/\?$/, '')] = decodeURIComponent(h);
    } else if (w !== h) {
      return null;
    }
  }
  return params;
}

export function Link({ to, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { to: string }) {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handle} {...rest} />;
}
