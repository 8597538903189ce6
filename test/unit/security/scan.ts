// A small static scanner for the security review: finds process spawning that could run
// a shell. TypeScript is first turned into plain JavaScript by esbuild (types and most
// comments gone), then checked with patterns that are deliberately broad: a false
// alarm costs a look, a miss costs root on every node.
import { type Dirent, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { transformSync } from 'esbuild';

export interface Finding {
  file: string;
  line: number;
  rule: string;
  text: string;
}

const CP_IMPORT = /import\s*(?:\*\s*as\s+(\w+)|(\w+)|\{([^}]*)\})\s*from\s*['"](?:node:)?child_process['"]/g;
const CP_REQUIRE = /require\(\s*['"](?:node:)?child_process['"]\s*\)/;
// A dynamic import, or getBuiltinModule() whose result is kept (the scanner cannot follow it).
const CP_DYNAMIC = /import\(\s*['"](?:node:)?child_process['"]\s*\)|getBuiltinModule\(\s*['"](?:node:)?child_process['"]\s*\)(?!\.\w+\s*\()/;
/** `process.getBuiltinModule('node:child_process').spawn(...)`: loaded on use, called at once (followed like a namespace). */
const CP_BUILTIN_CALL = /getBuiltinModule\(\s*['"](?:node:)?child_process['"]\s*\)\.(\w+)\s*\(/g;
/** Spawning functions whose first argument is the program. */
const SPAWNERS = ['spawn', 'spawnSync', 'execFile', 'execFileSync', 'fork'];
/** Functions that always run their command through /bin/sh. */
const SHELL_RUNNERS = ['exec', 'execSync'];
const SHELL_PROGRAM = /^['"`](?:\/usr)?(?:\/bin\/)?(?:ba|da|z|k|c|tc|fi)?sh['"`]$|^['"`](?:\/usr)?\/bin\/env['"`]$/;

function lineOf(src: string, index: number): number {
  return src.slice(0, index).split('\n').length;
}

/** The JavaScript esbuild makes of a TypeScript file (what actually runs). */
export function toJs(ts: string, file = 'input.ts'): string {
  return transformSync(ts, { loader: 'ts', format: 'esm', target: 'es2024', sourcefile: file, legalComments: 'none' }).code;
}

/** Findings in one TypeScript source text. */
export function scanSource(ts: string, file = 'input.ts'): Finding[] {
  const js = toJs(ts, file);
  const out: Finding[] = [];
  const add = (rule: string, index: number, text: string): void => {
    out.push({ file, line: lineOf(js, index), rule, text: text.slice(0, 160) });
  };

  // Any `shell` option that is not literally false (shell: true, shell: '/bin/sh', shell: x).
  for (const m of js.matchAll(/\bshell\s*:\s*([^,}\s]+)/g)) {
    if (m[1] !== 'false') add('shell option', m.index, m[0]);
  }
  // eval and the Function constructor compile strings (config!) into code.
  for (const m of js.matchAll(/\beval\s*\(|\bnew\s+Function\s*\(|\bFunction\s*\(\s*['"`]/g)) add('code from a string', m.index, m[0]);

  const names = new Map<string, string>(); // local name -> child_process export
  const namespaces: string[] = [];
  for (const m of js.matchAll(CP_IMPORT)) {
    if (m[1]) namespaces.push(m[1]);
    if (m[2]) namespaces.push(m[2]);
    for (const spec of (m[3] ?? '').split(',')) {
      const [orig, local] = spec.trim().split(/\s+as\s+/);
      if (orig) names.set((local ?? orig).trim(), orig.trim());
    }
  }
  if (CP_REQUIRE.test(js)) add('require(child_process) (use an import the scanner can follow)', js.search(CP_REQUIRE), 'require');
  if (CP_DYNAMIC.test(js)) add('dynamic child_process import (use a static import the scanner can follow)', js.search(CP_DYNAMIC), 'import()');

  const callees: Array<[RegExp, string]> = [];
  for (const [local, orig] of names) callees.push([new RegExp(`(?<![\\w.])${local}\\s*\\(`, 'g'), orig]);
  for (const ns of namespaces) callees.push([new RegExp(`\\b${ns}\\.(\\w+)\\s*\\(`, 'g'), '']);
  callees.push([CP_BUILTIN_CALL, '']);
  for (const [re, orig] of callees) {
    for (const m of js.matchAll(re)) {
      const fn = orig || m[1] || '';
      if (SHELL_RUNNERS.includes(fn)) {
        add(`child_process.${fn} runs a shell`, m.index, m[0]);
        continue;
      }
      if (!SPAWNERS.includes(fn)) continue;
      const firstArg = /^\s*([^,)]+)/.exec(js.slice(m.index + m[0].length))?.[1]?.trim() ?? '';
      if (SHELL_PROGRAM.test(firstArg)) add(`${fn} of a shell`, m.index, `${m[0]}${firstArg}`);
      // sh -c hidden behind a variable: the argv literal carries '-c'
      const call = js.slice(m.index, m.index + 400);
      if (/\[\s*['"`]-c['"`]/.test(call)) add(`${fn} with "-c"`, m.index, call);
    }
  }
  return out;
}

export function listTs(dir: string): string[] {
  const out: string[] = [];
  let ents: Dirent[];
  try {
    ents = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of ents) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && !e.name.startsWith('.')) out.push(...listTs(p));
    } else if (/\.(ts|mts|cts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** Scans every source file under `dirs` (relative to `root`). */
export function scanTree(root: string, dirs: string[]): { files: string[]; findings: Finding[]; spawning: string[] } {
  const files = dirs.flatMap((d) => listTs(join(root, d)));
  const findings: Finding[] = [];
  const spawning: string[] = [];
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    const rel = relative(root, f);
    findings.push(...scanSource(src, rel));
    if (/(?:node:)?child_process['"]/.test(src)) spawning.push(rel);
  }
  return { files: files.map((f) => relative(root, f)), findings, spawning };
}
