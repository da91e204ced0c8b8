// How the web app stays current, in one place. Where the server streams (jobs.onUpdate,
// predictions.onNew) the page subscribes. What it does not stream (curves, diagnostics, epoch
// lists, comparisons, logs) is re-read on one rhythm while the job is live, through the query
// option below, and read once more when the job stops (JobPage invalidates the job's queries).

/** How often a live job's unstreamed views are re-read, in milliseconds. */
export const LIVE_REFRESH_MS = 3_000;

/** React Query's `refetchInterval` for a view of a job: the live rhythm while it runs, none after. */
export function liveRefetchInterval(live: boolean): number | false {
  return live ? LIVE_REFRESH_MS : false;
}
