import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateNetConf } from '../../../gen/validators.js';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import { formats } from '../../../lib/cni/formats.ts';
import { fieldPath, validateWith, type ValidatorLike } from '../../../lib/cni/validate.ts';

const repo = resolve(import.meta.dirname, '../../..');
const node = process.execPath; // the pinned Node 26 running vitest

function err(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

describe('validateWith', () => {
  const fake = (errors: NonNullable<ValidatorLike['errors']>): ValidatorLike => Object.assign(() => false, { errors });
  it('returns the input when valid', () => {
    const raw = { cniVersion: '1.1.0', name: 'n', type: 't' };
    expect(validateWith(validateNetConf, raw)).toBe(raw);
  });
  it('names a nested field in dotted form', () => {
    const raw = { ipam: { ranges: [[{ subnet: 'x' }]] } };
    const e = err(() =>
      validateWith(
        fake([{ instancePath: '/ipam/ranges/0/0/subnet', keyword: 'format', params: { format: 'cidr' }, message: 'must match format "cidr"' }]),
        raw,
      ),
    );
    expect(e.code).toBe(Code.InvalidNetworkConfig);
    expect(e.msg).toBe('invalid config field ipam.ranges[0][0].subnet');
    expect(e.details).toBe('ipam.ranges[0][0].subnet: must match format "cidr"; got "x"');
  });
  it('names missing, unknown and dependent fields', () => {
    expect(err(() => validateWith(fake([{ instancePath: '/ipam', keyword: 'required', params: { missingProperty: 'type' } }]), {})).msg).toBe(
      'missing config field ipam.type',
    );
    expect(err(() => validateWith(fake([{ instancePath: '', keyword: 'additionalProperties', params: { additionalProperty: 'bridg' } }]), {})).msg).toBe(
      'unknown config field bridg',
    );
    const d = err(() =>
      validateWith(fake([{ instancePath: '/vlanTrunk/0', keyword: 'dependentRequired', params: { property: 'minID', missingProperty: 'maxID' } }]), {
        vlanTrunk: [{}],
      }),
    );
    expect(d.msg).toBe('missing config field vlanTrunk[0].maxID');
    expect(d.details).toContain('needed with minID');
  });
  it('lists enum values, decodes JSON-pointer escapes and applies a prefix', () => {
    const e = err(() =>
      validateWith(
        fake([
          { instancePath: '/mode', keyword: 'enum', params: { allowedValues: ['bridge', 'vepa'] }, message: 'must be equal to one of the allowed values' },
        ]),
        {
          mode: 'x',
        },
      ),
    );
    expect(e.details).toBe('mode: must be one of "bridge", "vepa"; got "x"');
    const p = err(() => validateWith(fake([{ instancePath: '/a~1b/c~0d', keyword: 'type', params: {}, message: 'must be string' }]), {}, ['ipam']));
    expect(p.msg).toBe('invalid config field ipam["a/b"]["c~d"]');
  });
  it('fieldPath', () => {
    expect(fieldPath(['a', 0, 'b-c', 'cni.dev/x', 2])).toBe('a[0].b-c["cni.dev/x"][2]');
    expect(fieldPath([])).toBe('');
  });
});

describe('formats', () => {
  it('checks addresses, networks, MACs and interface names', () => {
    expect(formats.ip('10.0.0.1') && formats.ip('fd00::1')).toBe(true);
    expect(formats.ipv4('fd00::1')).toBe(false);
    expect(formats.ipv6('fd00::1')).toBe(true);
    expect(formats.cidr('10.0.0.1/24')).toBe(true);
    expect(formats['cidr-network']('10.0.0.1/24')).toBe(false);
    expect(formats['cidr-network']('10.0.0.0/24')).toBe(true);
    expect(formats.mac('0A:58:0a:01:00:05')).toBe(true);
    // one rule with resolveMac and the reference: ":" or "-", one kind per address
    expect(formats.mac('0a-58-0a-01-00-05')).toBe(true);
    expect(formats.mac('0a:58-0a:01:00:05')).toBe(false);
    expect(formats.ifname('eth0')).toBe(true);
    expect(formats.ifname('a'.repeat(16))).toBe(false);
    expect(formats.ifname('é'.repeat(8))).toBe(false);
    expect(formats.ifname('eth%d')).toBe(false);
    expect(formats['container-id']('a1_b.c-d')).toBe(true);
    expect(formats['container-id']('-a')).toBe(false);
  });
});

describe('scripts/gen-validators.ts', () => {
  let fixture = '';
  let out = '';
  beforeAll(() => {
    fixture = mkdtempSync(join(tmpdir(), 's1-gen-'));
    // inside the repo so the generated imports resolve ajv's runtime helpers from node_modules
    out = join(repo, 'gen', `.s1-test-${process.pid}`);
    mkdirSync(join(fixture, 'lib', 'x'), { recursive: true });
    mkdirSync(join(fixture, 'cni', 'y'), { recursive: true });
    writeFileSync(
      join(fixture, 'lib', 'x', 'schema.ts'),
      `export const schemas = { validateThing: { type: 'object', required: ['subnet'], properties: {
         subnet: { type: 'string', format: 'cidr' }, name: { type: 'string', maxLength: 3 },
         mode: { enum: ['a', 'b'], default: 'a' } },
         dependentRequired: { rangeStart: ['rangeEnd'] } } } as const;\n`,
    );
    writeFileSync(
      join(fixture, 'cni', 'y', 'schema.ts'),
      `export const schemas = { validateOther: { type: 'object', additionalProperties: false, properties: { ok: { type: 'boolean' } } } };\n`,
    );
  });
  afterAll(() => {
    rmSync(fixture, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });

  function gen(root: string): ReturnType<typeof spawnSync> {
    return spawnSync(node, [join(repo, 'scripts/gen-validators.ts'), '--root', root, '--out-dir', out], { encoding: 'utf8' });
  }

  it('compiles every schema.ts into ESM validators that do not load ajv itself', async () => {
    const r = gen(fixture);
    expect(r.stderr).toContain('2 validators from 2 files');
    expect(r.status).toBe(0);
    const js = readFileSync(join(out, 'validators.js'), 'utf8');
    expect(js).not.toMatch(/\brequire\(/);
    expect(js).not.toMatch(/from "ajv"/);
    expect(js).toMatch(/from "ajv\/dist\/runtime\/ucs2length\.js"/);
    const dts = readFileSync(join(out, 'validators.d.ts'), 'utf8');
    expect(dts).toContain('export declare const validateThing: ValidateFunction;');
    expect(dts).toContain('export declare const validateOther: ValidateFunction;');

    const m = (await import(pathToFileURL(join(out, 'validators.js')).href)) as Record<string, ValidatorLike>;
    const thing = m['validateThing']!;
    const other = m['validateOther']!;
    const okConf: Record<string, unknown> = { subnet: '10.0.0.0/24' };
    expect(validateWith(thing, okConf)).toBe(okConf);
    expect(okConf['mode']).toBe('a'); // defaults are applied
    expect(err(() => validateWith(thing, { subnet: '10.0.0.0/33' })).msg).toBe('invalid config field subnet');
    expect(err(() => validateWith(thing, { subnet: '10.0.0.0/8', name: 'abcd' })).msg).toBe('invalid config field name');
    expect(err(() => validateWith(thing, {})).msg).toBe('missing config field subnet');
    expect(err(() => validateWith(thing, { subnet: '10.0.0.0/8', rangeStart: 'x' })).msg).toBe('missing config field rangeEnd');
    expect(err(() => validateWith(other, { ok: true, extra: 1 })).msg).toBe('unknown config field extra');
  });
  it('refuses the same validator name in two files', () => {
    const dup = mkdtempSync(join(tmpdir(), 's1-gen-dup-'));
    try {
      for (const d of ['lib/a', 'ipam/b']) {
        mkdirSync(join(dup, d), { recursive: true });
        writeFileSync(join(dup, d, 'schema.ts'), `export const schemas = { validateSame: { type: 'object' } };\n`);
      }
      const r = gen(dup);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/validateSame is defined in both ipam\/b\/schema\.ts and lib\/a\/schema\.ts/);
    } finally {
      rmSync(dup, { recursive: true, force: true });
    }
  });
  it('refuses a key that is not validateXxx and an invalid schema', () => {
    const bad = mkdtempSync(join(tmpdir(), 's1-gen-bad-'));
    try {
      mkdirSync(join(bad, 'lib/a'), { recursive: true });
      writeFileSync(join(bad, 'lib/a/schema.ts'), `export const schemas = { thing: { type: 'object' } };\n`);
      expect(gen(bad).stderr).toMatch(/must look like validateXxx/);
      writeFileSync(join(bad, 'lib/a/schema.ts'), `export const schemas = { validateX: { type: 'objekt' } };\n`);
      const r = gen(bad);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/lib\/a\/schema\.ts: validateX/);
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
