// Waiting in tests for something that happens asynchronously elsewhere (another process, a
// poll loop, a stream): poll, never sleep a fixed time and hope.

/**
 * Polls `read` every 100 ms until `done` holds and returns that value; on timeout throws,
 * naming what it waited for and the last value seen, so a stuck test says where it stuck.
 */
export async function until<T>(read: () => T | Promise<T>, done: (value: T) => boolean, what = 'the condition', timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The part of a tRPC subscription a test holds on to. */
export interface Unsubscribable {
  unsubscribe(): void;
}

/**
 * Opens a tRPC subscription and resolves once its stream is open (tRPC's `onStarted`), so that a
 * write made afterwards is one the stream sees: `open((onStarted) => api.x.onNew.subscribe(input,
 * { onStarted, onData }))`. Rejects after `timeoutMs` naming `what`.
 */
export async function opened(subscribe: (onStarted: () => void) => Unsubscribable, what = 'the subscription', timeoutMs = 15_000): Promise<Unsubscribable> {
  let resolveStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => {
    resolveStarted = resolve;
  });
  const subscription = subscribe(() => resolveStarted());
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} to open`)), timeoutMs);
  });
  try {
    await Promise.race([started, timeout]);
    return subscription;
  } catch (error) {
    subscription.unsubscribe();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
