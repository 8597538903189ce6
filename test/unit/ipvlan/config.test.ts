import { describe, expect, it } from 'vitest';
import { addressSource, chainedMaster, parseConfig, type IpvlanConf } from '../../../cni/ipvlan/main.ts';
import { isCniError } from '../../../lib/cni/errors.ts';
import type { NetConf, Result } from '../../../lib/cni/types.ts';

const base: NetConf = { cniVersion: '1.0.0', name: 'n', type: 'strand-ipvlan' };
const prev = (p: Partial<Result>): Result => ({ cniVersion: '1.1.0', ...p });

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (isCniError(e)) return e.code;
    throw e;
  }
  throw new Error('expected a CniError');
}

describe('strand-ipvlan config', () => {
  it.each(['', 'l2', 'l3', 'l3s'])('mode %j is valid', (mode) => {
    expect(() => parseConfig({ ...base, mode })).not.toThrow();
  });

  it.each([{ mode: 'bridge' }, { mode: 'L2' }, { mtu: -5 }, { master: 'a b' }, { linkInContainer: 'true' }])('invalid %j: code 7', (patch) => {
    expect(codeOf(() => parseConfig({ ...base, ...patch } as NetConf))).toBe(7);
  });
});

describe('chained use', () => {
  const c = (p: Partial<IpvlanConf>): IpvlanConf => ({ ...base, ...p }) as IpvlanConf;

  it('an explicit master wins over prevResult', () => {
    expect(chainedMaster(c({ master: 'eth9', prevResult: prev({ interfaces: [{ name: 'x' }, { name: 'y' }] }) }))).toBeUndefined();
  });
  it('no prevResult: no chained master (default route later)', () => {
    expect(chainedMaster(c({}))).toBeUndefined();
  });
  it('the single named interface of prevResult is the master', () => {
    expect(chainedMaster(c({ prevResult: prev({ interfaces: [{ name: 'net1' }] }) }))).toBe('net1');
  });
  it.each([[[]], [[{ name: 'a' }, { name: 'b' }]], [[{ name: '' }]]])('prevResult interfaces %j: code 7', (interfaces) => {
    expect(codeOf(() => chainedMaster(c({ prevResult: prev({ interfaces }) })))).toBe(7);
  });

  it('addresses: IPAM when configured, even with prevResult addresses', () => {
    const conf = c({ ipam: { type: 'host-local' }, prevResult: prev({ ips: [{ address: '10.0.0.2/24' }] }) });
    expect(addressSource(conf)).toEqual({ from: 'ipam' });
  });
  it('addresses: prevResult without IPAM', () => {
    const p = prev({ interfaces: [{ name: 'm' }], ips: [{ address: '10.0.0.2/24', interface: 0 }] });
    expect(addressSource(c({ prevResult: p }))).toEqual({ from: 'prev', result: p });
  });
  it('no IPAM and no prevResult addresses: code 7', () => {
    expect(codeOf(() => addressSource(c({ ipam: {} as never })))).toBe(7);
    expect(codeOf(() => addressSource(c({ prevResult: prev({ ips: [] }) })))).toBe(7);
  });
});
