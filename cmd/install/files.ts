// File operations of `strand install`: every write goes to a temp file in the target
// directory and is renamed into place, so a runtime never sees half a file, and
// replacing a binary that is running never fails with ETXTBSY (the old inode lives on
// until its last user exits). Unchanged files are not rewritten.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  lstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export class InstallError extends Error {
  override readonly name = 'InstallError';
}

/** The single executable and the plugin names that are always strand's (its hardlinks). */
export const BINARY_NAMES = ['strand', 'strand-bridge', 'strand-macvlan', 'strand-ipvlan', 'strand-ipam', 'strand-portmap'] as const;

/**
 * Plugin names strand also answers to that other projects ship too: installed only where
 * the bin dir has none, and only ever replaced or removed when they are strand's.
 */
export const SHARED_NAMES = ['loopback'] as const;

/** The record of what install put in a bin dir (next to the binaries). */
export const MANIFEST_NAME = '.strand-installed.json';

export interface Manifest {
  /** File names in the bin dir that strand installed. */
  files: string[];
}

/**
 * The directory beside the executable with the shared libraries it needs beyond what
 * every glibc system has (libatomic.so.1): scripts/build.sh sets the executable's
 * RUNPATH to $ORIGIN/strand-lib, so it loads them from wherever it is installed.
 */
export const LIB_DIR = 'strand-lib';

export type Outcome = 'written' | 'unchanged';

function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function tempName(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Content and mode equal? (false when `path` does not exist) */
function sameFile(path: string, data: Buffer, mode: number): boolean {
  try {
    const st = statSync(path);
    return st.isFile() && (st.mode & 0o7777) === mode && st.size === data.length && readFileSync(path).equals(data);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

/** Writes `data` to `path` with `mode` atomically unless it is already there. */
export function writeFileAtomic(path: string, data: Buffer, mode: number): Outcome {
  if (sameFile(path, data, mode)) return 'unchanged';
  const tmp = tempName(path);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode); // the umask may have narrowed it
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncPath(dirname(path));
  return 'written';
}

/**
 * Installs `source` as `<binDir>/strand` plus hardlinks under `names`. When `strand`
 * already has the same content and every name is a link to it, nothing is touched. The
 * plugin names are replaced first and `strand` last, each by rename.
 */
export function installBinaries(source: string, binDir: string, names: readonly string[] = BINARY_NAMES): Outcome {
  const main = join(binDir, 'strand');
  const srcStat = statSync(source);
  if (!srcStat.isFile()) throw new InstallError(`--source ${source} is not a regular file`);
  let current: Stats | undefined;
  try {
    current = statSync(main);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
  }
  const mainSame = current !== undefined && current.size === srcStat.size && (current.mode & 0o777) === 0o755 && fileHash(main) === fileHash(source);
  if (mainSame && current && names.every((n) => sameInode(join(binDir, n), current.ino))) return 'unchanged';

  const temps: string[] = [];
  try {
    let origin = main;
    if (!mainSame) {
      origin = tempName(main);
      temps.push(origin);
      copyFileSync(source, origin);
      chmodSync(origin, 0o755);
      fsyncPath(origin);
    }
    for (const name of names) {
      if (name === 'strand') continue;
      const tmp = tempName(join(binDir, name));
      temps.push(tmp);
      linkSync(origin, tmp);
      renameSync(tmp, join(binDir, name));
    }
    if (origin !== main) renameSync(origin, main);
  } finally {
    for (const t of temps) rmSync(t, { force: true });
  }
  fsyncPath(binDir);
  return 'written';
}

/** The marker every strand shim carries (native/shim.c). */
export const SHIM_MARKER = 'STRAND-SHIM protocol=';

/**
 * Installs the shim (native/shim.c) under each of `names` in `binDir`: one file, the
 * names its hardlinks, each put in place by rename. Call it after `<binDir>/strand` is
 * in place: a shim falls back to the `strand` beside it, which must never be missing.
 * Nothing is touched when every name already is this shim (same content, one inode).
 */
export function installShims(shim: Buffer, binDir: string, names: readonly string[]): Outcome {
  if (!shim.includes(SHIM_MARKER)) throw new InstallError('the shim to install is not a strand shim (no marker)');
  const first = join(binDir, names[0]!);
  let ino: number | undefined;
  try {
    const st = statSync(first);
    if (st.isFile() && (st.mode & 0o777) === 0o755 && st.size === shim.length && readFileSync(first).equals(shim)) ino = st.ino;
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
  }
  if (ino !== undefined && names.every((n) => sameInode(join(binDir, n), ino))) return 'unchanged';

  const origin = tempName(join(binDir, 'strand-shim'));
  const temps = [origin];
  try {
    const fd = openSync(origin, 'wx', 0o755);
    try {
      writeSync(fd, shim);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(origin, 0o755);
    for (const name of names) {
      const tmp = tempName(join(binDir, name));
      temps.push(tmp);
      linkSync(origin, tmp);
      renameSync(tmp, join(binDir, name));
    }
  } finally {
    for (const t of temps) rmSync(t, { force: true });
  }
  fsyncPath(binDir);
  return 'written';
}

/** Shared library file names in `dir` (none when it does not exist). */
function libraryNames(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => /^lib[A-Za-z0-9_+.-]*\.so(\.\d+)*$/.test(n))
      .sort();
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw e;
  }
}

/**
 * Copies the shared libraries of `<dirname(source)>/strand-lib` to `<binDir>/strand-lib`
 * (mode 0644, each by rename), before the binaries: a new binary never starts without
 * its libraries. Libraries of an earlier install that the new one does not ship stay
 * until uninstall (a running old binary may still map them).
 */
export function installLibraries(source: string, binDir: string): { outcome: Outcome; names: string[] } {
  const from = join(dirname(source), LIB_DIR);
  const names = libraryNames(from);
  if (names.length === 0) return { outcome: 'unchanged', names };
  const to = join(binDir, LIB_DIR);
  ensureDir(to, 0o755);
  let outcome: Outcome = 'unchanged';
  for (const n of names) if (writeFileAtomic(join(to, n), readFileSync(join(from, n)), 0o644) === 'written') outcome = 'written';
  return { outcome, names };
}

/** Removes `<binDir>/strand-lib` (its libraries, then the directory if that emptied it). */
export function removeLibraries(binDir: string): string[] {
  const dir = join(binDir, LIB_DIR);
  const removed = libraryNames(dir).filter((n) => removeIfPresent(join(dir, n)));
  try {
    rmdirSync(dir);
  } catch {
    // absent, or holds files that are not ours
  }
  return removed;
}

/**
 * Whether `name` in `binDir` is strand's file: a hardlink of one of strand's own names
 * (normally `strand` itself; a plugin name too, after an install interrupted between
 * replacing the plugin names and `strand`).
 */
export function isStrandFile(binDir: string, name: string): boolean {
  let ino: number;
  try {
    ino = statSync(join(binDir, name)).ino;
  } catch {
    return false;
  }
  return BINARY_NAMES.some((n) => n !== name && sameInode(join(binDir, n), ino));
}

/** The manifest of an earlier install, or undefined (none, or unreadable: then nothing counts as recorded). */
export function readManifest(binDir: string): Manifest | undefined {
  try {
    const m = JSON.parse(readFileSync(join(binDir, MANIFEST_NAME), 'utf8')) as unknown;
    const files = (m as { files?: unknown } | null)?.files;
    if (!Array.isArray(files) || !files.every((f) => typeof f === 'string' && f !== '' && !f.includes('/'))) return undefined;
    return { files: files as string[] };
  } catch {
    return undefined;
  }
}

export function writeManifest(binDir: string, m: Manifest): Outcome {
  return writeFileAtomic(join(binDir, MANIFEST_NAME), Buffer.from(`${JSON.stringify({ files: [...m.files].sort() }, null, 2)}\n`), 0o644);
}

/**
 * The names this install puts in `binDir`: strand's own, and each shared name the bin
 * dir has none of or whose file is strand's (a hardlink of it: whatever a record says,
 * a file of someone else's is never replaced).
 */
export function namesToInstall(binDir: string): string[] {
  const out: string[] = [...BINARY_NAMES];
  for (const name of SHARED_NAMES) if (!present(join(binDir, name)) || isStrandFile(binDir, name)) out.push(name);
  return out;
}

/** Something (a file, a link, even a dangling one) is at `path`. */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** An executable regular file (after symlinks) is at `path`: what libcni would run. */
export function isExecutable(path: string): boolean {
  try {
    const st = statSync(path);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function sameInode(path: string, ino: number): boolean {
  try {
    return statSync(path).ino === ino;
  } catch {
    return false;
  }
}

/** Removes `path` if present; returns whether it existed. */
export function removeIfPresent(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

/** mkdir -p with `mode` on the last component (tightened if it already exists). */
export function ensureDir(path: string, mode: number): void {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
}
