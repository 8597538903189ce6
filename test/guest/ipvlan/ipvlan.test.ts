import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ip } from '../../helpers/netns.ts';
import {
  addPod,
  addrs,
  atLeast,
  cni,
  cniNoContainer,
  diffRun,
  expectedFromRef,
  filesMentioning,
  hostLocal,
  ipamFor,
  link,
  linkNames,
  makeSegment,
  nsSysctl,
  ok,
  ping,
  pingEventually,
  refBin,
  resultIPv4,
  SPEC_VERSIONS,
  strandBin,
  strandIpam,
  type Pod,
  type Segment,
} from '../../integration/macvlan/harness.ts';

// strand-ipvlan. This host's kernel has no ipvlan, so these tests run inside the qemu
// guest booting Debian's stock kernel (scripts/vm/run.sh); the guest shares /usr, /etc
// and the repository, so the built binaries and the reference plugins are the same
// files. Topology as in the macvlan tests: master m0 in a "host" namespace, its veth
// peer in an "external" namespace.
//
// L3 modes: ipvlan slaves are NOARP and their traffic is routed by the master's
// namespace, so the pods get their own subnet (10.90.N.0/24), the host namespace an
// address on the segment, and the external namespace a route to the pod subnet via it.

const IV = strandBin('strand-ipvlan');

// Under TCG emulation one plugin process takes seconds (the host runs other work too).
vi.setConfig({ testTimeout: 600_000, hookTimeout: 300_000 });

let seg: Segment | undefined;
afterEach(() => {
  seg?.cleanup();
  seg = undefined;
});

beforeAll(() => {
  // Fail loudly (not skip) when run on a kernel without ipvlan.
  const s = makeSegment();
  try {
    ip(['link', 'add', 'probe0', 'link', 'm0', 'type', 'ipvlan', 'mode', 'l2'], { ns: s.host });
  } catch (e) {
    throw new Error(`this kernel cannot create ipvlan links; run these tests through scripts/vm/run.sh (${String(e)})`);
  } finally {
    s.cleanup();
  }
});

function conf(s: Segment, version: string, patch: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: version, name: 's8iv', type: 'strand-ipvlan', master: s.master, ipam: ipamFor(s, version), ...patch };
}

const dataDir = (s: Segment): string => join(s.tmp, 'ipam');

function expectNothingLeaked(s: Segment, pods: Pod[]): void {
  for (const p of pods) {
    expect(linkNames(p.ns), `links left in ${p.ns}`).toEqual(['lo']);
    expect(filesMentioning(dataDir(s), p.containerId), `IPAM reservations left for ${p.containerId}`).toEqual([]);
  }
  expect(linkNames(s.host)).toEqual(['lo', 'm0']);
}

function ipvlanMode(ns: string, name: string): unknown {
  return link(ns, name)?.linkinfo?.info_data?.['mode'];
}

/** Routed set-up for l3/l3s: pod subnet 10.90.N.0/24 reached from ext via the host. */
function routedPods(s: Segment, n: number): { ipam: object; subnet: string } {
  ip(['addr', 'add', `10.88.${n}.253/24`, 'dev', 'm0'], { ns: s.host });
  ip(['route', 'add', `10.90.${n}.0/24`, 'via', `10.88.${n}.253`], { ns: s.ext });
  const subnet = `10.90.${n}.0/24`;
  return {
    subnet,
    ipam: { type: 'host-local', dataDir: dataDir(s), ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
}

describe.each(SPEC_VERSIONS)('strand-ipvlan l2, spec %s', (version) => {
  // Pod-to-pod in l2 at 1.0.0; the other versions (result formats, verbs) with one pod,
  // every process counting under emulation.
  const two = version === '1.0.0';
  it(`${two ? 'two pods reach each other and' : 'a pod reaches'} the external namespace; CHECK; DEL twice; nothing leaked`, async () => {
    seg = makeSegment();
    const s = seg;
    const pods = two ? [addPod(s, 'p1'), addPod(s, 'p2')] : [addPod(s, 'p1')];
    const p1 = pods[0]!;
    const c = conf(s, version);
    const rs = [];
    for (const p of pods) rs.push(ok(await cni(s, IV, 'ADD', p, c)));
    const r1 = rs[0]!;
    expect(r1.json.cniVersion).toBe(version);
    const a1 = resultIPv4(version, r1.json);
    expect(addrs(p1.ns, 'eth0')).toEqual([a1]);
    const l1 = link(p1.ns, 'eth0')!;
    expect(l1.linkinfo?.info_kind).toBe('ipvlan');
    expect(ipvlanMode(p1.ns, 'eth0')).toBe('l2');
    expect(l1.address).toBe(link(s.host, 'm0')!.address);
    if (atLeast(version, '0.3.0')) {
      expect(r1.json.interfaces).toEqual([{ name: 'eth0', mac: l1.address, sandbox: p1.path }]);
      expect(r1.json.ips[0].interface).toBe(0);
    }
    expect(nsSysctl(p1.ns, 'net/ipv4/conf/eth0/arp_notify')).toBe('1');
    expect(nsSysctl(p1.ns, 'net/ipv6/conf/eth0/ndisc_notify')).toBe('1');
    expect(pingEventually(p1.ns, s.extAddr)).toBe(true);
    expect(pingEventually(s.ext, a1.split('/')[0]!)).toBe(true);
    if (two) {
      const a2 = resultIPv4(version, rs[1]!.json);
      expect(pingEventually(p1.ns, a2.split('/')[0]!)).toBe(true);
      expect(pingEventually(pods[1]!.ns, a1.split('/')[0]!)).toBe(true);
    }
    if (atLeast(version, '0.4.0')) ok(await cni(s, IV, 'CHECK', p1, { ...c, prevResult: r1.json }));
    for (const p of pods) {
      ok(await cni(s, IV, 'DEL', p, c));
      ok(await cni(s, IV, 'DEL', p, c));
    }
    expectNothingLeaked(s, pods);
  });
});

describe('strand-ipvlan l3 and l3s', () => {
  it.each(['l3', 'l3s'])('%s: pods reach each other and the external namespace through the host', async (mode) => {
    seg = makeSegment();
    const s = seg;
    const routed = routedPods(s, 0);
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const c = conf(s, '1.0.0', { mode, ipam: routed.ipam });
    const r1 = ok(await cni(s, IV, 'ADD', p1, c));
    const r2 = ok(await cni(s, IV, 'ADD', p2, c));
    expect(ipvlanMode(p1.ns, 'eth0')).toBe(mode);
    const a1 = resultIPv4('1.0.0', r1.json).split('/')[0]!;
    const a2 = resultIPv4('1.0.0', r2.json).split('/')[0]!;
    expect(pingEventually(p1.ns, a2)).toBe(true);
    expect(pingEventually(p2.ns, a1)).toBe(true);
    expect(pingEventually(p1.ns, s.extAddr)).toBe(true);
    expect(pingEventually(s.ext, a2)).toBe(true);
    ok(await cni(s, IV, 'CHECK', p1, { ...c, prevResult: r1.json }));
    for (const p of [p1, p2]) {
      ok(await cni(s, IV, 'DEL', p, c));
      ok(await cni(s, IV, 'DEL', p, c));
    }
    expectNothingLeaked(s, [p1, p2]);
  });
});

describe('strand-ipvlan chained', () => {
  it('no master, no IPAM: the single interface of prevResult is the master, its IPs go on the pod link', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'm0' }],
      ips: [{ address: '10.88.0.50/24', interface: 0 }],
      routes: [{ dst: '10.200.0.0/16', gw: '10.88.0.254' }],
    };
    const c = { cniVersion: '1.0.0', name: 's8iv', type: 'strand-ipvlan', prevResult };
    const r = ok(await cni(s, IV, 'ADD', p, c));
    expect(link(p.ns, 'eth0')!.link_index).toBe(link(s.host, 'm0')!.ifindex);
    expect(addrs(p.ns, 'eth0')).toEqual(['10.88.0.50/24']);
    expect(r.json.interfaces).toEqual([{ name: 'eth0', mac: link(p.ns, 'eth0')!.address, sandbox: p.path }]);
    expect(r.json.ips).toEqual([{ address: '10.88.0.50/24', interface: 0 }]);
    expect(r.json.routes).toEqual(prevResult.routes);
    expect(pingEventually(p.ns, s.extAddr)).toBe(true);
    ok(await cni(s, IV, 'CHECK', p, { ...c, prevResult: r.json }));
    ok(await cni(s, IV, 'DEL', p, c));
    ok(await cni(s, IV, 'DEL', p, c));
    expect(linkNames(p.ns)).toEqual(['lo']);
  });

  it('prevResult with two interfaces and no master: code 7', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'm0' }, { name: 'x' }], ips: [] };
    const r = await cni(s, IV, 'ADD', p, { cniVersion: '1.0.0', name: 's8iv', type: 'strand-ipvlan', prevResult });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg + (r.json.details ?? '')).toMatch(/master/);
    expect(linkNames(p.ns)).toEqual(['lo']);
  });
});

describe('strand-ipvlan options and errors', () => {
  it('mtu below the master is set; above it is code 7', async () => {
    seg = makeSegment({ masterMtu: 1500 });
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    ok(await cni(s, IV, 'ADD', p1, conf(s, '1.0.0', { mtu: 1400 })));
    expect(link(p1.ns, 'eth0')!.mtu).toBe(1400);
    const r = await cni(s, IV, 'ADD', p2, conf(s, '1.0.0', { mtu: 9000 }));
    expect(r.json.code).toBe(7);
    expect(linkNames(p2.ns)).toEqual(['lo']);
    expect(filesMentioning(dataDir(s), p2.containerId)).toEqual([]);
  });

  it('missing master: code 7; existing ifname: code 4; nothing left', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const r1 = await cni(s, IV, 'ADD', p1, conf(s, '1.0.0', { master: 'nosuchlink' }));
    expect(r1.json.code).toBe(7);
    expect(r1.json.msg + (r1.json.details ?? '')).toMatch(/nosuchlink/);
    ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'x0'], { ns: p2.ns });
    const r2 = await cni(s, IV, 'ADD', p2, conf(s, '1.0.0'));
    expect(r2.json.code).toBe(4);
    expect(linkNames(p1.ns)).toEqual(['lo']);
    expect(linkNames(p2.ns)).toEqual(['eth0', 'lo', 'x0']);
    expect(linkNames(s.host)).toEqual(['lo', 'm0']);
    expect(filesMentioning(dataDir(s), p1.containerId)).toEqual([]);
    expect(filesMentioning(dataDir(s), p2.containerId)).toEqual([]);
  });

  it('invalid mode: code 7 naming the field', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const r = await cni(s, IV, 'ADD', p, conf(s, '1.0.0', { mode: 'l4' }));
    expect(r.json.code).toBe(7);
    expect(r.json.msg + (r.json.details ?? '')).toContain('mode');
    expectNothingLeaked(s, [p]);
  });

  it('linkInContainer: the master lives in the pod namespace', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    ip(['link', 'add', 'pm0', 'type', 'veth', 'peer', 'name', 'e1', 'netns', s.ext], { ns: p.ns });
    ip(['link', 'set', 'pm0', 'up'], { ns: p.ns });
    ip(['link', 'set', 'e1', 'up'], { ns: s.ext });
    ip(['addr', 'add', '10.89.0.254/24', 'dev', 'e1'], { ns: s.ext });
    const c = conf(s, '1.0.0', {
      master: 'pm0',
      linkInContainer: true,
      ipam: { type: 'host-local', dataDir: dataDir(s), ranges: [[{ subnet: '10.89.0.0/24' }]] },
    });
    ok(await cni(s, IV, 'ADD', p, c));
    expect(link(p.ns, 'eth0')!.link).toBe('pm0');
    expect(pingEventually(p.ns, '10.89.0.254')).toBe(true);
    ok(await cni(s, IV, 'DEL', p, c));
    expect(linkNames(p.ns)).toEqual(['lo', 'pm0']);
  });

  it('STATUS and GC (1.1.0) delegate to IPAM', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const c = conf(s, '1.1.0', { ipam: strandIpam(s) });
    ok(await cni(s, IV, 'ADD', p1, c));
    ok(await cni(s, IV, 'ADD', p2, c));
    ok(await cniNoContainer(s, IV, 'STATUS', c));
    ok(
      await cniNoContainer(s, IV, 'GC', {
        ...c,
        // p1's namespace still exists (kept by default) and is seconds old: release it anyway
        ipam: { ...(c['ipam'] as object), gcGracePeriod: 0, gcKeepLiveNetns: false },
        'cni.dev/valid-attachments': [{ containerID: p2.containerId, ifname: 'eth0' }],
      }),
    );
    expect(filesMentioning(dataDir(s), p1.containerId)).toEqual([]);
    expect(filesMentioning(dataDir(s), p2.containerId)).not.toEqual([]);
  });

  it('a pod cannot reach the host through its own master (ipvlan property), but reaches the segment', async () => {
    seg = makeSegment();
    const s = seg;
    ip(['addr', 'add', '10.88.0.253/24', 'dev', 'm0'], { ns: s.host });
    const p = addPod(s, 'p1');
    ok(await cni(s, IV, 'ADD', p, conf(s, '1.0.0')));
    expect(pingEventually(p.ns, s.extAddr)).toBe(true);
    expect(ping(p.ns, '10.88.0.253')).toBe(false);
  });
});

describe('strand-ipvlan vs reference ipvlan: same kernel state, same result', () => {
  it.each(['l2', 'l3'])('%s', async (mode) => {
    seg = makeSegment();
    const s = seg;
    const pod = addPod(s, 'p');
    const run = (exe: string, type: string, dir: string) =>
      diffRun(s, pod, exe, { cniVersion: '1.0.0', name: 's8diff', type, master: 'm0', mode, ipam: hostLocal(s, { dataDir: join(s.tmp, dir) }) });
    const ref = await run(refBin('ipvlan'), 'ipvlan', 'ref');
    const ours = await run(IV, 'strand-ipvlan', 'ours');
    // Intended differences (ndisc_notify, txqlen): see expectedFromRef().
    expect(ours.snap).toEqual(expectedFromRef(ref.snap, 'eth0', false));
    expect(ours.result).toEqual(ref.result);
  });
});
