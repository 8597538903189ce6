// Turns the first error of a compiled (ajv standalone) validator into a CniError 7 that
// names the offending field in dotted form ("ipam.ranges[0][1].subnet").
import { CniError, Code } from './errors.ts';
import { formatProblems } from './formats.ts';

/** The part of an ajv ValidateFunction we use (gen/validators.d.ts declares the same). */
export interface ValidatorLike {
  (data: unknown): boolean;
  errors?: ReadonlyArray<{
    instancePath: string;
    keyword: string;
    params: Record<string, unknown>;
    message?: string;
  }> | null;
}

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** "/ipam/ranges/0/1" -> ["ipam", "ranges", 0, 1] (numeric segments of arrays as numbers). */
function pointerSegments(pointer: string, root: unknown): Array<string | number> {
  if (!pointer) return [];
  const out: Array<string | number> = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = unescapePointer(raw);
    if (Array.isArray(cur) && /^[0-9]+$/.test(seg)) {
      out.push(Number(seg));
      cur = cur[Number(seg)];
    } else {
      out.push(seg);
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

/** ["ipam", "ranges", 0, "cni.dev/x"] -> 'ipam.ranges[0]["cni.dev/x"]'. */
export function fieldPath(segs: ReadonlyArray<string | number>): string {
  let s = '';
  for (const seg of segs) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(seg)) s += s ? `.${seg}` : seg;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

function valueAt(root: unknown, segs: ReadonlyArray<string | number>): unknown {
  let cur = root;
  for (const seg of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

/** Field names whose values are never repeated in an error (passwords, keys, tokens). */
const SECRET_FIELD = /pass|secret|token|key|credential/i;

function preview(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * CniError 7 for a field a parser found wrong, in validateWith's form: msg "invalid
 * config field <field>", details "<field>: <why>".
 */
export function invalidField(field: string, why: string): CniError {
  return new CniError(Code.InvalidNetworkConfig, `invalid config field ${field}`, `${field}: ${why}`);
}

/**
 * CniError 7 "<field>: <what>", the form of strand-ipam's and the etcd section's errors
 * (as host-local words them: "ipam.ranges[0][0].subnet: invalid CIDR ...").
 */
export function fieldError(field: string, what: string): CniError {
  return new CniError(Code.InvalidNetworkConfig, `${field}: ${what}`);
}

/** `o[key]` as a string: absent, null and "" are undefined; another type is fieldError "<field>.<key>: must be a string". */
export function optString(o: Record<string, unknown>, key: string, field: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw fieldError(`${field}.${key}`, 'must be a string');
  return v;
}

/**
 * Runs `validator` on `raw`; returns `raw` typed as T when valid, else throws
 * CniError(7, "invalid config field <path>", "<path>: <reason>"). `prefix` is prepended to
 * field names (e.g. "ipam" when validating only the ipam section).
 */
export function validateWith<T>(validator: ValidatorLike, raw: unknown, prefix: ReadonlyArray<string | number> = []): T {
  if (validator(raw)) return raw as T;
  const err = validator.errors?.[0];
  if (!err) throw new CniError(Code.InvalidNetworkConfig, 'invalid network config', 'validation failed');
  const segs = pointerSegments(err.instancePath, raw);
  const p = err.params;
  if (err.keyword === 'required' && typeof p['missingProperty'] === 'string') {
    const field = fieldPath([...prefix, ...segs, p['missingProperty']]);
    throw new CniError(Code.InvalidNetworkConfig, `missing config field ${field}`, `${field}: required`);
  }
  if (err.keyword === 'additionalProperties' && typeof p['additionalProperty'] === 'string') {
    const field = fieldPath([...prefix, ...segs, p['additionalProperty']]);
    throw new CniError(Code.InvalidNetworkConfig, `unknown config field ${field}`, `${field}: not a known field`);
  }
  if (err.keyword === 'dependentRequired' && typeof p['missingProperty'] === 'string') {
    const field = fieldPath([...prefix, ...segs, p['missingProperty']]);
    const because = typeof p['property'] === 'string' ? ` (needed with ${p['property']})` : '';
    throw new CniError(Code.InvalidNetworkConfig, `missing config field ${field}`, `${field}: required${because}`);
  }
  const field = fieldPath([...prefix, ...segs]) || '(config)';
  let reason = err.message ?? err.keyword;
  if (err.keyword === 'enum' && Array.isArray(p['allowedValues'])) {
    reason = `must be one of ${p['allowedValues'].map((v) => JSON.stringify(v)).join(', ')}`;
  }
  if (err.keyword === 'format' && typeof p['format'] === 'string' && Object.hasOwn(formatProblems, p['format'])) {
    const value = valueAt(raw, segs);
    const why = typeof value === 'string' ? formatProblems[p['format']]!(value) : undefined;
    if (why) reason = why;
  }
  // Never echo the value of a credential-like field: the error reaches kubelet's log.
  const secret = [...prefix, ...segs].some((s) => typeof s === 'string' && SECRET_FIELD.test(s));
  throw new CniError(
    Code.InvalidNetworkConfig,
    `invalid config field ${field}`,
    secret ? `${field}: ${reason}` : `${field}: ${reason}; got ${preview(valueAt(raw, segs))}`,
  );
}

/**
 * An object's keys as Go's encoding/json matches them to struct fields: a key equal to a
 * field name, else the first field equal to it ignoring case (the later of two keys for
 * one field wins). Runtimes send capability arguments from Go structs without JSON tags
 * (containerd's go-cni: {"HostPort": 8080, "ContainerPort": 80, ...}), and the
 * reference plugins accept them because of this rule. Other keys and non-objects pass
 * through unchanged.
 */
export function goFieldKeys(v: unknown, fields: readonly string[]): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const name = fields.includes(k) ? k : (fields.find((f) => f.toLowerCase() === k.toLowerCase()) ?? k);
    Object.defineProperty(out, name, { value: x, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
