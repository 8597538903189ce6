// Spec version handling: comparison, support, verb gating, `cniVersions` selection and the
// VERSION command's output.
import { CniError, Code } from './errors.ts';
import { CURRENT_VERSION, SPEC_VERSIONS, type SpecVersion, type VersionInfo } from './types.ts';

/**
 * "1.2.3" -> [1, 2, 3]; one to three numeric parts, missing parts are 0 (as libcni does).
 * Throws a CniError 6 (decoding failure) for anything else.
 */
export function parseVersion(v: string): [number, number, number] {
  const parts = typeof v === 'string' ? v.split('.') : [];
  if (parts.length < 1 || parts.length > 3 || parts.some((p) => !/^[0-9]{1,9}$/.test(p))) {
    throw new CniError(Code.DecodingFailure, 'invalid version', JSON.stringify(v));
  }
  const [a = 0, b = 0, c = 0] = parts.map(Number);
  return [a, b, c];
}

/** Negative, zero or positive as a < b, a == b, a > b. */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function versionGte(a: string, b: string): boolean {
  return compareVersions(a, b) >= 0;
}

export function isSupportedVersion(v: unknown): v is SpecVersion {
  return typeof v === 'string' && (SPEC_VERSIONS as readonly string[]).includes(v);
}

/** The lowest config version that allows each verb (ADD, DEL and VERSION: any). */
const VERB_MIN_VERSION: Readonly<Record<string, SpecVersion>> = {
  CHECK: '0.4.0',
  STATUS: '1.1.0',
  GC: '1.1.0',
};

/** Throws CniError 1 when `version` (a supported version) is too old for `verb`. */
export function checkVerbAllowed(verb: string, version: string): void {
  const min = VERB_MIN_VERSION[verb];
  if (min !== undefined && !versionGte(version, min)) {
    throw new CniError(
      Code.IncompatibleVersion,
      `config version does not allow ${verb}`,
      `${verb} needs cniVersion >= ${min}, config is ${JSON.stringify(version)}`,
    );
  }
}

/**
 * The version to speak for a config: the highest version in `cniVersion` plus `cniVersions`
 * that strand supports (the spec's rule for runtimes, applied again on our side so a config
 * listing newer versions still works). When none is supported, `cniVersion` is returned
 * unchanged and `checkSupported` rejects it.
 */
export function selectVersion(cniVersion: unknown, cniVersions?: unknown): unknown {
  if (!Array.isArray(cniVersions)) return cniVersion;
  const candidates = [cniVersion, ...cniVersions].filter(isSupportedVersion);
  if (candidates.length === 0) return cniVersion;
  return candidates.reduce((best, v) => (compareVersions(v, best) > 0 ? v : best));
}

/** Throws CniError 1 for a missing or unsupported version. */
export function checkSupported(v: unknown): asserts v is SpecVersion {
  if (v === undefined || v === null || v === '') {
    throw new CniError(Code.IncompatibleVersion, 'missing cniVersion', 'the network config has no "cniVersion"');
  }
  if (!isSupportedVersion(v)) {
    throw new CniError(
      Code.IncompatibleVersion,
      'incompatible CNI versions',
      `config is ${JSON.stringify(v)}, plugin supports ${JSON.stringify(SPEC_VERSIONS)}`,
    );
  }
}

export function versionInfo(supported: readonly string[] = SPEC_VERSIONS): VersionInfo {
  return { cniVersion: CURRENT_VERSION, supportedVersions: [...supported] };
}
