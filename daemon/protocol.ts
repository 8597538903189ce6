// The wire protocol between the shim (native/shim.c) and `strand daemon`: pure encoding
// and decoding, no I/O. One connection carries one request.
//
// Every frame starts with a 16-byte header, little-endian:
//   magic "STRD" | u16 version | u16 kind | u32 body length | u32 reserved (0)
// The header layout never changes between protocol versions, so either side can read the
// version (and skip the body) of a frame it cannot otherwise understand.
//
//   shim -> daemon   REQUEST   with SCM_RIGHTS on its first bytes: the caller's network
//                              and mount namespaces, then the pod's network namespace
//                              (when the shim could open CNI_NETNS)
//   daemon -> shim   STARTED   the request runs now (sent only once it is certain to run)
//                    RESULT    exit status, stdout, stderr: the plugin's answer
//                    BUSY, UNSUPPORTED, REJECTED (instead of STARTED): not run; the shim
//                              executes the standalone binary instead
//
// A REQUEST body: u32 flags | u32 netns state | u32 netns errno | u32 descriptor count |
// bytes plugin name | u32 env count, that many bytes "NAME=value" | bytes stdin, where
// "bytes" is a u32 length and the data. A RESULT body: u32 exit status | bytes stdout |
// bytes stderr. BUSY, UNSUPPORTED and REJECTED carry one text (bytes) saying why.
const MAGIC = Buffer.from('STRD', 'latin1');
/** What this daemon speaks. A newer shim gets UNSUPPORTED and runs the standalone binary. */
export const PROTOCOL_VERSION = 1;
/**
 * Versions this daemon serves: during a rolling update the shims on disk may be one
 * version older than the daemon, so a new version keeps the previous one here.
 */
export const SUPPORTED_VERSIONS: readonly number[] = [1];
export const HEADER_SIZE = 16;

export const Kind = { Request: 1, Started: 2, Result: 3, Busy: 4, Unsupported: 5, Rejected: 6 } as const;
export type FrameKind = (typeof Kind)[keyof typeof Kind];

/** Request flags. */
export const Flag = {
  /** The shim did not read stdin (VERSION, an unknown or missing CNI_COMMAND). */
  StdinNotRead: 1,
} as const;

/** CNI_NETNS as the shim found it. */
export const NetnsState = { Unset: 0, Passed: 1, OpenFailed: 2 } as const;

/**
 * Size limits of a request, the same in native/shim.c (a unit test compares them): the
 * shim runs the standalone binary for a call that exceeds one (a network config over
 * 1 MiB included), the daemon rejects a request that exceeds one.
 */
export const LIMITS = {
  plugin: 64,
  envCount: 512,
  envEntry: 32 * 1024,
  envTotal: 256 * 1024,
  stdin: 1024 * 1024,
} as const;
/** The largest REQUEST body the limits allow (fixed fields, lengths and data). */
export const MAX_REQUEST_BODY = 16 + 4 + LIMITS.plugin + 4 + LIMITS.envCount * 4 + LIMITS.envTotal + 4 + LIMITS.stdin;
/** Descriptors a request may carry: the caller's netns and mount namespace, the pod's netns. */
export const MAX_FDS = 3;

export interface Header {
  version: number;
  kind: number;
  length: number;
}

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export function encodeHeader(kind: FrameKind, length: number, version = PROTOCOL_VERSION): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(version, 4);
  b.writeUInt16LE(kind, 6);
  b.writeUInt32LE(length, 8);
  return b;
}

/** Parses a header; throws ProtocolError on a wrong magic (not a strand shim). */
export function decodeHeader(b: Buffer): Header {
  if (b.length < HEADER_SIZE) throw new ProtocolError(`short header (${b.length} bytes)`);
  if (!b.subarray(0, 4).equals(MAGIC)) throw new ProtocolError('bad magic (not a strand shim)');
  return { version: b.readUInt16LE(4), kind: b.readUInt16LE(6), length: b.readUInt32LE(8) };
}

export interface Request {
  flags: number;
  netnsState: number;
  /** errno of the shim's open(CNI_NETNS) when netnsState is OpenFailed. */
  netnsErrno: number;
  fdCount: number;
  plugin: string;
  /** "NAME=value" entries as sent (order kept). */
  env: string[];
  stdin: Buffer;
}

/** Reads a body front to back; every read names its field in the ProtocolError it throws. */
class Reader {
  private at = 0;
  private readonly b: Buffer;

  constructor(b: Buffer) {
    this.b = b;
  }

  u32(what: string): number {
    if (this.at + 4 > this.b.length) throw new ProtocolError(`truncated ${what}`);
    const v = this.b.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  /** A u32 length and that many bytes, at most `max`. */
  bytes(max: number, what: string): Buffer {
    const n = this.u32(what);
    if (n > max) throw new ProtocolError(`${what} is ${n} bytes, the limit is ${max}`);
    if (this.at + n > this.b.length) throw new ProtocolError(`truncated ${what}`);
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  end(what: string): void {
    if (this.at !== this.b.length) throw new ProtocolError(`${this.b.length - this.at} bytes after the ${what}`);
  }
}

/** Parses a REQUEST body, enforcing every limit; throws ProtocolError naming the field. */
export function decodeRequest(body: Buffer): Request {
  const r = new Reader(body);
  const flags = r.u32('flags');
  const netnsState = r.u32('netns state');
  const netnsErrno = r.u32('netns errno');
  const fdCount = r.u32('descriptor count');
  if (flags & ~Flag.StdinNotRead) throw new ProtocolError(`unknown flags 0x${flags.toString(16)}`);
  if (netnsState > NetnsState.OpenFailed) throw new ProtocolError(`unknown netns state ${netnsState}`);
  const wantFds = netnsState === NetnsState.Passed ? 3 : 2;
  if (fdCount !== wantFds) throw new ProtocolError(`descriptor count ${fdCount}, expected ${wantFds}`);
  const plugin = r.bytes(LIMITS.plugin, 'plugin name');
  const envCount = r.u32('env count');
  if (envCount > LIMITS.envCount) throw new ProtocolError(`${envCount} environment variables, the limit is ${LIMITS.envCount}`);
  const env: string[] = [];
  let envTotal = 0;
  for (let i = 0; i < envCount; i++) {
    const entry = r.bytes(LIMITS.envEntry, 'environment variable');
    envTotal += entry.length;
    if (envTotal > LIMITS.envTotal) throw new ProtocolError(`environment is over ${LIMITS.envTotal} bytes`);
    const s = entry.toString('utf8');
    if (s.indexOf('=') < 1) throw new ProtocolError('environment entry without NAME=');
    env.push(s);
  }
  const stdin = r.bytes(LIMITS.stdin, 'stdin');
  r.end('request');
  if (flags & Flag.StdinNotRead && stdin.length) throw new ProtocolError('stdin sent although flagged not read');
  return { flags, netnsState, netnsErrno, fdCount, plugin: plugin.toString('utf8'), env, stdin };
}

function lp(b: Buffer): Buffer[] {
  const n = Buffer.alloc(4);
  n.writeUInt32LE(b.length, 0);
  return [n, b];
}

function u32b(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/** A REQUEST frame (header and body), as the shim sends it: for tests and tools. */
export function encodeRequest(r: Request, version = PROTOCOL_VERSION): Buffer {
  const parts = [
    u32b(r.flags),
    u32b(r.netnsState),
    u32b(r.netnsErrno),
    u32b(r.fdCount),
    ...lp(Buffer.from(r.plugin, 'utf8')),
    u32b(r.env.length),
    ...r.env.flatMap((e) => lp(Buffer.from(e, 'utf8'))),
    ...lp(r.stdin),
  ];
  const body = Buffer.concat(parts);
  return Buffer.concat([encodeHeader(Kind.Request, body.length, version), body]);
}

export function encodeResult(exitCode: number, stdout: Buffer, stderr: Buffer): Buffer {
  const body = Buffer.concat([u32b(exitCode), ...lp(stdout), ...lp(stderr)]);
  return Buffer.concat([encodeHeader(Kind.Result, body.length), body]);
}

export interface Result {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

export function decodeResult(body: Buffer): Result {
  const r = new Reader(body);
  const exitCode = r.u32('exit status');
  const stdout = r.bytes(body.length, 'stdout');
  const stderr = r.bytes(body.length, 'stderr');
  r.end('result');
  return { exitCode, stdout, stderr };
}

/** STARTED, or BUSY / UNSUPPORTED / REJECTED with the reason. */
export function encodeNotice(kind: FrameKind, reason = ''): Buffer {
  const body = kind === Kind.Started ? Buffer.alloc(0) : Buffer.concat(lp(Buffer.from(reason, 'utf8')));
  return Buffer.concat([encodeHeader(kind, body.length), body]);
}

/** The reason text of a BUSY / UNSUPPORTED / REJECTED body. */
export function decodeNotice(body: Buffer): string {
  if (body.length === 0) return '';
  return new Reader(body).bytes(body.length, 'reason').toString('utf8');
}

/** "NAME=value" entries as an environment object (the first of a repeated name wins, as getenv). */
export function envObject(entries: readonly string[]): Record<string, string> {
  const env = Object.create(null) as Record<string, string>; // a variable named __proto__ is just a variable
  for (const e of entries) {
    const i = e.indexOf('=');
    const k = e.slice(0, i);
    if (!Object.hasOwn(env, k)) env[k] = e.slice(i + 1);
  }
  return env;
}
