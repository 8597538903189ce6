// The local store, strand-ipam's default when no etcd is configured: one JSON document
// per network under dataDir (default /var/lib/cni/networks, as host-local):
//
//   <dataDir>/<network>/strand-ipam.json   blocks + attachments, with revisions (NetworkDoc)
//   <dataDir>/<network>/strand-ipam.lock   flock(2) target (native addon), never rewritten
//
// Concurrent plugin processes serialise on an exclusive flock held for the whole
// operation (Store.exclusive), like host-local's lock file. Every write goes to a
// temporary file in the same directory and is renamed over the document, so a process
// killed at any instant leaves either the old or the new document, never a torn one;
// one document per network means one rename commits a whole transaction. Readers
// outside the lock (the admin CLI) always see a complete document.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  accessSync,
} from 'node:fs';
import { join } from 'node:path';
import { LOCK, native, isNativeError } from '../../lib/native/index.ts';
import { applyOps, docProblem, emptyDoc, opsNetwork, salvageDoc, type NetworkDoc, DocumentReads } from './doc.ts';
import type { RepairOptions, Store, WriteOp } from './types.ts';
import { StoreDamagedError, StoreUnavailableError } from './types.ts';

export const DOC_FILE = 'strand-ipam.json';
export const LOCK_FILE = 'strand-ipam.lock';

/** A store document larger than this is refused as damaged (a 10,000-pod network is ~3 MiB). */
const MAX_DOC_BYTES = 256 * 1024 * 1024;

/**
 * Opens an existing file for reading without following a symbolic link in its last
 * component (ELOOP) and without blocking on a FIFO; `undefined` when it does not exist.
 * Throws StoreDamagedError when it is a link, not a regular file, or has other hard
 * links (another file's bytes under our name); other errors are thrown as they are.
 */
export function openNoFollow(file: string, what = 'the store file'): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new StoreDamagedError('local', file, `${what} is a symbolic link (refused: it is never followed)`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new StoreDamagedError('local', file, `${what} is not a regular file`);
    if (st.nlink > 1) throw new StoreDamagedError('local', file, `${what} has ${st.nlink} hard links (refused: it may be another file)`);
    if (st.size > MAX_DOC_BYTES) throw new StoreDamagedError('local', file, `${what} is larger than ${MAX_DOC_BYTES} bytes`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** Reads a file opened by openNoFollow and closes it. */
export function readAndClose(fd: number): string {
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens (creating it, mode 0600, never through a symbolic link) and flock(2)s `path`
 * exclusively, polling with LOCK_NB so in-process contenders cannot deadlock and the
 * event loop never blocks; gives up after `timeoutMs`. Returns the descriptor: closing it
 * releases the lock. `wrap` turns an open or flock errno into the caller's error.
 */
export async function lockFile(
  path: string,
  timeoutMs: number,
  access: number,
  wrap: (what: string, e: unknown) => Error = (what, e) =>
    new StoreUnavailableError('local', `${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e }),
): Promise<number> {
  let fd: number;
  try {
    // O_NOFOLLOW: a symbolic link planted as the lock file is refused, never created through
    fd = openSync(path, access | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new StoreDamagedError('local', path, 'the lock file is a symbolic link (refused: it is never followed)');
    throw wrap('cannot open', e);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new StoreDamagedError('local', path, 'the lock file is not a regular file');
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  const deadline = Date.now() + timeoutMs;
  for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
    try {
      native().flock(fd, LOCK.EX | LOCK.NB);
      return fd;
    } catch (e) {
      if (!isNativeError(e, 'EWOULDBLOCK') && !isNativeError(e, 'EAGAIN')) {
        closeSync(fd);
        throw wrap('cannot lock', e);
      }
    }
    if (Date.now() > deadline) {
      closeSync(fd);
      throw new StoreUnavailableError('local', `timed out waiting for the lock on ${path}`);
    }
    await sleep(wait);
  }
}

/** Parses the text of a store document; never quotes it (JSON.parse's messages do). */
function parseDocText(text: string, file: string): unknown {
  if (text.length === 0) throw new StoreDamagedError('local', file, 'is empty (truncated)');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StoreDamagedError('local', file, `is not valid JSON (${Buffer.byteLength(text)} bytes: truncated or corrupted)`);
  }
}

export interface LocalStoreOptions {
  /** How long to wait for another process's lock before giving up (default 60 s). */
  lockTimeoutMs?: number;
  /** A plugin call's deadline (Date.now() ms): no lock wait goes past it. */
  deadline?: number;
}

/**
 * The data directory cannot be used as one: a component of the path is a regular file
 * (ENOTDIR, or EEXIST from mkdir), or the path is too long (ENAMETOOLONG). Retrying
 * cannot help, unlike a StoreUnavailableError: strand-ipam reports it as a config error
 * naming ipam.dataDir.
 */
export class DataDirError extends Error {
  override readonly name = 'DataDirError';
  readonly dataDir: string;
  /** errno name, e.g. 'ENOTDIR'. */
  readonly code: string;

  constructor(dataDir: string, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.dataDir = dataDir;
    this.code = code;
  }
}

const NOT_A_DIRECTORY = new Set(['ENOTDIR', 'EEXIST', 'ENAMETOOLONG']);

export class LocalStore extends DocumentReads implements Store {
  readonly kind = 'local' as const;
  readonly dataDir: string;
  private readonly lockTimeoutMs: number;
  private readonly deadline: number | undefined;
  /** Networks whose lock this process holds, with the document as of the lock. */
  private readonly locked = new Set<string>();
  /** The document of each locked network, read on first use (then kept in step by commit). */
  private readonly held = new Map<string, NetworkDoc>();

  constructor(dataDir: string, opts: LocalStoreOptions = {}) {
    super();
    this.dataDir = dataDir;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
    this.deadline = opts.deadline;
  }

  private dir(network: string): string {
    return join(this.dataDir, network);
  }

  private unavailable(what: string, e: unknown): StoreUnavailableError | DataDirError {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    if (NOT_A_DIRECTORY.has(code)) return new DataDirError(this.dataDir, code, `${what}: ${code}`, { cause: e });
    return new StoreUnavailableError('local', `${what}: ${code}`, { cause: e });
  }

  private ensureDir(network: string): string {
    const d = this.dir(network);
    try {
      mkdirSync(d, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw this.unavailable(`cannot create ${d}`, e);
    }
    return d;
  }

  private docFile(network: string): string {
    return join(this.dir(network), DOC_FILE);
  }

  /** The document's text, or undefined when there is none. */
  private readText(network: string): string | undefined {
    const file = this.docFile(network);
    let fd: number | undefined;
    try {
      fd = openNoFollow(file);
    } catch (e) {
      if (e instanceof StoreDamagedError) throw e;
      throw this.unavailable(`cannot read ${file}`, e);
    }
    if (fd === undefined) return undefined;
    try {
      return readAndClose(fd);
    } catch (e) {
      throw this.unavailable(`cannot read ${file}`, e);
    }
  }

  protected readDoc(network: string): NetworkDoc {
    const held = this.held.get(network);
    if (held) return held;
    const file = this.docFile(network);
    const text = this.readText(network);
    let doc: NetworkDoc;
    if (text === undefined) doc = emptyDoc(network);
    else {
      const raw = parseDocText(text, file);
      const problem = docProblem(raw, network);
      if (problem) throw new StoreDamagedError('local', file, problem);
      doc = raw as NetworkDoc;
    }
    if (this.locked.has(network)) this.held.set(network, doc);
    return doc;
  }

  private writeDoc(doc: NetworkDoc): void {
    const d = this.ensureDir(doc.network);
    const file = join(d, DOC_FILE);
    const tmp = `${file}.tmp.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
    try {
      // O_EXCL: never written through a symbolic link planted under the temp name
      writeFileSync(tmp, JSON.stringify(doc), { mode: 0o644, flag: 'wx' });
      renameSync(tmp, file);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        // not created
      }
      throw this.unavailable(`cannot write ${file}`, e);
    }
  }

  private networks(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dataDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw this.unavailable(`cannot list ${this.dataDir}`, e);
    }
    return names
      .filter((n) => {
        try {
          lstatSync(join(this.dataDir, n, DOC_FILE));
          return true;
        } catch {
          return false;
        }
      })
      .sort();
  }

  protected readDocs(network?: string): NetworkDoc[] {
    return (network === undefined ? this.networks() : [network]).map((n) => this.readDoc(n));
  }

  /** Takes the network's flock (polling with LOCK_NB so in-process contenders cannot deadlock). */
  private async lock(network: string): Promise<number> {
    const path = join(this.ensureDir(network), LOCK_FILE);
    const timeout = this.deadline === undefined ? this.lockTimeoutMs : Math.min(this.lockTimeoutMs, this.deadline - Date.now());
    return lockFile(path, timeout, constants.O_WRONLY, (what, e) => this.unavailable(`${what} ${path}`, e));
  }

  /** Temp files of writers killed before their rename. Only called under the lock: no writer is active. */
  private removeStaleTemps(network: string): void {
    try {
      for (const f of readdirSync(this.dir(network))) {
        if (f.startsWith(`${DOC_FILE}.tmp.`)) unlinkSync(join(this.dir(network), f));
      }
    } catch {
      // best effort: a leftover temp file is never read
    }
  }

  async exclusive<T>(network: string, fn: () => Promise<T>): Promise<T> {
    if (this.locked.has(network)) return fn();
    const fd = await this.lock(network);
    this.locked.add(network);
    try {
      this.removeStaleTemps(network);
      return await fn();
    } finally {
      this.locked.delete(network);
      this.held.delete(network);
      closeSync(fd); // releases the flock
    }
  }

  /** Networks with a document (read or not: repair lists damaged ones too). */
  async listNetworks(): Promise<string[]> {
    return this.networks();
  }

  async repairRecords(network: string, opts: RepairOptions): Promise<string[]> {
    return this.exclusive(network, async () => {
      const file = this.docFile(network);
      const forceHint = 'nothing in it can be rebuilt: restore a backup, or repair --force moves it aside and starts the network empty';
      let text: string | undefined;
      try {
        text = this.readText(network);
      } catch (e) {
        // a link or a non-file: nothing of ours to read; --force moves it aside
        if (!(e instanceof StoreDamagedError)) throw e;
        if (!opts.force) throw new StoreDamagedError('local', file, e.problem, forceHint);
        return this.setAside(network, e.problem, opts.dryRun);
      }
      if (text === undefined) return [];
      let raw: unknown;
      try {
        raw = parseDocText(text, file);
      } catch (e) {
        if (!(e instanceof StoreDamagedError)) throw e;
        if (!opts.force) throw new StoreDamagedError('local', file, e.problem, forceHint);
        return this.setAside(network, e.problem, opts.dryRun);
      }
      if (docProblem(raw, network) === undefined) return [];
      const { doc, notes } = salvageDoc(raw, network);
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        if (!opts.force) throw new StoreDamagedError('local', file, notes.join('; '), forceHint);
        return this.setAside(network, notes.join('; '), opts.dryRun);
      }
      if (!opts.dryRun) {
        doc.rev += 1;
        this.writeDoc(doc);
        this.held.set(network, doc);
      }
      return notes.map((n) => `${file}: ${n}`);
    });
  }

  /** Renames an unusable document aside and starts the network empty (repair --force). */
  private setAside(network: string, problem: string, dryRun: boolean): string[] {
    const file = this.docFile(network);
    const aside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    if (!dryRun) {
      try {
        renameSync(file, aside);
      } catch (e) {
        throw this.unavailable(`cannot move ${file} aside`, e);
      }
      const doc = emptyDoc(network);
      this.writeDoc(doc);
      this.held.set(network, doc);
    }
    return [`${file}: ${problem}: moved aside to ${aside}; the network starts empty (its attachments are lost)`];
  }

  async commit(ops: readonly WriteOp[]): Promise<number | undefined> {
    if (ops.length === 0) return undefined;
    const network = opsNetwork(ops);
    if (!this.locked.has(network)) return this.exclusive(network, () => this.commit(ops));
    const next = structuredClone(this.readDoc(network));
    const rev = applyOps(next, ops);
    if (rev === undefined) return undefined;
    this.writeDoc(next);
    this.held.set(network, next);
    return rev;
  }

  async ping(network?: string): Promise<void> {
    const d = network === undefined ? this.dataDir : this.ensureDir(network);
    try {
      mkdirSync(d, { recursive: true, mode: 0o755 });
      accessSync(d, constants.W_OK);
    } catch (e) {
      throw this.unavailable(`data dir ${d} not writable`, e);
    }
    if (network !== undefined) this.readDoc(network);
  }

  async close(): Promise<void> {}
}
