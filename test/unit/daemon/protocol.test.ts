// The daemon's wire protocol (daemon/protocol.ts): round trips, every limit, and the
// shim (native/shim.c) built with the same constants.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  decodeNotice,
  decodeRequest,
  decodeResult,
  encodeHeader,
  encodeNotice,
  encodeRequest,
  encodeResult,
  envObject,
  Flag,
  HEADER_SIZE,
  Kind,
  LIMITS,
  MAX_REQUEST_BODY,
  NetnsState,
  PROTOCOL_VERSION,
  ProtocolError,
  type Request,
  SUPPORTED_VERSIONS,
} from '../../../daemon/protocol.ts';
import { STDIN_LIMIT } from '../../../lib/cni/skel.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';

const base: Request = {
  flags: 0,
  netnsState: NetnsState.Passed,
  netnsErrno: 0,
  fdCount: 3,
  plugin: 'strand-bridge',
  env: ['CNI_COMMAND=ADD', 'CNI_PATH=/opt/cni/bin', 'PATH=/usr/bin:/bin', 'EMPTY='],
  stdin: Buffer.from('{"cniVersion":"1.1.0"}'),
};

function body(r: Request): Buffer {
  return encodeRequest(r).subarray(HEADER_SIZE);
}

function rejects(r: Partial<Request>, re: RegExp): void {
  expect(() => decodeRequest(body({ ...base, ...r }))).toThrow(re);
  expect(() => decodeRequest(body({ ...base, ...r }))).toThrow(ProtocolError);
}

describe('frames', () => {
  it('a request round-trips', () => {
    const frame = encodeRequest(base);
    const h = decodeHeader(frame);
    expect(h).toEqual({ version: PROTOCOL_VERSION, kind: Kind.Request, length: frame.length - HEADER_SIZE });
    expect(decodeRequest(frame.subarray(HEADER_SIZE))).toEqual(base);
  });

  it('a result round-trips, binary and empty parts included', () => {
    const frame = encodeResult(1, Buffer.from('{"code":7}\n'), Buffer.from([0, 255, 10]));
    const h = decodeHeader(frame);
    expect(h.kind).toBe(Kind.Result);
    expect(decodeResult(frame.subarray(HEADER_SIZE))).toEqual({ exitCode: 1, stdout: Buffer.from('{"code":7}\n'), stderr: Buffer.from([0, 255, 10]) });
    expect(decodeResult(encodeResult(0, Buffer.alloc(0), Buffer.alloc(0)).subarray(HEADER_SIZE)).exitCode).toBe(0);
  });

  it('notices carry their reason; STARTED is a bare header', () => {
    expect(encodeNotice(Kind.Started)).toHaveLength(HEADER_SIZE);
    const busy = encodeNotice(Kind.Busy, '3 requests running');
    expect(decodeHeader(busy).kind).toBe(Kind.Busy);
    expect(decodeNotice(busy.subarray(HEADER_SIZE))).toBe('3 requests running');
  });

  it('a wrong magic is not a shim', () => {
    const h = encodeHeader(Kind.Request, 0);
    h.write('HTTP', 0, 'latin1');
    expect(() => decodeHeader(h)).toThrow(/bad magic/);
    expect(() => decodeHeader(Buffer.alloc(8))).toThrow(/short header/);
  });

  it('the header layout is version-independent: a future version still parses', () => {
    const h = decodeHeader(encodeHeader(Kind.Request, 123, 7));
    expect(h).toEqual({ version: 7, kind: Kind.Request, length: 123 });
    expect(SUPPORTED_VERSIONS).toContain(PROTOCOL_VERSION);
  });
});

describe('request limits', () => {
  it('plugin name', () => {
    expect(decodeRequest(body({ ...base, plugin: 'p'.repeat(LIMITS.plugin) })).plugin).toHaveLength(LIMITS.plugin);
    rejects({ plugin: 'p'.repeat(LIMITS.plugin + 1) }, /plugin name is 65 bytes, the limit is 64/);
  });
  it('environment: count, entry, total, NAME=', () => {
    expect(decodeRequest(body({ ...base, env: Array.from({ length: LIMITS.envCount }, (_, i) => `V${i}=x`) })).env).toHaveLength(LIMITS.envCount);
    rejects({ env: Array.from({ length: LIMITS.envCount + 1 }, (_, i) => `V${i}=x`) }, /513 environment variables/);
    rejects({ env: [`BIG=${'x'.repeat(LIMITS.envEntry)}`] }, /environment variable is 32772 bytes/);
    const eight = Array.from({ length: 9 }, (_, i) => `V${i}=${'x'.repeat(LIMITS.envEntry - 4)}`);
    rejects({ env: eight }, /environment is over 262144 bytes/);
    rejects({ env: ['NOEQUALS'] }, /without NAME=/);
    rejects({ env: ['=value'] }, /without NAME=/);
  });
  it('stdin', () => {
    expect(decodeRequest(body({ ...base, stdin: Buffer.alloc(LIMITS.stdin) })).stdin).toHaveLength(LIMITS.stdin);
    rejects({ stdin: Buffer.alloc(LIMITS.stdin + 1) }, /stdin is 1048577 bytes, the limit is 1048576/);
    rejects({ flags: Flag.StdinNotRead, stdin: Buffer.from('x') }, /flagged not read/);
  });
  it('flags, netns state and descriptor count', () => {
    rejects({ flags: 4 }, /unknown flags 0x4/);
    rejects({ netnsState: 3 }, /unknown netns state 3/);
    rejects({ fdCount: 2 }, /descriptor count 2, expected 3/);
    rejects({ netnsState: NetnsState.Unset, fdCount: 3 }, /descriptor count 3, expected 2/);
    expect(decodeRequest(body({ ...base, netnsState: NetnsState.OpenFailed, netnsErrno: 2, fdCount: 2 })).netnsErrno).toBe(2);
  });
  it('truncated and trailing bytes', () => {
    const b = body(base);
    for (const cut of [0, 3, 15, 20, b.length - 1]) expect(() => decodeRequest(b.subarray(0, cut)), `cut at ${cut}`).toThrow(/truncated/);
    expect(() => decodeRequest(Buffer.concat([b, Buffer.from('x')]))).toThrow(/1 bytes after the request/);
  });
  it('a length field pointing past the end is truncated, not a huge read', () => {
    const b = Buffer.from(body(base));
    b.writeUInt32LE(0xfffffff0, 16); // plugin name length
    expect(() => decodeRequest(b)).toThrow(/plugin name is 4294967280 bytes/);
  });
  it('the largest request the limits allow fits MAX_REQUEST_BODY', () => {
    const env = Array.from({ length: 8 }, (_, i) => `V${i}=${'x'.repeat(LIMITS.envEntry - 4)}`);
    const b = body({ ...base, plugin: 'p'.repeat(LIMITS.plugin), env, stdin: Buffer.alloc(LIMITS.stdin) });
    expect(b.length).toBeLessThanOrEqual(MAX_REQUEST_BODY);
  });
});

describe('environment', () => {
  it('the first of a repeated name wins (getenv), __proto__ is an ordinary name', () => {
    const env = envObject(['A=1', 'A=2', 'B==x', '__proto__=p', 'EMPTY=']);
    expect(env['A']).toBe('1');
    expect(env['B']).toBe('=x');
    expect(Object.entries(env)).toContainEqual(['__proto__', 'p']);
    expect(env['EMPTY']).toBe('');
    expect(Object.keys(env)).toEqual(['A', 'B', '__proto__', 'EMPTY']);
  });
});

describe('native/shim.c speaks the same protocol', () => {
  const src = readFileSync(join(repoRoot, 'native', 'shim.c'), 'utf8');
  const define = (name: string): number => {
    const m = new RegExp(`#define ${name} \\(?([0-9 *]+)\\)?\\n`).exec(src);
    if (!m) throw new Error(`no #define ${name} in native/shim.c`);
    return m[1]!.split('*').reduce((a, x) => a * Number(x.trim()), 1);
  };
  it('limits', () => {
    expect(define('LIMIT_PLUGIN')).toBe(LIMITS.plugin);
    expect(define('LIMIT_ENV_COUNT')).toBe(LIMITS.envCount);
    expect(define('LIMIT_ENV_ENTRY')).toBe(LIMITS.envEntry);
    expect(define('LIMIT_ENV_TOTAL')).toBe(LIMITS.envTotal);
    expect(define('LIMIT_STDIN')).toBe(LIMITS.stdin);
    expect(define('PLUGIN_STDIN_LIMIT')).toBe(STDIN_LIMIT);
    expect(define('HEADER_SIZE')).toBe(HEADER_SIZE);
    expect(define('SHIM_PROTOCOL_VERSION')).toBe(PROTOCOL_VERSION);
  });
  it('frame kinds, flags and netns states', () => {
    expect(src).toContain(`K_REQUEST = ${Kind.Request}, K_STARTED = ${Kind.Started}, K_RESULT = ${Kind.Result}, K_BUSY = ${Kind.Busy}`);
    expect(src).toContain(`K_UNSUPPORTED = ${Kind.Unsupported}, K_REJECTED = ${Kind.Rejected}`);
    expect(src).toContain(`F_STDIN_NOT_READ = ${Flag.StdinNotRead}`);
    expect(src).toContain(`NS_UNSET = ${NetnsState.Unset}, NS_PASSED = ${NetnsState.Passed}, NS_OPEN_FAILED = ${NetnsState.OpenFailed}`);
    expect(src).toContain('put(&body, "STRD", 4);');
  });
});
