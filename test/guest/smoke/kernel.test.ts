import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ip, ipJson, NetnsSet, nsExec } from '../../helpers/netns.ts';
import { whereAmI } from '../../helpers/vm.ts';

// Smoke tests of the kernel features this host lacks and the guest (Debian's stock
// kernel under qemu, scripts/vm/run.sh) has: ipvlan l2/l3, 802.1q vlan links and bridge
// vlan filtering. They assert the features, so they fail (never skip) on a kernel
// without them. Everything lives in namespaces named with the run prefix.

interface Link {
  ifname: string;
  link?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string };
}

const set = new NetnsSet();
afterEach(() => set.cleanup());

/** `ip link add ...` in a namespace, failing with the kernel and place named. */
function linkAdd(ns: string, args: string[]): void {
  try {
    ip(['link', 'add', ...args], { ns });
  } catch (e) {
    throw new Error(`ip link add ${args.join(' ')} failed on ${whereAmI()}: ${String(e)}`);
  }
}

function showLink(ns: string, name: string): Link {
  const [l] = ipJson<Link[]>(['-d', 'link', 'show', 'dev', name], { ns });
  if (!l) throw new Error(`link ${name} not found in ${ns}`);
  return l;
}

describe('guest kernel', () => {
  it('creates network namespaces and /run/netns is usable', () => {
    const a = set.add('a');
    const names = ipJson<Array<{ name: string }>>(['netns', 'list']).map((n) => n.name);
    expect(names).toContain(a);
    expect(ipJson<Link[]>(['link', 'show', 'lo'], { ns: a })[0]?.flags).toContain('UP');
  });

  it('ipvlan l2 and l3 links on a veth and a dummy master', () => {
    const ns = set.add('iv');
    // The ipvlan mode belongs to the master (all slaves of one master share it), so l2
    // and l3 each get their own master.
    linkAdd(ns, ['m0', 'type', 'veth', 'peer', 'name', 'm0p']);
    linkAdd(ns, ['d0', 'type', 'dummy']);
    linkAdd(ns, ['iv2', 'link', 'm0', 'type', 'ipvlan', 'mode', 'l2']);
    linkAdd(ns, ['iv3', 'link', 'd0', 'type', 'ipvlan', 'mode', 'l3']);

    const l2 = showLink(ns, 'iv2');
    expect(l2.link).toBe('m0');
    expect(l2.linkinfo?.info_kind).toBe('ipvlan');
    expect(l2.linkinfo?.info_data?.['mode']).toBe('l2');

    const l3 = showLink(ns, 'iv3');
    expect(l3.link).toBe('d0');
    expect(l3.linkinfo?.info_kind).toBe('ipvlan');
    expect(l3.linkinfo?.info_data?.['mode']).toBe('l3');
  });

  it('two ipvlan l2 slaves in two pod namespaces reach each other', () => {
    const host = set.add('h');
    const p1 = set.add('p1');
    const p2 = set.add('p2');
    linkAdd(host, ['m0', 'type', 'veth', 'peer', 'name', 'm0p']);
    ip(['link', 'set', 'm0', 'up'], { ns: host });
    ip(['link', 'set', 'm0p', 'up'], { ns: host });
    for (const [i, pod] of [p1, p2].entries()) {
      linkAdd(host, [`iv${i}`, 'link', 'm0', 'netns', pod, 'type', 'ipvlan', 'mode', 'l2']);
      ip(['addr', 'add', `10.77.0.${i + 1}/24`, 'dev', `iv${i}`], { ns: pod });
      ip(['link', 'set', `iv${i}`, 'up'], { ns: pod });
    }
    const out = nsExec(p1, 'ping', ['-c', '1', '-W', '5', '10.77.0.2']);
    expect(out).toMatch(/1 received/);
  });

  it('802.1q vlan link on a veth', () => {
    const ns = set.add('vl');
    linkAdd(ns, ['m0', 'type', 'veth', 'peer', 'name', 'm0p']);
    linkAdd(ns, ['link', 'm0', 'name', 'm0.100', 'type', 'vlan', 'id', '100']);
    const v = showLink(ns, 'm0.100');
    expect(v.linkinfo?.info_kind).toBe('vlan');
    expect(v.linkinfo?.info_data?.['id']).toBe(100);
    expect(v.linkinfo?.info_data?.['protocol']).toBe('802.1Q');
  });

  it('bridge with vlan_filtering=1 and a vlan entry on a port', () => {
    const ns = set.add('br');
    linkAdd(ns, ['br0', 'type', 'bridge', 'vlan_filtering', '1']);
    linkAdd(ns, ['v0', 'type', 'veth', 'peer', 'name', 'v1']);
    ip(['link', 'set', 'v0', 'master', 'br0'], { ns });
    execFileSync('bridge', ['-n', ns, 'vlan', 'add', 'dev', 'v0', 'vid', '100', 'pvid', 'untagged'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });

    const br = showLink(ns, 'br0');
    expect(br.linkinfo?.info_kind).toBe('bridge');
    expect(br.linkinfo?.info_data?.['vlan_filtering']).toBe(1);
    expect(showLink(ns, 'v0').linkinfo?.info_slave_kind).toBe('bridge');

    const vlans = JSON.parse(execFileSync('bridge', ['-n', ns, '-j', 'vlan', 'show', 'dev', 'v0'], { encoding: 'utf8' })) as Array<{
      ifname: string;
      vlans: Array<{ vlan: number; flags?: string[] }>;
    }>;
    const port = vlans.find((e) => e.ifname === 'v0');
    expect(port, `bridge vlan show on ${whereAmI()}`).toBeDefined();
    const v100 = port?.vlans.find((v) => v.vlan === 100);
    expect(v100?.flags ?? []).toEqual(expect.arrayContaining(['PVID', 'Egress Untagged']));
    // The new pvid replaces the default vlan 1 as PVID.
    expect(port?.vlans.find((v) => v.vlan === 1)?.flags ?? []).not.toContain('PVID');
  });
});
