// Generated bad input (fast-check), through the built binaries in throwaway host
// namespaces, judged exactly as the corpus is (harness.ts). Each generator produces
// inputs that are invalid by construction, with the code the answer must carry.
//
// Bounded and reproducible: a fixed seed and a fixed number of samples per generator
// (STRAND_BADINPUT_SEED / STRAND_BADINPUT_RUNS override both for a longer hunt). A
// failure prints the seed, the generator and the full case.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLUGINS, report, runCase, WorldPool, type BadCase, type PluginName } from './harness.ts';

const SEED = Number(process.env['STRAND_BADINPUT_SEED'] ?? 20261122);
const RUNS = Number(process.env['STRAND_BADINPUT_RUNS'] ?? 8);

type Gen = { name: string; arb: fc.Arbitrary<Omit<BadCase, 'id' | 'why'>>; why: string };

const plugin = fc.constantFrom<PluginName>(...PLUGINS);
const linkPlugin = fc.constantFrom<PluginName>('strand-bridge', 'strand-macvlan', 'strand-ipvlan');

/** Any JSON value whose type is not `keep` (string, integer, boolean, array, object). */
function otherThan(keep: 'string' | 'integer' | 'boolean' | 'array'): fc.Arbitrary<unknown> {
  const all: Record<string, fc.Arbitrary<unknown>> = {
    string: fc.string({ maxLength: 20 }),
    integer: fc.integer(),
    boolean: fc.boolean(),
    array: fc.array(fc.integer(), { maxLength: 3 }),
    object: fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
  };
  const arbs = Object.entries(all)
    .filter(([k]) => k !== keep)
    .map(([, a]) => a);
  if (keep === 'integer') arbs.push(fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)));
  return fc.oneof(...arbs);
}

// Fields of each plugin's config with their JSON type.
const FIELDS: Record<PluginName, Array<[string, 'string' | 'integer' | 'boolean' | 'array']>> = {
  'strand-bridge': [
    ['bridge', 'string'],
    ['isGateway', 'boolean'],
    ['isDefaultGateway', 'boolean'],
    ['ipMasq', 'boolean'],
    ['mtu', 'integer'],
    ['hairpinMode', 'boolean'],
    ['vlan', 'integer'],
    ['vlanTrunk', 'array'],
    ['portIsolation', 'boolean'],
    ['name', 'string'],
  ],
  'strand-macvlan': [
    ['master', 'string'],
    ['mtu', 'integer'],
    ['mac', 'string'],
    ['linkInContainer', 'boolean'],
    ['name', 'string'],
  ],
  'strand-ipvlan': [
    ['master', 'string'],
    ['mtu', 'integer'],
    ['linkInContainer', 'boolean'],
    ['type', 'string'],
  ],
  'strand-ipam': [
    ['ipam.dataDir', 'string'],
    ['ipam.blockSize', 'integer'],
    ['ipam.strictAffinity', 'boolean'],
    ['ipam.routes', 'array'],
    ['ipam.ranges', 'array'],
    ['name', 'string'],
  ],
  'strand-portmap': [
    ['snat', 'boolean'],
    ['masqAll', 'boolean'],
    ['markMasqBit', 'integer'],
    ['externalSetMarkChain', 'string'],
    ['conditionsV4', 'array'],
    ['runtimeConfig.portMappings', 'array'],
    ['name', 'string'],
  ],
};

function patchAt(path: string, value: unknown): Record<string, unknown> {
  const keys = path.split('.');
  let v: unknown = value;
  for (const k of keys.reverse()) v = { [k]: v };
  return v as Record<string, unknown>;
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s);
const badIfChar = fc.constantFrom('/', ':', ' ', '\t', '\n', '\r', '\v', '\f', '\u00a0', '\u0085', '\u2028', '\u3000');
const safeChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.'.split(''));

const gens: Gen[] = [
  {
    name: 'random-bytes',
    why: 'random bytes on stdin are not a JSON object: code 6',
    arb: fc
      .record({ plugin, bytes: fc.uint8Array({ minLength: 1, maxLength: 4096 }) })
      .filter(({ bytes }) => {
        try {
          const v: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
          return typeof v !== 'object' || v === null || Array.isArray(v);
        } catch {
          return true;
        }
      })
      .map(({ plugin: p, bytes }) => ({ plugin: p, stdinBase64: Buffer.from(bytes).toString('base64'), expect: { code: 6 } })),
  },
  {
    name: 'random-json',
    why: 'a JSON value that is not an object is code 6; an object without cniVersion is code 1',
    arb: fc.record({ plugin, v: fc.jsonValue({ maxDepth: 4 }) }).map(({ plugin: p, v }) => {
      const isObj = typeof v === 'object' && v !== null && !Array.isArray(v);
      return { plugin: p, stdin: JSON.stringify(v), expect: { code: isObj ? 1 : 6 } };
    }),
  },
  {
    name: 'wrong-type',
    why: 'a known field with a value of another JSON type: code 7 naming the field',
    arb: plugin.chain((p) =>
      fc.constantFrom(...FIELDS[p]).chain(([field, type]) =>
        otherThan(type).map((value) => ({
          plugin: p,
          patch: patchAt(field, value),
          expect: { code: 7, mentions: [field.split('.').pop()!] },
        })),
      ),
    ),
  },
  {
    name: 'bad-ifname',
    why: 'CNI_IFNAME with / : or whitespace, longer than 15 bytes, or . / ..: code 4 naming CNI_IFNAME',
    arb: fc
      .record({
        plugin,
        name: fc.oneof(
          fc.tuple(fc.string({ unit: safeChar, maxLength: 6 }), badIfChar, fc.string({ unit: safeChar, maxLength: 6 })).map(([a, b, c]) => a + b + c),
          fc.string({ unit: 'grapheme', minLength: 8, maxLength: 20 }).filter((s) => utf8Bytes(s) > 15 && !s.includes('\0')),
          fc.constantFrom('.', '..'),
        ),
      })
      .map(({ plugin: p, name }) => ({ plugin: p, env: { CNI_IFNAME: name }, expect: { code: 4, mentions: ['CNI_IFNAME'] } })),
  },
  {
    name: 'bad-containerid',
    why: 'a container ID outside [a-zA-Z0-9][a-zA-Z0-9_.-]*: code 4 naming CNI_CONTAINERID',
    arb: fc
      .record({ plugin, id: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }) })
      .filter(({ id }) => !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(id) && !id.includes('\0'))
      .map(({ plugin: p, id }) => ({ plugin: p, env: { CNI_CONTAINERID: id }, expect: { code: 4, mentions: ['CNI_CONTAINERID'] } })),
  },
  {
    name: 'bad-subnet',
    why: 'ipam subnets that are not networks (octet > 255, prefix > 32, host bits set, garbage): code 7 naming subnet',
    arb: fc
      .oneof(
        fc
          .tuple(fc.integer({ min: 256, max: 999 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 30 }))
          .map(([a, b, p]) => `10.${b}.${a}.0/${p}`),
        fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 33, max: 200 })).map(([b, p]) => `10.${b}.0.0/${p}`),
        fc.tuple(fc.integer({ min: 1, max: 255 }), fc.integer({ min: 8, max: 24 })).map(([d, p]) => `10.0.0.${d}/${p}`),
        fc.string({ unit: fc.constantFrom(...'ghijklmnopqrstuvwxyz!@#$%^&*()'.split('')), minLength: 1, maxLength: 12 }),
      )
      .map((subnet) => ({ plugin: 'strand-ipam' as const, patch: { ipam: { ranges: [[{ subnet }]] } }, expect: { code: 7, mentions: ['subnet'] } })),
  },
  {
    name: 'out-of-range-int',
    why: 'mtu outside 0-65535 or vlan outside 0-4094 or blockSize outside 1-32: code 7 naming the field',
    arb: fc.oneof(
      fc
        .record({ p: linkPlugin, mtu: fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 65536 })) })
        .map(({ p, mtu }) => ({ plugin: p, patch: { mtu }, expect: { code: 7, mentions: ['mtu'] } })),
      fc
        .oneof(fc.integer({ max: -1 }), fc.integer({ min: 4095 }))
        .map((vlan) => ({ plugin: 'strand-bridge' as const, patch: { vlan }, expect: { code: 7, mentions: ['vlan'] } })),
      fc
        .oneof(fc.integer({ max: 0 }), fc.integer({ min: 33 }))
        .map((blockSize) => ({ plugin: 'strand-ipam' as const, patch: { ipam: { blockSize } }, expect: { code: 7, mentions: ['blockSize'] } })),
    ),
  },
];

const cases: BadCase[] = gens.flatMap((g, gi) =>
  fc.sample(g.arb, { seed: SEED + gi, numRuns: RUNS }).map((c, i) => ({ ...c, id: `gen/${g.name}/${i}`, why: g.why }) as BadCase),
);

let pool: WorldPool;

beforeAll(() => {
  process.env['STRAND_TEST_PREFIX'] ??= 'sa';
  pool = new WorldPool(3);
});

afterAll(() => {
  pool?.destroy();
});

describe(`generated bad input (seed ${SEED}, ${RUNS} per generator)`, () => {
  it('generates what it claims (the oracle is not vacuous)', () => {
    expect(cases.length).toBe(gens.length * RUNS);
    expect(new Set(cases.map((c) => c.plugin)).size).toBeGreaterThan(1);
  });

  describe.concurrent('cases', () => {
    it.each(cases.map((c) => [c.id, c] as const))('%s', async (id, c) => {
      const outcome = await pool.use((w) => runCase(w, c));
      if (outcome.problems.length) {
        expect.fail(
          `${report(id, outcome)}\n  reproduce: STRAND_BADINPUT_SEED=${SEED} STRAND_BADINPUT_RUNS=${RUNS}\n  case: ${JSON.stringify(c).slice(0, 3000)}`,
        );
      }
    });
  });
});
