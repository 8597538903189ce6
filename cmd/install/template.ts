// Pure conflist templating for `strand install`: no file or environment access here.
//
// A template is JSON (the ConfigMap's conflist). Any string in it may contain
// placeholders `${NAME}`:
//   ${NODE_NAME}        this node's name
//   ${ETCD_ENDPOINTS}   etcd client URLs; a string that is exactly this placeholder
//                       becomes a JSON array, inside a longer string a comma list
//   ${ETCD_CA} ${ETCD_CERT} ${ETCD_KEY}
//                       paths of the TLS files as installed on the host; optional: a
//                       key whose whole value is one of them is dropped when no TLS is
//                       configured, and an object left empty by that is dropped too
// A placeholder that is unknown, or required and without a value, is an error naming it.

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

const PLACEHOLDERS = ['NODE_NAME', 'ETCD_ENDPOINTS', 'ETCD_CA', 'ETCD_CERT', 'ETCD_KEY'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

const OPTIONAL: ReadonlySet<Placeholder> = new Set(['ETCD_CA', 'ETCD_CERT', 'ETCD_KEY']);

/** Where each value comes from, for error messages. */
const SOURCE: Record<Placeholder, string> = {
  NODE_NAME: '--node-name, K8S_NODE_NAME or NODENAME',
  ETCD_ENDPOINTS: '--etcd-endpoints or STRAND_ETCD_ENDPOINTS',
  ETCD_CA: '--etcd-tls-dir or STRAND_ETCD_TLS_DIR',
  ETCD_CERT: '--etcd-tls-dir or STRAND_ETCD_TLS_DIR',
  ETCD_KEY: '--etcd-tls-dir or STRAND_ETCD_TLS_DIR',
};

export type TemplateValues = Partial<Record<Placeholder, string | string[]>>;

const PATTERN = /\$\{([^}]*)\}/g;

function isPlaceholder(name: string): name is Placeholder {
  return (PLACEHOLDERS as readonly string[]).includes(name);
}

/** The placeholders a template uses (for deciding which inputs must be read). */
export function placeholdersIn(template: string): Set<Placeholder> {
  const out = new Set<Placeholder>();
  for (const m of template.matchAll(PATTERN)) {
    const name = m[1] ?? '';
    if (!isPlaceholder(name)) throw new TemplateError(`unknown placeholder \${${name}} in template (known: ${PLACEHOLDERS.join(', ')})`);
    out.add(name);
  }
  return out;
}

const DROP = Symbol('drop');

function fillString(s: string, values: TemplateValues, where: string): unknown {
  const whole = /^\$\{([^}]*)\}$/.exec(s);
  if (whole) {
    const name = whole[1] ?? '';
    if (!isPlaceholder(name)) throw new TemplateError(`unknown placeholder \${${name}} at ${where}`);
    const v = values[name];
    if (v === undefined) {
      if (OPTIONAL.has(name)) return DROP;
      throw new TemplateError(`template needs ${name} at ${where}: set ${SOURCE[name]}`);
    }
    return v;
  }
  return s.replace(PATTERN, (_m, name: string) => {
    if (!isPlaceholder(name)) throw new TemplateError(`unknown placeholder \${${name}} at ${where}`);
    const v = values[name];
    if (v === undefined) throw new TemplateError(`template needs ${name} at ${where}: set ${SOURCE[name]}`);
    return Array.isArray(v) ? v.join(',') : v;
  });
}

function fillValue(v: unknown, values: TemplateValues, where: string): unknown {
  if (typeof v === 'string') return fillString(v, values, where);
  if (Array.isArray(v)) {
    return v.map((x, i) => fillValue(x, values, `${where}[${i}]`)).filter((x) => x !== DROP);
  }
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    const entries = Object.entries(v as Record<string, unknown>);
    for (const [k, x] of entries) {
      const filled = fillValue(x, values, `${where}.${k}`);
      if (filled !== DROP) out[k] = filled;
    }
    return entries.length > 0 && Object.keys(out).length === 0 ? DROP : out;
  }
  return v;
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Array<{ type: string; [k: string]: unknown }>;
  [k: string]: unknown;
}

/**
 * Fills `template` (JSON text) with `values` and checks the result is a network
 * configuration list. Returns the conflist and its canonical text (2-space JSON plus a
 * newline), which is what gets written, so re-runs compare byte for byte.
 */
export function fillTemplate(template: string, values: TemplateValues): { conflist: Conflist; text: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(template);
  } catch (e) {
    throw new TemplateError(`template is not valid JSON: ${(e as Error).message}`);
  }
  placeholdersIn(template);
  const filled = fillValue(parsed, values, '$');
  if (filled === DROP || filled === null || typeof filled !== 'object' || Array.isArray(filled)) {
    throw new TemplateError('template must be a JSON object (a network configuration list)');
  }
  const c = filled as Record<string, unknown>;
  if (typeof c['cniVersion'] !== 'string' || c['cniVersion'] === '') throw new TemplateError('conflist needs a string cniVersion');
  if (typeof c['name'] !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(c['name'])) {
    throw new TemplateError('conflist needs a name of letters, digits, "_", "." and "-"');
  }
  const plugins = c['plugins'];
  if (!Array.isArray(plugins) || plugins.length === 0) throw new TemplateError('conflist needs a non-empty plugins array');
  plugins.forEach((p: unknown, i) => {
    if (p === null || typeof p !== 'object' || typeof (p as { type?: unknown }).type !== 'string') {
      throw new TemplateError(`plugins[${i}] needs a string type`);
    }
  });
  return { conflist: c as Conflist, text: `${JSON.stringify(c, null, 2)}\n` };
}

/** "a, b,,c" -> ["a", "b", "c"]; every entry must be an http(s) URL. */
export function parseEndpoints(s: string): string[] {
  const list = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (list.length === 0) throw new TemplateError('etcd endpoints: empty list');
  for (const e of list) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new TemplateError(`etcd endpoint ${JSON.stringify(e)} is not a URL (want http://host:port or https://host:port)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new TemplateError(`etcd endpoint ${JSON.stringify(e)} must be http:// or https://`);
    }
  }
  return list;
}
