// strand-bridge options one by one, checked in the kernel: mtu, hairpinMode, promiscMode,
// portIsolation, MAC sources and their precedence, forceAddress, L2-only networks,
// disableContainerInterface, ipMasq with both backends (DEL and GC remove the rules),
// STATUS and GC delegated to IPAM, DNS from the config.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ip, ipJson, nsExec } from '../../helpers/netns.ts';
import { BridgeEnv, bare, ok, ping, requireBinaries, STRAND_BRIDGE, type Attachment, type Conf } from './harness.ts';

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
  operstate: string;
  flags: string[];
  promiscuity: number;
  linkinfo?: { info_slave_data?: { hairpin?: boolean; isolated?: boolean } };
}

function setup(n = 1): { e: BridgeEnv; host: string; pods: Attachment[] } {
  const e = new BridgeEnv();
  env = e;
  const host = e.ns.add('host');
  const pods: Attachment[] = [];
  for (let i = 0; i < n; i++) pods.push({ podNs: e.ns.add(`p${i}`), containerId: `${e.prefix}-c${i}`, ifName: 'eth0' });
  return { e, host, pods };
}

function link(ns: string, name: string): IpLink {
  return ipJson<IpLink[]>(['-d', 'link', 'show', name], { ns })[0]!;
}

function natRules(ns: string): string[] {
  return nsExec(ns, 'iptables-save', ['-t', 'nat'])
    .split('\n')
    .filter((l) => l.includes('CNI-'));
}

function nftRuleset(ns: string): string {
  return nsExec(ns, 'nft', ['list', 'ruleset']);
}

async function addAll(e: BridgeEnv, host: string, pods: Attachment[], conf: Conf): Promise<any[]> {
  const out: any[] = [];
  for (const p of pods) out.push(ok(await e.run(STRAND_BRIDGE, host, 'ADD', p, conf), `ADD ${p.podNs}`));
  return out;
}

async function delAll(e: BridgeEnv, host: string, pods: Attachment[], conf: Conf): Promise<void> {
  for (const p of pods) ok(await e.run(STRAND_BRIDGE, host, 'DEL', p, conf), `DEL ${p.podNs}`);
}

describe('strand-bridge options', () => {
  it('mtu: bridge and both veth ends', async () => {
    const { e, host, pods } = setup();
    const [r] = await addAll(e, host, pods, e.conf('1.0.0', { isGateway: true, mtu: 1400 }));
    expect(link(host, e.bridge).mtu).toBe(1400);
    expect(link(host, r.interfaces[1].name).mtu).toBe(1400);
    expect(link(pods[0]!.podNs, 'eth0').mtu).toBe(1400);
  });

  it('hairpinMode and portIsolation set the bridge port flags', async () => {
    const { e, host, pods } = setup(2);
    const [a] = await addAll(e, host, [pods[0]!], e.conf('1.0.0', { isGateway: true, hairpinMode: true }));
    const [b] = await addAll(e, host, [pods[1]!], e.conf('1.0.0', { isGateway: true, portIsolation: true }));
    expect(link(host, a.interfaces[1].name).linkinfo?.info_slave_data).toMatchObject({ hairpin: true, isolated: false });
    expect(link(host, b.interfaces[1].name).linkinfo?.info_slave_data).toMatchObject({ hairpin: false, isolated: true });
  });

  it('portIsolation: isolated pods reach the gateway but not each other', async () => {
    const { e, host, pods } = setup(2);
    const rs = await addAll(e, host, pods, e.conf('1.0.0', { isGateway: true, portIsolation: true }));
    expect(ping(pods[0]!.podNs, '10.77.0.1')).toBe(true);
    expect(ping(pods[1]!.podNs, '10.77.0.1')).toBe(true);
    expect(ping(pods[0]!.podNs, bare(rs[1].ips[0].address))).toBe(false);
  });

  it('promiscMode: the bridge is promiscuous', async () => {
    const { e, host, pods } = setup();
    await addAll(e, host, pods, e.conf('1.0.0', { isGateway: true, promiscMode: true }));
    expect(link(host, e.bridge).flags).toContain('PROMISC');
  });

  it('MAC: CNI_ARGS < args.cni.mac < runtimeConfig.mac', async () => {
    const { e, host, pods } = setup(3);
    const envMac = '0a:58:0a:4d:00:11';
    const argsMac = '0a:58:0a:4d:00:22';
    const rtMac = '0a:58:0a:4d:00:33';
    const cniArgs = `IgnoreUnknown=1;K8S_POD_NAME=x;MAC=${envMac}`;
    const cases: Array<[Conf, string]> = [
      [e.conf('1.0.0'), envMac],
      [e.conf('1.0.0', { args: { cni: { mac: argsMac } } }), argsMac],
      [e.conf('1.0.0', { args: { cni: { mac: argsMac } }, runtimeConfig: { mac: rtMac.toUpperCase() } }), rtMac],
    ];
    for (const [i, [conf, want]] of cases.entries()) {
      const r = ok(await e.run(STRAND_BRIDGE, host, 'ADD', pods[i]!, conf, { args: cniArgs }));
      expect(r.interfaces[2].mac).toBe(want);
      expect(link(pods[i]!.podNs, 'eth0').address).toBe(want);
    }
  });

  it('CNI_ARGS with an unknown key and no IgnoreUnknown: code 4', async () => {
    const { e, host, pods } = setup();
    const r = await e.run(STRAND_BRIDGE, host, 'ADD', pods[0]!, e.conf('1.0.0'), { args: 'FOO=bar' });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(4);
  });

  it('forceAddress replaces a different gateway address on the bridge', async () => {
    const { e, host, pods } = setup();
    ip(['link', 'add', e.bridge, 'type', 'bridge'], { ns: host });
    ip(['addr', 'add', '10.77.0.254/24', 'dev', e.bridge], { ns: host });
    await addAll(e, host, pods, e.conf('1.0.0', { isGateway: true, forceAddress: true }));
    const addrs = ipJson<Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(['addr', 'show', e.bridge], { ns: host });
    expect(addrs[0]!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)).toEqual(['10.77.0.1/24']);
  });

  it('ipam {}: L2 only, pods up without addresses, reachable once addressed by hand', async () => {
    const { e, host, pods } = setup(2);
    const rs = await addAll(e, host, pods, e.conf('1.0.0', {}, null));
    for (const r of rs) expect(r.ips).toBeUndefined();
    for (const [i, p] of pods.entries()) {
      expect(link(p.podNs, 'eth0').flags).toContain('UP');
      ip(['addr', 'add', `192.168.77.${i + 1}/24`, 'dev', 'eth0'], { ns: p.podNs });
    }
    expect(ping(pods[0]!.podNs, '192.168.77.2')).toBe(true);
    await delAll(e, host, pods, e.conf('1.0.0', {}, null));
    await delAll(e, host, pods, e.conf('1.0.0', {}, null));
    expect(
      ipJson<IpLink[]>(['link', 'show'], { ns: host })
        .map((l) => l.ifname)
        .sort(),
    ).toEqual([e.bridge, 'lo'].sort());
  });

  it('disableContainerInterface: the pod end stays down', async () => {
    const { e, host, pods } = setup();
    const conf = e.conf('1.0.0', { disableContainerInterface: true }, null);
    const [r] = await addAll(e, host, pods, conf);
    expect(link(pods[0]!.podNs, 'eth0').flags).not.toContain('UP');
    expect(r.interfaces[2].name).toBe('eth0');
    await delAll(e, host, pods, conf);
  });

  it('isDefaultGateway: default route via the bridge, reported in the result', async () => {
    const { e, host, pods } = setup();
    const [r] = await addAll(e, host, pods, e.conf('1.0.0', { isDefaultGateway: true }));
    expect(r.routes).toContainEqual({ dst: '0.0.0.0/0', gw: '10.77.0.1' });
    const routes = ipJson<Array<{ dst: string; gateway?: string }>>(['route', 'show', 'default'], { ns: pods[0]!.podNs });
    expect(routes).toEqual([expect.objectContaining({ dst: 'default', gateway: '10.77.0.1' })]);
  });

  it('dns from the config replaces IPAM dns', async () => {
    const { e, host, pods } = setup();
    const dns = { nameservers: ['10.77.0.10'], search: ['cluster.local'] };
    const [r] = await addAll(e, host, pods, e.conf('1.0.0', { dns }));
    expect(r.dns).toEqual(dns);
  });

  it.each(['iptables', 'nftables', undefined])('ipMasq (backend %s): rules per pod, DEL removes them', async (backend) => {
    const { e, host, pods } = setup(2);
    const conf = e.conf('1.0.0', { isGateway: true, ipMasq: true, ...(backend ? { ipMasqBackend: backend } : {}) });
    await addAll(e, host, pods, conf);
    if (backend === 'nftables') {
      const rs = nftRuleset(host);
      expect(rs).toContain('ip saddr 10.77.0.2 ip daddr != 10.77.0.0/24 masquerade');
      expect(rs).toContain('ip saddr 10.77.0.3 ip daddr != 10.77.0.0/24 masquerade');
    } else {
      const rules = natRules(host);
      expect(rules.filter((l) => l.startsWith('-A POSTROUTING'))).toHaveLength(2);
      expect(rules.filter((l) => l.includes('MASQUERADE'))).toHaveLength(2);
    }
    await delAll(e, host, pods, conf);
    expect(natRules(host)).toEqual([]);
    expect(nftRuleset(host)).not.toContain('masquerade comment');
    await delAll(e, host, pods, conf);
  });

  it('1.1.0 STATUS and GC delegate to IPAM; GC drops stale masquerade rules', async () => {
    const { e, host, pods } = setup(2);
    for (const backend of ['iptables', 'nftables']) {
      const conf = e.conf('1.1.0', { isGateway: true, ipMasq: true, ipMasqBackend: backend });
      const rs = await addAll(e, host, pods, conf);
      expect(e.ipamReservations()).toHaveLength(2);
      ok(await e.run(STRAND_BRIDGE, host, 'STATUS', pods[0]!, conf), 'STATUS');
      const valid = [{ containerID: pods[0]!.containerId, ifname: 'eth0' }];
      // pods[1]'s namespace still exists, which strand-ipam's GC honours by default (and its
      // attachment is seconds old): told to release it anyway
      const gcIpam = { ...(conf['ipam'] as Conf), gcGracePeriod: 0, gcKeepLiveNetns: false };
      ok(await e.run(STRAND_BRIDGE, host, 'GC', pods[0]!, { ...conf, ipam: gcIpam, 'cni.dev/valid-attachments': valid }), 'GC');
      expect(e.ipamReservations()).toHaveLength(1);
      if (backend === 'iptables') {
        expect(natRules(host).filter((l) => l.startsWith('-A POSTROUTING'))).toHaveLength(1);
      } else {
        expect(nftRuleset(host)).toContain(`ip saddr ${bare(rs[0].ips[0].address)} `);
        expect(nftRuleset(host)).not.toContain(`ip saddr ${bare(rs[1].ips[0].address)} `);
      }
      await delAll(e, host, pods, conf);
      expect(e.ipamReservations()).toEqual([]);
      expect(natRules(host)).toEqual([]);
    }
  });

  it('STATUS reports the IPAM failure', async () => {
    const { e, host, pods } = setup();
    const conf = e.conf('1.1.0', {});
    const bad = { ...conf, ipam: { ...(conf['ipam'] as Conf), type: 'no-such-ipam' } };
    const r = await e.run(STRAND_BRIDGE, host, 'STATUS', pods[0]!, bad);
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain('no-such-ipam');
  });

  it('CHECK fails when the host veth left the bridge or the pod MAC changed', async () => {
    const { e, host, pods } = setup();
    const conf = e.conf('1.0.0', { isGateway: true });
    const [r] = await addAll(e, host, pods, conf);
    ok(await e.run(STRAND_BRIDGE, host, 'CHECK', pods[0]!, { ...conf, prevResult: r }));
    ip(['link', 'set', r.interfaces[1].name, 'nomaster'], { ns: host });
    const c1 = await e.run(STRAND_BRIDGE, host, 'CHECK', pods[0]!, { ...conf, prevResult: r });
    expect(c1.json?.msg).toMatch(/veth created for bridge .* was not found/);
    ip(['link', 'set', r.interfaces[1].name, 'master', e.bridge], { ns: host });
    ok(await e.run(STRAND_BRIDGE, host, 'CHECK', pods[0]!, { ...conf, prevResult: r }));
    const moved = structuredClone(r);
    moved.interfaces[2].mac = '0a:00:00:00:00:01';
    const c2 = await e.run(STRAND_BRIDGE, host, 'CHECK', pods[0]!, { ...conf, prevResult: moved });
    expect(c2.json?.msg).toMatch(/Mac/);
  });

  it('DEL with the pod namespace already gone, or without CNI_NETNS, still releases the address and rules', async () => {
    const { e, host, pods } = setup(2);
    const conf = e.conf('1.0.0', { isGateway: true, ipMasq: true });
    await addAll(e, host, pods, conf);
    ip(['netns', 'del', pods[0]!.podNs]);
    ok(await e.run(STRAND_BRIDGE, host, 'DEL', pods[0]!, conf));
    ok(await e.run(STRAND_BRIDGE, host, 'DEL', pods[1]!, conf, { netnsPath: '' }));
    expect(e.ipamReservations()).toEqual([]);
    expect(natRules(host)).toEqual([]);
    ip(['link', 'del', 'eth0'], { ns: pods[1]!.podNs });
  });
});
