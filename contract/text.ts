// Text that JSON can carry but PostgreSQL cannot store: U+0000 (refused by `text` and `jsonb`)
// and UTF-16 code units that are half of a surrogate pair (what `slice()` through an emoji
// leaves; refused by `json`, silently mangled by UTF-8 encoders). Shared by the server (every
// procedure's input passes through it) and by the pods, which can count what they sent altered.

/** What replaces each character PostgreSQL cannot store: U+FFFD REPLACEMENT CHARACTER. */
export const REPLACEMENT_CHARACTER = '\uFFFD';

// A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Whether `text` holds a character PostgreSQL cannot store (U+0000 or a lone surrogate). */
export function hasUnstorableText(text: string): boolean {
  UNSTORABLE.lastIndex = 0;
  return UNSTORABLE.test(text);
}

/** `text` with every U+0000 and lone surrogate replaced by U+FFFD; the same string when there is none. */
export function toStorableText(text: string): string {
  return hasUnstorableText(text) ? text.replace(UNSTORABLE, REPLACEMENT_CHARACTER) : text;
}

/** Where a value was altered: the path of keys and indexes from the root, as zod reports paths. */
export type AlteredPath = ReadonlyArray<string | number>;

/**
 * A copy of a JSON-like value (objects, arrays, strings, numbers, booleans, null) in which every
 * string, object keys included, is storable, and the paths of what changed. Values that need no
 * change are returned as they are (no copy). Depth is bounded by the body size limit.
 */
export function toStorableValue(value: unknown, path: Array<string | number> = [], altered: AlteredPath[] = []): { value: unknown; altered: AlteredPath[] } {
  if (typeof value === 'string') {
    if (!hasUnstorableText(value)) return { value, altered };
    altered.push([...path]);
    return { value: toStorableText(value), altered };
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, index) => {
      path.push(index);
      const result = toStorableValue(item, path, altered).value;
      path.pop();
      if (result !== item) (copy ??= [...value])[index] = result;
    });
    return { value: copy ?? value, altered };
  }
  if (value !== null && typeof value === 'object') {
    let copy: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const storableKey = toStorableText(key);
      path.push(storableKey);
      if (storableKey !== key) altered.push([...path]);
      const result = toStorableValue(item, path, altered).value;
      path.pop();
      if (result !== item || storableKey !== key) {
        copy ??= Object.fromEntries(Object.entries(value));
        if (storableKey !== key) delete copy[key];
        // defineProperty, not assignment: a key named __proto__ stays a plain key.
        Object.defineProperty(copy, storableKey, { value: result, enumerable: true, writable: true, configurable: true });
      }
    }
    return { value: copy ?? value, altered };
  }
  return { value, altered };
}
