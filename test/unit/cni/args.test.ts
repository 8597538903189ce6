import { describe, expect, it } from 'vitest';
import { argCni, argsCni, hasCapability, loadCniArgs, parseArgBool, parseCniArgs, resolveMac, runtimeConfig } from '../../../lib/cni/args.ts';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import type { NetConf } from '../../../lib/cni/types.ts';

function code(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return (e as CniError).code;
  }
  return undefined;
}

describe('parseCniArgs', () => {
  it('splits K=V pairs in order', () => {
    const m = parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.1.0.9');
    expect([...m]).toEqual([
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', 'default'],
      ['K8S_POD_NAME', 'web-0'],
      ['IP', '10.1.0.9'],
    ]);
  });
  it('handles empty input, empty segments, empty values, "=" in values and duplicates', () => {
    expect(parseCniArgs(undefined).size).toBe(0);
    expect(parseCniArgs('').size).toBe(0);
    expect([...parseCniArgs('A=1;;B=;')]).toEqual([
      ['A', '1'],
      ['B', ''],
    ]);
    expect(parseCniArgs('TOKEN=a=b==').get('TOKEN')).toBe('a=b==');
    expect(parseCniArgs('A=1;A=2').get('A')).toBe('2');
  });
  it.each(['A', 'A=1;B', '=1', 'A=1;=x'])('malformed %j: code 4 naming CNI_ARGS', (s) => {
    expect(code(() => parseCniArgs(s))).toBe(Code.InvalidEnvironment);
    expect(() => parseCniArgs(s)).toThrow(/CNI_ARGS/);
  });
});

describe('loadCniArgs (IgnoreUnknown)', () => {
  it('returns the known keys', () => {
    expect([...loadCniArgs('IP=10.0.0.2;MAC=0a:00:00:00:00:01', ['IP', 'MAC'])]).toEqual([
      ['IP', '10.0.0.2'],
      ['MAC', '0a:00:00:00:00:01'],
    ]);
  });
  it('an unknown key is an error naming it', () => {
    expect(code(() => loadCniArgs('IP=10.0.0.2;K8S_POD_NAME=p', ['IP']))).toBe(Code.InvalidEnvironment);
    expect(() => loadCniArgs('IP=10.0.0.2;K8S_POD_NAME=p', ['IP'])).toThrow(/K8S_POD_NAME=p/);
  });
  it.each(['1', 'true', 'True', 'TRUE'])('IgnoreUnknown=%s ignores unknown keys', (v) => {
    expect([...loadCniArgs(`IgnoreUnknown=${v};K8S_POD_NAME=p;IP=10.0.0.2`, ['IP'])]).toEqual([['IP', '10.0.0.2']]);
  });
  it.each(['0', 'false', 'False'])('IgnoreUnknown=%s does not', (v) => {
    expect(code(() => loadCniArgs(`IgnoreUnknown=${v};K8S_POD_NAME=p`, ['IP']))).toBe(Code.InvalidEnvironment);
  });
  it('IgnoreUnknown with a non-boolean value is an error', () => {
    expect(code(() => loadCniArgs('IgnoreUnknown=yes;IP=1.2.3.4', ['IP']))).toBe(Code.InvalidEnvironment);
  });
  it('keys are case-sensitive, as in libcni', () => {
    expect(code(() => loadCniArgs('ip=10.0.0.2', ['IP']))).toBe(Code.InvalidEnvironment);
  });
  it('parseArgBool', () => {
    expect(parseArgBool('X', 'TrUe')).toBe(true);
    expect(parseArgBool('X', '0')).toBe(false);
    expect(code(() => parseArgBool('X', ''))).toBe(Code.InvalidEnvironment);
  });
});

describe('args.cni, runtimeConfig, capabilities', () => {
  const conf: NetConf = {
    cniVersion: '1.1.0',
    name: 'n',
    type: 't',
    args: { cni: { ips: ['10.1.0.9/24'], mac: '0a:00:00:00:00:09' } },
    runtimeConfig: { mac: '0a:00:00:00:00:10', ips: ['10.1.0.10/24'] },
    capabilities: { mac: true, ips: false },
  };
  it('reads them', () => {
    expect(argsCni(conf)).toEqual({ ips: ['10.1.0.9/24'], mac: '0a:00:00:00:00:09' });
    expect(argCni(conf, 'mac')).toBe('0a:00:00:00:00:09');
    expect(runtimeConfig(conf, 'mac')).toBe('0a:00:00:00:00:10');
    expect(hasCapability(conf, 'mac')).toBe(true);
    expect(hasCapability(conf, 'ips')).toBe(false);
    expect(hasCapability(conf, 'portMappings')).toBe(false);
  });
  it('tolerates absent or odd sections', () => {
    const bare: NetConf = { cniVersion: '1.1.0', name: 'n', type: 't' };
    expect(argsCni(bare)).toEqual({});
    expect(runtimeConfig(bare, 'mac')).toBeUndefined();
    expect(argsCni({ ...bare, args: { cni: [] as unknown as Record<string, unknown> } })).toEqual({});
  });
});

describe('MAC addresses', () => {
  const bare: NetConf = { cniVersion: '1.1.0', name: 'n', type: 't' };
  const fail = (fn: () => unknown): CniError => {
    try {
      fn();
    } catch (e) {
      if (e instanceof CniError) return e;
      throw e;
    }
    throw new Error('expected a CniError');
  };

  it('precedence own < CNI_ARGS < args.cni.mac < runtimeConfig.mac, lower-case ":" form', () => {
    expect(resolveMac(bare, '')).toBeUndefined();
    expect(resolveMac(bare, '', { field: 'mac', value: '02-00-00-00-00-0A' })).toBe('02:00:00:00:00:0a');
    expect(resolveMac(bare, 'IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:02', { field: 'mac', value: '02:00:00:00:00:01' })).toBe('02:00:00:00:00:02');
    const withArgs = { ...bare, args: { cni: { mac: '02:00:00:00:00:03' } } };
    expect(resolveMac(withArgs, 'MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:03');
    expect(resolveMac({ ...withArgs, runtimeConfig: { mac: '02:00:00:00:00:04' } }, 'MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:04');
  });

  it('a multicast or zero MAC from CNI_ARGS: code 4 naming CNI_ARGS', () => {
    for (const m of ['01:00:5e:00:00:01', '00:00:00:00:00:00', 'zz']) {
      const e = fail(() => resolveMac(bare, `MAC=${m}`));
      expect(e.code).toBe(Code.InvalidEnvironment);
      expect(`${e.msg} ${e.details}`).toMatch(/CNI_ARGS.*MAC=/);
    }
  });

  it.each([
    ['mac', (v: string) => [bare, { field: 'mac', value: v }] as const],
    ['args.cni.mac', (v: string) => [{ ...bare, args: { cni: { mac: v } } }, undefined] as const],
    ['runtimeConfig.mac', (v: string) => [{ ...bare, runtimeConfig: { mac: v } }, undefined] as const],
  ])('a multicast, broadcast or zero %s: code 7 naming the field, even when a later source overrides it', (field, make) => {
    for (const m of ['01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00']) {
      const [conf, own] = make(m);
      const e = fail(() => resolveMac(conf, '', own));
      expect(e.code).toBe(Code.InvalidNetworkConfig);
      expect(e.msg).toBe(`invalid config field ${field}`);
      expect(e.details).toContain(m);
    }
    if (field !== 'runtimeConfig.mac') {
      // a good runtimeConfig.mac would win, but the bad value is still refused
      const [conf, own] = make('01:00:5e:00:00:01');
      expect(fail(() => resolveMac({ ...conf, runtimeConfig: { mac: '02:00:00:00:00:09' } }, '', own)).msg).toBe(`invalid config field ${field}`);
    }
  });

  it('a huge MAC value is clipped in the error', () => {
    const e = fail(() => resolveMac({ ...bare, runtimeConfig: { mac: 'a'.repeat(100_000) } }, ''));
    expect(e.details.length).toBeLessThan(300);
  });
});
