// strand-portmap against the reference portmap (Debian's containernetworking-plugins
// 1.1.1, iptables backend only) and on its own (nftables backend, CHECK, DEL, GC,
// conntrack, rollback). Every node is a fresh "host" namespace with a client namespace
// on an uplink and pods on a bridge made by the reference bridge (harness.ts); the
// plugins run inside it as a runtime would run them there.
//
// Differences from the reference that the tests allow, each documented in the README:
// Debian's 1.1.1 CHECK looks for a pod's rules in ip6tables too, even for an IPv4-only
// pod, and for IPv4 rules in ip6tables (containernetworking/plugins#819, fixed
// upstream): its CHECK of strand's rules is expected to fail at the IPv6 table only.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { probe } from '../../helpers/hostport.ts';
import { binDir, runPlugin } from '../../helpers/run-plugin.ts';
import { cleanResult } from '../bridge/diff.ts';
import { ip } from '../../helpers/netns.ts';
import {
  expectAllReached,
  type Mapping,
  natTable,
  nftRuleset,
  type Node,
  nsRun,
  ok,
  podChains,
  PortmapEnv,
  reachability,
  REF_PORTMAP,
  STRAND_PORTMAP,
  sysctl,
  UPLINK4,
} from './harness.ts';

const STRAND_MACVLAN = join(binDir, 'strand-macvlan');
const TCP = 34080;
const UDP = 34053;
const MAPPINGS: Mapping[] = [
  { hostPort: TCP, containerPort: TCP, protocol: 'tcp' },
  { hostPort: UDP, containerPort: UDP, protocol: 'udp' },
];

let env: PortmapEnv | undefined;

beforeAll(() => {
  for (const f of [STRAND_PORTMAP, REF_PORTMAP]) if (!existsSync(f)) throw new Error(`missing ${f}: run scripts/build.sh / scripts/setup.sh`);
});

afterEach(() => {
  env?.cleanup();
  env = undefined;
});

function setup(): PortmapEnv {
  env = new PortmapEnv();
  return env;
}

/** Both families' nat tables and the route_localnet of the bridge: what the rule differential compares. */
function ruleState(e: PortmapEnv, n: Node): { v4: string[]; v6: string[]; routeLocalnet: string } {
  return { v4: natTable(n.host, 4), v6: natTable(n.host, 6), routeLocalnet: sysctl(n.host, `net/ipv4/conf/${e.e.bridge}/route_localnet`) };
}

describe('strand-portmap against the reference portmap (iptables backend)', () => {
  it('the same nat rules in the same order, the same hostPort reachability (client, node on each address and localhost, hairpin, other pod), TCP and UDP', async () => {
    const e = setup();
    const sides = new Map<string, { node: Node; state: ReturnType<typeof ruleState>; reach: Record<string, unknown> }>();
    for (const [tag, bin] of [
      ['r', REF_PORTMAP],
      ['s', STRAND_PORTMAP],
    ] as const) {
      const n = await e.node(tag, 2);
      const pod = n.pods[0]!;
      // the same network name and container ID on both sides: the chain names are equal too
      const r = await e.run(bin, n, 'ADD', { ...pod, containerId: 'diff-c0' }, e.portmapConf(pod, MAPPINGS));
      expect(cleanResult(ok(r, `${tag} portmap ADD`)), 'prevResult passed on').toEqual(cleanResult(pod.result));
      await e.serve(n, TCP);
      await e.serve(n, UDP);
      const reach = { tcp: await reachability(n, 'tcp', TCP), udp: await reachability(n, 'udp', UDP) };
      sides.set(tag, { node: n, state: ruleState(e, n), reach });
    }
    const ref = sides.get('r')!;
    const ours = sides.get('s')!;
    expect(ours.state).toEqual(ref.state);
    expect(ours.state.v4.some((l) => l.includes('--to-destination 10.78.0.2:34080'))).toBe(true);
    expect(ours.state.routeLocalnet).toBe('1');
    expect(ours.reach).toEqual(ref.reach);
    expectAllReached(ours.reach['tcp'] as never, 'p0');
    expectAllReached(ours.reach['udp'] as never, 'p0');
  });

  it('options the reference 1.1.1 knows give the same rules: snat off, markMasqBit, externalSetMarkChain, conditionsV4/V6, hostIP of both families and unspecified, SCTP, more than 15 ports', async () => {
    const e = setup();
    const many: Mapping[] = Array.from({ length: 17 }, (_, i) => ({ hostPort: 34100 + i, containerPort: 80 + i, protocol: 'tcp' }));
    const cases: Array<[string, Record<string, unknown>, Mapping[]]> = [
      ['snat off', { snat: false }, MAPPINGS],
      ['markMasqBit 0', { markMasqBit: 0 }, MAPPINGS],
      ['markMasqBit 31', { markMasqBit: 31 }, MAPPINGS],
      ['externalSetMarkChain', { externalSetMarkChain: 'KUBE-MARK-MASQ' }, MAPPINGS],
      ['conditions', { conditionsV4: ['-s', '192.168.0.0/16', '!', '-i', 'lo'], conditionsV6: ['-s', 'fd00::/8'] }, MAPPINGS],
      [
        'hostIP',
        {},
        [
          { hostPort: 34081, containerPort: 81, protocol: 'tcp', hostIP: UPLINK4 },
          { hostPort: 34082, containerPort: 82, protocol: 'udp', hostIP: 'fd00:192::1' },
          { hostPort: 34083, containerPort: 83, protocol: 'tcp', hostIP: '0.0.0.0' },
          { hostPort: 34084, containerPort: 84, protocol: 'tcp', hostIP: '::' },
        ],
      ],
      ['sctp', {}, [{ hostPort: 34085, containerPort: 85, protocol: 'sctp' }]],
      ['17 ports', {}, many],
    ];
    const [rn, sn] = [await e.node('r', 1), await e.node('s', 1)];
    for (const n of [rn, sn]) {
      // externalSetMarkChain names a chain of someone else's (kube-proxy's): it exists
      for (const t of ['iptables', 'ip6tables']) nsRun(n.host, t, ['-t', 'nat', '-N', 'KUBE-MARK-MASQ']);
    }
    for (const [what, opts, maps] of cases) {
      const states = [];
      for (const [n, bin] of [
        [rn, REF_PORTMAP],
        [sn, STRAND_PORTMAP],
      ] as const) {
        // the same container ID on both sides: equal chain names and comments
        const pod = { ...n.pods[0]!, containerId: 'diff-c0' };
        const conf = e.portmapConf(pod, maps, opts);
        ok(await e.run(bin, n, 'ADD', pod, conf), `${what}: ${bin} ADD`);
        states.push(ruleState(e, n));
        ok(await e.run(bin, n, 'DEL', pod, conf), `${what}: ${bin} DEL`);
        expect(podChains(n.host), `${what}: ${bin} DEL`).toEqual([]);
      }
      expect(states[1], what).toEqual(states[0]);
    }
  });

  it("each removes the rules the other made; DEL twice is fine; each CHECKs the other's rules (the reference's IPv4 part: #819)", async () => {
    const e = setup();
    const n = await e.node('x', 1);
    const pod = n.pods[0]!;
    const v4only = { ...pod.result, ips: pod.result.ips.filter((i: { address: string }) => !i.address.includes(':')) };
    for (const [add, del] of [
      [REF_PORTMAP, STRAND_PORTMAP],
      [STRAND_PORTMAP, REF_PORTMAP],
    ] as const) {
      const conf = { ...e.portmapConf(pod, MAPPINGS), prevResult: v4only };
      ok(await e.run(add, n, 'ADD', pod, conf), `${add} ADD`);
      expect(podChains(n.host)).not.toEqual([]);
      ok(await e.run(STRAND_PORTMAP, n, 'CHECK', pod, conf), 'strand CHECK');
      // Debian's 1.1.1 checks ip4tables, then ip6tables even for an IPv4-only pod (#819):
      // failing on the IPv6 table shows its IPv4 check passed
      const refCheck = await e.run(REF_PORTMAP, n, 'CHECK', pod, conf);
      expect(refCheck.json?.msg ?? '', refCheck.stdout).toMatch(/^could not check ipv6 dnat: chain CNI-DN-\w+ not found/);
      ok(await e.run(del, n, 'DEL', pod, conf), `${del} DEL`);
      expect(podChains(n.host), `${add} ADD, ${del} DEL`).toEqual([]);
      ok(await e.run(del, n, 'DEL', pod, conf), `${del} DEL again`);
    }
  });

  it('removes stale UDP conntrack entries of the mapped ports: a client that hit the port before the pod existed reaches the pod (as the reference)', async () => {
    const e = setup();
    for (const [tag, bin] of [
      ['r', REF_PORTMAP],
      ['s', STRAND_PORTMAP],
    ] as const) {
      const n = await e.node(tag, 2);
      const [p0, p1] = n.pods as [(typeof n.pods)[0], (typeof n.pods)[0]];
      // a first pod's mapping makes the nat table (and connection tracking) active
      ok(await e.run(bin, n, 'ADD', p0, e.portmapConf(p0, [MAPPINGS[0]!])), `${tag} ADD p0`);
      await e.serve(n, UDP);
      const sport = 34999;
      expect((await probe(n.client, 'udp', UPLINK4, UDP, sport)).ok, 'no mapping yet').toBe(false);
      const tracked = (): string[] => readConntrack(n.host).filter((l) => / udp /.test(` ${l} `) && l.includes(`dport=${UDP}`) && l.includes(`sport=${sport}`));
      expect(tracked(), `${tag}: the client's flow is tracked`).not.toEqual([]);
      ok(await e.run(bin, n, 'ADD', p1, e.portmapConf(p1, [MAPPINGS[1]!])), `${tag} ADD p1`);
      expect(
        tracked().filter((l) => !l.includes(p1.ip4)),
        `${tag}: the stale entry is gone`,
      ).toEqual([]);
      const r = await probe(n.client, 'udp', UPLINK4, UDP, sport);
      expect(r, tag).toMatchObject({ ok: true, name: 'p1' });
    }
  });
});

/** The host namespace's connection table (/proc/net/nf_conntrack: an oracle independent of strand's ctnetlink code). */
function readConntrack(ns: string): string[] {
  return nsRun(ns, 'cat', ['/proc/net/nf_conntrack']).split('\n').filter(Boolean);
}

describe('strand-portmap on its own', () => {
  it('nftables backend: the same reachability, the reference layout (tables ip/ip6 cni_hostport), CHECK, DEL twice leaves the tables empty of pod rules', async () => {
    const e = setup();
    const n = await e.node('n', 2);
    const pod = n.pods[0]!;
    const conf = e.portmapConf(pod, MAPPINGS, { backend: 'nftables' });
    ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf), 'ADD');
    expect(podChains(n.host), 'no iptables rules').toEqual([]);
    const rs = nftRuleset(n.host);
    expect(rs).toContain('table ip cni_hostport');
    expect(rs).toContain('table ip6 cni_hostport');
    expect(rs).toContain(`tcp dport ${TCP} dnat to ${pod.ip4}:${TCP} comment "${pod.containerId}"`);
    expect(rs).toContain(`udp dport ${UDP} dnat to [${pod.ip6}]:${UDP} comment "${pod.containerId}"`);
    expect(rs).toContain(`ip saddr 127.0.0.1 ip daddr ${pod.ip4} masquerade comment "${pod.containerId}"`);
    await e.serve(n, TCP);
    await e.serve(n, UDP);
    expectAllReached(await reachability(n, 'tcp', TCP), 'p0');
    expectAllReached(await reachability(n, 'udp', UDP), 'p0');
    ok(await e.run(STRAND_PORTMAP, n, 'CHECK', pod, conf), 'CHECK');
    for (let i = 0; i < 2; i++) ok(await e.run(STRAND_PORTMAP, n, 'DEL', pod, conf), `DEL ${i}`);
    expect(nftRuleset(n.host)).not.toContain(`comment "${pod.containerId}"`);
    expect((await probe(n.client, 'tcp', UPLINK4, TCP)).ok).toBe(false);
  });

  it('a repeated ADD replaces the pod rules (no duplicates), with either backend', async () => {
    const e = setup();
    const n = await e.node('a', 1);
    const pod = n.pods[0]!;
    for (const backend of ['iptables', 'nftables']) {
      const conf = e.portmapConf(pod, MAPPINGS, { backend });
      ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf));
      const once = [natTable(n.host, 4), natTable(n.host, 6), nftRuleset(n.host)];
      ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf));
      expect([natTable(n.host, 4), natTable(n.host, 6), nftRuleset(n.host)], backend).toEqual(once);
      ok(await e.run(STRAND_PORTMAP, n, 'DEL', pod, conf));
    }
  });

  it('CHECK fails (code 105) when a rule is gone, and needs prevResult', async () => {
    const e = setup();
    const n = await e.node('c', 1);
    const pod = n.pods[0]!;
    for (const backend of ['iptables', 'nftables']) {
      const conf = e.portmapConf(pod, MAPPINGS, { backend });
      ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf));
      ok(await e.run(STRAND_PORTMAP, n, 'CHECK', pod, conf));
      if (backend === 'iptables') {
        const chain = natTable(n.host, 6)
          .find((l) => l.startsWith(':CNI-DN-'))!
          .split(' ')[0]!
          .slice(1);
        nsRun(n.host, 'ip6tables', ['-t', 'nat', '-F', chain]);
      } else nsRun(n.host, 'nft', ['flush', 'chain', 'ip', 'cni_hostport', 'masquerading']);
      const r = await e.run(STRAND_PORTMAP, n, 'CHECK', pod, conf);
      expect(r.code, backend).toBe(1);
      expect(r.json.code, r.stdout).toBe(105);
      const { prevResult: _, ...noPrev } = conf;
      expect((await e.run(STRAND_PORTMAP, n, 'CHECK', pod, noPrev)).json.code).toBe(7);
      ok(await e.run(STRAND_PORTMAP, n, 'DEL', pod, conf));
    }
    expect(podChains(n.host)).toEqual([]);
  });

  it('DEL after the pod namespace is gone removes the rules of both backends', async () => {
    const e = setup();
    const n = await e.node('d', 2);
    const [p0, p1] = n.pods as [(typeof n.pods)[0], (typeof n.pods)[0]];
    const c0 = e.portmapConf(p0, MAPPINGS);
    const c1 = e.portmapConf(p1, MAPPINGS, { backend: 'nftables' });
    ok(await e.run(STRAND_PORTMAP, n, 'ADD', p0, c0));
    ok(await e.run(STRAND_PORTMAP, n, 'ADD', p1, c1));
    for (const p of [p0, p1]) ip(['netns', 'del', p.podNs]);
    // either config removes either backend's rules
    ok(await e.run(STRAND_PORTMAP, n, 'DEL', p0, c1));
    ok(await e.run(STRAND_PORTMAP, n, 'DEL', p1, c0));
    expect(podChains(n.host)).toEqual([]);
    for (const p of [p0, p1]) expect(nftRuleset(n.host)).not.toContain(`comment "${p.containerId}"`);
  });

  it('GC (1.1.0) removes the rules of attachments that are not valid any more, keeps the valid ones and other networks rules', async () => {
    const e = setup();
    const n = await e.node('g', 3);
    const [p0, p1, p2] = n.pods as [(typeof n.pods)[0], (typeof n.pods)[0], (typeof n.pods)[0]];
    for (const backend of ['iptables', 'nftables']) {
      const conf = (p: typeof p0, port: number, name = e.netName) => ({
        ...e.portmapConf(p, [{ hostPort: port, containerPort: 80, protocol: 'tcp' }], { backend }, '1.1.0'),
        name,
      });
      ok(await e.run(STRAND_PORTMAP, n, 'ADD', p0, conf(p0, 34201)));
      ok(await e.run(STRAND_PORTMAP, n, 'ADD', p1, conf(p1, 34202)));
      // another network's pod: its iptables rules name that network (nftables rules name only the container)
      if (backend === 'iptables') ok(await e.run(STRAND_PORTMAP, n, 'ADD', p2, conf(p2, 34203, `${e.prefix}-other`)));
      const gcConf: Record<string, unknown> = { ...conf(p0, 0), 'cni.dev/valid-attachments': [{ containerID: p0.containerId, ifname: 'eth0' }] };
      delete gcConf['runtimeConfig'];
      delete gcConf['prevResult'];
      ok(await e.run(STRAND_PORTMAP, n, 'GC', p0, gcConf), `${backend} GC`);
      const rules = backend === 'iptables' ? [...natTable(n.host, 4), ...natTable(n.host, 6)].join('\n') : nftRuleset(n.host);
      expect(rules, backend).toContain('34201');
      expect(rules, backend).not.toContain('34202');
      if (backend === 'iptables') expect(rules).toContain('34203');
      ok(await e.run(STRAND_PORTMAP, n, 'DEL', p0, conf(p0, 34201)));
      ok(await e.run(STRAND_PORTMAP, n, 'DEL', p2, conf(p2, 34203, `${e.prefix}-other`)));
      expect(podChains(n.host)).toEqual([]);
    }
  });

  it('a failing ADD leaves no rule: IPv4 rules are in place when the IPv6 ones fail, and go again', async () => {
    const e = setup();
    const n = await e.node('f', 1);
    const pod = n.pods[0]!;
    const before = [natTable(n.host, 4), natTable(n.host, 6)];
    // a condition ip6tables does not know: the IPv6 restore fails after the IPv4 one succeeded
    const conf = e.portmapConf(pod, MAPPINGS, { conditionsV6: ['-m', 'nosuchmatch'] });
    const r = await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf);
    expect(r.code, r.stdout).toBe(1);
    expect(r.json.msg).toBeTruthy();
    expect([natTable(n.host, 4), natTable(n.host, 6)]).toEqual(before);
  });

  it('chained after strand-macvlan: the rules point at the macvlan address (interface index of prevResult), CHECK, DEL', async () => {
    const e = setup();
    const n = await e.node('m', 0);
    const pod = { podNs: e.e.ns.add('mp0'), containerId: `${e.prefix}-mv0`, ifName: 'eth0' };
    const mv = {
      cniVersion: '1.0.0',
      name: e.netName,
      master: `${e.prefix}mu`,
      mode: 'bridge',
      ipam: { type: 'host-local', dataDir: `${e.e.dataDir}/mv`, ranges: [[{ subnet: '192.0.2.0/24', rangeStart: '192.0.2.100', rangeEnd: '192.0.2.110' }]] },
    };
    const result = ok(await e.run(STRAND_MACVLAN, n, 'ADD', pod, mv), 'macvlan ADD');
    const conf = { cniVersion: '1.0.0', name: e.netName, type: 'portmap', runtimeConfig: { portMappings: MAPPINGS }, prevResult: result };
    expect(ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf), 'portmap ADD')).toEqual(result);
    expect(natTable(n.host, 4)).toContain(
      `-A ${natTable(n.host, 4)
        .find((l) => l.startsWith(':CNI-DN-'))!
        .slice(1, 29)} -p tcp -m tcp --dport ${TCP} -j DNAT --to-destination 192.0.2.100:${TCP}`,
    );
    ok(await e.run(STRAND_PORTMAP, n, 'CHECK', pod, conf), 'CHECK');
    ok(await e.run(STRAND_PORTMAP, n, 'DEL', pod, conf), 'portmap DEL');
    ok(await e.run(STRAND_MACVLAN, n, 'DEL', pod, mv), 'macvlan DEL');
    expect(podChains(n.host)).toEqual([]);
  });

  it('concurrent ADDs on a fresh node make the shared chains and their jumps once; concurrent DELs leave only them', async () => {
    const e = setup();
    const n = await e.node('k', 6);
    const conf = (i: number) => e.portmapConf(n.pods[i]!, [{ hostPort: 34300 + i, containerPort: 80, protocol: 'tcp' }]);
    const adds = await Promise.all(n.pods.map((p, i) => e.run(STRAND_PORTMAP, n, 'ADD', p, conf(i))));
    for (const r of adds) ok(r, 'concurrent ADD');
    for (const family of [4, 6] as const) {
      const t = natTable(n.host, family);
      const count = (l: string) => t.filter((x) => x === l).length;
      expect(count('-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT'), `IPv${family}`).toBe(1);
      expect(count('-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT')).toBe(1);
      expect(count('-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ')).toBe(1);
      expect(count('-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE')).toBe(1);
      expect(t.filter((l) => l.startsWith(':CNI-DN-'))).toHaveLength(6);
    }
    const dels = await Promise.all(n.pods.map((p, i) => e.run(STRAND_PORTMAP, n, 'DEL', p, conf(i))));
    for (const r of dels) ok(r, 'concurrent DEL');
    expect(podChains(n.host)).toEqual([]);
  });

  it('STATUS (1.1.0) succeeds when the backend tools are there, and is code 50 when they are not', async () => {
    const e = setup();
    const n = await e.node('t', 1);
    const pod = n.pods[0]!;
    for (const backend of ['iptables', 'nftables']) {
      const conf = { cniVersion: '1.1.0', name: e.netName, type: 'portmap', backend };
      ok(await e.run(STRAND_PORTMAP, n, 'STATUS', pod, conf), backend);
    }
    // nft hidden in a private mount namespace (/dev/null bound over it is not executable)
    const wrapper = join(e.e.tmp, 'without-nft');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nexec /usr/bin/unshare --mount --propagation private /bin/sh -c 'mount --bind /dev/null "$(command -v nft)" && exec "$0"' "$STRAND_T_BIN"\n`,
      { mode: 0o755 },
    );
    const conf = { cniVersion: '1.1.0', name: e.netName, type: 'strand-portmap', backend: 'nftables' };
    const r = await runPlugin(wrapper, { command: 'STATUS', extra: { STRAND_T_BIN: STRAND_PORTMAP } }, conf);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.json).toMatchObject({ code: 50, msg: 'the nftables backend is not available' });
    expect(r.json.details).toContain('nft');
    // the iptables backend still is
    ok(await runPlugin(wrapper, { command: 'STATUS', extra: { STRAND_T_BIN: STRAND_PORTMAP } }, { ...conf, backend: 'iptables' }), 'iptables STATUS');
  });

  it('no portMappings: ADD passes prevResult on and changes nothing; ADD without prevResult is code 7', async () => {
    const e = setup();
    const n = await e.node('z', 1);
    const pod = n.pods[0]!;
    const before = [natTable(n.host, 4), nftRuleset(n.host)];
    for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const conf = { ...e.portmapConf(pod, [], {}, v), prevResult: { ...pod.result, cniVersion: v } };
      const out = ok(await e.run(STRAND_PORTMAP, n, 'ADD', pod, conf), v);
      expect(out.cniVersion).toBe(v);
      expect(out.ips.map((i: { address: string }) => i.address)).toEqual(pod.result.ips.map((i: { address: string }) => i.address));
    }
    expect([natTable(n.host, 4), nftRuleset(n.host)]).toEqual(before);
    const { prevResult: _, ...noPrev } = e.portmapConf(pod, MAPPINGS);
    const r = await e.run(STRAND_PORTMAP, n, 'ADD', pod, noPrev);
    expect(r.json.code).toBe(7);
  });
});
