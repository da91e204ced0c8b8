// The Express app: security headers, /health, /trpc (body limit, gzip, batch cap) and the SPA.
import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { type ErrorRequestHandler } from 'express';
import compression from 'compression';
import helmet from 'helmet';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import { sql } from 'drizzle-orm';
import { AppError, DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable, isDatabaseUnavailable } from './errors';
import { describeError } from './log-safe';
import type { AppDeps } from './app-deps';
import { appRouter } from './routers/app.router';
import { contextFactory } from './trpc/context';
import { verifyExportToken } from './auth/tokens';
import { writeExport } from './predictions/predictions.service';

export interface AppOptions {
  /** Directory of the built SPA; when absent the API still works and / says how to build it. */
  spaDir?: string;
}

// While the database is down every request fails alike: one log line per this many ms says so.
const UNAVAILABLE_LOG_INTERVAL_MS = 10_000;

export function createApp(deps: AppDeps, options: AppOptions = {}): express.Express {
  const app = express();
  let unavailableLoggedAt = -Infinity;
  const logUnavailable = (where: string, error: unknown) => {
    if (Date.now() - unavailableLoggedAt < UNAVAILABLE_LOG_INTERVAL_MS) return;
    unavailableLoggedAt = Date.now();
    console.error(`[db] unreachable (${where}); answering 503 until it is back: ${describeError(error)}`);
  };
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.trustProxy);
  app.use(
    helmet({
      contentSecurityPolicy: { directives: { 'upgrade-insecure-requests': null } },
      // Served over plain HTTP on a LAN as often as behind TLS; HSTS belongs to the TLS proxy.
      strictTransportSecurity: false,
    }),
  );

  app.get('/health', async (_req, res) => {
    try {
      await deps.database.db.execute(sql`select 1`);
      res.json({ status: 'ok', db: deps.database.kind });
    } catch {
      res.setHeader('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
      res.status(503).json({ status: 'unavailable', db: deps.database.kind });
    }
  });

  app.use(
    '/trpc',
    // Read the body as text (gzip/deflate inflated, size checked after inflating) and hand it to
    // tRPC as is: JSON is parsed once, by tRPC, and a malformed body is tRPC's PARSE_ERROR.
    express.text({ type: () => true, limit: deps.config.maxBodyBytes, inflate: true, defaultCharset: 'utf-8' }),
    createExpressMiddleware({
      router: appRouter,
      createContext: contextFactory(deps),
      maxBatchSize: deps.config.maxBatchCalls,
      // A query whose input is too long for a URL (Node refuses request lines past 16 KB) can be
      // sent as a POST body instead (tRPC's method override; the typed client's methodOverride).
      allowMethodOverride: true,
      responseMeta({ errors }) {
        const retry = errors.map((e) => (e.cause instanceof AppError ? e.cause.retryAfterSeconds : undefined)).find(Boolean);
        return retry ? { headers: { 'retry-after': String(retry) } } : {};
      },
      onError({ error, path: procedure }) {
        // Expected failures are answers, not incidents; only the unexpected is logged, with its
        // stack, and never with query parameters or row values (see log-safe.ts).
        if (error.code === 'INTERNAL_SERVER_ERROR') {
          console.error(`[trpc] ${procedure ?? '(unknown)'} failed: ${describeError(error.cause ?? error)}`);
        } else if (error.code === 'SERVICE_UNAVAILABLE' && error.cause instanceof AppError) {
          logUnavailable(procedure ?? 'trpc', error.cause.cause ?? error.cause);
        }
      },
    }),
  );

  app.get('/api/export/:file', async (req, res) => {
    const match = /^([0-9a-f-]{36})\.(jsonl|csv)$/.exec(req.params.file);
    const token = typeof req.query.token === 'string' ? req.query.token : '';
    const claims = token ? await verifyExportToken(deps.secrets.session, token) : null;
    if (!match || !claims || claims.jobId !== match[1]) {
      res.status(401).json({ error: { message: 'This export link is invalid or has expired; ask for a new one' } });
      return;
    }
    const format = match[2] === 'csv' ? 'csv' : 'jsonl';
    try {
      res.setHeader('content-type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
      res.setHeader('content-disposition', `attachment; filename="predictions-${claims.jobId}.${format}"`);
      res.setHeader('cache-control', 'no-store');
      await writeExport(deps, claims, format, res, () => res.destroyed);
      res.end();
    } catch (error) {
      // Once bytes are out the status is sent: the only honest signal left is a cut download.
      if (res.headersSent) {
        if (isDatabaseUnavailable(error)) logUnavailable('export', error);
        else console.error(`[export] failed mid-stream: ${describeError(error)}`);
        res.destroy();
        return;
      }
      // The answer is JSON now, not the file the headers announced.
      res.removeHeader('content-disposition');
      res.removeHeader('content-type');
      if (error instanceof AppError && error.code === 'NOT_FOUND') {
        res.status(404).json({ error: { message: error.message } });
      } else if (isDatabaseUnavailable(error)) {
        logUnavailable('export', error);
        res.setHeader('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
        res.status(503).json({ error: { message: databaseUnavailable().message } });
      } else {
        console.error(`[export] failed: ${describeError(error)}`);
        res.status(500).json({ error: { message: 'Internal server error' } });
      }
    }
  });

  if (options.spaDir && existsSync(path.join(options.spaDir, 'index.html'))) {
    const spaDir = options.spaDir;
    // The SPA's JavaScript and CSS shrink about 3× with gzip; only these routes, never /trpc's streams.
    app.use(compression());
    app.use('/assets', express.static(path.join(spaDir, 'assets'), { immutable: true, maxAge: '1y', index: false }));
    app.use(express.static(spaDir, { index: false, maxAge: '1h' }));
    app.get('/{*path}', (_req, res) => {
      res.setHeader('cache-control', 'no-cache');
      res.sendFile(path.join(spaDir, 'index.html'));
    });
  } else {
    app.get('/', (_req, res) => {
      res.type('text/plain').send('The API is running; the web app is not built. Run `npm run build` or `npm start`.');
    });
  }

  app.use(bodyErrors);
  return app;
}

const BODY_ERRORS: Record<string, { status: number; code: string; message: (limit: number) => string }> = {
  'entity.too.large': {
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
    message: (limit) => `Request body exceeds the ${limit}-byte limit (after decompression); send smaller batches`,
  },
  'encoding.unsupported': {
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: () => 'Unsupported Content-Encoding; use gzip, deflate, br or none',
  },
  'charset.unsupported': {
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: () => 'Unsupported charset; send UTF-8',
  },
};

/** Errors raised before tRPC sees the request (body limit, bad gzip), in tRPC's error envelope. */
const bodyErrors: ErrorRequestHandler = (err: unknown, req, res, next) => {
  if (res.headersSent) return next(err);
  const e = err as { type?: string; status?: number; limit?: number };
  const known = e.type ? BODY_ERRORS[e.type] : undefined;
  const status = known?.status ?? (e.status && e.status >= 400 && e.status < 500 ? e.status : 500);
  const message = known
    ? known.message(e.limit ?? 0)
    : status < 500
      ? 'The request body could not be read (corrupt or truncated compression?)'
      : 'Internal server error';
  if (status >= 500) console.error(`[http] ${req.method} ${req.path} failed: ${describeError(err)}`);
  res.status(status).json({
    error: { message, code: -32600, data: { code: known?.code ?? (status < 500 ? 'BAD_REQUEST' : 'INTERNAL_SERVER_ERROR'), httpStatus: status } },
  });
};
