// The pod's log, tailed: on the live rhythm (lib/live.ts) jobs.logs is read after the last line
// already shown, and the lines gathered in the query's own cache entry (so returning to the tab
// shows them at once). It scrolls to the newest line unless the reader has scrolled up.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useLayoutEffect, useRef, useState } from 'react';
import type { RouterOutputs } from '../../../api/client';
import { errorDetails } from '../../../api/client';
import { isLive } from '../../lib/format';
import { liveRefetchInterval } from '../../lib/live';
import { useTRPC, useTRPCClient } from '../../lib/trpc';
import type { JobDetail } from './job-detail';

type LogLine = RouterOutputs['jobs']['logs']['lines'][number];

interface LogTail {
  lines: LogLine[];
  /** The id of the last line read; the next read starts after it. */
  lastId: number;
}

const PAGE = 500;
/** Kept in the page at most; older lines drop off the top. */
const MAX_LINES = 5_000;
const STICK_PX = 32;

export function LogsTab({ job }: { job: JobDetail }) {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const queryClient = useQueryClient();
  const live = isLive(job.status);
  const queryKey = [...trpc.jobs.logs.queryKey({ jobId: job.id }), 'tail'];
  const tail = useQuery({
    queryKey,
    queryFn: async (): Promise<LogTail> => {
      const before = queryClient.getQueryData<LogTail>(queryKey) ?? { lines: [], lastId: 0 };
      let { lines, lastId } = before;
      for (;;) {
        const page = await client.jobs.logs.query({ jobId: job.id, afterId: lastId, limit: PAGE });
        lastId = Math.max(lastId, page.lastId);
        if (page.lines.length > 0) lines = [...lines, ...page.lines].slice(-MAX_LINES);
        if (page.lines.length < PAGE) break;
      }
      return { lines, lastId };
    },
    // A stopped job writes no more lines: the read after it stops (JobPage refreshes the job's views) is the end.
    refetchInterval: liveRefetchInterval(live),
  });
  const lines = tail.data?.lines ?? [];
  const loaded = tail.data !== undefined;
  const error = tail.isError ? errorDetails(tail.error).message : null;
  const viewport = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [unseen, setUnseen] = useState(false);

  useLayoutEffect(() => {
    const el = viewport.current;
    if (!el) return;
    if (stick.current) el.scrollTop = el.scrollHeight;
    else setUnseen(true);
  }, [lines]);

  const onScroll = () => {
    const el = viewport.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
    if (stick.current) setUnseen(false);
  };
  const jumpToEnd = () => {
    const el = viewport.current;
    if (!el) return;
    stick.current = true;
    el.scrollTop = el.scrollHeight;
    setUnseen(false);
  };

  return (
    <section className="panel" aria-labelledby="logs-title">
      <div className="panel-head">
        <h2 id="logs-title" className="panel-title">
          Pod log
        </h2>
        <span className={live ? 'live live-on' : 'live live-off'}>
          {live ? (
            <>
              <span className="live-dot" aria-hidden="true" />
              Tailing
            </>
          ) : (
            'The job has stopped; this is the whole log.'
          )}
        </span>
      </div>
      {error && (
        <p className="notice notice-fail" role="alert">
          Could not read the log: {error}. {live ? 'Retrying…' : ''}
        </p>
      )}
      <div className="log-wrap">
        <div
          className="log"
          ref={viewport}
          onScroll={onScroll}
          tabIndex={0}
          role="log"
          aria-label="Pod log lines"
          aria-live="off"
          data-testid="log"
        >
          {!loaded ? (
            <p className="log-empty">Loading the log…</p>
          ) : lines.length === 0 ? (
            <p className="log-empty">
              {live
                ? job.launcher === 'manual'
                  ? 'No log lines yet. The pod sends its log here once it connects with its job token.'
                  : 'No log lines yet. They appear as the trainer starts.'
                : 'The pod sent no log lines.'}
            </p>
          ) : (
            lines.map((line) => (
              <div key={line.id} className={`log-line log-${line.level}`}>
                <time dateTime={line.createdAt}>{new Date(line.createdAt).toLocaleTimeString()}</time>
                <span className="log-level">{line.level}</span>
                <span className="log-message">{line.message}</span>
              </div>
            ))
          )}
        </div>
        {unseen && (
          <button type="button" className="log-jump button-primary button-small" onClick={jumpToEnd}>
            New lines ↓
          </button>
        )}
      </div>
    </section>
  );
}
