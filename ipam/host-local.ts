// The reference host-local IPAM's reservations on disk, for the switch from host-local to
// strand-ipam without a duplicate address. host-local keeps, per network,
//
//   <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>" (before v0.8: the ID alone)
//   <dataDir>/<network>/last_reserved_ip.<n>  the last address handed out in range set n
//   <dataDir>/<network>/lock                  flock(2) target
//
// strand-ipam adopts them (Allocator.adopt): each becomes an attachment keyed by
// host-local's container ID and ifname on this node, so DEL of that pod releases it, and
// the file is then removed (moved into the store). Every strand-ipam verb but STATUS does
// this for its network when such files exist; `strand ipam import-host-local` does it on
// demand. Files are read without following symbolic links and under host-local's own lock,
// so a host-local process still running on the node never sees a half-moved state.
import { constants, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalIP, tryParseIP } from '../lib/addr/cidr.ts';
import { isValidIfName } from '../lib/addr/ifname.ts';
import { isContainerId } from '../lib/cni/formats.ts';
import type { Adoptee } from './allocator.ts';
import { lockFile, openNoFollow, readAndClose } from './store/local.ts';
import { StoreDamagedError, StoreUnavailableError } from './store/types.ts';
import { closeSync } from 'node:fs';

const HOST_LOCAL_LOCK = 'lock';
const LAST_RESERVED_PREFIX = 'last_reserved_ip.';
/** The interface name taken for a reservation file written before host-local recorded one. */
const LEGACY_IFNAME = 'eth0';

const MAX_FILE_BYTES = 4096;

export interface HostLocalState {
  dir: string;
  /** Reservations grouped by container and interface, in file-name order. */
  entries: Adoptee[];
  /** Canonical IP -> its file name. */
  files: Map<string, string>;
  /** The valid addresses in last_reserved_ip.* files. */
  cursors: string[];
  /** Files that look like reservations but cannot be used, and why (never their contents). */
  skipped: string[];
}

/** The names in `dir` that are host-local reservation files (named by an IP address). */
function reservationNames(dir: string): string[] | undefined {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    // unreadable (EACCES, EIO): the node-local state cannot be used now (code 11; DEL records the release)
    throw new StoreUnavailableError('local', `cannot list ${dir}: ${code ?? String(e)}`, { cause: e });
  }
  return names.filter((n) => tryParseIP(n) !== undefined).sort();
}

function readSmall(file: string): string | { skip: string } {
  let fd: number | undefined;
  try {
    fd = openNoFollow(file, 'the host-local file');
  } catch (e) {
    if (e instanceof StoreDamagedError) return { skip: e.problem };
    return { skip: `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  if (fd === undefined) return { skip: 'disappeared' };
  const text = readAndClose(fd);
  if (Buffer.byteLength(text) > MAX_FILE_BYTES) return { skip: 'is too large for a reservation file' };
  return text;
}

/**
 * host-local's reservations in `dir` (its `<dataDir>/<network>`), or undefined when it has
 * none: no directory, or no file named by an address (a cheap readdir on every call).
 */
export function readHostLocal(dir: string): HostLocalState | undefined {
  const names = reservationNames(dir);
  if (!names?.length) return undefined;
  const state: HostLocalState = { dir, entries: [], files: new Map(), cursors: [], skipped: [] };
  const byKey = new Map<string, Adoptee>();
  for (const name of names) {
    const text = readSmall(join(dir, name));
    if (typeof text !== 'string') {
      state.skipped.push(`${join(dir, name)}: ${text.skip}`);
      continue;
    }
    const [rawId = '', rawIf] = text.split(/\r?\n/);
    const containerId = rawId.trim();
    const ifname = rawIf === undefined || rawIf.trim() === '' ? LEGACY_IFNAME : rawIf.trim();
    if (!isContainerId(containerId) || !isValidIfName(ifname)) {
      state.skipped.push(`${join(dir, name)}: does not hold a container ID and interface name`);
      continue;
    }
    const ip = canonicalIP(name);
    state.files.set(ip, name);
    const key = `${containerId}/${ifname}`;
    let e = byKey.get(key);
    if (!e) {
      e = { containerId, ifname, ips: [] };
      byKey.set(key, e);
      state.entries.push(e);
    }
    e.ips.push(ip);
  }
  let all: string[] = [];
  try {
    all = readdirSync(dir);
  } catch {
    // gone meanwhile: no cursors
  }
  for (const name of all.filter((n) => n.startsWith(LAST_RESERVED_PREFIX)).sort()) {
    const text = readSmall(join(dir, name));
    if (typeof text === 'string' && tryParseIP(text.trim())) state.cursors.push(canonicalIP(text.trim()));
  }
  return state;
}

/**
 * Removes the reservation files of `ips` (moved into the store), and host-local's
 * cursors once no reservation file is left. Missing files are fine.
 */
export function removeHostLocal(state: HostLocalState, ips: readonly string[]): void {
  for (const ip of ips) {
    const name = state.files.get(ip);
    if (!name) continue;
    try {
      unlinkSync(join(state.dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    state.files.delete(ip);
  }
  if ((reservationNames(state.dir) ?? []).length > 0) return;
  for (const name of readdirSync(state.dir).filter((n) => n.startsWith(LAST_RESERVED_PREFIX))) {
    try {
      unlinkSync(join(state.dir, name));
    } catch {
      // best effort: a cursor alone is never read once the reservations are gone
    }
  }
}

/** The files of (containerId, ifname) in `state`: DEL removes them even when they could not be adopted. */
export function hostLocalFilesOf(state: HostLocalState, containerId: string, ifname: string): string[] {
  return state.entries.filter((e) => e.containerId === containerId && e.ifname === ifname).flatMap((e) => e.ips);
}

/** Runs `fn` holding host-local's flock on `<dir>/lock` (created without following a link). */
export async function withHostLocalLock<T>(dir: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const fd = await lockFile(join(dir, HOST_LOCAL_LOCK), timeoutMs, constants.O_RDONLY);
  try {
    return await fn();
  } finally {
    closeSync(fd);
  }
}
