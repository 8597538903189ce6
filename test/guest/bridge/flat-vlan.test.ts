// Flat mode with pod VLANs: strand-bridge's `vlan` on the bridge that took over the
// node's uplink. Needs bridge VLAN filtering and 802.1q (the router's VLAN interface),
// which this host's kernel lacks: it runs in the qemu guest (scripts/vm/run-guest-tests.sh).
//
// Segment: a switch (plain bridge: tagged frames pass), a router with 192.168.60.1 on its
// port and 192.168.100.1 on VLAN 100 of it, a node whose uplink eth1 the takeover (with
// flat.vlans [100]) puts into br0. A pod with `vlan: 100` and a pod without VLAN, both
// by strand-bridge with isGateway false and strand-ipam (local store), reach the router
// and are reached by it; restore gives back the node as it was.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { restore, takeover } from '../../../agent/flat.ts';
import { Netns } from '../../../lib/netlink/netns.ts';
import { ip, nsExec } from '../../helpers/netns.ts';
import { binDir } from '../../helpers/run-plugin.ts';
import { runIn } from '../../integration/agent/cluster.ts';
import { whereAmI } from '../../helpers/vm.ts';
import { dumps, Segment, settled } from '../../integration/flat/segment.ts';

process.env['STRAND_TEST_PREFIX'] ??= 'fl';
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

let seg: Segment | undefined;
let dir: string | undefined;
afterEach(() => {
  seg?.destroy();
  seg = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function conf(subnet: string, gateway: string, rangeStart: string, vlan?: number): object {
  return {
    cniVersion: '1.0.0',
    name: 'flatnet',
    type: 'strand-bridge',
    bridge: 'br0',
    isGateway: false,
    ...(vlan !== undefined ? { vlan } : {}),
    ipam: {
      type: 'strand-ipam',
      dataDir: join(dir as string, `ipam-${vlan ?? 0}`),
      ranges: [[{ subnet, gateway, rangeStart }]],
      routes: [{ dst: '0.0.0.0/0' }],
    },
  };
}

function pings(from: string, to: string): boolean {
  try {
    nsExec(from, 'ping', ['-n', '-q', '-c', '2', '-i', '0.2', '-W', '3', to]);
    return true;
  } catch {
    return false;
  }
}

describe(`flat mode, pod VLANs (${whereAmI()})`, () => {
  it('a pod with vlan 100 reaches the router on VLAN 100 through the taken-over uplink, a pod without VLAN on the untagged segment', async () => {
    seg = new Segment();
    dir = mkdtempSync(join(tmpdir(), 'fl-flatvlan-'));
    seg.router(['192.168.60.1/24']);
    ip(['link', 'add', 'link', 'eth0', 'name', 'eth0.100', 'type', 'vlan', 'id', '100'], { ns: seg.rt });
    ip(['addr', 'add', '192.168.100.1/24', 'dev', 'eth0.100'], { ns: seg.rt });
    ip(['link', 'set', 'eth0.100', 'up'], { ns: seg.rt });
    const node = seg.node('n1', ['192.168.60.11/24']);
    ip(['route', 'add', 'default', 'via', '192.168.60.1'], { ns: node });
    await settled(node);
    const before = dumps(node);

    const handle = Netns.open(`/run/netns/${node}`);
    try {
      const cfg = { uplink: 'eth1', bridge: 'br0', record: join(dir, 'flat.json'), vlans: [100] };
      await takeover(handle, cfg, { log: quiet });
      const vlans = JSON.parse(nsExec(node, 'bridge', ['-j', 'vlan', 'show'])) as Array<{ ifname: string; vlans: Array<{ vlan: number; flags?: string[] }> }>;
      expect(vlans.find((v) => v.ifname === 'eth1')?.vlans.map((v) => ({ vlan: v.vlan, flags: [...(v.flags ?? [])].sort() }))).toEqual([
        { vlan: 1, flags: ['Egress Untagged', 'PVID'] },
        { vlan: 100, flags: [] },
      ]);
      expect(pings(seg.rt, '192.168.60.11')).toBe(true);

      const pods: Array<{ ns: string; ip: string; gw: string; id: string; conf: object }> = [];
      for (const [i, c] of [
        conf('192.168.100.0/24', '192.168.100.1', '192.168.100.50', 100),
        conf('192.168.60.0/24', '192.168.60.1', '192.168.60.50'),
      ].entries()) {
        const podNs = seg.addNs(`p${i}`);
        const run = await runInNode('ADD', node, podNs, `${seg.prefix}-c${i}`, c);
        expect(run.code, run.stdout + run.stderr).toBe(0);
        const res = JSON.parse(run.stdout) as { ips: Array<{ address: string; gateway?: string }> };
        pods.push({ ns: podNs, ip: (res.ips[0]?.address ?? '').split('/')[0] as string, gw: res.ips[0]?.gateway ?? '', id: `${seg.prefix}-c${i}`, conf: c });
      }
      expect(pods.map((p) => p.gw)).toEqual(['192.168.100.1', '192.168.60.1']);
      for (const p of pods) {
        expect(pings(p.ns, p.gw), `${p.ip} -> ${p.gw}`).toBe(true);
        expect(pings(seg.rt, p.ip), `router -> ${p.ip}`).toBe(true);
      }
      // the VLAN pod's frames leave the node tagged: the router learned its MAC on eth0.100
      const neigh = JSON.parse(nsExec(seg.rt, 'ip', ['-j', 'neigh', 'show', pods[0]?.ip ?? ''])) as Array<{ dev: string }>;
      expect(neigh[0]?.dev).toBe('eth0.100');
      for (const p of pods) {
        const del = await runInNode('DEL', node, p.ns, p.id, p.conf);
        expect(del.code, del.stdout + del.stderr).toBe(0);
      }
    } finally {
      await restore(handle, join(dir, 'flat.json'), { log: quiet }).catch(() => undefined);
      handle.close();
    }
    await settled(node);
    expect(dumps(node)).toEqual(before);
  });
});

function runInNode(
  verb: string,
  node: string,
  podNs: string,
  containerId: string,
  c: object,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runIn(
    node,
    join(binDir, 'strand-bridge'),
    { CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: `/run/netns/${podNs}`, CNI_IFNAME: 'eth0', CNI_PATH: binDir },
    JSON.stringify(c),
  );
}
