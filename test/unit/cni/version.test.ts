import { describe, expect, it } from 'vitest';
import { clip, CniError, Code, invalidNetns, isCniError, toCniError } from '../../../lib/cni/errors.ts';
import { SPEC_VERSIONS, gcAttachments } from '../../../lib/cni/types.ts';
import {
  checkSupported,
  checkVerbAllowed,
  compareVersions,
  isSupportedVersion,
  parseVersion,
  selectVersion,
  versionGte,
  versionInfo,
} from '../../../lib/cni/version.ts';

describe('versions', () => {
  it('parses like libcni (1 to 3 numeric parts)', () => {
    expect(parseVersion('1.1.0')).toEqual([1, 1, 0]);
    expect(parseVersion('1')).toEqual([1, 0, 0]);
    expect(parseVersion('0.10')).toEqual([0, 10, 0]);
    for (const bad of ['', '1.2.3.4', 'a.b', '1..2', 'v1.0.0', '1.0.0-rc1']) {
      expect(() => parseVersion(bad)).toThrow(expect.objectContaining({ code: Code.DecodingFailure }));
    }
  });
  it('compares numerically', () => {
    expect(compareVersions('0.10.0', '0.4.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0', '1')).toBe(0);
    expect(versionGte('0.4.0', '0.4.0')).toBe(true);
    expect(versionGte('0.3.1', '0.4.0')).toBe(false);
    const sorted = [...SPEC_VERSIONS].sort(compareVersions);
    expect(sorted).toEqual([...SPEC_VERSIONS]);
  });
  it('knows the seven supported versions', () => {
    expect(SPEC_VERSIONS).toEqual(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    expect(isSupportedVersion('0.3.1')).toBe(true);
    expect(isSupportedVersion('0.5.0')).toBe(false);
    expect(isSupportedVersion(1)).toBe(false);
    expect(versionInfo()).toEqual({ cniVersion: '1.1.0', supportedVersions: [...SPEC_VERSIONS] });
  });
  it('checkSupported: missing and unsupported are code 1', () => {
    for (const v of [undefined, null, '', '0.5.0', '2.0.0', 7]) {
      expect(() => checkSupported(v)).toThrow(expect.objectContaining({ code: Code.IncompatibleVersion }));
    }
    expect(() => checkSupported('1.0.0')).not.toThrow();
  });
  it('gates verbs', () => {
    const allowed = (verb: string, v: string): boolean => {
      try {
        checkVerbAllowed(verb, v);
        return true;
      } catch (e) {
        expect((e as CniError).code).toBe(Code.IncompatibleVersion);
        return false;
      }
    };
    for (const v of SPEC_VERSIONS) {
      expect(allowed('ADD', v)).toBe(true);
      expect(allowed('DEL', v)).toBe(true);
      expect(allowed('CHECK', v)).toBe(versionGte(v, '0.4.0'));
      expect(allowed('STATUS', v)).toBe(v === '1.1.0');
      expect(allowed('GC', v)).toBe(v === '1.1.0');
    }
  });
  it('selects the highest supported version from cniVersion + cniVersions', () => {
    expect(selectVersion('1.0.0')).toBe('1.0.0');
    expect(selectVersion('0.4.0', ['0.3.1', '1.1.0'])).toBe('1.1.0');
    expect(selectVersion('5.0.0', ['0.3.1', '1.0.0', '9.0.0'])).toBe('1.0.0');
    expect(selectVersion('5.0.0', ['6.0.0'])).toBe('5.0.0');
    expect(selectVersion(undefined, ['0.4.0'])).toBe('0.4.0');
    expect(selectVersion('1.0.0', 'not a list')).toBe('1.0.0');
  });
});

describe('errors', () => {
  it('CniError prints the spec error object', () => {
    const e = new CniError(Code.InvalidNetworkConfig, 'invalid config field mtu', 'mtu: must be <= 65535');
    expect(e.toJSON('1.0.0')).toEqual({ cniVersion: '1.0.0', code: 7, msg: 'invalid config field mtu', details: 'mtu: must be <= 65535' });
    expect(new CniError(4, 'x').toJSON('1.1.0')).toEqual({ cniVersion: '1.1.0', code: 4, msg: 'x' });
    expect(e.message).toBe('invalid config field mtu: mtu: must be <= 65535');
    expect(e.name).toBe('CniError');
    expect(isCniError(e)).toBe(true);
    // The spec has no code 8: a bad CNI_NETNS is 4 (invalidNetns), never a code of our own below 100.
    expect(Object.values(Code)).not.toContain(8);
  });
  it('invalidNetns: code 4 naming CNI_NETNS, the errno explained, a huge path clipped', () => {
    const e = invalidNetns('/run/netns/gone', 'ENOENT');
    expect([e.code, e.msg]).toEqual([Code.InvalidEnvironment, 'invalid CNI_NETNS']);
    expect(e.details).toBe('CNI_NETNS "/run/netns/gone": no such file (ENOENT)');
    expect(invalidNetns('/x', 'EINVAL').details).toMatch(/not a network namespace/);
    expect(invalidNetns('/x', 'ENOTTY').details).toMatch(/cannot open it \(ENOTTY\)/);
    expect(invalidNetns('/x', "the plugin's own").details).toBe('CNI_NETNS "/x": the plugin\'s own');
    const huge = invalidNetns(`/${'a'.repeat(5000)}`, 'ENAMETOOLONG');
    expect(huge.details.length).toBeLessThan(300);
    expect(huge.details).toMatch(/5001 characters.*ENAMETOOLONG/);
  });
  it('clip keeps short values and cuts long ones with their length', () => {
    expect(clip('abc')).toBe('abc');
    expect(clip('a'.repeat(200), 10)).toBe('aaaaaaaaaa... (200 characters)');
  });
  it('toCniError keeps CniErrors and wraps the rest as 999 with the cause', () => {
    const c = new CniError(11, 'later');
    expect(toCniError(c)).toBe(c);
    const inner = new RangeError('out of range');
    const w = toCniError(inner);
    expect([w.code, w.msg, w.details]).toEqual([999, 'internal error', 'RangeError: out of range']);
    expect(w.cause).toBe(inner);
    expect(toCniError(new Error('plain')).details).toBe('plain');
    expect(toCniError(42).details).toBe('42');
  });
});

describe('gcAttachments', () => {
  it('reads cni.dev/valid-attachments and cni.dev/attachments, skipping junk', () => {
    expect(
      gcAttachments({
        cniVersion: '1.1.0',
        name: 'n',
        type: 't',
        'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }, { containerID: 1 }, null],
        'cni.dev/attachments': [{ containerID: 'b', ifname: 'net1' }],
      }),
    ).toEqual([
      { containerID: 'a', ifname: 'eth0' },
      { containerID: 'b', ifname: 'net1' },
    ]);
  });
});
