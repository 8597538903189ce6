// Typed connection-tracking operations over ctnetlink (NETLINK_NETFILTER) inside one
// network namespace: list the table, delete the entries a filter selects. What
// `conntrack -L` and `conntrack -D` do, without running a tool.
//
//   deleteConntrack(host, 4, (e) => e.orig.proto === IpProto.udp && e.orig.dport === 8080)
import { type CtEntry, formatCtDelete, formatCtDump, NETLINK_NETFILTER, parseCtEntry } from './codec/index.ts';
import { isNetlinkError } from './errors.ts';
import type { Netns } from './netns.ts';
import { NetlinkSocket } from './socket.ts';

export type { CtEntry, CtTuple } from './codec/index.ts';
export { IpProto } from './codec/index.ts';

function withSocket<T>(ns: Netns, fn: (s: NetlinkSocket) => T): T {
  const s = NetlinkSocket.open(ns.path, NETLINK_NETFILTER);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

function dump(s: NetlinkSocket, version: 4 | 6): CtEntry[] {
  const op = 'listConntrack';
  const { messages } = s.exchange((seq) => formatCtDump(version, seq), op);
  const out: CtEntry[] = [];
  for (const m of messages) {
    const e = parseCtEntry(m);
    if (e && e.version === version) out.push(e);
  }
  return out;
}

/** Every entry of one family's table. */
export function listConntrack(ns: Netns, version: 4 | 6): CtEntry[] {
  return withSocket(ns, (s) => dump(s, version));
}

/**
 * Deletes the entries of one family that `match` selects; returns how many went. An
 * entry that expired meanwhile (ENOENT) is not an error.
 */
export function deleteConntrack(ns: Netns, version: 4 | 6, match: (e: CtEntry) => boolean): number {
  return withSocket(ns, (s) => {
    let n = 0;
    for (const e of dump(s, version)) {
      if (!match(e)) continue;
      try {
        s.exchange((seq) => formatCtDelete(e, seq), 'deleteConntrack');
        n++;
      } catch (err) {
        if (!isNetlinkError(err, 'ENOENT')) throw err;
      }
    }
    return n;
  });
}
