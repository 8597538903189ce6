// The bad-input corpus itself (no root, no build): every fixture is well formed, says
// why its expected answer is right, and the corpus covers what issue 8 lists.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { caseProblems, delegatesDir, fixturesDir, loadBase, loadCorpus, mergePatch, PLUGINS, substitute } from '../../integration/badinput/harness.ts';

const corpus = loadCorpus();

describe('bad-input fixtures', () => {
  it('has >= 100 well-formed cases', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(100);
  });

  it('rejects malformed case files (the checker can fail)', () => {
    expect(caseProblems({ plugin: 'strand-bridge', why: 'x', expect: { code: 7 } })).toContain('why: explain the expected answer');
    expect(caseProblems({ plugin: 'nope', why: 'long enough why', expect: {} }).length).toBe(2);
    expect(caseProblems({ plugin: 'strand-ipam', why: 'long enough why', stdin: '', config: {}, expect: { code: 6 } })).toHaveLength(1);
    expect(caseProblems({ plugin: 'strand-ipam', why: 'long enough why', expect: { ok: true, code: 1 } })).toHaveLength(1);
  });

  it('covers the categories issue 8 asks for', () => {
    const ids = corpus.map((c) => c.id);
    const has = (re: RegExp): boolean => ids.some((id) => re.test(id));
    for (const re of [
      /^json\/truncated/,
      /^huge\//,
      /^json\/huge/,
      /not-boolean|number|string$/,
      /^ipam\/subnet/,
      /ifname-slash/,
      /ifname-16-bytes/,
      /^netns\/regular-file/,
      /^netns\/directory/,
      /^netns\/missing/,
      /path-without-ipam/,
      /^delegate\/garbage/,
    ]) {
      expect(has(re), String(re)).toBe(true);
    }
    // every option of every plugin's schema appears in some case
    const text = corpus.map((c) => JSON.stringify(c)).join('\n');
    const options: Record<string, string[]> = {
      'strand-bridge': [
        'bridge',
        'isGateway',
        'isDefaultGateway',
        'forceAddress',
        'ipMasq',
        'ipMasqBackend',
        'mtu',
        'hairpinMode',
        'promiscMode',
        'vlan',
        'vlanTrunk',
        'preserveDefaultVlan',
        'macspoofchk',
        'enabledad',
        'disableContainerInterface',
        'portIsolation',
      ],
      'strand-macvlan': ['master', 'mode', 'mtu', 'mac', 'linkInContainer'],
      'strand-ipvlan': ['master', 'mode', 'mtu', 'linkInContainer'],
      'strand-portmap': [
        'backend',
        'snat',
        'masqAll',
        'markMasqBit',
        'externalSetMarkChain',
        'conditionsV4',
        'conditionsV6',
        'portMappings',
        'hostPort',
        'containerPort',
        'protocol',
        'hostIP',
      ],
      'strand-ipam': [
        'subnet',
        'rangeStart',
        'rangeEnd',
        'gateway',
        'routes',
        'resolvConf',
        'dataDir',
        'blockSize',
        'blockSizeV6',
        'strictAffinity',
        'nodeName',
        'endpoints',
        'dialTimeout',
        'tls',
        'password',
      ],
    };
    for (const [plugin, opts] of Object.entries(options)) {
      const mine = corpus
        .filter((c) => c.plugin === plugin)
        .map((c) => JSON.stringify(c))
        .join('\n');
      for (const o of opts) expect(mine.includes(`"${o}"`), `${plugin} ${o}`).toBe(true);
    }
    expect(text.length).toBeGreaterThan(0);
  });

  it('every expected code is one the spec or strand defines', () => {
    const known = new Set([1, 2, 3, 4, 5, 6, 7, 11, 42, 50, 51, 100, 101, 102, 103, 104, 105, 999]);
    for (const c of corpus) {
      const codes = c.expect.code === undefined ? [] : Array.isArray(c.expect.code) ? c.expect.code : [c.expect.code];
      for (const code of codes) expect(known.has(code), `${c.id}: ${code}`).toBe(true);
    }
  });

  it('base configs are valid JSON objects naming their plugin, with every placeholder known', () => {
    const vars = { NET: 'n', DATA_DIR: '/d', POD_NETNS: '/p' };
    for (const p of PLUGINS) {
      const base = substitute(loadBase(p), vars) as Record<string, unknown>;
      expect(base['type']).toBe(p);
      expect(JSON.stringify(base)).not.toMatch(/\$\{/);
    }
  });

  it('mergePatch merges objects, replaces the rest, deletes on null, keeps __proto__ as a plain key', () => {
    const out = mergePatch({ a: { b: 1, c: 2 }, d: [1] }, { a: { c: null, e: 3 }, d: [2], ['__proto__']: { x: 1 } }) as Record<string, unknown>;
    expect(JSON.parse(JSON.stringify(out))).toEqual({ a: { b: 1, e: 3 }, d: [2], ['__proto__']: { x: 1 } });
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  });

  it('fake delegates are executable scripts (except the one that must not be)', () => {
    for (const name of ['bi-garbage', 'bi-garbage-fail', 'bi-empty', 'bi-error-42', 'bi-bad-result', 'bi-no-ips', 'bi-huge', 'bi-killed', 'bi-wrong-version']) {
      expect(statSync(join(delegatesDir, name)).mode & 0o111, name).not.toBe(0);
      expect(readFileSync(join(delegatesDir, name), 'utf8')).toMatch(/^#!\/bin\/sh\n/);
    }
    expect(statSync(join(delegatesDir, 'bi-not-executable')).mode & 0o111).toBe(0);
    expect(statSync(join(fixturesDir, 'delegates', 'empty')).isDirectory()).toBe(true);
  });
});
