// Properties of the built executable that matter because runtimes start it as root, twice
// per pod ADD: NODE_OPTIONS cannot inject code into it, and a VERSION call evaluates
// neither the etcd/grpc client nor the native addon.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { binDir, repoRoot, runPlugin } from '../../helpers/run-plugin.ts';
import { PLUGINS, SEVEN_VERSIONS } from './expect-cni.ts';

const pinnedNode = join(repoRoot, 'node_modules', '.bin', 'node');
let dir = '';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'strand-s2-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('NODE_OPTIONS', () => {
  function injector(): { script: string; marker: string } {
    const marker = join(dir, 'injected');
    const script = join(dir, 'x.js');
    writeFileSync(script, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'injected');\n`);
    return { script, marker };
  }

  it('injects code into plain Node (the control)', () => {
    const { script, marker } = injector();
    const r = spawnSync(pinnedNode, ['-e', '0'], { env: { NODE_OPTIONS: `--require=${script}` } });
    expect(r.status).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });

  it('is ignored by the plugin binaries', async () => {
    const { script, marker } = injector();
    for (const plugin of ['strand-bridge', 'strand-ipam']) {
      const r = await runPlugin(plugin, { command: 'VERSION', extra: { NODE_OPTIONS: `--require=${script}` } }, '');
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.supportedVersions).toEqual(SEVEN_VERSIONS);
      expect(existsSync(marker), plugin).toBe(false);
    }
  });

  it('is ignored by `strand`, and --node-options is not an option', () => {
    const { script, marker } = injector();
    const env = { NODE_OPTIONS: `--require=${script}` };
    const r = spawnSync(join(binDir, 'strand'), ['version'], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const cli = spawnSync(join(binDir, 'strand'), [`--node-options=--require=${script}`, 'version'], { encoding: 'utf8' });
    expect(cli.status).toBe(2);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('lazy start-up', () => {
  // The single executable embeds dist/strand.cjs; running that same bundle under the
  // pinned Node lets a --require probe report which built-in modules were loaded and
  // which shared objects were mapped by the time the process exits.
  function probeRun(argv0: string, env: Record<string, string>): { modules: string[]; maps: string } {
    const out = join(dir, 'probe.json');
    const probe = join(dir, 'probe.cjs');
    writeFileSync(
      probe,
      `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({
        modules: process.moduleLoadList, maps: require('node:fs').readFileSync('/proc/self/maps', 'utf8') })));\n`,
    );
    const r = spawnSync(pinnedNode, ['--require', probe, join(repoRoot, 'dist', 'strand.cjs')], {
      argv0,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
      input: '',
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(readFileSync(out, 'utf8')) as { modules: string[]; maps: string };
  }

  for (const plugin of PLUGINS) {
    it(`${plugin} VERSION loads no network client and no addon`, () => {
      const { modules, maps } = probeRun(plugin, { CNI_COMMAND: 'VERSION' });
      expect(modules).toContain('NativeModule fs'); // the probe sees loads at all
      for (const heavy of ['http2', 'tls', 'zlib', 'dns']) expect(modules).not.toContain(`NativeModule ${heavy}`);
      expect(maps).toContain('/node'); // the probe sees mappings at all
      expect(maps).not.toContain('strand_native');
    });
  }

  it('the probed bundle is byte for byte the script inside dist/strand', () => {
    const bundle = readFileSync(join(repoRoot, 'dist', 'strand.cjs'));
    expect(bundle.length).toBeGreaterThan(1000);
    expect(readFileSync(join(repoRoot, 'dist', 'strand')).indexOf(bundle)).toBeGreaterThan(0);
  });
});
