// lib/cni/json.ts: the JSON-object guard, and the nesting bound checked before JSON.parse: Go's limit, counted
// as Go counts it, strings and escapes skipped, linear in the input.
import { describe, expect, it } from 'vitest';
import { checkJsonDepth, isObject, JsonDepthError, MAX_JSON_DEPTH } from '../../../lib/cni/json.ts';

const depthOf = (text: string, max?: number): number | undefined => {
  try {
    checkJsonDepth(Buffer.from(text), max);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(JsonDepthError);
    return (e as JsonDepthError).offset;
  }
};
const nested = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;

describe('checkJsonDepth', () => {
  it('is Go encoding/json limit: 10000 levels, the top-level value counting as one', () => {
    expect(MAX_JSON_DEPTH).toBe(10000);
    expect(depthOf(nested(10000))).toBeUndefined();
    expect(depthOf(nested(10001))).toBe(10000);
    expect(depthOf(`{"a":${nested(9999)}}`)).toBeUndefined();
    expect(depthOf(`{"a":${nested(10000)}}`)).toBe(5 + 9999);
  });

  it('counts objects and arrays alike, and only open ones', () => {
    expect(depthOf('{"a":[{"b":[1]}]}', 4)).toBeUndefined();
    expect(depthOf('{"a":[{"b":[1]}]}', 3)).toBe(11);
    expect(depthOf('[[],[],[],[]]', 2)).toBeUndefined();
    expect(depthOf('[[[]]]', 2)).toBe(2);
  });

  it('skips brackets inside strings, escaped quotes and backslashes included', () => {
    expect(depthOf(`{"k":"${'['.repeat(100)}"}`, 1)).toBeUndefined();
    expect(depthOf('{"k":"a\\"[[[["}', 1)).toBeUndefined();
    expect(depthOf('{"k":"a\\\\"}', 1)).toBeUndefined();
    expect(depthOf('{"k":"a\\\\","l":[[1]]}', 2)).toBe(16);
    expect(depthOf('["\\\\\\"[[", [[1]]]', 2)).toBe(12);
  });

  it('does not validate: unbalanced or unterminated text passes to JSON.parse', () => {
    expect(depthOf(']]]]{')).toBeUndefined();
    expect(depthOf('{"never closed')).toBeUndefined();
    expect(depthOf('')).toBeUndefined();
  });

  it('stops at the first byte over the limit of a 50 MB nesting bomb', () => {
    const bomb = Buffer.alloc(50 << 20, '[');
    expect(depthOf(bomb.toString('latin1'))).toBe(MAX_JSON_DEPTH);
  });

  it('scans 50 MB of flat JSON and a 16 MB string in one pass', () => {
    const flat = Buffer.from(`[${'1,'.repeat(25 << 20)}1]`);
    const long = Buffer.from(`{"x":"${'\\"'.repeat(8 << 20)}"}`);
    for (const b of [flat, long]) expect(() => checkJsonDepth(b)).not.toThrow();
  });
});

describe('isObject', () => {
  it('is a JSON object: not null, an array or a scalar', () => {
    expect(isObject({})).toBe(true);
    expect(isObject(JSON.parse('{"a":1}'))).toBe(true);
    expect(isObject(Object.create(null))).toBe(true);
    for (const v of [null, undefined, [], [1], 'x', 1, true]) expect(isObject(v)).toBe(false);
  });
});
