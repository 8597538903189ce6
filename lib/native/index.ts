// Loader and typed binding for the C addon (native/strand_native.c).
//
// `native()` loads the addon once, lazily:
// - inside the single executable (node:sea isSea()): from the SEA asset
//   `strand_native.node`, extracted into a fresh private (0700) directory on a mount that
//   allows exec, dlopen'ed, then file and directory removed;
// - otherwise: `STRAND_NATIVE_ADDON` when set, else native/build/Release/strand_native.node
//   found relative to this file (ESM, type-stripped) or to the bundle (CJS).
// process.dlopen is used instead of require() so esbuild never tries to bundle the .node.

import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Error thrown by the addon: `code` is the errno name, `errno` the positive errno value. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export interface StrandNative {
  /** Opens a bound netlink socket inside the netns at `nsPath` (null: the current one). */
  nlOpen(nsPath: string | null, protocol: number): number;
  /**
   * One netlink round trip on an addon thread (never on the JavaScript thread): sends
   * `request` and resolves with every datagram received up to the end of its reply
   * (NLMSG_ERROR or NLMSG_DONE carrying the request's sequence number). Rejects with
   * ETIMEDOUT when the reply has not ended `timeoutMs` after sending. At most one request
   * per socket may be in flight.
   */
  nlRequest(fd: number, request: Buffer, timeoutMs: number): Promise<Buffer[]>;
  /** The same round trip on the calling thread (blocks it): for a process serving one call. */
  nlRequestSync(fd: number, request: Buffer, timeoutMs: number): Buffer[];
  /** write(2) on an addon thread (a sysctl write may wait for a kernel lock); resolves with the bytes written. */
  fdWrite(fd: number, data: Buffer): Promise<number>;
  close(fd: number): void;
  /** open(2) of `path` performed inside the netns at `nsPath` (null: here); O_CLOEXEC is added. */
  nsOpenFile(nsPath: string | null, path: string, flags: number, mode: number): number;
  /** True when `path` is a network namespace (nsfs file of type CLONE_NEWNET). Throws ENOENT. */
  isNetns(path: string): boolean;
  /** flock(2); op is a combination of LOCK. Throws EWOULDBLOCK when LOCK_NB and held. */
  flock(fd: number, op: number): void;

  // The daemon's unix socket (daemon/socket.ts): non-blocking descriptors, never waits.
  /** A listening unix stream socket at `path` (mode 0600 from the start; replaces a stale file by rename). */
  unixListen(path: string, backlog: number): number;
  /** A waiting connection with its peer's SO_PEERCRED, or null. */
  unixAccept(fd: number): { fd: number; pid: number; uid: number; gid: number } | null;
  /** Up to `max` (<= 64 KiB) bytes and the descriptors passed with them, or null when nothing waits; empty data: EOF. */
  unixRecv(fd: number, max: number): { data: Buffer; fds: number[]; truncated: boolean } | null;
  /** Sends what fits now; returns the bytes sent (0: full). Throws EPIPE when the peer is gone. */
  unixSend(fd: number, buf: Buffer): number;
  /** A libuv poll watcher on `fd`; `callback(events, status)` runs on the event loop. */
  watch(fd: number, callback: (events: number, status: number) => void): Watcher;
  /** Starts (or changes) watching for POLL.IN | POLL.OUT. */
  watchStart(w: Watcher, events: number): void;
  watchStop(w: Watcher): void;
  /** Releases the watcher (close the descriptor afterwards). */
  watchClose(w: Watcher): void;
}

/** An opaque libuv poll handle (see StrandNative.watch). */
export type Watcher = { readonly __watcher: unique symbol };

/** Events of StrandNative.watch (libuv's UV_READABLE, UV_WRITABLE). */
export const POLL = { IN: 1, OUT: 2 } as const;

export const LOCK = { SH: 1, EX: 2, NB: 4, UN: 8 } as const;

const ADDON_ASSET = 'strand_native.node';
const DEV_RELATIVE = join('native', 'build', 'Release', ADDON_ASSET);

let loaded: StrandNative | undefined;

export function native(): StrandNative {
  loaded ??= load();
  return loaded;
}

export function isNativeError(e: unknown, code?: string): e is NativeError {
  return (
    e instanceof Error &&
    typeof (e as Partial<NativeError>).code === 'string' &&
    typeof (e as Partial<NativeError>).errno === 'number' &&
    (code === undefined || (e as NativeError).code === code)
  );
}

interface SeaModule {
  isSea(): boolean;
  getRawAsset(key: string): ArrayBuffer;
}

function load(): StrandNative {
  const sea = process.getBuiltinModule('node:sea') as SeaModule | undefined;
  if (sea?.isSea()) return loadFromSea(sea);
  return dlopen(devAddonPath());
}

function dlopen(file: string): StrandNative {
  const mod = { exports: {} as StrandNative };
  process.dlopen(mod, file);
  return mod.exports;
}

/** Where the development build lives; throws a clear error when it is missing. */
export function devAddonPath(): string {
  const override = process.env['STRAND_NATIVE_ADDON'];
  if (override) return override;
  const tried: string[] = [];
  for (const start of searchStarts()) {
    // Walk up from this file (or the bundle) to the repo root holding native/build.
    let dir = start;
    for (let i = 0; i < 4; i++) {
      const candidate = join(dir, DEV_RELATIVE);
      tried.push(candidate);
      if (existsSync(candidate)) return candidate;
      dir = dirname(dir);
    }
  }
  throw new Error(`strand native addon not found (run bash native/build.sh); looked at: ${tried.join(', ')}`);
}

function searchStarts(): string[] {
  const out: string[] = [];
  // ESM: import.meta.url is lib/native/index.ts. In a CJS bundle esbuild empties
  // import.meta, so fall back to the bundle's own directory.
  const url = (import.meta as { url?: string }).url;
  if (url?.startsWith('file:')) out.push(dirname(fileURLToPath(url)));
  if (typeof __dirname === 'string') out.push(__dirname);
  if (process.argv[1]) out.push(dirname(resolve(process.argv[1])));
  return out;
}

/** Extraction directories in order of preference: /run is tmpfs and usually exec-allowed. */
export function extractBases(): string[] {
  const bases = ['/run', process.env['XDG_RUNTIME_DIR'], tmpdir(), '/dev/shm'];
  return [...new Set(bases.filter((b): b is string => typeof b === 'string' && b !== ''))];
}

function loadFromSea(sea: SeaModule): StrandNative {
  const bytes = new Uint8Array(sea.getRawAsset(ADDON_ASSET));
  const errors: string[] = [];
  for (const base of extractBases()) {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(base, 'strand-native-')); // mode 0700
      const file = join(dir, ADDON_ASSET);
      writeFileSync(file, bytes, { mode: 0o500, flag: 'wx' });
      // dlopen fails ("failed to map segment") on a noexec mount: try the next base.
      return dlopen(file);
    } catch (e) {
      errors.push(`${base}: ${(e as Error).message}`);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new Error(`cannot load the embedded native addon: ${errors.join('; ')}`);
}
