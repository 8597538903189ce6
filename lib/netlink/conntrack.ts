// Typed connection-tracking operations over ctnetlink (NETLINK_NETFILTER) inside one
// network namespace: list the table, delete the entries a filter selects. What
// `conntrack -L` and `conntrack -D` do, without running a tool.
//
//   await deleteConntrack(host, 4, (e) => e.orig.proto === IpProto.udp && e.orig.dport === 8080)
import { type CtEntry, formatCtDelete, formatCtDump, NETLINK_NETFILTER, parseCtEntry } from './codec/index.ts';
import { isNetlinkError } from './errors.ts';
import type { Netns } from './netns.ts';
import { NetlinkSocket } from './socket.ts';

export type { CtEntry } from './codec/index.ts';
export { IpProto } from './codec/index.ts';

async function withSocket<T>(ns: Netns, fn: (s: NetlinkSocket) => Promise<T>): Promise<T> {
  const s = NetlinkSocket.open(ns.path, NETLINK_NETFILTER);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

async function dump(s: NetlinkSocket, version: 4 | 6): Promise<CtEntry[]> {
  const op = 'listConntrack';
  const { messages } = await s.exchange((seq) => formatCtDump(version, seq), op);
  const out: CtEntry[] = [];
  for (const m of messages) {
    const e = parseCtEntry(m);
    if (e && e.version === version) out.push(e);
  }
  return out;
}

/**
 * Deletes the entries of one family that `match` selects; returns how many went. An
 * entry that expired meanwhile (ENOENT) is not an error.
 */
export function deleteConntrack(ns: Netns, version: 4 | 6, match: (e: CtEntry) => boolean): Promise<number> {
  return withSocket(ns, async (s) => {
    let n = 0;
    for (const e of await dump(s, version)) {
      if (!match(e)) continue;
      try {
        await s.exchange((seq) => formatCtDelete(e, seq), 'deleteConntrack');
        n++;
      } catch (err) {
        if (!isNetlinkError(err, 'ENOENT')) throw err;
      }
    }
    return n;
  });
}
