// Pending releases: the node-local journal that lets DEL succeed while the IPAM store
// cannot be used (etcd down or unreachable, its TLS files missing, the local store's
// directory unreadable). DEL records the release here, durably, and exits 0; the address
// stays allocated in the store (nobody else can get it) until the release is completed:
// by any later strand-ipam call on this node that reaches the same store, by the node
// agent (etcd), by the daemon's periodic hook (completePendingReleases), or on demand
// (`strand ipam pending --complete`).
//
// Layout: <dataDir>/.strand-ipam-pending/ (mode 0700; dataDir is the IPAM's node-local
// directory, default /var/lib/cni/networks, beside the local store's and host-local's
// per-network directories: a network name cannot start with "."):
//
//   <sha256(network, containerID, ifname), 32 hex>.json   one pending release (0600)
//   lock                                                  flock(2) of the completers
//
// Each entry is written to a temporary file, fsync'd, renamed into place and the
// directory fsync'd, so a recorded release survives a crash or power loss, and a
// repeated DEL of the same attachment rewrites the same file. Writers take no lock
// (distinct attachments never share a file; the runtime does not run DEL and ADD of one
// attachment at once). Completers (and an ADD finding an entry for its own attachment)
// hold the lock while they release and remove entries, so an ADD never allocates for an
// attachment whose old release is still being completed: flock works across processes
// and between two calls in one process (each opens the lock file itself).
//
// Completing an entry releases the attachment only when the store still records it on
// the entry's node; an attachment that is gone (a GC, a later DEL, `strand ipam
// release`) just has its entry removed. Nothing here ever creates an attachment.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { clip } from '../lib/cni/errors.ts';
import type { Logger } from '../lib/cni/log.ts';
import { Allocator } from './allocator.ts';
import type { IpamConfig } from './config.ts';
import { DEFAULT_ETCD_PREFIX } from './store/etcd-config.ts';
import { lockFile } from './store/local.ts';
import { StoreDamagedError, StoreUnavailableError, type Store } from './store/types.ts';

export const PENDING_DIR = '.strand-ipam-pending';
const LOCK_NAME = 'lock';
const ENTRY_RE = /^[0-9a-f]{32}\.json$/;
/** Temporary files of a writer that died before its rename are removed after this long. */
const STALE_TEMP_MS = 60_000;

/** The journal directory of an IPAM data directory. */
export function pendingDirOf(dataDir: string): string {
  return join(dataDir, PENDING_DIR);
}

/** Which store a pending release belongs to, and how the daemon's hook reaches it again. */
export type StoreRef =
  | { kind: 'local'; dataDir: string }
  /** `etcd`: the config's ipam.etcd section without the password (endpoints, prefix, TLS file paths...). */
  | { kind: 'etcd'; prefix: string; etcd: Record<string, unknown> };

export interface PendingRelease {
  version: 1;
  network: string;
  containerId: string;
  ifname: string;
  /** The node that ran the DEL (the attachment's node). */
  node: string;
  /** ISO time of the DEL that recorded it (the first one, when repeated). */
  since: string;
  /** Why the store could not be used then. */
  reason: string;
  store: StoreRef;
}

function normalPrefix(p: unknown): string {
  let prefix = typeof p === 'string' && p !== '' ? p : DEFAULT_ETCD_PREFIX;
  if (!prefix.startsWith('/')) prefix = `/${prefix}`;
  return prefix.replace(/\/+$/, '');
}

/** The StoreRef of a parsed config; `rawEtcd` is the config's ipam.etcd section as written. */
export function storeRefOf(cfg: IpamConfig, rawEtcd: unknown): StoreRef {
  if (!cfg.etcd) return { kind: 'local', dataDir: resolve(cfg.dataDir) };
  const etcd: Record<string, unknown> = { ...(typeof rawEtcd === 'object' && rawEtcd !== null ? (rawEtcd as Record<string, unknown>) : {}) };
  delete etcd['password'];
  return { kind: 'etcd', prefix: cfg.etcd.prefix, etcd };
}

/**
 * Whether two refs name the same store: a local store by its directory, an etcd store by
 * its key prefix (endpoints change, e.g. when a cluster moves etcd to TLS; prefixes do not).
 */
export function sameStore(a: StoreRef, b: StoreRef): boolean {
  if (a.kind === 'local' && b.kind === 'local') return resolve(a.dataDir) === resolve(b.dataDir);
  if (a.kind === 'etcd' && b.kind === 'etcd') return normalPrefix(a.prefix) === normalPrefix(b.prefix);
  return false;
}

export function storeRefText(r: StoreRef): string {
  return r.kind === 'local' ? `local ${r.dataDir}` : `etcd ${normalPrefix(r.prefix)}`;
}

/** Why `v` is not a pending release entry, or undefined. */
function entryProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'is not an object';
  const o = v as Record<string, unknown>;
  if (o['version'] !== 1) return 'has an unknown version';
  for (const k of ['network', 'containerId', 'ifname', 'node', 'since', 'reason'] as const)
    if (typeof o[k] !== 'string') return `${k} is missing or not a string`;
  const s = o['store'] as Record<string, unknown> | undefined;
  if (typeof s !== 'object' || s === null) return 'store is missing';
  if (s['kind'] === 'local' && typeof s['dataDir'] === 'string') return undefined;
  if (s['kind'] === 'etcd' && typeof s['prefix'] === 'string' && typeof s['etcd'] === 'object' && s['etcd'] !== null) return undefined;
  return 'store is not a local or etcd store';
}

/** A file error of the journal as the store error it is for the caller (code 11, naming the path). */
function journalError(what: string, e: unknown): Error {
  if (e instanceof StoreUnavailableError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  return new StoreUnavailableError('local', `${what}: ${code}`, { cause: e });
}

/** One node's journal directory. Every method is async (the event loop never waits on the disk). */
export class PendingJournal {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  static fileName(network: string, containerId: string, ifname: string): string {
    return `${createHash('sha256').update(`${network}\0${containerId}\0${ifname}`).digest('hex').slice(0, 32)}.json`;
  }

  fileOf(network: string, containerId: string, ifname: string): string {
    return join(this.dir, PendingJournal.fileName(network, containerId, ifname));
  }

  /** Creates the directory (0700) unless it exists; refuses a symbolic link or a non-directory there. */
  private async ensureDir(): Promise<void> {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      await mkdir(resolve(this.dir, '..'), { recursive: true, mode: 0o755 });
      try {
        await mkdir(this.dir, { mode: 0o700 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      st = await lstat(this.dir);
    } catch (e) {
      throw journalError(`cannot create the pending-release journal ${this.dir}`, e);
    }
    if (!st.isDirectory()) throw new StoreDamagedError('local', this.dir, 'the pending-release journal is not a directory (a symbolic link is never followed)');
  }

  private async syncDir(): Promise<void> {
    const dh = await open(this.dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  /**
   * Records a pending release durably (written, fsync'd, renamed, directory fsync'd). A
   * repeated record of the same attachment keeps the first `since`. Throws the file error
   * when it cannot (the caller then fails the DEL: nothing was recorded).
   */
  async record(entry: PendingRelease): Promise<string> {
    await this.ensureDir();
    const file = this.fileOf(entry.network, entry.containerId, entry.ifname);
    const before = await this.read(file).catch(() => undefined);
    const value: PendingRelease = before ? { ...entry, since: before.since } : entry;
    const tmp = join(
      this.dir,
      `.${PendingJournal.fileName(entry.network, entry.containerId, entry.ifname)}.tmp.${process.pid}.${randomBytes(4).toString('hex')}`,
    );
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(value)}\n`);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fh.close();
    try {
      await rename(tmp, file);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await this.syncDir();
    return file;
  }

  /** One entry file, parsed and checked; StoreDamagedError (never quoting it) when it is not an entry. */
  private async read(file: string): Promise<PendingRelease | undefined> {
    let text: string;
    try {
      const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        if (!(await fh.stat()).isFile()) throw new StoreDamagedError('local', file, 'is not a regular file');
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOTDIR: the data directory is not one (the store reports that itself)
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code === 'ELOOP') throw new StoreDamagedError('local', file, 'is a symbolic link (never followed)');
      throw journalError(`cannot read ${file}`, e);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new StoreDamagedError('local', file, `is not valid JSON (${Buffer.byteLength(text)} bytes)`);
    }
    const p = entryProblem(v);
    if (p) throw new StoreDamagedError('local', file, p);
    return v as PendingRelease;
  }

  /** The pending release of one attachment, if any (one open when there is none). */
  get(network: string, containerId: string, ifname: string): Promise<PendingRelease | undefined> {
    return this.read(this.fileOf(network, containerId, ifname));
  }

  /** Every entry; `damaged` lists the files that are not entries (named, never quoted). */
  async list(): Promise<{ entries: PendingRelease[]; damaged: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { entries: [], damaged: [] };
      throw journalError(`cannot list ${this.dir}`, e);
    }
    const entries: PendingRelease[] = [];
    const damaged: string[] = [];
    for (const n of names.filter((x) => ENTRY_RE.test(x)).sort()) {
      try {
        const e = await this.read(join(this.dir, n));
        if (e) entries.push(e);
      } catch (e) {
        if (e instanceof StoreDamagedError) damaged.push(e.message);
        else throw e;
      }
    }
    entries.sort((a, b) => a.since.localeCompare(b.since) || a.network.localeCompare(b.network) || a.containerId.localeCompare(b.containerId));
    return { entries, damaged };
  }

  /** Removes an entry (absent is fine) and makes the removal durable. */
  async remove(network: string, containerId: string, ifname: string): Promise<boolean> {
    const file = this.fileOf(network, containerId, ifname);
    try {
      await unlink(file);
      await this.syncDir();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw journalError(`cannot remove ${file}`, e);
    }
    return true;
  }

  /** Temporary files of writers that died before renaming them. Only under the lock. */
  private async removeStaleTemps(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const n of names) {
      if (!n.startsWith('.') || !n.includes('.tmp.')) continue;
      try {
        if (Date.now() - (await stat(join(this.dir, n))).mtimeMs > STALE_TEMP_MS) await unlink(join(this.dir, n));
      } catch {
        // gone already
      }
    }
  }

  /**
   * Runs `fn` holding the journal's lock (waiting, without blocking the event loop, until
   * `deadline` at the latest: StoreUnavailableError then).
   */
  async locked<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
    await this.ensureDir();
    const fd = await lockFile(join(this.dir, LOCK_NAME), Math.max(0, deadline - Date.now()), constants.O_WRONLY);
    try {
      await this.removeStaleTemps();
      return await fn();
    } finally {
      closeSync(fd);
    }
  }

  /** Whether the directory holds any entry file (one readdir; false when it does not exist). */
  async any(): Promise<boolean> {
    try {
      return (await readdir(this.dir)).some((n) => ENTRY_RE.test(n));
    } catch {
      return false;
    }
  }
}

/** A config good enough to release in `network` (ranges unknown, as in the admin CLI). */
export function releaseConfig(network: string, like?: IpamConfig): IpamConfig {
  if (like && like.network === network) return like;
  return {
    network,
    rangeSets: [],
    routes: [],
    dataDir: '',
    blockSize: { 4: 26, 6: 122 },
    strictAffinity: false,
    blockAffinity: true,
    requested: [],
    gcGraceMs: 0,
    gcKeepLiveNetns: true,
  };
}

export interface CompleteOptions {
  log?: Logger;
  /** Nothing is started after this (Date.now() ms); default: no limit. */
  deadline?: number;
  /** At most this many entries (default: all). */
  limit?: number;
  /** Only this network's entries. */
  network?: string;
  /** The caller's config: its ranges are used for entries of its network. */
  config?: IpamConfig;
  dryRun?: boolean;
}

export interface CompleteReport {
  /** "network containerId/ifname: released ip,ip" or ": nothing held any more". */
  completed: string[];
  /** Entries whose release failed (the store is still unavailable...), kept. */
  failed: string[];
  /** Entries left for later (another store, past the limit or the deadline). */
  left: number;
  /** Files in the journal that are not entries (named). */
  damaged: string[];
}

/**
 * Completes the pending releases recorded for `store` (`ref`), under the journal's lock.
 * Each attachment is released when the store still records it on the entry's node, and
 * its entry removed; one that fails (the store still unavailable) stays, and the rest are
 * left for later. Never throws for one entry's failure; throws when the lock cannot be had
 * before the deadline (StoreUnavailableError).
 */
export async function completePending(journal: PendingJournal, store: Store, ref: StoreRef, opts: CompleteOptions = {}): Promise<CompleteReport> {
  const out: CompleteReport = { completed: [], failed: [], left: 0, damaged: [] };
  if (!(await journal.any())) return out;
  const deadline = opts.deadline ?? Number.POSITIVE_INFINITY;
  await journal.locked(Number.isFinite(deadline) ? deadline : Date.now() + 60_000, async () => {
    const { entries, damaged } = await journal.list();
    out.damaged = damaged;
    const mine = entries.filter((e) => sameStore(e.store, ref) && (opts.network === undefined || e.network === opts.network));
    out.left = entries.length - mine.length;
    let done = 0;
    for (const e of mine) {
      if (done >= (opts.limit ?? Number.POSITIVE_INFINITY) || Date.now() >= deadline) {
        out.left++;
        continue;
      }
      done++;
      const what = `${e.network} ${e.containerId}/${e.ifname}`;
      try {
        const r = await completeOne(store, e, opts);
        out.completed.push(`${what}: ${r}`);
        if (!opts.dryRun) {
          await journal.remove(e.network, e.containerId, e.ifname);
          opts.log?.info(`pending release of ${what} (since ${e.since}) completed: ${r}`);
        }
      } catch (err) {
        out.failed.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
        // the store is unusable again: the others would fail the same way
        if (err instanceof StoreUnavailableError) {
          out.left += mine.length - done;
          break;
        }
      }
    }
  });
  if (out.failed.length) opts.log?.warn(`pending releases not completed yet: ${out.failed.join('; ')}`);
  return out;
}

/** Releases one entry's attachment when the store holds it on the entry's node; says what happened. */
async function completeOne(store: Store, e: PendingRelease, opts: CompleteOptions): Promise<string> {
  const att = await store.getAttachment(e.network, e.containerId, e.ifname);
  if (!att) return 'nothing held any more';
  if (att.value.node !== e.node) return `held on node ${att.value.node}, not ${e.node}: left alone`;
  if (opts.dryRun) return `would release ${att.value.ips.map((x) => x.ip).join(',')}`;
  const al = new Allocator({ store, config: releaseConfig(e.network, opts.config), node: e.node });
  const released = await al.release(e.containerId, e.ifname, { node: e.node });
  return released.length ? `released ${released.join(',')}` : 'nothing held any more';
}

/**
 * The daemon's hook (and `strand ipam pending --complete` without a config): completes
 * the pending releases in the journals of `dataDirs` (the IPAM data directories the
 * daemon served), opening each recorded store from the entry itself (a local store's
 * directory; etcd from the recorded endpoints, prefix and TLS files, with
 * `requestTimeoutMs` per request). Entries of an etcd store that needs a password (never
 * recorded) are left to the plugin calls and the node agent, which have it. Call it
 * periodically (every 10-30 s): it costs one readdir per directory when nothing is
 * pending. Never throws.
 */
export async function completePendingReleases(dataDirs: readonly string[], opts: { log?: Logger; requestTimeoutMs?: number } = {}): Promise<CompleteReport> {
  const total: CompleteReport = { completed: [], failed: [], left: 0, damaged: [] };
  for (const dataDir of [...new Set(dataDirs.map((d) => resolve(d)))]) {
    const journal = new PendingJournal(pendingDirOf(dataDir));
    try {
      if (!(await journal.any())) continue;
      const { entries, damaged } = await journal.list();
      total.damaged.push(...damaged);
      const refs: StoreRef[] = [];
      for (const e of entries) if (!refs.some((r) => sameStore(r, e.store))) refs.push(e.store);
      for (const ref of refs) {
        if (ref.kind === 'etcd' && ref.etcd['username'] !== undefined) {
          total.left += entries.filter((e) => sameStore(e.store, ref)).length;
          continue;
        }
        let store: Store | undefined;
        try {
          store = await openRef(ref, opts.requestTimeoutMs ?? 5000);
          const r = await completePending(journal, store, ref, opts.log ? { log: opts.log } : {});
          total.completed.push(...r.completed);
          total.failed.push(...r.failed);
        } catch (e) {
          total.failed.push(`${storeRefText(ref)}: ${e instanceof Error ? e.message : String(e)}`);
        } finally {
          await store?.close().catch(() => undefined);
        }
      }
    } catch (e) {
      total.failed.push(`${journal.dir}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return total;
}

/** Opens the store a StoreRef names (the daemon hook: no config at hand). */
async function openRef(ref: StoreRef, requestTimeoutMs: number): Promise<Store> {
  if (ref.kind === 'local') {
    const { LocalStore } = await import('./store/local.ts');
    return new LocalStore(ref.dataDir, { lockTimeoutMs: requestTimeoutMs });
  }
  const [{ parseEtcdConfig }, { openEtcdHttpStore }] = await Promise.all([import('./store/etcd-config.ts'), import('./store/etcd.ts')]);
  const cfg = parseEtcdConfig({ ...ref.etcd, requestTimeout: ref.etcd['requestTimeout'] ?? requestTimeoutMs });
  return openEtcdHttpStore(cfg);
}

/** A reason for the journal: the error's message, clipped (store messages never carry secrets). */
export function reasonOf(e: unknown): string {
  return clip(e instanceof Error ? e.message : String(e), 300);
}
