// The asynchronous socket: requests on one socket run one at a time in order (a bounded
// queue), sockets run in parallel, and closing never pulls a descriptor from under a
// request in flight.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Netns } from '../../../lib/netlink/netns.ts';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { MAX_QUEUED, useBlockingRoundTrips } from '../../../lib/netlink/socket.ts';
import { useNamespaces } from './env.ts';

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('netlink socket: ordering, parallelism, close', () => {
  const env = useNamespaces();

  it('answers concurrent requests on one socket each with its own reply', async () => {
    for (let i = 0; i < 8; i++) await rtnl.newLink(env.pod, { name: `d${i}`, info: { kind: 'bridge' } });
    const names = Array.from({ length: 64 }, (_, i) => `d${i % 8}`);
    const links = await Promise.all(names.map((n) => rtnl.getLink(env.pod, n)));
    expect(links.map((l) => l.name)).toEqual(names);
    // Mixed with failures: a rejection stays with its own request.
    const mixed = await Promise.allSettled([
      rtnl.getLink(env.pod, 'd1'),
      rtnl.getLink(env.pod, 'nosuch0'),
      rtnl.listLinks(env.pod),
      rtnl.getLink(env.pod, 'd2'),
    ]);
    expect(mixed.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(mixed[1]).toMatchObject({ reason: { code: 'ENODEV', op: 'getLink' } });
    expect((mixed[2] as PromiseFulfilledResult<rtnl.Link[]>).value.map((l) => l.name).sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'lo']);
  });

  it('runs requests of different sockets side by side', async () => {
    const handles = Array.from({ length: 16 }, () => Netns.open(env.set.path(env.podName)));
    try {
      await Promise.all(handles.map((h, i) => rtnl.newLink(h, { name: `p${i}`, info: { kind: 'bridge' } })));
      expect((await rtnl.listLinks(env.pod)).length).toBe(17);
      await Promise.all(handles.map((h, i) => rtnl.delLink(h, `p${i}`)));
      expect((await rtnl.listLinks(env.pod)).map((l) => l.name)).toEqual(['lo']);
    } finally {
      for (const h of handles) h.close();
    }
  });

  it(`bounds the queue of one socket (${MAX_QUEUED} waiting): more is EAGAIN, the rest still answered`, async () => {
    const all = await Promise.allSettled(Array.from({ length: MAX_QUEUED + 20 }, () => rtnl.getLink(env.pod, 'lo')));
    const rejected = all.filter((r) => r.status === 'rejected');
    expect(rejected.length).toBe(20);
    for (const r of rejected) expect(r.reason).toMatchObject({ name: 'NetlinkError', code: 'EAGAIN' });
    expect(all.filter((r) => r.status === 'fulfilled').length).toBe(MAX_QUEUED);
  });

  it('close() while a request is in flight: that request completes, queued ones fail EBADF, the descriptor is closed after', async () => {
    const before = openFds();
    const ns = Netns.open(env.set.path(env.podName));
    // An idle socket sends at once: `first` is in flight when newLink returns.
    const first = rtnl.newLink(ns, { name: 'late0', info: { kind: 'bridge' } });
    const queued = rtnl.getLink(ns, 'lo').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(openFds()).toBe(before + 1);
    ns.close();
    expect(openFds()).toBe(before + 1); // still in use by `first`
    await first;
    expect(await queued).toMatchObject({ name: 'NetlinkError', code: 'EBADF' });
    expect(openFds()).toBe(before);
    expect((await rtnl.getLink(env.pod, 'late0')).name).toBe('late0');
  });

  it('useBlockingRoundTrips (a plugin process): the same operations and errors, round trips on the calling thread', async () => {
    useBlockingRoundTrips(true);
    try {
      await rtnl.newLink(env.pod, { name: 'b0', info: { kind: 'bridge' } });
      await rtnl.sysctlSet(env.pod, 'net/ipv6/conf/b0/accept_ra', '0');
      expect(await rtnl.sysctlGet(env.pod, 'net/ipv6/conf/b0/accept_ra')).toBe('0');
      expect((await rtnl.getLink(env.pod, 'b0')).kind).toBe('bridge');
      await expect(rtnl.getLink(env.pod, 'nosuch0')).rejects.toMatchObject({ name: 'NetlinkError', code: 'ENODEV', op: 'getLink' });
      await expect(rtnl.newLink(env.pod, { name: 'b0', info: { kind: 'bridge' } })).rejects.toMatchObject({ code: 'EEXIST', op: 'newLink' });
      // Nothing waits on an addon thread: the whole call completes before a timer can fire.
      let fired = false;
      const t = setTimeout(() => {
        fired = true;
      }, 0);
      const t0 = performance.now();
      while (performance.now() - t0 < 2) {
        // let the timer become due
      }
      await rtnl.delLink(env.pod, 'b0');
      expect(fired).toBe(false);
      clearTimeout(t);
    } finally {
      useBlockingRoundTrips(false);
    }
    expect((await rtnl.listLinks(env.pod)).map((l) => l.name)).toEqual(['lo']);
  });
});
