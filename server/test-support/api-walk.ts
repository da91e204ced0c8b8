// The machinery of the API walk (server/api-walk.test.ts): every procedure of a router, every
// field of its input (from the zod shape and from a valid example), hostile values for a field
// from fast-check, and one call over real HTTP whose answer is reduced to a status and a message.
import fc from 'fast-check';
import { z } from 'zod';
import type { AnyRouter } from '@trpc/server';

export type ProcedureKind = 'query' | 'mutation' | 'subscription';

export interface WalkedProcedure {
  /** Dotted path, as clients call it: `jobs.deploy`. */
  path: string;
  kind: ProcedureKind;
  /** The procedure's input parsers, in order (empty when it takes no input). */
  inputs: z.ZodType[];
}

interface ProcedureLike {
  _def: { procedure: true; type: ProcedureKind; inputs: unknown[] };
}

function isProcedure(value: unknown): value is ProcedureLike {
  return typeof value === 'function' && (value as Partial<ProcedureLike>)._def?.procedure === true;
}

/**
 * Every procedure of `router`, read from the router itself so that one added later is walked
 * too. Lazy sub-routers are not used here; if one appears, this throws rather than skip it.
 */
export function listProcedures(router: AnyRouter): WalkedProcedure[] {
  if (Object.keys(router._def.lazy).length > 0) throw new Error('the API walk does not load lazy routers; list them here first');
  const out: WalkedProcedure[] = [];
  const visit = (record: Record<string, unknown>, prefix: string) => {
    for (const [key, value] of Object.entries(record)) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (isProcedure(value)) {
        const inputs = value._def.inputs.map((parser) => {
          if (!(parser instanceof z.ZodType)) throw new Error(`${path}: an input parser that is not zod; teach the walk to read it`);
          return parser;
        });
        out.push({ path, kind: value._def.type, inputs });
      } else if (value && typeof value === 'object') {
        visit(value as Record<string, unknown>, path);
      }
    }
  };
  visit(router._def.record as Record<string, unknown>, '');
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** Where a field sits in an input: object keys and array indexes from the root. */
export type FieldPath = ReadonlyArray<string | number>;

export function formatPath(path: FieldPath): string {
  return path.length === 0 ? '(whole input)' : path.join('.');
}

/** The schema a wrapper stands for: `.optional()`, `.default()`, `.nullable()`, pipes and the like. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (let depth = 0; depth < 20; depth++) {
    if (
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable ||
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault ||
      current instanceof z.ZodNonOptional ||
      current instanceof z.ZodReadonly ||
      current instanceof z.ZodCatch
    ) {
      current = current.def.innerType as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      current = current.def.in as z.ZodType;
    } else {
      return current;
    }
  }
  return current;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Every field of an input: the root, each key of the zod object shapes (optional ones the
 * example leaves out included) and each key the example holds (for records and `unknown`
 * rows), nested objects and the first element of arrays too.
 */
export function fieldPaths(schemas: readonly z.ZodType[], example: unknown): FieldPath[] {
  const out: FieldPath[] = [];
  const visit = (schema: z.ZodType | undefined, value: unknown, path: Array<string | number>) => {
    out.push([...path]);
    const inner = schema ? unwrap(schema) : undefined;
    if (inner instanceof z.ZodArray || Array.isArray(value)) {
      const element = inner instanceof z.ZodArray ? (inner.element as z.ZodType) : undefined;
      if (Array.isArray(value) && value.length > 0) visit(element, value[0], [...path, 0]);
      return;
    }
    const shape = inner instanceof z.ZodObject ? (inner.shape as Record<string, z.ZodType>) : {};
    const keys = new Set([...Object.keys(shape), ...(isRecord(value) ? Object.keys(value) : [])]);
    for (const key of keys) visit(shape[key], isRecord(value) ? value[key] : undefined, [...path, key]);
  };
  // Several parsers on one procedure each see the whole input: walk the union of their fields.
  const seen = new Set<string>();
  for (const schema of schemas.length > 0 ? schemas : [undefined]) visit(schema, example, []);
  return out.filter((path) => {
    const key = JSON.stringify(path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Stands for "the field is left out" (or, at the root, "no input at all"). */
export const ABSENT = Symbol('absent');
export type Hostile = unknown;

/** A copy of `example` with the field at `path` replaced by `value` (or removed, for ABSENT). */
export function withField(example: unknown, path: FieldPath, value: Hostile): unknown {
  if (path.length === 0) return value;
  const copy: unknown = example === undefined ? {} : structuredClone(example);
  let parent: unknown = copy;
  for (const key of path.slice(0, -1)) {
    const container = parent as Record<string | number, unknown>;
    if (container[key] === null || typeof container[key] !== 'object') container[key] = {};
    parent = container[key];
  }
  const last = path[path.length - 1] as string | number;
  const container = parent as Record<string | number, unknown>;
  if (value === ABSENT) {
    if (Array.isArray(container) && typeof last === 'number') container.splice(last, 1);
    else delete container[last];
  } else {
    // defineProperty: a hostile key such as __proto__ must become a plain key, not a prototype.
    Object.defineProperty(container, last, { value, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}

/** Objects whose keys try prototype pollution once parsed by a careless merge. */
const pollution: unknown[] = [
  JSON.parse('{"__proto__":{"polluted":true,"isAdmin":true}}'),
  JSON.parse('{"constructor":{"prototype":{"polluted":true}}}'),
  JSON.parse('{"__proto__":null,"toString":"x","valueOf":1,"hasOwnProperty":false}'),
];

const RTL = '\u202Eتدريب\u202C שלום \u200F مرحبا\u061C';

/**
 * The hostile values every field is sent, before fast-check's random ones: int4 and float
 * edges, text PostgreSQL cannot store, 100 KB strings, right-to-left text, wrong types.
 * (-0 travels as 0: JSON has no negative zero.)
 */
export const HOSTILE_CONSTANTS: Hostile[] = [
  ABSENT,
  2 ** 31,
  2 ** 31 - 1,
  -(2 ** 31) - 1,
  2 ** 53,
  -(2 ** 53),
  1e308,
  -1,
  -0,
  0.5,
  'NaN',
  '-Infinity',
  '-1',
  '1e3',
  String(2 ** 31),
  '999999999999999',
  '',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfff',
  '😀'.slice(0, 1),
  RTL,
  'x'.repeat(100_000),
  [],
  [1, 'two', null],
  {},
  true,
  null,
  ...pollution,
];

/** One UTF-16 code unit of the kinds that break storage or display: NUL, controls, lone surrogates, RTL marks. */
const hostileUnit = fc.oneof(
  fc.constantFrom('\u0000', '\u0001', '\u001b', '\u007f', '\u202e', '\u200f', '\ufeff', '\uffff', '%', '\\', '"', "'", ';'),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
);

/** fast-check's random hostile values: numbers across every range, hostile text, long text, wrong types. */
export const hostileValue: fc.Arbitrary<Hostile> = fc.oneof(
  fc.integer({ min: 2 ** 31 - 3, max: 2 ** 31 + 3 }),
  fc.maxSafeInteger(),
  fc.double(),
  fc.string({ unit: hostileUnit, maxLength: 40 }),
  fc
    .tuple(fc.string({ unit: hostileUnit, minLength: 1, maxLength: 4 }), fc.integer({ min: 100_000, max: 110_000 }))
    .map(([piece, length]) => piece.repeat(Math.ceil(length / piece.length)).slice(0, length)),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(...pollution),
);

/** What a call answered, reduced to what the walk asserts on. */
export interface WalkAnswer {
  status: number;
  /** The error message a client would show; null on success or when there is none. */
  message: string | null;
}

function messageOf(body: unknown): string | null {
  if (!isRecord(body)) return null;
  const error = body.error;
  if (isRecord(error) && typeof error.message === 'string' && error.message.trim() !== '') return error.message;
  return null;
}

/**
 * Calls `procedure` over HTTP as a client would: queries as GET with `?input=`, mutations as a
 * POST with a JSON body, subscriptions as an SSE GET read up to its first event (tRPC answers a
 * subscription with 200 and puts a refusal in a `serialized-error` event, whose status is the
 * one reported here).
 */
export async function callOverHttp(baseUrl: string, procedure: WalkedProcedure, input: Hostile, token: string | undefined): Promise<WalkAnswer> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const hasInput = input !== ABSENT && input !== undefined;
  const url = `${baseUrl}/trpc/${procedure.path}`;
  if (procedure.kind === 'mutation') {
    const response = await fetch(url, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      ...(hasInput ? { body: JSON.stringify(input) } : {}),
    });
    return answerOf(response);
  }
  const query = hasInput ? `?input=${encodeURIComponent(JSON.stringify(input))}` : '';
  if (procedure.kind === 'query') return answerOf(await fetch(`${url}${query}`, { headers }));
  return firstEventOf(`${url}${query}`, headers);
}

async function answerOf(response: Response): Promise<WalkAnswer> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: answered before tRPC.
  }
  // A request line beyond Node's 16 KB header limit (a 100 KB value in a GET's ?input=) is refused
  // before Express or tRPC see it; the server's clientError handler still answers with a message.
  return { status: response.status, message: messageOf(body) };
}

/** How long a subscription that opened may take to send its first event before the walk calls it open. */
const SSE_GRACE_MS = 1_000;

/**
 * Reads a subscription's stream past tRPC's `connected` event: a refusal (bad input, foreign
 * job) is computed before the stream opens and follows at once as `serialized-error`; an error
 * of the stream's first read follows as soon as that read fails. Silence for SSE_GRACE_MS (or
 * any other event) means the subscription opened and is working.
 */
async function firstEventOf(url: string, headers: Record<string, string>): Promise<WalkAnswer> {
  const controller = new AbortController();
  try {
    const response = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' }, signal: controller.signal });
    if (!(response.headers.get('content-type') ?? '').includes('text/event-stream') || !response.body) return await answerOf(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    let timer: NodeJS.Timeout | undefined;
    const silence = new Promise<'silence'>((resolve) => (timer = setTimeout(() => resolve('silence'), SSE_GRACE_MS)));
    try {
      for (;;) {
        const read = await Promise.race([reader.read(), silence]);
        if (read === 'silence' || read.done) return { status: response.status, message: null };
        buffered += read.value;
        // Events end with a blank line.
        for (let end = buffered.indexOf('\n\n'); end !== -1; end = buffered.indexOf('\n\n')) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const name = /^event: ?(.*)$/m.exec(event)?.[1];
          if (name === 'connected' || event.trim() === '') continue;
          if (name !== 'serialized-error') return { status: response.status, message: null };
          const data = [...event.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join('\n');
          const shape: unknown = JSON.parse(data);
          const status = isRecord(shape) && isRecord(shape.data) && typeof shape.data.httpStatus === 'number' ? shape.data.httpStatus : 500;
          return { status, message: messageOf({ error: shape }) };
        }
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    controller.abort();
  }
}
