// strand-bridge over every spec version: two pods on one bridge in a fresh host
// namespace, result shape per version, pod-to-pod and pod-to-gateway ping, CHECK
// (>= 0.4.0) against prevResult, DEL twice, nothing leaked.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ip, ipJson } from '../../helpers/netns.ts';
import { ADD_VERSIONS, BridgeEnv, bare, ok, ping, REF_BRIDGE, requireBinaries, STRAND_BRIDGE, type Attachment } from './harness.ts';

let env: BridgeEnv | undefined;
beforeAll(() => requireBinaries());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

interface IpLink {
  ifname: string;
  address: string;
  mtu: number;
  master?: string;
  operstate: string;
  linkinfo?: { info_kind?: string };
}

const atLeast = (v: string, min: string): boolean => {
  const p = (s: string): number[] => s.split('.').map(Number);
  const [a, b] = [p(v), p(min)];
  for (let i = 0; i < 3; i++) if (a[i]! !== b[i]!) return a[i]! > b[i]!;
  return true;
};

// The same test runs against the reference plugin (up to 1.0.0, its last version): it
// proves the test itself checks real bridge behaviour.
const cases: Array<[string, string, string]> = [
  ...ADD_VERSIONS.map((v): [string, string, string] => ['strand-bridge', v, STRAND_BRIDGE]),
  ...ADD_VERSIONS.filter((v) => v !== '1.1.0').map((v): [string, string, string] => ['reference bridge', v, REF_BRIDGE]),
];

describe.each(cases)('%s, spec %s', (_label, v, bin) => {
  it('ADD two pods, ping, CHECK, DEL twice, nothing leaked', async () => {
    env = new BridgeEnv();
    const host = env.ns.add('host');
    const pods: Attachment[] = [
      { podNs: env.ns.add('p1'), containerId: `${env.prefix}-c1`, ifName: 'eth0' },
      { podNs: env.ns.add('p2'), containerId: `${env.prefix}-c2`, ifName: 'eth0' },
    ];
    const conf = env.conf(v, { isGateway: true });
    const results: any[] = [];
    for (const p of pods) results.push(ok(await env.run(bin, host, 'ADD', p, conf), `ADD ${p.podNs}`));

    expect(env.ipamReservations()).toHaveLength(2);
    for (const [i, r] of results.entries()) {
      const pod = pods[i]!;
      expect(r.cniVersion).toBe(v);
      expect(r.interfaces).toHaveLength(3);
      expect(r.interfaces[0]).toMatchObject({ name: env.bridge });
      expect(r.interfaces[1].name).toMatch(/^veth[0-9a-f]{8}$/);
      expect(r.interfaces[1].sandbox).toBeUndefined();
      expect(r.interfaces[2]).toMatchObject({ name: 'eth0', sandbox: env.ns.path(pod.podNs) });
      expect(r.ips).toHaveLength(1);
      expect(r.ips[0]).toMatchObject({ address: `10.77.0.${i + 2}/24`, gateway: '10.77.0.1', interface: 2 });
      // ips[].version exists up to 0.4.0 and is gone from 1.0.0
      if (atLeast(v, '1.0.0')) expect(r.ips[0].version).toBeUndefined();
      else expect(r.ips[0].version).toBe('4');

      // The result's MACs are the kernel's.
      const [br] = ipJson<IpLink[]>(['-d', 'link', 'show', env.bridge], { ns: host });
      const [hv] = ipJson<IpLink[]>(['-d', 'link', 'show', r.interfaces[1].name], { ns: host });
      const [cv] = ipJson<IpLink[]>(['-d', 'link', 'show', 'eth0'], { ns: pod.podNs });
      expect(r.interfaces[1].mac).toBe(hv!.address);
      expect(r.interfaces[2].mac).toBe(cv!.address);
      expect(hv!.master).toBe(env.bridge);
      expect(hv!.linkinfo?.info_kind).toBe('veth');
      expect(cv!.operstate).toBe('UP');
      if (i === results.length - 1) expect(r.interfaces[0].mac).toBe(br!.address);
    }

    // bridge carries the gateway; forwarding on
    const brAddrs = ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(['addr', 'show', env.bridge], { ns: host });
    expect(brAddrs[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toContain('10.77.0.1/24');

    expect(ping(pods[0]!.podNs, bare(results[1].ips[0].address))).toBe(true);
    expect(ping(pods[1]!.podNs, bare(results[0].ips[0].address))).toBe(true);
    expect(ping(pods[0]!.podNs, '10.77.0.1')).toBe(true);

    if (atLeast(v, '0.4.0')) {
      for (const [i, p] of pods.entries()) {
        ok(await env.run(bin, host, 'CHECK', p, { ...conf, prevResult: results[i] }), `CHECK ${p.podNs}`);
      }
      // CHECK notices a missing address
      ip(['addr', 'flush', 'dev', 'eth0'], { ns: pods[0]!.podNs });
      const bad = await env.run(bin, host, 'CHECK', pods[0]!, { ...conf, prevResult: results[0] });
      expect(bad.code).toBe(1);
      expect(bad.json?.msg ?? '').not.toBe('');
    }

    for (const p of pods) {
      ok(await env.run(bin, host, 'DEL', p, conf), 'DEL');
      ok(await env.run(bin, host, 'DEL', p, conf), 'second DEL');
    }
    const hostLinks = ipJson<IpLink[]>(['link', 'show'], { ns: host }).map((l) => l.ifname);
    expect(hostLinks.sort()).toEqual([env.bridge, 'lo'].sort());
    for (const p of pods) expect(ipJson<IpLink[]>(['link', 'show'], { ns: p.podNs }).map((l) => l.ifname)).toEqual(['lo']);
    expect(env.ipamReservations()).toEqual([]);
  });
});
