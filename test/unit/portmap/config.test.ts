// strand-portmap's config parsing and the rules it derives, without root: defaults and
// cross-field rules as the reference's parseConfig/ensureBackend, the pod addresses it
// picks from prevResult, and the exact iptables/nftables rules, including masqAll as
// upstream has it since containernetworking/plugins 3d27709 (Debian's 1.1.1 has no
// masqAll, so the integration differential cannot cover it).
import { describe, expect, it } from 'vitest';
import { CniError } from '../../../lib/cni/errors.ts';
import type { NetConf, Result } from '../../../lib/cni/types.ts';
import { backendOfConditions, containerAddrs, parseConfig, type PortmapConf } from '../../../cni/portmap/config.ts';
import { dnatChainName, dnatComment, podDnatChain } from '../../../cni/portmap/iptables.ts';
import { podRules } from '../../../cni/portmap/nftables.ts';

const base = { cniVersion: '1.0.0', name: 'pmnet', type: 'strand-portmap' };
const tcp8080 = { hostPort: 8080, containerPort: 80, protocol: 'tcp' };

function parse(extra: Record<string, unknown>, backend: 'iptables' | 'nftables' = 'iptables'): PortmapConf {
  return parseConfig({ ...base, ...extra } as NetConf, () => backend);
}

function codeAndText(fn: () => unknown): { code: number; text: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return { code: e.code, text: `${e.msg} ${e.details}` };
    throw e;
  }
  throw new Error('no error');
}

describe('parseConfig', () => {
  it('defaults as the reference: snat on, masqAll off, mark bit 13, no conditions, no mappings', () => {
    const c = parse({});
    expect(c).toMatchObject({ backend: 'iptables', snat: true, masqAll: false, markMasqBit: 13, conditionsV4: [], conditionsV6: [], portMappings: [] });
    expect(c.externalSetMarkChain).toBeUndefined();
  });

  it('without `backend`: the default (iptables unless only nft exists) decides', () => {
    expect(parse({}, 'nftables').backend).toBe('nftables');
    expect(parse({ backend: 'iptables' }, 'nftables').backend).toBe('iptables');
  });

  it('options of the other backend are an error naming them', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ backend: 'nftables', externalSetMarkChain: 'KUBE-MARK-MASQ' }, 'externalSetMarkChain'],
      [{ backend: 'nftables', conditionsV4: ['-s', '10.0.0.0/8'] }, 'conditionsV4'],
      [{ backend: 'iptables', conditionsV6: ['ip6 saddr fd00::/8'] }, 'conditionsV6'],
      // no backend given: iptables by default, nftables conditions do not fit
      [{ conditionsV4: ['ip saddr 10.0.0.0/8'] }, 'conditionsV4'],
    ];
    for (const [conf, field] of cases) {
      const e = codeAndText(() => parse(conf));
      expect(e.code, field).toBe(7);
      expect(e.text).toContain(field);
    }
    expect(parse({ conditionsV4: ['ip saddr 10.0.0.0/8'] }, 'nftables').conditionsV4).toEqual(['ip saddr 10.0.0.0/8']);
  });

  it('backendOfConditions: "-" or "!" first means iptables, anything else nftables, none undefined', () => {
    expect(backendOfConditions(['!', '-s', 'x'])).toBe('iptables');
    expect(backendOfConditions(['-d', 'x'])).toBe('iptables');
    expect(backendOfConditions(['ip daddr 1.2.3.4'])).toBe('nftables');
    expect(backendOfConditions([])).toBeUndefined();
    expect(backendOfConditions([''])).toBeUndefined();
  });

  it('markMasqBit 0..31, not together with externalSetMarkChain', () => {
    expect(parse({ markMasqBit: 0 }).markMasqBit).toBe(0);
    expect(parse({ markMasqBit: 31 }).markMasqBit).toBe(31);
    for (const bad of [-1, 32, 1.5, '13']) expect(codeAndText(() => parse({ markMasqBit: bad })).code, String(bad)).toBe(7);
    const both = codeAndText(() => parse({ markMasqBit: 14, externalSetMarkChain: 'X' }));
    expect(both.text).toContain('cannot specify externalSetMarkChain and markMasqBit');
  });

  it('port mappings: ports 1..65535, tcp/udp/sctp in any case, hostIP an address (canonical, IPv4-mapped as IPv4)', () => {
    const c = parse({
      runtimeConfig: {
        portMappings: [
          { hostPort: 1, containerPort: 65535, protocol: 'TCP' },
          { hostPort: 65535, containerPort: 1, protocol: 'Sctp', hostIP: '' },
          { hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '::ffff:192.0.2.1' },
          { hostPort: 54, containerPort: 54, protocol: 'udp', hostIP: 'FD00:0::1' },
        ],
      },
    });
    expect(c.portMappings).toEqual([
      { hostPort: 1, containerPort: 65535, protocol: 'tcp' },
      { hostPort: 65535, containerPort: 1, protocol: 'sctp' },
      { hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1' },
      { hostPort: 54, containerPort: 54, protocol: 'udp', hostIP: 'fd00::1' },
    ]);
  });

  it("mapping keys as Go matches them: containerd's go-cni sends HostPort/ContainerPort/Protocol/HostIP (no JSON tags)", () => {
    const c = parse({
      runtimeConfig: {
        portMappings: [
          { HostPort: 8080, ContainerPort: 80, Protocol: 'tcp', HostIP: '' },
          { HOSTPORT: 1, containerport: 2, protocol: 'udp' },
        ],
      },
    });
    expect(c.portMappings).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 1, containerPort: 2, protocol: 'udp' },
    ]);
    // two keys for one field: the later wins, as in Go
    expect(parse({ runtimeConfig: { portMappings: [{ HostPort: 1, hostPort: 2, containerPort: 3, protocol: 'tcp' }] } }).portMappings[0]!.hostPort).toBe(2);
    expect(parse({ runtimeConfig: { portMappings: [{ hostPort: 2, HostPort: 1, containerPort: 3, protocol: 'tcp' }] } }).portMappings[0]!.hostPort).toBe(1);
  });

  it('bad port mappings are code 7 naming the field', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ ...tcp8080, hostPort: 0 }, 'hostPort'],
      [{ ...tcp8080, hostPort: 65536 }, 'hostPort'],
      [{ ...tcp8080, containerPort: 0 }, 'containerPort'],
      [{ ...tcp8080, hostPort: '8080' }, 'hostPort'],
      [{ ...tcp8080, protocol: 'icmp' }, 'protocol'],
      [{ ...tcp8080, protocol: '' }, 'protocol'],
      [{ hostPort: 8080, containerPort: 80 }, 'protocol'],
      [{ ...tcp8080, hostIP: '10.0.0.256' }, 'hostIP'],
      [{ ...tcp8080, hostIP: 'localhost' }, 'hostIP'],
    ];
    for (const [m, field] of bad) {
      const e = codeAndText(() => parse({ runtimeConfig: { portMappings: [m] } }));
      expect(e.code, JSON.stringify(m)).toBe(7);
      expect(e.text, JSON.stringify(m)).toContain(field);
    }
  });

  it('conditions: addresses, ports, negation, interface names and sets pass; shell and nft statement syntax do not', () => {
    expect(parse({ conditionsV4: ['-s', '10.0.0.0/8', '!', '-i', 'eth0', '-m', 'comment', '--comment', 'a b'] }).conditionsV4).toHaveLength(9);
    expect(parse({ conditionsV4: ['ip saddr { 10.0.0.0/8, 192.168.0.0/16 } iifname != lo'] }, 'nftables').conditionsV4).toHaveLength(1);
    for (const bad of ['1.2.3.4; rm -rf /', '$(reboot)', '`id`', 'a|b', 'a&b', 'x > /tmp/f', 'tcp dport 1 #', 'a\nflush ruleset', '"x"', "'x'", 'a\\b']) {
      const e = codeAndText(() => parse({ conditionsV4: ['-s', bad] }));
      expect(e.code, bad).toBe(7);
      expect(e.text, bad).toContain('conditionsV4');
    }
  });

  it('externalSetMarkChain: an iptables chain name', () => {
    expect(parse({ externalSetMarkChain: 'KUBE-MARK-MASQ' }).externalSetMarkChain).toBe('KUBE-MARK-MASQ');
    for (const bad of ['', 'A B', 'x'.repeat(29), '-j', 'a;b']) expect(codeAndText(() => parse({ externalSetMarkChain: bad })).code, bad).toBe(7);
  });
});

describe('containerAddrs (the reference pick from prevResult)', () => {
  const ifs = [{ name: 'br0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/run/netns/p' }];

  it('the first IPv4 and the first IPv6 address of CNI_IFNAME in a sandbox', () => {
    const prev: Result = {
      cniVersion: '1.1.0',
      interfaces: ifs,
      ips: [
        { address: '10.1.0.1/24', interface: 0 },
        { address: '10.1.0.5/24', interface: 2 },
        { address: '10.1.0.6/24', interface: 2 },
        { address: 'fd00::5/64', interface: 2 },
      ],
    };
    expect(containerAddrs(prev, 'eth0')).toEqual([
      { family: 4, ip: '10.1.0.5', cidr: '10.1.0.5/24' },
      { family: 6, ip: 'fd00::5', cidr: 'fd00::5/64' },
    ]);
    expect(containerAddrs(prev, 'net1')).toEqual([]);
  });

  it('addresses without an interface index, or an index out of range, count', () => {
    const prev: Result = { cniVersion: '1.1.0', interfaces: ifs, ips: [{ address: '10.2.0.5/16' }, { address: 'fd00::7/64', interface: 9 }] };
    expect(containerAddrs(prev, 'eth0').map((a) => a.ip)).toEqual(['10.2.0.5', 'fd00::7']);
  });
});

describe('iptables rules (the reference layout)', () => {
  const v4 = { family: 4, ip: '10.77.0.5', cidr: '10.77.0.5/24' } as const;
  const v6 = { family: 6, ip: 'fd77::5', cidr: 'fd77::5/64' } as const;

  it('chain name and comment as the reference computes them (CNI-DN- + SHA-512 of name + id, 28 characters)', () => {
    // captured from Debian's portmap 1.1.1 for network "pmnet", container "ctr1"
    expect(dnatChainName('pmnet', 'ctr1')).toBe('CNI-DN-323d23e06ba2fdaccfbf7');
    expect(dnatComment('pmnet', 'ctr1')).toBe('dnat name: "pmnet" id: "ctr1"');
    const long = dnatComment('n'.repeat(255), 'c');
    expect(long).toHaveLength(256);
    expect(long.endsWith('...')).toBe(true);
  });

  it('per mapping: hairpin mark, localhost mark (IPv4), DNAT; entry rules per protocol, 15 ports each', () => {
    const maps = Array.from({ length: 16 }, (_, i) => ({ hostPort: 9000 + i, containerPort: 80, protocol: 'tcp' }));
    const c = podDnatChain(parse({ runtimeConfig: { portMappings: [...maps, { hostPort: 53, containerPort: 53, protocol: 'udp' }] } }), 'ctr1', v4);
    expect(c.entryRules.map((r) => r.slice(-3))).toEqual([
      ['tcp', '--destination-ports', '9000,9001,9002,9003,9004,9005,9006,9007,9008,9009,9010,9011,9012,9013,9014'],
      ['tcp', '--destination-ports', '9015'],
      ['udp', '--destination-ports', '53'],
    ]);
    expect(c.entryRules[0]!.slice(0, 6)).toEqual(['-m', 'comment', '--comment', 'dnat name: "pmnet" id: "ctr1"', '-m', 'multiport']);
    expect(c.rules.slice(0, 3)).toEqual([
      ['-p', 'tcp', '--dport', '9000', '-s', '10.77.0.5/24', '-j', 'CNI-HOSTPORT-SETMARK'],
      ['-p', 'tcp', '--dport', '9000', '-s', '127.0.0.1', '-j', 'CNI-HOSTPORT-SETMARK'],
      ['-p', 'tcp', '--dport', '9000', '-j', 'DNAT', '--to-destination', '10.77.0.5:80'],
    ]);
    expect(c.rules).toHaveLength(17 * 3);
  });

  it('masqAll (upstream): the mark rule matches every source, no localhost rule', () => {
    const conf = parse({ masqAll: true, runtimeConfig: { portMappings: [tcp8080] } });
    expect(podDnatChain(conf, 'c', v4).rules).toEqual([
      ['-p', 'tcp', '--dport', '8080', '-s', '0.0.0.0/0', '-j', 'CNI-HOSTPORT-SETMARK'],
      ['-p', 'tcp', '--dport', '8080', '-j', 'DNAT', '--to-destination', '10.77.0.5:80'],
    ]);
    expect(podDnatChain(conf, 'c', v6).rules[0]).toContain('::/0');
  });

  it('hostIP of the other family skips the mapping; 0.0.0.0 and :: match any address; externalSetMarkChain replaces SETMARK; snat off has no mark rules', () => {
    const maps = [
      { ...tcp8080, hostIP: '192.0.2.1' },
      { hostPort: 8081, containerPort: 81, protocol: 'tcp', hostIP: 'fd00::1' },
      { hostPort: 8082, containerPort: 82, protocol: 'tcp', hostIP: '::' },
    ];
    const c6 = podDnatChain(parse({ externalSetMarkChain: 'KUBE-MARK-MASQ', runtimeConfig: { portMappings: maps } }), 'c', v6);
    expect(c6.rules).toEqual([
      ['-p', 'tcp', '--dport', '8081', '-d', 'fd00::1', '-s', 'fd77::5/64', '-j', 'KUBE-MARK-MASQ'],
      ['-p', 'tcp', '--dport', '8081', '-d', 'fd00::1', '-j', 'DNAT', '--to-destination', '[fd77::5]:81'],
      ['-p', 'tcp', '--dport', '8082', '-s', 'fd77::5/64', '-j', 'KUBE-MARK-MASQ'],
      ['-p', 'tcp', '--dport', '8082', '-j', 'DNAT', '--to-destination', '[fd77::5]:82'],
    ]);
    // the entry rule still lists every port of the protocol (as the reference)
    expect(c6.entryRules[0]).toContain('8080,8081,8082');
    expect(podDnatChain(parse({ snat: false, runtimeConfig: { portMappings: [tcp8080] } }), 'c', v4).rules).toEqual([
      ['-p', 'tcp', '--dport', '8080', '-j', 'DNAT', '--to-destination', '10.77.0.5:80'],
    ]);
  });
});

describe('nftables rules (the reference layout)', () => {
  const v4 = { family: 4, ip: '10.0.0.2', cidr: '10.0.0.2/24' } as const;
  const v6 = { family: 6, ip: 'fd00::2', cidr: 'fd00::2/64' } as const;

  it('dnat per mapping, hairpin and localhost masquerade (IPv4)', () => {
    const conf = parse({ backend: 'nftables', runtimeConfig: { portMappings: [tcp8080, { ...tcp8080, hostPort: 8443, hostIP: '192.0.2.1' }] } });
    expect(podRules(conf, v4)).toEqual([
      { chain: 'hostports', rule: 'tcp dport 8080 dnat to 10.0.0.2:80' },
      { chain: 'hostports', rule: 'ip daddr 192.0.2.1 tcp dport 8443 dnat to 10.0.0.2:80' },
      { chain: 'masquerading', rule: 'ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade' },
      { chain: 'masquerading', rule: 'ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade' },
    ]);
    expect(podRules(conf, v6)).toEqual([
      { chain: 'hostports', rule: 'tcp dport 8080 dnat to [fd00::2]:80' },
      { chain: 'masquerading', rule: 'ip6 saddr fd00::2 ip6 daddr fd00::2 masquerade' },
    ]);
  });

  it('masqAll (upstream 3d27709): saddr 0.0.0.0/0 and no localhost rule', () => {
    const conf = parse({ backend: 'nftables', masqAll: true, runtimeConfig: { portMappings: [tcp8080] } });
    expect(podRules(conf, v4).filter((r) => r.chain === 'masquerading')).toEqual([
      { chain: 'masquerading', rule: 'ip saddr 0.0.0.0/0 ip daddr 10.0.0.2 masquerade' },
    ]);
    expect(podRules(conf, v6).filter((r) => r.chain === 'masquerading')).toEqual([
      { chain: 'masquerading', rule: 'ip6 saddr ::/0 ip6 daddr fd00::2 masquerade' },
    ]);
  });
});
