import { describe, expect, it } from 'vitest';
import { formatNeighMessage, NeighFlag, type NeighMessage, NeighState, parseNeighMessage } from '../../../lib/netlink/codec/index.ts';
import { dataOf, indexByName, kernelFixture, WHERE } from './fixtures.ts';

const roundTrip = (m: NeighMessage): NeighMessage => parseNeighMessage(formatNeighMessage(m)).value;
const STATES: Record<string, number> = {
  permanent: NeighState.permanent,
  PERMANENT: NeighState.permanent,
  noarp: NeighState.noarp,
  NOARP: NeighState.noarp,
  REACHABLE: NeighState.reachable,
  STALE: NeighState.stale,
};

describe.each(WHERE)('ndmsg against the %s kernel', (where) => {
  const fx = kernelFixture(where);

  it('IPv4 and IPv6 neighbours as ip -j neigh shows them', () => {
    const idx = indexByName(fx.ip['linksB']);
    const all = dataOf(fx.dumps.neighsB, 'neigh').map((m) => m.neigh);
    // `ip neigh show` hides NOARP entries (the multicast ones IPv6 adds by itself).
    const ours = all.filter((n) => n.state !== NeighState.noarp);
    for (const n of all.filter((x) => !ours.includes(x))) expect(n.dst).toMatch(/^ff02:/);
    const ipNeighs = fx.ip['neighsB'] as Array<{ dst: string; dev: string; lladdr?: string; state: string[] }>;
    expect(ours).toHaveLength(ipNeighs.length);
    for (const n of ipNeighs) {
      const o = ours.find((x) => x.dst === n.dst)!;
      expect(o.family).toBe(n.dst.includes(':') ? 6 : 4);
      expect(o.index).toBe(idx.get(n.dev));
      expect(o.lladdr).toBe(n.lladdr);
      expect(o.state).toBe(n.state.reduce((s, x) => s | (STATES[x] ?? 0), 0));
    }
    for (const o of all) expect(roundTrip(o)).toEqual(o);
  });

  it('bridge FDB entries (vxlan remote VTEPs, self/master, vlan) as bridge -j fdb shows them', () => {
    const idx = indexByName(fx.ip['linksA']);
    const ours = dataOf(fx.dumps.fdbA, 'neigh').map((m) => m.neigh);
    const ipFdb = fx.ip['fdbA'] as Array<{ mac: string; ifname: string; dst?: string; vlan?: number; flags: string[]; master?: string; state?: string }>;
    expect(ours).toHaveLength(ipFdb.length);
    for (const f of ipFdb) {
      const o = ours.find(
        (x) =>
          x.lladdr === f.mac &&
          x.index === idx.get(f.ifname) &&
          x.dst === f.dst &&
          x.vlan === f.vlan &&
          x.master === (f.master === undefined ? undefined : idx.get(f.master)),
      );
      expect(o, JSON.stringify(f)).toBeDefined();
      if (!o) continue;
      expect(o.family).toBe('bridge');
      expect(((o.flags ?? 0) & NeighFlag.self) !== 0).toBe(f.flags.includes('self'));
      if (f.state === 'permanent') expect((o.state ?? 0) & NeighState.permanent).toBe(NeighState.permanent);
    }
    expect(
      ours
        .filter((o) => o.index === idx.get('vx4'))
        .map((o) => o.dst)
        .sort(),
    ).toEqual(['192.0.2.2', '192.0.2.3', '192.0.2.4']);
    for (const o of ours) expect(roundTrip(o)).toEqual(o);
  });
});

describe('ndmsg requests', () => {
  it('encodes an FDB entry with vni and port', () => {
    const m: NeighMessage = {
      family: 'bridge',
      index: 5,
      state: NeighState.permanent,
      flags: NeighFlag.self,
      type: 0,
      lladdr: '00:00:00:00:00:00',
      dst: 'fd00::2',
      vni: 42,
      port: 4789,
    };
    expect(roundTrip(m)).toEqual(m);
  });

  it('refuses an address of the other family', () => {
    expect(() => formatNeighMessage({ family: 4, dst: 'fd00::1' })).toThrow(/does not match/);
  });
});
