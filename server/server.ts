// Starts the whole server for a given config: database, secrets, HTTP. Used by main.ts and by
// tests that need a real server on a real port.
import { createServer, maxHeaderSize, STATUS_CODES, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { openDatabase, type Database } from '../db/client';
import { createApp, type AppOptions } from './app';
import { createDeps, type AppDeps, type ServerConfig } from './deps';
import type { AppConfig } from './env';
import type { LauncherRegistry } from './launchers/types';
import { resolveInstanceId, resolveSecrets } from './secrets';
import { adoptLocalJobs } from './jobs/jobs.service';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock';

export interface RunningServer {
  url: string;
  deps: AppDeps;
  /**
   * Shuts down gracefully: stops accepting connections, ends live streams (they never end by
   * themselves), lets other requests in flight finish for up to SHUTDOWN_GRACE_SECONDS, then
   * closes the connections left, the launchers and the database. Resolves when all is closed.
   */
  close(): Promise<void>;
  /** Requests being answered right now, live streams included (what close() waits for). */
  requestsInFlight(): number;
}

export interface StartOptions extends AppOptions {
  /** An already-open database (tests); otherwise opened from the config and closed with the server. */
  database?: Database;
  launchers?: (deps: AppDeps) => LauncherRegistry;
}

export async function startServer(config: AppConfig, options: StartOptions = {}): Promise<RunningServer> {
  // An embedded database is this process's alone: the lock comes before anything reads or writes
  // the directory, so a refused second start changes nothing there.
  const lock = !options.database && config.database.kind === 'pglite' ? await acquireDataDirLock(config.database.dataDir) : null;
  try {
    return await startLocked(config, options, lock);
  } catch (error) {
    lock?.release();
    throw error;
  }
}

async function startLocked(config: AppConfig, options: StartOptions, lock: DataDirLock | null): Promise<RunningServer> {
  if (lock?.tookOverFrom) {
    console.warn(`[server] took over ${lock.file}: its process (pid ${lock.tookOverFrom.pid}) is gone`);
  }
  const database = options.database ?? (await openDatabase(config.database));
  try {
    return await startOn(database, config, options, lock);
  } catch (error) {
    // The lock is released after this (startServer): the database must be closed by then.
    if (!options.database) await database.close().catch(() => undefined);
    throw error;
  }
}

async function startOn(database: Database, config: AppConfig, options: StartOptions, lock: DataDirLock | null): Promise<RunningServer> {
  const secrets = await resolveSecrets(config);
  // Listen first, so the public URL can be derived from the real port when it was 0. Until the
  // app is attached, requests (a load balancer's health check, an eager pod) get a quick 503
  // with Retry-After instead of hanging on an unanswered socket.
  const ready: { app?: RequestListener } = {};
  const inFlight = new Set<ServerResponse>();
  let closing = false;
  const server: Server = createServer((req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    // Shutting down: this answer is the connection's last, so keep-alive clients reconnect elsewhere.
    if (closing) res.setHeader('connection', 'close');
    if (ready.app) return ready.app(req, res);
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' });
    res.end(JSON.stringify({ status: 'starting' }));
  });
  answerClientErrors(server);
  // Bounded timeouts: a slow or stalled request cannot hold a connection forever.
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host}:${port}`;
  const resolved: ServerConfig = { ...config, publicUrl: config.publicUrl ?? `http://localhost:${port}` };
  const instanceId = await resolveInstanceId(config.dataDir);
  const deps = createDeps(resolved, database, secrets, { instanceId, ...(options.launchers ? { launchers: options.launchers } : {}) });
  await deps.live.start();
  const adopted = await adoptLocalJobs(deps);
  const taken = adopted.following + adopted.ended + adopted.queued;
  if (taken > 0) {
    console.warn(
      `[server] took back ${taken} local job(s) from before the restart: ${adopted.following} trainer(s) still running, ${adopted.ended} ended while the server was down, ${adopted.queued} queued again`,
    );
  }
  if (adopted.failed > 0) console.warn(`[server] ${adopted.failed} local job(s) could not be taken back (no local launcher); marked failed`);
  ready.app = createApp(deps, options);
  return {
    url,
    deps,
    requestsInFlight: () => inFlight.size,
    async close() {
      closing = true;
      await drainHttp(server, inFlight, config.shutdownGraceSeconds * 1000);
      await Promise.all(Object.values(deps.launchers).map((launcher) => launcher?.close?.()));
      await deps.live.close();
      if (!options.database) await database.close();
      lock?.release();
    },
  };
}

/**
 * Requests Node refuses before any handler sees them (a GET whose `?input=` passes the 16 KB
 * header limit, a malformed request line) are answered like every other refusal: a JSON body
 * in tRPC's error shape whose message says what to do, instead of a bare status line.
 * Node's `clientError` event is the documented place for this; Node parsed the request, we only
 * write the answer.
 */
function answerClientErrors(server: Server): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const message =
      status === 431
        ? `The request's URL and headers exceed ${maxHeaderSize} bytes; send a large input as the JSON body of a POST instead (queries accept POST here)`
        : status === 408
          ? 'The request took too long to arrive'
          : 'The request is not valid HTTP';
    const body = JSON.stringify({ error: { message, code: -32600, data: { httpStatus: status } } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

/** How often the shutdown looks again for requests still running and for live streams to end. */
const DRAIN_POLL_MS = 25;

/**
 * Stops accepting connections and waits, at most `graceMs`, for the requests in flight to be
 * answered; live streams (server-sent events) are ended at once, since they only end when their
 * client goes away. Then every connection left is closed. Cutting everything at once (as before)
 * left pods with writes stored but never acknowledged (audit F14).
 */
async function drainHttp(server: Server, inFlight: Set<ServerResponse>, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const deadline = Date.now() + graceMs;
  for (;;) {
    let waiting = 0;
    for (const res of inFlight) {
      // A stream's response may open after the shutdown began (its ownership check was running): looked at on every pass.
      if (isEventStream(res)) res.destroy();
      else waiting++;
    }
    if (waiting === 0 || Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
  }
  // Keep-alive connections left idle by the answers above, and whatever overran the grace.
  server.closeAllConnections();
  await closed;
}

function isEventStream(res: ServerResponse): boolean {
  return String(res.getHeader('content-type') ?? '').startsWith('text/event-stream');
}
