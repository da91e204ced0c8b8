// What the server writes to its log about an unexpected error: the one function every log line
// about an error goes through. Drizzle wraps a driver error in one whose message holds the SQL
// and every query parameter (emails, password hashes, whole prediction batches), PGlite attaches
// the parameters to its own error, and PostgreSQL's message and detail quote offending values
// ("Key (email)=(…) already exists"). So a database error is described by what identifies it
// (SQLSTATE, severity, constraint, table, column, routine) and by sizes (query length, parameter
// count and bytes), never by its message, detail or parameter values.
import { errorChain } from './errors';

/** The fields of a PostgreSQL error (node-postgres and PGlite alike) that never hold row data. */
const SAFE_DATABASE_FIELDS = ['severity', 'code', 'schema', 'table', 'column', 'dataType', 'constraint', 'routine'] as const;
// A non-database message rarely holds data, but it can (JSON.parse quotes its input): bounded.
const MAX_MESSAGE_CHARS = 300;
const MAX_STACK_FRAMES = 12;

type Fields = Record<string, unknown>;

/**
 * One line (plus stack frames) describing an error for the log, with no query parameter, row
 * value or database message in it. Use it for every error a log line reports.
 */
export function describeError(error: unknown): string {
  const chain = errorChain(error);
  // tRPC (and others) copy a wrapped error's message into their own: once any link is a database
  // error or carries a query, no link's message is trusted.
  const withMessages = !chain.some((link) => typeof link === 'object' && link !== null && (carriesQuery(link as Fields) || isDatabaseError(link as Fields)));
  const parts = chain.map((link) => describeLink(link, withMessages));
  const frames = stackFrames(error);
  return [parts.join(' <- '), ...frames].join('\n');
}

function carriesQuery(fields: Fields): boolean {
  return typeof fields.query === 'string' || Array.isArray(fields.params);
}

function describeLink(link: unknown, withMessage: boolean): string {
  if (typeof link !== 'object' || link === null) return `thrown ${typeof link}`;
  const fields = link as Fields;
  // The class says more than `name`: Drizzle's wrapper keeps "Error", and a database error says
  // "error" (its protocol message name) under a class name PGlite's bundle minifies away.
  const ctor = typeof link.constructor === 'function' ? link.constructor.name : '';
  const name = isDatabaseError(fields)
    ? 'DatabaseError'
    : ctor.length > 2 && ctor !== 'Error' && ctor !== 'Object'
      ? ctor
      : typeof fields.name === 'string' && fields.name
        ? fields.name
        : 'Error';
  const notes: string[] = [];
  if (carriesQuery(fields)) notes.push(querySize(fields));
  if (isDatabaseError(fields)) {
    for (const key of SAFE_DATABASE_FIELDS) {
      const value = fields[key];
      if (typeof value === 'string' && value) notes.push(`${key}=${value}`);
    }
    return `${name} (${notes.join(', ')})`;
  }
  // A wrapper that carries a query (Drizzle's "Failed query: <sql> params: <values>"): its message is the data.
  if (notes.length > 0) return `${name} (${notes.join(', ')})`;
  for (const key of ['code', 'errno', 'syscall', 'address', 'port'] as const) {
    const value = fields[key];
    if ((typeof value === 'string' && value) || typeof value === 'number') notes.push(`${key}=${value}`);
  }
  const message = withMessage && typeof fields.message === 'string' ? truncate(fields.message) : '';
  return `${name}${message ? `: ${message}` : ''}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
}

/** A PostgreSQL error as either driver raises it: a five-character SQLSTATE and a severity. */
function isDatabaseError(fields: Fields): boolean {
  return typeof fields.code === 'string' && /^[0-9A-Z]{5}$/.test(fields.code) && typeof fields.severity === 'string';
}

function querySize(fields: Fields): string {
  const sizes: string[] = [];
  if (typeof fields.query === 'string') sizes.push(`query ${fields.query.length} chars`);
  if (Array.isArray(fields.params)) {
    const bytes = fields.params.reduce<number>((total, param) => total + byteSize(param), 0);
    sizes.push(`${fields.params.length} params, ${bytes} bytes`);
  }
  return sizes.join(', ');
}

function byteSize(value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (value instanceof Uint8Array) return value.byteLength;
  if (typeof value === 'object') {
    try {
      return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
    } catch {
      return 0;
    }
  }
  return String(value).length;
}

/** The outermost error's stack frames only: the stack's first line repeats the message, which may be the data. */
function stackFrames(error: unknown): string[] {
  if (typeof error !== 'object' || error === null) return [];
  const { stack, message } = error as { stack?: unknown; message?: unknown };
  if (typeof stack !== 'string') return [];
  // Cut everything up to the end of the message, so no line of a multi-line message passes for a frame.
  const at = typeof message === 'string' && message ? stack.indexOf(message) : -1;
  return (at >= 0 ? stack.slice(at + (message as string).length) : stack)
    .split('\n')
    .filter((line) => /^\s+at /.test(line))
    .slice(0, MAX_STACK_FRAMES);
}

function truncate(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_MESSAGE_CHARS ? `${oneLine.slice(0, MAX_MESSAGE_CHARS)}…` : oneLine;
}
