// View state that belongs in the address (filters, selections), so a view can be bookmarked,
// shared and restored with Back. The query string is the state: no copy is kept in React.
import { navigate, useLocation } from './router';

/**
 * One query-string parameter as state: `[value, set]`, value null when absent. Setting null or ''
 * removes it; the change replaces the history entry (a filter is not a new page) and keeps the
 * scroll position.
 */
export function useSearchParam(name: string): [string | null, (value: string | null) => void] {
  const { path, search } = useLocation();
  const value = search.get(name);
  const set = (next: string | null) => {
    const params = new URLSearchParams(window.location.search);
    if (next === null || next === '') params.delete(name);
    else params.set(name, next);
    const query = params.toString();
    navigate(query ? `${path}?${query}` : path, { replace: true, keepScroll: true });
  };
  return [value, set];
}

/** A whole number from the address, or undefined when absent or not one (a hand-edited URL). */
export function parseIntegerParam(value: string | null): number | undefined {
  if (value === null || !/^-?\d{1,9}$/.test(value)) return undefined;
  return Number(value);
}

/** A comma-separated list of whole numbers ("1,3,5"), sorted and without repeats; null when absent. */
export function parseIntegerListParam(value: string | null): number[] | null {
  if (value === null) return null;
  const numbers = value.split(',').map(parseIntegerParam).filter((n): n is number => n !== undefined);
  return [...new Set(numbers)].sort((a, b) => a - b);
}
