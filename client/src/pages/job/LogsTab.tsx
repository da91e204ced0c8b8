// The pod's log, tailed: jobs.logs is polled with afterId every 2 s while the job is live.
// It scrolls to the newest line unless the reader has scrolled up to read something.
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { RouterOutputs } from '../../../api/client';
import { errorDetails } from '../../../api/client';
import { isLive } from '../../lib/format';
import { useTRPCClient } from '../../lib/trpc';
import type { JobDetail } from './job-detail';

type LogLine = RouterOutputs['jobs']['logs']['lines'][number];

const POLL_MS = 2_000;
const PAGE = 500;
/** Kept in the page at most; older lines drop off the top. */
const MAX_LINES = 5_000;
const STICK_PX = 32;

export function LogsTab({ job }: { job: JobDetail }) {
  const client = useTRPCClient();
  const live = isLive(job.status);
  const [lines, setLines] = useState<LogLine[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const afterId = useRef(0);
  const viewport = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [unseen, setUnseen] = useState(false);

  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        for (;;) {
          const page = await client.jobs.logs.query({ jobId: job.id, afterId: afterId.current, limit: PAGE });
          if (cancelled) return;
          afterId.current = Math.max(afterId.current, page.lastId);
          if (page.lines.length > 0) setLines((old) => [...old, ...page.lines].slice(-MAX_LINES));
          if (page.lines.length < PAGE) break;
        }
        setError(null);
      } catch (caught) {
        if (!cancelled) setError(errorDetails(caught).message);
      }
      if (cancelled) return;
      setLoaded(true);
      // A stopped job writes no more lines: one read after it stops is the end of the log.
      if (live) timer = setTimeout(() => void tick(), POLL_MS);
    };
    void tick();
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [client, job.id, live]);

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
