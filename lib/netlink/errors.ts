// NetlinkError: every failure of the netlink layer (kernel NLMSG_ERROR, a failed syscall
// of the native addon, an argument rejected before sending) as one typed error with the
// errno, its name and the operation. Match on `code`, never on `message`.

import { constants } from 'node:os';

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}

function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

export function errnoOf(code: keyof typeof constants.errno): number {
  return constants.errno[code];
}

export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  /** Positive errno, e.g. 17. */
  readonly errno: number;
  /** errno name, e.g. 'EEXIST'. */
  readonly code: string;
  /** The operation, e.g. 'newLink', 'netns.open', 'sysctlSet'. */
  readonly op: string;
  /** The kernel's extended-ack message or our own explanation, when there is one. */
  readonly detail: string | undefined;

  constructor(op: string, errno: number, detail?: string, options?: { cause?: unknown }) {
    const code = errnoName(errno);
    super(`${op}: ${code}${detail ? ` (${detail})` : ''}`, options);
    this.errno = errno;
    this.code = code;
    this.op = op;
    this.detail = detail;
  }
}

export function isNetlinkError(e: unknown, code?: string): e is NetlinkError {
  return e instanceof NetlinkError && (code === undefined || e.code === code);
}

/** An argument we reject before asking the kernel (EINVAL). */
export function invalidArgument(op: string, detail: string, cause?: unknown): NetlinkError {
  return new NetlinkError(op, errnoOf('EINVAL'), detail, cause === undefined ? undefined : { cause });
}

/** Wraps an error thrown by the native addon ({code, errno, syscall}) into a NetlinkError. */
export function fromNative(op: string, e: unknown, what?: string): NetlinkError {
  if (e instanceof NetlinkError) return e;
  const n = e as { errno?: unknown; syscall?: unknown; path?: unknown };
  if (typeof n?.errno === 'number') {
    const where = [what, typeof n.syscall === 'string' ? n.syscall : undefined].filter(Boolean).join(': ');
    // Node's own fs errors carry negative errnos, the addon's positive ones.
    return new NetlinkError(op, Math.abs(n.errno), where || undefined, { cause: e });
  }
  return new NetlinkError(op, errnoOf('EIO'), e instanceof Error ? e.message : String(e), { cause: e });
}
