import { describe, expect, it } from 'vitest';
import { calcGateways } from '../../../cni/bridge/add.ts';
import { iptablesMasqRules, masqChainName, masqComment, nftMasqComment } from '../../../cni/bridge/masq.ts';
import { vlanRanges } from '../../../cni/bridge/vlan.ts';
import type { Result } from '../../../lib/cni/types.ts';
import { UndoStack } from '../../../lib/plugin/undo.ts';

describe('calcGateways', () => {
  const gw = { isGateway: true, isDefaultGateway: false };
  it('fills a missing gateway with the first address of the subnet and sets interface 2', () => {
    const r: Result = { cniVersion: '1.1.0', ips: [{ address: '10.1.2.7/24' }, { address: 'fd00:1::9/64' }] };
    const gws = calcGateways(r, gw);
    expect(r.ips).toEqual([
      { address: '10.1.2.7/24', gateway: '10.1.2.1', interface: 2 },
      { address: 'fd00:1::9/64', gateway: 'fd00:1::1', interface: 2 },
    ]);
    expect(gws).toEqual([
      { family: 4, cidr: '10.1.2.1/24' },
      { family: 6, cidr: 'fd00:1::1/64' },
    ]);
  });

  it('keeps the IPAM gateway; no bridge address when not a gateway', () => {
    const r: Result = { cniVersion: '1.1.0', ips: [{ address: '10.1.2.7/24', gateway: '10.1.2.254' }] };
    expect(calcGateways(r, { isGateway: false, isDefaultGateway: false })).toEqual([]);
    expect(r.ips![0]!.gateway).toBe('10.1.2.254');
  });

  it('isDefaultGateway adds one default route per family unless IPAM gave one with a gateway', () => {
    const r: Result = {
      cniVersion: '1.1.0',
      ips: [{ address: '10.1.2.7/24' }, { address: '10.9.0.3/16' }, { address: 'fd00:1::9/64' }],
      routes: [{ dst: '::/0', gw: 'fd00:1::fe' }, { dst: '0.0.0.0/0' }],
    };
    calcGateways(r, { isGateway: true, isDefaultGateway: true });
    expect(r.routes).toEqual([{ dst: '::/0', gw: 'fd00:1::fe' }, { dst: '0.0.0.0/0' }, { dst: '0.0.0.0/0', gw: '10.1.2.1' }]);
  });
});

describe('masquerade rule layout (as the reference plugins)', () => {
  it('chain name: CNI- + sha512(network + container ID), 28 characters', () => {
    // value produced by the reference bridge 1.1.1 for network "h7net", container "abc123"
    expect(masqChainName('h7net', 'abc123')).toBe('CNI-54c59a1876adf899993e422f');
  });

  it('iptables rules in iptables-save form', () => {
    const chain = masqChainName('n', 'c');
    const { family, rules } = iptablesMasqRules('10.1.2.7/24', chain, masqComment('n', 'c'));
    expect(family).toBe(4);
    expect(rules).toEqual([
      `-A ${chain} -d 10.1.2.0/24 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j ACCEPT`,
      `-A ${chain} ! -d 224.0.0.0/4 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j MASQUERADE`,
      `-A POSTROUTING -s 10.1.2.7/32 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j ${chain}`,
    ]);
    expect(iptablesMasqRules('FD00:0:0::5/64', chain, 'x').rules[2]).toContain('-s fd00::5/128');
  });

  it('nftables comment: hashes first, truncated to 128, quotes stripped', () => {
    const c = nftMasqComment('my"net', 'eth0', 'x'.repeat(200));
    expect(c).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}, net: mynet, if: eth0, id: x+$/);
    expect(c.length).toBe(128);
  });
});

describe('vlanRanges', () => {
  it('compresses consecutive IDs', () => {
    expect(vlanRanges([1, 2, 3, 7, 9, 10])).toEqual([
      [1, 3],
      [7, 7],
      [9, 10],
    ]);
    expect(vlanRanges([])).toEqual([]);
  });
});

describe('UndoStack', () => {
  it('unwinds last-in-first-out, keeps going past failing steps, rethrows the original error', async () => {
    const order: string[] = [];
    const logs: string[] = [];
    const u = new UndoStack((m) => logs.push(m));
    const boom = new Error('step 3 failed');
    await expect(
      u.run(async (s) => {
        s.push('a', () => void order.push('a'));
        s.push('b', () => {
          order.push('b');
          throw new Error('undo b broke');
        });
        s.push('c', async () => void order.push('c'));
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(order).toEqual(['c', 'b', 'a']);
    expect(logs).toEqual(['undo "b" failed: undo b broke']);
  });

  it('commits on success: nothing is undone', async () => {
    const order: string[] = [];
    const u = new UndoStack(() => {});
    expect(
      await u.run(async (s) => {
        s.push('a', () => void order.push('a'));
        return 42;
      }),
    ).toBe(42);
    await u.unwind();
    expect(order).toEqual([]);
  });
});
