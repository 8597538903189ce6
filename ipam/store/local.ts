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
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK, native, isNativeError } from '../../lib/native/index.ts';
import { applyOps, docAffinities, docBlocks, emptyDoc, opsNetwork, type NetworkDoc } from './doc.ts';
import type { Affinity, Attachment, Block, Store, Versioned, WriteOp } from './types.ts';
import { attachmentKey, StoreUnavailableError } from './types.ts';

export const DOC_FILE = 'strand-ipam.json';
export const LOCK_FILE = 'strand-ipam.lock';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface LocalStoreOptions {
  /** How long to wait for another process's lock before giving up (default 60 s). */
  lockTimeoutMs?: number;
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

export class LocalStore implements Store {
  readonly kind = 'local' as const;
  readonly dataDir: string;
  private readonly lockTimeoutMs: number;
  /** Networks whose lock this process holds, with the document as of the lock. */
  private readonly held = new Map<string, NetworkDoc>();

  constructor(dataDir: string, opts: LocalStoreOptions = {}) {
    this.dataDir = dataDir;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
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

  private readDoc(network: string): NetworkDoc {
    const held = this.held.get(network);
    if (held) return held;
    const file = join(this.dir(network), DOC_FILE);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyDoc(network);
      throw this.unavailable(`cannot read ${file}`, e);
    }
    const doc = JSON.parse(text) as NetworkDoc;
    if (doc.format !== 'strand-ipam/v1') throw new StoreUnavailableError('local', `${file}: unknown format ${String(doc.format)}`);
    return doc;
  }

  private writeDoc(doc: NetworkDoc): void {
    const d = this.ensureDir(doc.network);
    const file = join(d, DOC_FILE);
    const tmp = `${file}.tmp.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
    try {
      writeFileSync(tmp, JSON.stringify(doc), { mode: 0o644 });
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
    return names.filter((n) => existsSync(join(this.dataDir, n, DOC_FILE))).sort();
  }

  private docs(network?: string): NetworkDoc[] {
    return (network === undefined ? this.networks() : [network]).map((n) => this.readDoc(n));
  }

  /** Takes the network's flock (polling with LOCK_NB so in-process contenders cannot deadlock). */
  private async lock(network: string): Promise<number> {
    const path = join(this.ensureDir(network), LOCK_FILE);
    let fd: number;
    try {
      fd = openSync(path, 'a', 0o600);
    } catch (e) {
      throw this.unavailable(`cannot open ${path}`, e);
    }
    const deadline = Date.now() + this.lockTimeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
      try {
        native().flock(fd, LOCK.EX | LOCK.NB);
        return fd;
      } catch (e) {
        if (!isNativeError(e, 'EWOULDBLOCK') && !isNativeError(e, 'EAGAIN')) {
          closeSync(fd);
          throw this.unavailable(`cannot lock ${path}`, e);
        }
      }
      if (Date.now() > deadline) {
        closeSync(fd);
        throw new StoreUnavailableError('local', `timed out waiting for the lock on ${path}`);
      }
      await sleep(wait);
    }
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
    if (this.held.has(network)) return fn();
    const fd = await this.lock(network);
    try {
      this.removeStaleTemps(network);
      this.held.set(network, this.readDoc(network));
      return await fn();
    } finally {
      this.held.delete(network);
      closeSync(fd); // releases the flock
    }
  }

  async getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined> {
    const a = this.readDoc(network).attachments[attachmentKey(containerId, ifname)];
    return a && structuredClone(a);
  }

  async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
    return this.docs(network).flatMap((d) => Object.values(d.attachments).map((a) => structuredClone(a)));
  }

  async listAffinities(network?: string): Promise<Affinity[]> {
    return this.docs(network).flatMap(docAffinities);
  }

  async getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>> {
    return docBlocks(this.readDoc(network), cidrs);
  }

  async listBlocks(network?: string): Promise<Array<Versioned<Block>>> {
    return this.docs(network).flatMap((d) => Object.values(d.blocks).map((b) => structuredClone(b)));
  }

  async commit(ops: readonly WriteOp[]): Promise<number | undefined> {
    if (ops.length === 0) return undefined;
    const network = opsNetwork(ops);
    const held = this.held.get(network);
    if (!held) return this.exclusive(network, () => this.commit(ops));
    const next = structuredClone(held);
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
