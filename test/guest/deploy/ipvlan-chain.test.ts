import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildCnitool, CniEnv, ok, requireStrandPlugin } from '../../helpers/cnitool.ts';
import { ip, ipJson, nsExec, NetnsSet } from '../../helpers/netns.ts';
import { binDir, refBinDir } from '../../helpers/run-plugin.ts';
import { whereAmI } from '../../helpers/vm.ts';
import { globalAddrs, installRecorder, linkNames } from '../../integration/deploy/fixtures.ts';

// strand-ipvlan chained after another plugin, through libcni (test/cnitool), in the
// qemu guest (this host's kernel has no ipvlan). The first plugin stands in for any
// plugin that hands over one host interface and addresses in its result; strand-ipvlan
// (no master, no IPAM) puts an ipvlan link on that interface in the pod with those
// addresses; the reference tuning plugin follows. A recorder after each plugin shows
// what was handed on.
//
// Under emulation every process start costs seconds (about 80 s per version here), so
// the guest runs the oldest chaining version and the newest libcni speaks; every chain
// version is covered on the host by test/integration/deploy/chain.test.ts.
const VERSIONS = ['0.3.0', '1.0.0'] as const;

let netns: NetnsSet | undefined;
let env: CniEnv | undefined;

beforeAll(() => {
  buildCnitool();
});

afterEach(() => {
  netns?.cleanup();
  env?.cleanup();
});

/** The first plugin's result, in the list's version (0.3.x/0.4.0 carry ips[].version). */
function firstResult(version: string, master: string, address: string): object {
  const ipc: Record<string, unknown> = { address, interface: 0 };
  if (version !== '1.0.0') ipc['version'] = '4';
  return { cniVersion: version, interfaces: [{ name: master }], ips: [ipc], routes: [{ dst: '10.200.0.0/16', gw: '10.88.0.254' }] };
}

describe(`strand-ipvlan chained after another plugin, through libcni (${whereAmI()})`, () => {
  for (const version of VERSIONS) {
    it(`${version}: two pods on one master reach each other; prevResult handed on; CHECK; DEL twice`, async () => {
      requireStrandPlugin('strand-ipvlan');
      netns = new NetnsSet();
      env = new CniEnv();
      const rec = installRecorder(env);
      const host = netns.add('h');
      const pods = [netns.add('p1'), netns.add('p2')];
      const master = `${netns.prefix}-m0`;
      ip(['link', 'add', master, 'type', 'dummy'], { ns: host });
      ip(['link', 'set', master, 'up'], { ns: host });

      const results = [];
      for (const [i, pod] of pods.entries()) {
        const net = `${netns.prefix}-n${i}`;
        const address = `10.88.0.${11 + i}/24`;
        env.writeConflist(net, {
          cniVersion: version,
          plugins: [
            rec.first(firstResult(version, master, address)),
            { type: 'strand-ipvlan', mode: 'l2' },
            rec.tag(1),
            { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_filter': '1' } },
            rec.tag(2),
          ],
        });
        const opts = { hostNs: host, containerId: `${netns.prefix}-c${i}`, path: [rec.dir, binDir, refBinDir] };
        const result = ok(await env.run('add', net, netns.path(pod), opts));
        expect(result.cniVersion).toBe(version);
        const adds = rec.records().filter((r) => r.cmd === 'ADD' && r.conf.name === net);
        expect(adds.map((r) => r.tag)).toEqual(['r0', 'r1', 'r2']);
        expect(adds[2]!.conf.prevResult, 'after tuning').toEqual(adds[1]!.conf.prevResult);
        expect(result).toEqual(adds[1]!.conf.prevResult);
        expect(result.ips.map((x: { address: string }) => x.address)).toEqual([address]);
        expect(result.interfaces.find((x: { sandbox?: string }) => x.sandbox)?.sandbox).toBe(netns.path(pod));

        const [eth0] = ipJson<Array<{ link_index?: number; linkinfo?: { info_kind?: string } }>>(['-d', 'link', 'show', 'eth0'], { ns: pod });
        expect(eth0?.linkinfo?.info_kind).toBe('ipvlan');
        const [m] = ipJson<Array<{ ifindex: number }>>(['link', 'show', master], { ns: host });
        expect(eth0?.link_index).toBe(m!.ifindex);
        expect(globalAddrs(pod, 'eth0')).toEqual([address]);
        expect(nsExec(pod, 'cat', ['/proc/sys/net/ipv4/conf/eth0/arp_filter']).trim()).toBe('1');
        if (version !== '0.3.0') ok(await env.run('check', net, netns.path(pod), opts));
        results.push({ net, opts });
      }
      nsExec(pods[0]!, 'ping', ['-c', '1', '-W', '2', '10.88.0.12']);

      for (const [i, pod] of pods.entries()) {
        const { net, opts } = results[i]!;
        ok(await env.run('del', net, netns.path(pod), opts));
        ok(await env.run('del', net, netns.path(pod), opts));
        expect(linkNames(pod)).toEqual(['lo']);
      }
      expect(linkNames(host).sort()).toEqual([master, 'lo'].sort());
      expect(env.cachedResults(`${netns.prefix}-n0`)).toEqual([]);
    });
  }
});
