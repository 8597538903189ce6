import { describe, expect, it } from 'vitest';
import { checkAddConfig, collectTrunk, parseConfig, resolveMac } from '../../../cni/bridge/config.ts';
import { CniError } from '../../../lib/cni/errors.ts';
import type { NetConf } from '../../../lib/cni/types.ts';

const base: NetConf = { cniVersion: '1.0.0', name: 'net', type: 'strand-bridge', ipam: { type: 'host-local' } };

function err(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('no error thrown');
}

describe('bridge config', () => {
  it('defaults as the reference: cni0, no gateway, mtu 0 (kernel default)', () => {
    const c = parseConfig(base);
    expect(c).toMatchObject({ bridge: 'cni0', isGateway: false, isDefaultGateway: false, mtu: 0, vlan: 0, vlanFiltering: false, ipamType: 'host-local' });
    expect(c.trunkVlans).toEqual([]);
  });

  it('isDefaultGateway implies isGateway', () => {
    expect(parseConfig({ ...base, isDefaultGateway: true }).isGateway).toBe(true);
  });

  it('ipam {} is an L2-only network', () => {
    expect(parseConfig({ ...base, ipam: {} as never }).ipamType).toBeUndefined();
  });

  it.each([
    [{ bridge: 'a/b' }, 'bridge'],
    [{ bridge: 'x'.repeat(16) }, 'bridge'],
    [{ bridge: '..' }, 'bridge'],
    [{ mtu: -1 }, 'mtu'],
    [{ mtu: 'big' }, 'mtu'],
    [{ mtu: 40 }, 'mtu'],
    [{ vlan: 4095 }, 'vlan'],
    [{ isGateway: 'yes' }, 'isGateway'],
    [{ ipMasqBackend: 'pf' }, 'ipMasqBackend'],
    [{ vlanTrunk: [{ minID: 5 }] }, 'vlanTrunk[0].maxID'],
    [{ vlanTrunk: [{ id: 0 }] }, 'vlanTrunk[0].id'],
    [{ vlanTrunk: [{ minID: 9, maxID: 3 }] }, 'vlanTrunk[0]'],
    [{ runtimeConfig: { mac: 'zz' } }, 'runtimeConfig.mac'],
    [{ args: { cni: { mac: 12 } } }, 'args.cni.mac'],
  ])('%j is code 7 naming %s', (extra, field) => {
    const e = err(() => parseConfig({ ...base, ...extra } as NetConf));
    expect(e.code).toBe(7);
    expect(e.details).toContain(field);
  });

  it('vlanTrunk ranges and ids are merged, sorted, unique', () => {
    expect(collectTrunk([{ minID: 10, maxID: 12 }, { id: 11 }, { id: 3 }])).toEqual([3, 10, 11, 12]);
    const c = parseConfig({ ...base, vlanTrunk: [{ id: 7 }] } as NetConf);
    expect(c.vlanFiltering).toBe(true);
    expect(c.trunkVlans).toEqual([7]);
  });

  it('ADD refuses hairpin with promisc, and IPAM with disableContainerInterface', () => {
    expect(err(() => checkAddConfig(parseConfig({ ...base, hairpinMode: true, promiscMode: true } as NetConf))).code).toBe(7);
    expect(err(() => checkAddConfig(parseConfig({ ...base, disableContainerInterface: true } as NetConf))).code).toBe(7);
    expect(() => checkAddConfig(parseConfig({ ...base, ipam: {} as never, disableContainerInterface: true } as NetConf))).not.toThrow();
  });

  it('MAC precedence: CNI_ARGS < args.cni.mac < runtimeConfig.mac, normalised', () => {
    const c = parseConfig(base);
    expect(resolveMac(c, '')).toBeUndefined();
    expect(resolveMac(c, 'IgnoreUnknown=1;MAC=0A-58-00-00-00-01;K8S_POD_NAME=p')).toBe('0a:58:00:00:00:01');
    const withArgs = parseConfig({ ...base, args: { cni: { mac: '0a:58:00:00:00:02' } } });
    expect(resolveMac(withArgs, 'MAC=0a:58:00:00:00:01')).toBe('0a:58:00:00:00:02');
    const withRt = parseConfig({ ...base, args: { cni: { mac: '0a:58:00:00:00:02' } }, runtimeConfig: { mac: '0A:58:00:00:00:03' } });
    expect(resolveMac(withRt, 'MAC=0a:58:00:00:00:01')).toBe('0a:58:00:00:00:03');
  });

  it('CNI_ARGS: bad MAC and unknown keys without IgnoreUnknown are code 4', () => {
    const c = parseConfig(base);
    expect(err(() => resolveMac(c, 'MAC=nope')).code).toBe(4);
    expect(err(() => resolveMac(c, 'FOO=1')).code).toBe(4);
    expect(err(() => resolveMac(c, 'MAC=01:00:5e:00:00:01')).code).toBe(4);
  });

  it('a multicast or all-zero args.cni.mac / runtimeConfig.mac: code 7 naming the field', () => {
    expect(err(() => resolveMac(parseConfig({ ...base, args: { cni: { mac: '01:00:5e:00:00:01' } } }), ''))).toMatchObject({
      code: 7,
      msg: 'invalid config field args.cni.mac',
    });
    expect(err(() => resolveMac(parseConfig({ ...base, runtimeConfig: { mac: '00:00:00:00:00:00' } }), ''))).toMatchObject({
      code: 7,
      msg: 'invalid config field runtimeConfig.mac',
    });
  });
});
