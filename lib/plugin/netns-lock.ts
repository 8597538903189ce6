// A lock per network namespace, for read-modify-write of state the kernel keeps per
// namespace (netfilter rules shared by every pod of a node): flock(2) on the namespace's
// own nsfs file. Every opener of one namespace reaches the same inode, whatever path it
// used, so plugin processes and requests inside one daemon all exclude each other, and
// no lock file has to exist anywhere. Taken by polling with LOCK_NB: the event loop
// never blocks and in-process contenders cannot deadlock.
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CniError, Code } from '../cni/errors.ts';
import { isNativeError, LOCK, native } from '../native/index.ts';
import type { Netns } from '../netlink/netns.ts';

const NETNS_LOCK_TIMEOUT_MS = 60_000;

/**
 * Runs `fn` holding the exclusive lock of `ns`. Waiting longer than `timeoutMs` is
 * CniError 11 (try again later).
 */
export async function withNetnsLock<T>(ns: Netns, what: string, fn: () => Promise<T>, timeoutMs = NETNS_LOCK_TIMEOUT_MS): Promise<T> {
  const path = ns.path ?? '/proc/self/ns/net';
  const fd = openSync(path, 'r');
  try {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
      try {
        native().flock(fd, LOCK.EX | LOCK.NB);
        break;
      } catch (e) {
        if (!isNativeError(e, 'EWOULDBLOCK') && !isNativeError(e, 'EAGAIN')) throw e;
      }
      if (Date.now() > deadline) throw new CniError(Code.TryAgainLater, `timed out waiting for the ${what} lock`, `flock on ${path} held for ${timeoutMs} ms`);
      await sleep(wait);
    }
    return await fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}
