// JSON helpers of the config parsers: isObject(), the one "a JSON object" guard, and a
// bound on how deeply a network config may nest, checked on the raw bytes before
// JSON.parse: a 50 MB config of nested arrays in an unknown key would otherwise become 25
// million arrays (70 s and 5 GB before the plugin looked at it). The limit is the
// reference's: Go's encoding/json refuses nesting deeper than 10000 levels
// ("exceeded max depth"), so a config libcni's plugins can decode, strand can too.

/** A JSON object: not null, not an array. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The deepest nesting of arrays and objects accepted: Go's encoding/json maxNestingDepth. */
export const MAX_JSON_DEPTH = 10000;

/** JSON text nested deeper than the limit. `offset` is the byte that went over it. */
export class JsonDepthError extends Error {
  override readonly name = 'JsonDepthError';
  readonly offset: number;
  constructor(offset: number, max: number) {
    super(`exceeded max depth: arrays and objects nested deeper than ${max} levels (at byte ${offset})`);
    this.offset = offset;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Throws JsonDepthError when the JSON text in `buf` opens more than `max` arrays and
 * objects at once (the top-level value counts as one, as in Go). One linear pass; string
 * contents, escaped quotes included, are skipped with indexOf. It does not validate the
 * JSON: JSON.parse does that afterwards, on text it can no longer blow up on.
 */
export function checkJsonDepth(buf: Uint8Array, max = MAX_JSON_DEPTH): void {
  let depth = 0;
  const n = buf.length;
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x5b || c === 0x7b) {
      if (++depth > max) throw new JsonDepthError(i, max);
    } else if (c === 0x5d || c === 0x7d) {
      if (depth > 0) depth--;
    } else if (c === QUOTE) {
      i = closingQuote(buf, i + 1);
    }
  }
}

/** The index of the quote that ends the string whose contents start at `from` (n when unterminated). */
function closingQuote(buf: Uint8Array, from: number): number {
  for (let j = from; ; j++) {
    j = buf.indexOf(QUOTE, j);
    if (j < 0) return buf.length;
    let slashes = 0;
    while (buf[j - 1 - slashes] === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return j;
  }
}
