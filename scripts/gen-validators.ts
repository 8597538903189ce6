// Compiles every config schema into standalone validator code, once, at build time
// (compiling with ajv at run time costs ~55 ms per plugin process).
//
//   node scripts/gen-validators.ts [--out-dir gen] [--root <dir to scan, default the repo>]
//
// Finds lib/**/schema.ts, cni/*/schema.ts and ipam/**/schema.ts; each exports
// `schemas = { validateXxx: {...JSON schema...} }`. Writes gen/validators.js (ESM, one
// named export per key) and gen/validators.d.ts, atomically. Schemas may use the string
// formats of lib/cni/formats.ts; the generated code imports that module (and ajv's tiny
// runtime helpers such as ucs2length when a schema needs them), never ajv itself.
import { globSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formats } from '../lib/cni/formats.ts';

const require = createRequire(import.meta.url);
// ajv is CommonJS; require() gives the class and its helpers without ESM interop questions.
// The draft 2019-09 class: draft-07 schemas work unchanged, plus dependentRequired,
// unevaluatedProperties and friends.
const AjvClass = require('ajv/dist/2019') as typeof import('ajv/dist/2019.js').default;
const { _ } = require('ajv') as typeof import('ajv');
const standaloneCode = require('ajv/dist/standalone') as typeof import('ajv/dist/standalone/index.js').default;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PATTERNS = ['lib/**/schema.ts', 'cni/*/schema.ts', 'ipam/**/schema.ts'];
const EXPORT_NAME = /^validate[A-Z][A-Za-z0-9]*$/;
const FORMATS_IDENT = '__formats'; // must match the code.formats option below

function fail(msg: string): never {
  process.stderr.write(`gen-validators: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv: string[]): { outDir: string; scanRoot: string } {
  let outDir = join(root, 'gen');
  let scanRoot = root;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out-dir' || a === '--root') {
      const v = argv[++i];
      if (!v) fail(`${a} needs a value`);
      if (a === '--out-dir') outDir = resolve(v);
      else scanRoot = resolve(v);
    } else {
      fail(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  return { outDir, scanRoot };
}

async function collect(scanRoot: string): Promise<Map<string, { schema: object; file: string }>> {
  const files = [...new Set(PATTERNS.flatMap((p) => globSync(p, { cwd: scanRoot })))].filter((f) => !f.split('/').includes('node_modules')).sort();
  const out = new Map<string, { schema: object; file: string }>();
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(scanRoot, file)).href)) as { schemas?: unknown };
    const schemas = mod.schemas;
    if (!schemas || typeof schemas !== 'object') fail(`${file}: no \`export const schemas = {...}\``);
    for (const [name, schema] of Object.entries(schemas)) {
      if (!EXPORT_NAME.test(name)) fail(`${file}: schema key ${JSON.stringify(name)} must look like validateXxx`);
      const prev = out.get(name);
      if (prev) fail(`${name} is defined in both ${prev.file} and ${file}`);
      if (!schema || typeof schema !== 'object') fail(`${file}: ${name} is not a schema object`);
      out.set(name, { schema: schema as object, file });
    }
  }
  return out;
}

/**
 * ajv's standalone ESM output still calls require() for its runtime helpers: hoist them to
 * imports. `require("x").default` becomes `__cjsDefault(__rtN)`, which gives the helper
 * whether the loader hands the default import over as module.exports (Node, esbuild) or as
 * exports.default (vite's interop for __esModule modules).
 */
function requiresToImports(code: string): { code: string; imports: string[] } {
  const imports: string[] = [];
  const seen = new Map<string, string>();
  const idFor = (spec: string): string => {
    let id = seen.get(spec);
    if (!id) {
      id = `__rt${seen.size}`;
      seen.set(spec, id);
      const file = spec.endsWith('.js') ? spec : `${spec}.js`;
      imports.push(`import ${id} from ${JSON.stringify(file)};`);
    }
    return id;
  };
  const replaced = code
    .replace(/require\("([^"]+)"\)\.default\b/g, (_m, spec: string) => `__cjsDefault(${idFor(spec)})`)
    .replace(/require\("([^"]+)"\)/g, (_m, spec: string) => idFor(spec));
  if (seen.size) {
    imports.push('function __cjsDefault(m) { return typeof m === "function" ? m : m.default; }');
  }
  return { code: replaced, imports };
}

async function main(): Promise<void> {
  const { outDir, scanRoot } = parseArgs(process.argv.slice(2));
  const found = await collect(scanRoot);
  if (found.size === 0) fail('no schemas found');

  const ajv = new AjvClass({
    strict: true,
    allErrors: false,
    useDefaults: true,
    formats,
    code: { source: true, esm: true, lines: true, formats: _`__formats` },
    logger: {
      log: () => {},
      warn: (...a: unknown[]) => process.stderr.write(`gen-validators: warning: ${a.join(' ')}\n`),
      error: (...a: unknown[]) => process.stderr.write(`gen-validators: ${a.join(' ')}\n`),
    },
  });
  const refs: Record<string, string> = {};
  for (const [name, { schema, file }] of found) {
    try {
      ajv.addSchema(schema, name);
      ajv.getSchema(name); // compile now so errors name the file
    } catch (e) {
      fail(`${file}: ${name}: ${(e as Error).message}`);
    }
    refs[name] = name;
  }
  const raw = standaloneCode(ajv, refs);
  const { code, imports } = requiresToImports(raw);
  if (code.includes(FORMATS_IDENT)) {
    const rel = relative(outDir, join(root, 'lib/cni/formats.ts')).split('\\').join('/');
    imports.unshift(`import { formats as ${FORMATS_IDENT} } from ${JSON.stringify(rel.startsWith('.') ? rel : `./${rel}`)};`);
  }
  const sources = [...new Set([...found.values()].map((v) => v.file))];
  const header = `// Generated by scripts/gen-validators.ts from ${sources.join(', ')}. Do not edit.\n`;
  const js = `${header}${imports.join('\n')}\n${code}\n`;
  const dts =
    `${header}` +
    `export interface ValidationError {\n  instancePath: string;\n  schemaPath: string;\n  keyword: string;\n` +
    `  params: Record<string, unknown>;\n  message?: string;\n}\n` +
    `export interface ValidateFunction {\n  (data: unknown): boolean;\n  errors?: ValidationError[] | null;\n}\n` +
    [...found.keys()].map((n) => `export declare const ${n}: ValidateFunction;\n`).join('');

  mkdirSync(outDir, { recursive: true });
  for (const [name, text] of [
    ['validators.js', js],
    ['validators.d.ts', dts],
  ] as const) {
    const tmp = join(outDir, `.${name}.${process.pid}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(outDir, name));
  }
  process.stderr.write(`gen-validators: ${found.size} validators from ${sources.length} files -> ${relative(root, outDir) || '.'}/validators.js\n`);
}

await main();
