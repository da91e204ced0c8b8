// How a run is told to stop: SIGTERM/SIGINT (a second one exits at once), or the death of the
// server that launched it (TRAINER_PARENT_PID), which would otherwise leave an orphan training
// for nobody. Each calls `stop(reason)` once; the run then flushes and reports.

export interface StopWatch {
  /** Aborted when the run should stop; `reason` says why. */
  signal: AbortSignal;
  reason(): string | null;
  /** 128 + the signal's number for a signal, 1 otherwise (null while running). */
  exitCode(): number | null;
  /** Stops the run for a reason found elsewhere (the server ended the job); the first stop wins. */
  stop(reason: string, exitCode: number): void;
  dispose(): void;
}

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;

export function watchForStop(options: { parentPid: number | null; pollMs?: number; onStop(reason: string): void }): StopWatch {
  const controller = new AbortController();
  let reason: string | null = null;
  let code: number | null = null;
  const stop = (why: string, exitCode: number) => {
    if (reason !== null) return;
    reason = why;
    code = exitCode;
    options.onStop(why);
    controller.abort(new Error(why));
  };
  const handlers = (Object.keys(SIGNAL_NUMBERS) as (keyof typeof SIGNAL_NUMBERS)[]).map((name) => {
    const handler = () => {
      if (reason !== null) {
        process.stderr.write(`[trainer] ${name} again: exiting now without flushing.\n`);
        process.exit(128 + SIGNAL_NUMBERS[name]);
      }
      stop(`stopped by ${name}`, 128 + SIGNAL_NUMBERS[name]);
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  let timer: NodeJS.Timeout | null = null;
  const parentPid = options.parentPid;
  if (parentPid !== null) {
    const initialPpid = process.ppid;
    timer = setInterval(() => {
      let gone = false;
      try {
        process.kill(parentPid, 0);
      } catch (error) {
        gone = (error as NodeJS.ErrnoException).code === 'ESRCH';
      }
      // Reparented: the process that started us is gone even if its pid was reused.
      if (initialPpid === parentPid && process.ppid !== parentPid) gone = true;
      if (gone) stop(`the server that launched this trainer (pid ${parentPid}) is gone`, 1);
    }, options.pollMs ?? 1000);
    timer.unref();
  }
  return {
    signal: controller.signal,
    reason: () => reason,
    exitCode: () => code,
    stop,
    dispose() {
      if (timer) clearInterval(timer);
      for (const [name, handler] of handlers) process.off(name, handler);
    },
  };
}
