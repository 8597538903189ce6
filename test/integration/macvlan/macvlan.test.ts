import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ip } from '../../helpers/netns.ts';
import {
  addPod,
  addrs,
  atLeast,
  cni,
  cniNoContainer,
  filesMentioning,
  hostLocal,
  ipamFor,
  link,
  linkNames,
  links,
  makeSegment,
  nsSysctl,
  ok,
  ping,
  pingEventually,
  resultIPv4,
  SPEC_VERSIONS,
  strandBin,
  strandIpam,
  type Pod,
  type Segment,
} from './harness.ts';

// strand-macvlan on this host's kernel: a "host" namespace whose veth end is the master,
// the other end in an "external" namespace; pods are namespaces of their own. The plugin
// binary runs inside the host namespace (ip netns exec), as a runtime on that node would.

const MV = strandBin('strand-macvlan');

let seg: Segment | undefined;
afterEach(() => {
  seg?.cleanup();
  seg = undefined;
});

function conf(s: Segment, version: string, patch: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: version,
    name: 's8mv',
    type: 'strand-macvlan',
    master: s.master,
    ipam: ipamFor(s, version),
    ...patch,
  };
}

function dataDir(s: Segment): string {
  return join(s.tmp, 'ipam');
}

/** The pod namespace holds only lo, the host only lo and the master, IPAM nothing. */
function expectNothingLeaked(s: Segment, pods: Pod[]): void {
  for (const p of pods) {
    expect(linkNames(p.ns), `links left in ${p.ns}`).toEqual(['lo']);
    expect(filesMentioning(dataDir(s), p.containerId), `IPAM reservations left for ${p.containerId}`).toEqual([]);
  }
  expect(linkNames(s.host)).toEqual(['lo', 'm0']);
}

function expectResultShape(version: string, json: any, pod: Pod): void {
  expect(json.cniVersion).toBe(version);
  const kmac = link(pod.ns, pod.ifName)!.address;
  if (!atLeast(version, '0.3.0')) {
    expect(json.interfaces).toBeUndefined();
    expect(json.ip4.ip).toMatch(/^10\.88\.0\.\d+\/24$/);
    expect(json.ip4.gateway).toBe('10.88.0.1');
    return;
  }
  expect(json.interfaces).toEqual([{ name: pod.ifName, mac: kmac, sandbox: pod.path }]);
  expect(json.ips).toHaveLength(1);
  expect(json.ips[0].address).toMatch(/^10\.88\.0\.\d+\/24$/);
  expect(json.ips[0].gateway).toBe('10.88.0.1');
  expect(json.ips[0].interface).toBe(0);
  if (!atLeast(version, '1.0.0')) expect(json.ips[0].version).toBe('4');
  else expect(json.ips[0].version).toBeUndefined();
  expect(json.routes).toEqual([{ dst: '0.0.0.0/0' }]);
}

function macvlanMode(ns: string, name: string): unknown {
  return link(ns, name)?.linkinfo?.info_data?.['mode'];
}

describe.each(SPEC_VERSIONS)('strand-macvlan, spec %s', (version) => {
  it('two pods reach each other and the external namespace; CHECK; DEL twice; nothing leaked', async () => {
    seg = makeSegment();
    const s = seg;
    const p1 = addPod(s, 'p1');
    const p2 = addPod(s, 'p2');
    const c = conf(s, version);

    const r1 = ok(await cni(s, MV, 'ADD', p1, c));
    const r2 = ok(await cni(s, MV, 'ADD', p2, c));
    expectResultShape(version, r1.json, p1);
    expectResultShape(version, r2.json, p2);

    const a1 = resultIPv4(version, r1.json);
    const a2 = resultIPv4(version, r2.json);
    expect(addrs(p1.ns, 'eth0')).toEqual([a1]);
    expect(addrs(p2.ns, 'eth0')).toEqual([a2]);
    const l1 = link(p1.ns, 'eth0')!;
    expect(l1.linkinfo?.info_kind).toBe('macvlan');
    expect(macvlanMode(p1.ns, 'eth0')).toBe('bridge');
    expect(l1.link_index).toBe(link(s.host, 'm0')!.ifindex);
    expect(l1.flags).toContain('UP');
    expect(nsSysctl(p1.ns, 'net/ipv4/conf/eth0/arp_notify')).toBe('1');
    expect(nsSysctl(p1.ns, 'net/ipv6/conf/eth0/ndisc_notify')).toBe('1');
    // no temporary link left anywhere
    expect(linkNames(p1.ns)).toEqual(['eth0', 'lo']);
    expect(linkNames(s.host)).toEqual(['lo', 'm0']);

    const ip2 = a2.split('/')[0]!;
    const ip1 = a1.split('/')[0]!;
    expect(pingEventually(p1.ns, ip2)).toBe(true);
    expect(pingEventually(p2.ns, ip1)).toBe(true);
    expect(pingEventually(p1.ns, s.extAddr)).toBe(true);
    expect(pingEventually(s.ext, ip2)).toBe(true);

    if (atLeast(version, '0.4.0')) {
      ok(await cni(s, MV, 'CHECK', p1, { ...c, prevResult: r1.json }));
    }

    for (const p of [p1, p2]) {
      ok(await cni(s, MV, 'DEL', p, c));
      ok(await cni(s, MV, 'DEL', p, c));
    }
    expectNothingLeaked(s, [p1, p2]);
  });

  it('L2 only with "ipam": {}: link up, no address, interfaces only in the result', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, version, { ipam: {} });
    const r = await cni(s, MV, 'ADD', p, c);
    if (!atLeast(version, '0.3.0')) {
      // A 0.1.0/0.2.0 result cannot describe an interface without addresses.
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(7);
      expect(r.json.msg + (r.json.details ?? '')).toMatch(/ipam/);
      expectNothingLeaked(s, [p]);
      return;
    }
    ok(r);
    expect(r.json.cniVersion).toBe(version);
    expect(r.json.interfaces).toEqual([{ name: 'eth0', mac: link(p.ns, 'eth0')!.address, sandbox: p.path }]);
    expect(r.json.ips ?? []).toEqual([]);
    expect(link(p.ns, 'eth0')!.flags).toContain('UP');
    expect(addrs(p.ns, 'eth0')).toEqual([]);
    ok(await cni(s, MV, 'DEL', p, c));
    ok(await cni(s, MV, 'DEL', p, c));
    expectNothingLeaked(s, [p]);
  });
});

describe('strand-macvlan options', () => {
  it('mtu below the master: set on the link', async () => {
    seg = makeSegment({ masterMtu: 1500 });
    const s = seg;
    const p = addPod(s, 'p1');
    ok(await cni(s, MV, 'ADD', p, conf(s, '1.0.0', { mtu: 1400 })));
    expect(link(p.ns, 'eth0')!.mtu).toBe(1400);
    expect(pingEventually(p.ns, s.extAddr)).toBe(true);
  });

  it('mac from the config, CNI_ARGS MAC= over it, runtimeConfig.mac over both', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2, p3] = [addPod(s, 'p1'), addPod(s, 'p2'), addPod(s, 'p3')];
    const base = conf(s, '1.0.0', { mac: '02:00:00:00:00:01' });
    const r1 = ok(await cni(s, MV, 'ADD', p1, base));
    const r2 = ok(await cni(s, MV, 'ADD', p2, base, { args: 'IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02' }));
    const r3 = ok(await cni(s, MV, 'ADD', p3, { ...base, runtimeConfig: { mac: '02:00:00:00:00:03' } }, { args: 'IgnoreUnknown=1;MAC=02:00:00:00:00:02' }));
    expect(link(p1.ns, 'eth0')!.address).toBe('02:00:00:00:00:01');
    expect(link(p2.ns, 'eth0')!.address).toBe('02:00:00:00:00:02');
    expect(link(p3.ns, 'eth0')!.address).toBe('02:00:00:00:00:03');
    expect([r1, r2, r3].map((r) => r.json.interfaces[0].mac)).toEqual(['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03']);
  });

  it('no master: the link of the host namespace default route', async () => {
    seg = makeSegment();
    const s = seg;
    ip(['route', 'add', 'default', 'dev', 'm0'], { ns: s.host });
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0');
    delete c['master'];
    ok(await cni(s, MV, 'ADD', p, c));
    expect(link(p.ns, 'eth0')!.link_index).toBe(link(s.host, 'm0')!.ifindex);
    expect(pingEventually(p.ns, s.extAddr)).toBe(true);
  });

  it('no master and no default route: error 7, nothing created', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0');
    delete c['master'];
    const r = await cni(s, MV, 'ADD', p, c);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toMatch(/master/);
    expectNothingLeaked(s, [p]);
  });

  it('linkInContainer: the master lives in the pod namespace', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    // a second L2 segment whose near end is inside the pod
    ip(['link', 'add', 'pm0', 'type', 'veth', 'peer', 'name', 'e1', 'netns', s.ext], { ns: p.ns });
    ip(['link', 'set', 'pm0', 'up'], { ns: p.ns });
    ip(['link', 'set', 'e1', 'up'], { ns: s.ext });
    ip(['addr', 'add', '10.89.0.254/24', 'dev', 'e1'], { ns: s.ext });
    const c = conf(s, '1.0.0', {
      master: 'pm0',
      linkInContainer: true,
      ipam: { type: 'host-local', dataDir: dataDir(s), ranges: [[{ subnet: '10.89.0.0/24' }]] },
    });
    const r = ok(await cni(s, MV, 'ADD', p, c));
    expect(link(p.ns, 'eth0')!.link).toBe('pm0');
    expect(pingEventually(p.ns, '10.89.0.254')).toBe(true);
    ok(await cni(s, MV, 'CHECK', p, { ...c, prevResult: r.json }));
    ok(await cni(s, MV, 'DEL', p, c));
    ok(await cni(s, MV, 'DEL', p, c));
    expect(linkNames(p.ns)).toEqual(['lo', 'pm0']);
    expect(filesMentioning(dataDir(s), p.containerId)).toEqual([]);
  });

  it('mode semantics: bridge pods talk, private pods do not even through a hairpin switch, vepa pods do through it', async () => {
    seg = makeSegment({ hairpin: true });
    const s = seg;
    const cases: Array<[string, boolean]> = [
      ['bridge', true],
      ['private', false],
      ['vepa', true],
    ];
    let n = 0;
    for (const [mode, talk] of cases) {
      const a = addPod(s, `${mode[0]}a`);
      const b = addPod(s, `${mode[0]}b`);
      const c = conf(s, '1.0.0', { mode, name: `s8mv-${mode}` });
      const ra = ok(await cni(s, MV, 'ADD', a, c));
      const rb = ok(await cni(s, MV, 'ADD', b, c));
      expect(macvlanMode(a.ns, 'eth0')).toBe(mode);
      const ipb = resultIPv4('1.0.0', rb.json).split('/')[0]!;
      const ipa = resultIPv4('1.0.0', ra.json).split('/')[0]!;
      expect(pingEventually(a.ns, s.extAddr), `${mode}: pod to external`).toBe(true);
      expect(talk ? pingEventually(a.ns, ipb) : ping(a.ns, ipb), `${mode}: pod to pod`).toBe(talk);
      expect(talk ? pingEventually(b.ns, ipa) : ping(b.ns, ipa), `${mode}: pod to pod, reverse`).toBe(talk);
      for (const p of [a, b]) ok(await cni(s, MV, 'DEL', p, c));
      n++;
    }
    expect(n).toBe(3);
  });

  it('passthru: the one pod owns the master, which turns promiscuous', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0', { mode: 'passthru' });
    const r = ok(await cni(s, MV, 'ADD', p, c));
    expect(macvlanMode(p.ns, 'eth0')).toBe('passthru');
    expect(r.json.interfaces[0].mac).toBe(link(s.host, 'm0')!.address);
    expect(pingEventually(p.ns, s.extAddr)).toBe(true);
    // a second passthru link on the same master is refused by the kernel, cleanly
    const p2 = addPod(s, 'p2');
    const r2 = await cni(s, MV, 'ADD', p2, c);
    expect(r2.code).toBe(1);
    expect(linkNames(p2.ns)).toEqual(['lo']);
    expect(filesMentioning(dataDir(s), p2.containerId)).toEqual([]);
    ok(await cni(s, MV, 'DEL', p, c));
    expectNothingLeaked(s, [p, p2]);
  });
});

describe('strand-macvlan errors leave nothing behind', () => {
  it('missing master: code 7 naming it', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const r = await cni(s, MV, 'ADD', p, conf(s, '1.0.0', { master: 'nosuchlink' }));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg + (r.json.details ?? '')).toMatch(/nosuchlink/);
    expectNothingLeaked(s, [p]);
  });

  it('mtu above the master: code 7 naming both', async () => {
    seg = makeSegment({ masterMtu: 1500 });
    const s = seg;
    const p = addPod(s, 'p1');
    const r = await cni(s, MV, 'ADD', p, conf(s, '1.0.0', { mtu: 9000 }));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg + (r.json.details ?? '')).toMatch(/9000.*1500/);
    expectNothingLeaked(s, [p]);
  });

  it('existing interface name in the pod: error, no temporary link, the address released', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'x0'], { ns: p.ns });
    const r = await cni(s, MV, 'ADD', p, conf(s, '1.0.0'));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(4);
    expect(r.json.msg + (r.json.details ?? '')).toMatch(/eth0/);
    expect(linkNames(p.ns)).toEqual(['eth0', 'lo', 'x0']);
    expect(link(p.ns, 'eth0')!.linkinfo?.info_kind).toBe('veth');
    expect(filesMentioning(dataDir(s), p.containerId)).toEqual([]);
  });

  it.each([
    ['mode', { mode: 'bogus' }],
    ['mtu', { mtu: -1 }],
    ['mac', { mac: 'zz:zz' }],
    ['linkInContainer', { linkInContainer: 'yes' }],
  ])('invalid %s: code 7 naming the field', async (field, patch) => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const r = await cni(s, MV, 'ADD', p, conf(s, '1.0.0', patch));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg + (r.json.details ?? '')).toContain(field);
    expectNothingLeaked(s, [p]);
  });

  it('IPAM delegate missing: its error, no link in the pod', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const r = await cni(s, MV, 'ADD', p, conf(s, '1.0.0', { ipam: { type: 's8-no-such-ipam' } }));
    expect(r.code).toBe(1);
    expect(r.json.msg + (r.json.details ?? '')).toMatch(/s8-no-such-ipam/);
    expectNothingLeaked(s, [p]);
  });

  it('IPAM exhausted for the second pod: the first keeps working, the second has nothing', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const c = conf(s, '1.0.0', {
      ipam: { type: 'host-local', dataDir: dataDir(s), ranges: [[{ subnet: s.subnet, rangeStart: '10.88.0.10', rangeEnd: '10.88.0.10' }]] },
    });
    ok(await cni(s, MV, 'ADD', p1, c));
    const r = await cni(s, MV, 'ADD', p2, c);
    expect(r.code).toBe(1);
    expect(linkNames(p2.ns)).toEqual(['lo']);
    expect(pingEventually(p1.ns, s.extAddr)).toBe(true);
  });

  it('a route that cannot be added after IPAM: link removed and the address released (undo order)', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0', {
      ipam: { ...hostLocal(s), routes: [{ dst: '10.99.0.0/16', gw: '10.77.0.1' }] },
    });
    const r = await cni(s, MV, 'ADD', p, c);
    expect(r.code).toBe(1);
    expectNothingLeaked(s, [p]);
  });

  it('netns missing: ADD fails, DEL succeeds (and still releases the address)', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0');
    ok(await cni(s, MV, 'ADD', p, c));
    expect(filesMentioning(dataDir(s), p.containerId)).not.toEqual([]);
    ip(['netns', 'del', p.ns]);
    ok(await cni(s, MV, 'DEL', p, c));
    ok(await cni(s, MV, 'DEL', p, c));
    expect(filesMentioning(dataDir(s), p.containerId)).toEqual([]);
    const gone = { ...p, containerId: `${p.containerId}2` };
    const r = await cni(s, MV, 'ADD', gone, c);
    expect(r.code).toBe(1);
    expect(filesMentioning(dataDir(s), gone.containerId)).toEqual([]);
  });
});

describe('strand-macvlan CHECK, STATUS, GC', () => {
  it('CHECK fails when the address, the route or the mode no longer match', async () => {
    seg = makeSegment();
    const s = seg;
    const p = addPod(s, 'p1');
    const c = conf(s, '1.0.0');
    const r = ok(await cni(s, MV, 'ADD', p, c));
    const withPrev = { ...c, prevResult: r.json };
    ok(await cni(s, MV, 'CHECK', p, withPrev));

    const wrongMode = await cni(s, MV, 'CHECK', p, { ...withPrev, mode: 'private' });
    expect(wrongMode.code).toBe(1);
    expect(wrongMode.json.msg + (wrongMode.json.details ?? '')).toMatch(/mode/);

    ip(['route', 'del', 'default'], { ns: p.ns });
    const noRoute = await cni(s, MV, 'CHECK', p, withPrev);
    expect(noRoute.code).toBe(1);

    ip(['addr', 'flush', 'dev', 'eth0'], { ns: p.ns });
    const noAddr = await cni(s, MV, 'CHECK', p, withPrev);
    expect(noAddr.code).toBe(1);

    const noPrev = await cni(s, MV, 'CHECK', p, c);
    expect(noPrev.code).toBe(1);
  });

  it('STATUS and GC (1.1.0) delegate to IPAM; GC releases attachments not listed as valid', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const c = conf(s, '1.1.0', { ipam: strandIpam(s) });
    ok(await cni(s, MV, 'ADD', p1, c));
    ok(await cni(s, MV, 'ADD', p2, c));
    const status = ok(await runStatusOrGc(s, 'STATUS', c));
    expect(status.stdout.trim()).toBe('');
    expect(ok(await runStatusOrGc(s, 'STATUS', { ...c, ipam: {} })).code).toBe(0);
    ok(
      await runStatusOrGc(s, 'GC', {
        ...c,
        // p1's namespace still exists (kept by default) and is seconds old: release it anyway
        ipam: { ...(c['ipam'] as object), gcGracePeriod: 0, gcKeepLiveNetns: false },
        'cni.dev/valid-attachments': [{ containerID: p2.containerId, ifname: 'eth0' }],
      }),
    );
    expect(filesMentioning(dataDir(s), p1.containerId)).toEqual([]);
    expect(filesMentioning(dataDir(s), p2.containerId)).not.toEqual([]);
  });

  it('STATUS and GC are refused below 1.1.0', async () => {
    seg = makeSegment();
    const s = seg;
    for (const verb of ['STATUS', 'GC'] as const) {
      const r = await runStatusOrGc(s, verb, conf(s, '1.0.0'));
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(1);
    }
  });
});

function runStatusOrGc(s: Segment, verb: 'STATUS' | 'GC', c: object) {
  // STATUS and GC carry no container: only CNI_COMMAND and CNI_PATH.
  return cniNoContainer(s, MV, verb, c);
}

describe('strand-macvlan leaves other links alone', () => {
  it('DEL of one pod keeps the other pod and the master untouched', async () => {
    seg = makeSegment();
    const s = seg;
    const [p1, p2] = [addPod(s, 'p1'), addPod(s, 'p2')];
    const c = conf(s, '1.0.0');
    ok(await cni(s, MV, 'ADD', p1, c));
    const r2 = ok(await cni(s, MV, 'ADD', p2, c));
    const before = links(s.host).map((l) => [l.ifname, l.mtu, l.flags.join(',')]);
    ok(await cni(s, MV, 'DEL', p1, c));
    expect(links(s.host).map((l) => [l.ifname, l.mtu, l.flags.join(',')])).toEqual(before);
    expect(linkNames(p2.ns)).toEqual(['eth0', 'lo']);
    expect(addrs(p2.ns, 'eth0')).toEqual([resultIPv4('1.0.0', r2.json)]);
  });
});
