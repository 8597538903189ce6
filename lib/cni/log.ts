// Plugin logging. stdout belongs to the protocol, so logs go to stderr, or (appended) to a
// log file named by STRAND_LOG_FILE or a `logFile` config field. Never throws: a log
// file that cannot be written falls back to stderr.
import { appendFileSync } from 'node:fs';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  debug(msg: string, extra?: unknown): void;
  info(msg: string, extra?: unknown): void;
  warn(msg: string, extra?: unknown): void;
  error(msg: string, extra?: unknown): void;
}

export interface LoggerOptions {
  /** Component name printed on each line ("strand-bridge"). */
  name: string;
  stderr: { write(s: string): void };
  file?: string | undefined;
  level?: LogLevel | undefined;
  /** Fixed context printed on each line (container ID, verb...). */
  context?: string | undefined;
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

export function createLogger(opts: LoggerOptions): Logger {
  const min = LOG_LEVELS.indexOf(opts.level ?? 'info');
  let file = opts.file;
  const ctx = opts.context ? ` ${opts.context}` : '';
  const write = (level: LogLevel, msg: string, extra: unknown): void => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const line = `${new Date().toISOString()} ${level.toUpperCase()} ${opts.name}${ctx}: ${msg}${render(extra)}\n`;
    if (file) {
      try {
        appendFileSync(file, line, { mode: 0o600 });
        return;
      } catch (e) {
        const failed = file;
        file = undefined;
        try {
          opts.stderr.write(`${opts.name}: cannot write log file ${failed}: ${(e as Error).message}\n`);
        } catch {
          // nowhere left to report it
        }
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
