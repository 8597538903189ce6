// CNI error codes (spec 1.1, "Error" section) plus strand's own codes from 100 up.
// Codes are a const object, not an enum: the project runs TypeScript by type stripping.
// The spec has no code for a bad network namespace: a CNI_NETNS that is missing, not a
// network namespace or unusable is code 4 naming CNI_NETNS (invalidNetns below).
export const Code = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginLimitedConnectivity: 51,
  // strand's own
  NotImplemented: 100,
  NetlinkFailure: 101,
  IpamExhausted: 102,
  IpamConflict: 103,
  DelegateFailed: 104,
  CheckFailed: 105,
  Internal: 999,
} as const;
export type CodeValue = (typeof Code)[keyof typeof Code] | number;

/** The error a plugin reports to its runtime: printed as JSON on stdout, exit status 1. */
export class CniError extends Error {
  override readonly name = 'CniError';
  readonly code: number;
  readonly msg: string;
  readonly details: string;

  constructor(code: CodeValue, msg: string, details = '', options?: { cause?: unknown }) {
    super(details ? `${msg}: ${details}` : msg, options);
    this.code = code;
    this.msg = msg;
    this.details = details;
  }

  /** The spec's error object; `cniVersion` is that of the request. */
  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    const out: { cniVersion: string; code: number; msg: string; details?: string } = {
      cniVersion,
      code: this.code,
      msg: this.msg,
    };
    if (this.details) out.details = this.details;
    return out;
  }
}

export function isCniError(e: unknown): e is CniError {
  return e instanceof CniError;
}

/**
 * The error to report for anything a handler threw: a CniError as is, anything else as
 * 999 with the original kept as `cause` and its message in `details` (never its stack).
 */
export function toCniError(e: unknown): CniError {
  if (isCniError(e)) return e;
  if (e instanceof Error) {
    const name = e.name && e.name !== 'Error' ? `${e.name}: ` : '';
    return new CniError(Code.Internal, 'internal error', `${name}${e.message}`, { cause: e });
  }
  return new CniError(Code.Internal, 'internal error', String(e), { cause: e });
}

/**
 * A value as it may be echoed in an error: at most `max` characters, the rest replaced by
 * a note of how long it was (a hostile 8 MiB value must not come back whole).
 */
export function clip(s: string, max = 128): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/** Why a namespace path could not be used, by the errno name of the failed open. */
const NETNS_PROBLEMS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file (ENOENT)',
  EINVAL: 'not a network namespace',
  ENOTDIR: 'a component of the path is not a directory (ENOTDIR)',
  ENAMETOOLONG: 'the path is too long (ENAMETOOLONG)',
  ELOOP: 'too many symbolic links (ELOOP)',
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
};

/**
 * The error for an unusable CNI_NETNS (missing, not a network namespace, unopenable, the
 * plugin's own): code 4, "invalid necessary environment variables", naming the variable.
 * `problem` is an errno name ("ENOENT") or a sentence.
 */
export function invalidNetns(path: string, problem: string, cause?: unknown): CniError {
  const why = NETNS_PROBLEMS[problem] ?? (/^E[A-Z0-9]+$/.test(problem) ? `cannot open it (${problem})` : problem);
  return new CniError(
    Code.InvalidEnvironment,
    'invalid CNI_NETNS',
    `CNI_NETNS ${JSON.stringify(clip(path))}: ${why}`,
    cause === undefined ? undefined : { cause },
  );
}
