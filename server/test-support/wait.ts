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
