// Logging for plugins, the daemon and the agent. stdout belongs to the protocol, so logs
// go to a log file or to stderr. Never throws: a log file that cannot be written falls
// back to stderr.
//
// A logger is created per call (pluginMain) with that call's context: every line names
// the verb and the container, and says how long the call has been running:
//   2026-01-01T00:00:00.000Z DEBUG strand-bridge ADD 5f1c0e2a9b.../eth0 +3.1ms: veth ...
// or, with format "json" (the agent's option, for log collectors), one object per line:
//   {"time":"...","level":"info","component":"strand-agent","msg":"...","error":"..."}
//
// Log files are appended to with O_APPEND, one write(2) per line, so lines of the many
// plugin processes that share a file never interleave. Rotation is bounded by size: when
// a write leaves the file at `maxBytes` or more, the writer takes a non-blocking flock on
// the file's directory and, if the path still names that same full file, renames it
// away at once, moves
// file.N-1 -> file.N ... file.1 -> file.2 and makes it file.1 (the oldest,
// file.<maxFiles>, is replaced). Whoever does not get the lock, or
// finds the file already renamed, leaves it to the one that did: a file is rotated once.
// A process that opened the file just before the rename finishes its line in file.1, so
// no line is lost; at most maxFiles + 1 files of about maxBytes each exist.
import { closeSync, fstatSync, openSync, renameSync, statSync, writeSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import { isNativeError, LOCK, native } from '../native/index.ts';

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'text' | 'json';

/** Rotation defaults: 10 MiB per file, 5 old files (file.1 ... file.5). */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_MAX_FILES = 5;

export interface Logger {
  debug(msg: string, extra?: unknown): void;
  info(msg: string, extra?: unknown): void;
  warn(msg: string, extra?: unknown): void;
  error(msg: string, extra?: unknown): void;
}

export interface LogRotation {
  /** Rotate when a write leaves the file at this size or more. */
  maxBytes: number;
  /** Old files kept (file.1 is the newest). */
  maxFiles: number;
}

export interface LoggerOptions {
  /** Component name printed on each line ("strand-bridge"). */
  name: string;
  stderr: { write(s: string): void };
  file?: string | undefined;
  /** Default "info". */
  level?: LogLevel | undefined;
  /** Fixed context printed on each line ("ADD <containerID>/<ifname>"). */
  context?: string | undefined;
  /** Fields added to every JSON line (format "json"), e.g. the container ID. */
  fields?: Record<string, string> | undefined;
  format?: LogFormat | undefined;
  /** When set, every line says how long after this performance.now() it was written. */
  since?: number | undefined;
  /** Rotation of `file`; default 10 MiB and 5 old files. */
  rotation?: LogRotation | undefined;
}

/** Where plugins log when nothing else is configured, if its directory exists (`strand install` creates it). */
export const DEFAULT_LOG_FILE = '/var/log/strand/cni.log';

/** DEFAULT_LOG_FILE when its directory exists, else undefined (stderr). */
export function defaultLogFile(): string | undefined {
  try {
    return statSync(dirname(DEFAULT_LOG_FILE)).isDirectory() ? DEFAULT_LOG_FILE : undefined;
  } catch {
    return undefined;
  }
}

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v);
}

function render(extra: unknown): string {
  if (extra === undefined) return '';
  if (extra instanceof Error) {
    // stacks go to the log (stderr or file), never to stdout
    let s = ` ${extra.stack ?? `${extra.name}: ${extra.message}`}`;
    let cause: unknown = extra.cause;
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      s += `\n  caused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`;
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return s;
  }
  try {
    return ` ${typeof extra === 'string' ? extra : JSON.stringify(extra)}`;
  } catch {
    return ` ${String(extra)}`;
  }
}

// (libuv adds O_CLOEXEC to every descriptor it opens)
const APPEND = fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT;

/**
 * Renames `file` away when the open descriptor `fd` (of that file) is at `maxBytes` or
 * more and no other process is rotating it. Errors are returned, not thrown.
 */
function rotateIfFull(file: string, fd: number, rot: LogRotation): string | undefined {
  const st = fstatSync(fd);
  if (st.size < rot.maxBytes) return undefined;
  // One rotation at a time per directory (two would shift the same old files): a
  // non-blocking flock on the directory; node:fs has no flock, the addon has (loaded on
  // first use; a plugin process has it already).
  let dirFd: number;
  try {
    dirFd = openSync(dirname(file), fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (e) {
    return `cannot open the directory of ${file} to rotate it: ${(e as Error).message}`;
  }
  try {
    native().flock(dirFd, LOCK.EX | LOCK.NB);
  } catch (e) {
    closeSync(dirFd);
    if (isNativeError(e, 'EWOULDBLOCK') || isNativeError(e, 'EAGAIN')) return undefined; // another writer is rotating
    return `cannot lock the directory of ${file} to rotate it: ${(e as Error).message}`;
  }
  try {
    let now: ReturnType<typeof statSync>;
    try {
      now = statSync(file);
    } catch {
      return undefined; // renamed away already, nothing new yet
    }
    if (now.ino !== st.ino || now.dev !== st.dev) return undefined; // rotated by someone else meanwhile
    // the full file leaves its name first, so writers start the next one at once, then
    // the old ones move up and it becomes file.1
    const full = `${file}.${process.pid}.rotating`;
    renameSync(file, full);
    for (let i = rot.maxFiles - 1; i >= 1; i--) {
      try {
        renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    renameSync(full, `${file}.1`);
    return undefined;
  } catch (e) {
    return `cannot rotate ${file}: ${(e as Error).message}`;
  } finally {
    closeSync(dirFd); // releases the lock
  }
}

/** Appends one line to `file` (one write), then rotates it when full. Throws when the file cannot be written. */
function appendLine(file: string, line: string, rot: LogRotation): string | undefined {
  const fd = openSync(file, APPEND, 0o600);
  try {
    const buf = Buffer.from(line, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    return rotateIfFull(file, fd, rot);
  } finally {
    closeSync(fd);
  }
}

export function createLogger(opts: LoggerOptions): Logger {
  const min = LOG_LEVELS.indexOf(opts.level ?? 'info');
  const rot = opts.rotation ?? { maxBytes: DEFAULT_LOG_MAX_BYTES, maxFiles: DEFAULT_LOG_MAX_FILES };
  let file = opts.file;
  const ctx = opts.context ? ` ${opts.context}` : '';
  const complain = (s: string): void => {
    try {
      opts.stderr.write(`${opts.name}: ${s}\n`);
    } catch {
      // nowhere left to report it
    }
  };
  const format = (level: LogLevel, msg: string, extra: unknown): string => {
    const elapsed = opts.since === undefined ? undefined : performance.now() - opts.since;
    if (opts.format === 'json') {
      const o: Record<string, unknown> = { time: new Date().toISOString(), level, component: opts.name, ...opts.fields, msg };
      if (elapsed !== undefined) o['elapsedMs'] = Math.round(elapsed * 10) / 10;
      if (extra !== undefined) o[extra instanceof Error ? 'error' : 'detail'] = render(extra).slice(1);
      return `${JSON.stringify(o)}\n`;
    }
    const stamp = elapsed === undefined ? '' : ` +${elapsed.toFixed(1)}ms`;
    return `${new Date().toISOString()} ${level.toUpperCase()} ${opts.name}${ctx}${stamp}: ${msg}${render(extra)}\n`;
  };
  const write = (level: LogLevel, msg: string, extra: unknown): void => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const line = format(level, msg, extra);
    if (file) {
      try {
        const problem = appendLine(file, line, rot);
        if (problem) complain(problem);
        return;
      } catch (e) {
        const failed = file;
        file = undefined;
        complain(`cannot write log file ${failed}: ${(e as Error).message}`);
      }
    }
    try {
      opts.stderr.write(line);
    } catch {
      // stderr closed: drop the line
    }
  };
  return {
    debug: (m, e) => write('debug', m, e),
    info: (m, e) => write('info', m, e),
    warn: (m, e) => write('warn', m, e),
    error: (m, e) => write('error', m, e),
  };
}

/** The phases of one call, for its debug log (see phaseTracer). */
export interface PhaseTracer {
  /** Ends the current phase under `name`. */
  mark(name: string): void;
  /** Writes one debug line: `msg` and each phase's wall and CPU milliseconds. */
  done(msg: string): void;
}

/**
 * A debug tracer of a call's phases: each mark() ends a phase, done() logs the wall and
 * CPU milliseconds of every phase since the previous mark (the first, "start", runs from
 * process start to the tracer's creation) as JSON on one debug line, which bench:bridge
 * reads. Instrumentation stays here, out of the plugins' steps.
 */
export function phaseTracer(log: Logger | undefined): PhaseTracer {
  const marks: Array<[string, number, number]> = [];
  const mark = (name: string): void => {
    const c = process.cpuUsage();
    marks.push([name, performance.now(), (c.user + c.system) / 1000]);
  };
  mark('start');
  return {
    mark,
    done(msg: string): void {
      const out: Record<string, { wall: number; cpu: number }> = {};
      let [pw, pc] = [0, 0];
      const r = (x: number): number => Math.round(x * 100) / 100;
      for (const [name, w, c] of marks) {
        out[name] = { wall: r(w - pw), cpu: r(c - pc) };
        [pw, pc] = [w, c];
      }
      log?.debug(msg, out);
    },
  };
}
