import { describe, expect, it } from 'vitest';
import { isCniError } from '../../../lib/cni/errors.ts';
import type { NetConf } from '../../../lib/cni/types.ts';
import { parseConfig, resolveMac, type MacvlanConf } from '../../../cni/macvlan/main.ts';
import { ipamType } from '../../../cni/sublink/plugin.ts';
import { checkMtu, tempLinkName } from '../../../cni/sublink/link.ts';

const base: NetConf = { cniVersion: '1.0.0', name: 'n', type: 'strand-macvlan' };

function codeOf(fn: () => unknown): { code: number; text: string } {
  try {
    fn();
  } catch (e) {
    if (isCniError(e)) return { code: e.code, text: `${e.msg} ${e.details}` };
    throw e;
  }
  throw new Error('expected a CniError');
}

describe('strand-macvlan config', () => {
  it('accepts the reference options', () => {
    const c = parseConfig({ ...base, master: 'eth1', mode: 'vepa', mtu: 1400, mac: '02:00:00:00:00:01', linkInContainer: true, ipam: {} as never });
    expect(c.master).toBe('eth1');
    expect(c.mode).toBe('vepa');
  });

  it.each(['', 'bridge', 'private', 'vepa', 'passthru'])('mode %j is valid', (mode) => {
    expect(() => parseConfig({ ...base, mode })).not.toThrow();
  });

  it.each([
    ['mode', { mode: 'source' }],
    ['mode', { mode: 'l2' }],
    ['mtu', { mtu: -1 }],
    ['mtu', { mtu: 1.5 }],
    ['mtu', { mtu: '1500' }],
    ['mac', { mac: '02:00:00:00:00' }],
    ['master', { master: 'a/b' }],
    ['master', { master: 'x'.repeat(16) }],
    ['linkInContainer', { linkInContainer: 1 }],
    ['runtimeConfig.mac', { runtimeConfig: { mac: 'nope' } }],
    ['args.cni.mac', { args: { cni: { mac: 'nope' } } }],
  ])('invalid %s: code 7 naming it', (field, patch) => {
    const r = codeOf(() => parseConfig({ ...base, ...patch } as NetConf));
    expect(r.code).toBe(7);
    expect(r.text).toContain(field);
  });

  it('unknown fields pass (the spec asks plugins to ignore them)', () => {
    expect(() => parseConfig({ ...base, somethingElse: { a: 1 } })).not.toThrow();
  });
});

describe('mac precedence: mac < CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac', () => {
  const c = (p: Partial<MacvlanConf>): MacvlanConf => ({ ...base, ...p }) as MacvlanConf;
  it('none', () => expect(resolveMac(c({}), '')).toBeUndefined());
  it('config', () => expect(resolveMac(c({ mac: '02:00:00:00:00:01' }), '')).toBe('02:00:00:00:00:01'));
  it('CNI_ARGS over config', () => {
    expect(resolveMac(c({ mac: '02:00:00:00:00:01' }), 'IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:02');
  });
  it('args.cni over CNI_ARGS', () => {
    expect(resolveMac(c({ args: { cni: { mac: '02:00:00:00:00:03' } } }), 'MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:03');
  });
  it('runtimeConfig over everything', () => {
    const conf = c({ mac: '02:00:00:00:00:01', args: { cni: { mac: '02:00:00:00:00:03' } }, runtimeConfig: { mac: '02:00:00:00:00:04' } });
    expect(resolveMac(conf, 'MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:04');
  });
  it('unknown CNI_ARGS without IgnoreUnknown: code 4, as libcni', () => {
    expect(codeOf(() => resolveMac(c({}), 'FOO=1')).code).toBe(4);
  });
  it('a CNI_ARGS MAC that is not one: code 4', () => {
    expect(codeOf(() => resolveMac(c({}), 'MAC=zz')).code).toBe(4);
  });
  it('a multicast or all-zero MAC anywhere: code 7 naming the field (4 for CNI_ARGS), before the kernel sees it', () => {
    expect(codeOf(() => resolveMac(c({ mac: '01:00:5e:00:00:01' }), ''))).toMatchObject({ code: 7 });
    expect(codeOf(() => resolveMac(c({ mac: '01:00:5e:00:00:01' }), '')).text).toMatch(/\bmac\b.*multicast/);
    expect(codeOf(() => resolveMac(c({ args: { cni: { mac: '00:00:00:00:00:00' } } }), '')).text).toMatch(/args\.cni\.mac.*all-zero/);
    expect(codeOf(() => resolveMac(c({ runtimeConfig: { mac: 'ff:ff:ff:ff:ff:ff' } }), '')).text).toMatch(/runtimeConfig\.mac/);
    expect(codeOf(() => resolveMac(c({}), 'MAC=01:00:5e:00:00:01')).code).toBe(4);
    expect(resolveMac(c({ mac: '0A-00-00-00-00-01' }), '')).toBe('0a:00:00:00:00:01');
  });
});

describe('helpers', () => {
  it('ipamType: {} and absent mean no IPAM', () => {
    expect(ipamType(base)).toBeUndefined();
    expect(ipamType({ ...base, ipam: {} as never })).toBeUndefined();
    expect(ipamType({ ...base, ipam: { type: 'host-local' } })).toBe('host-local');
  });

  it('checkMtu: 0 and absent are the kernel choice; above the master is code 7 naming both', () => {
    const master = { mtu: 1500, name: 'm0' } as Parameters<typeof checkMtu>[1];
    expect(() => checkMtu(undefined, master)).not.toThrow();
    expect(() => checkMtu(0, master)).not.toThrow();
    expect(() => checkMtu(1500, master)).not.toThrow();
    const r = codeOf(() => checkMtu(1501, master));
    expect(r.code).toBe(7);
    expect(r.text).toMatch(/1501.*1500/);
  });

  it('temporary link names are valid, short and random', () => {
    const a = tempLinkName();
    expect(a).toMatch(/^tmp[0-9a-f]{8}$/);
    expect(tempLinkName()).not.toBe(a);
  });
});
