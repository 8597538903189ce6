// Security review, item 1: the plugins run as root with configuration from the runtime.
// No code under cni/, ipam/, lib/, cmd/ (and agent/) may start a shell: no
// child_process.exec/execSync, no `shell` option, no spawn of sh/bash/env, no "-c"
// argv, no eval/new Function. Files that spawn programs at all are listed below with
// the reason; a new one fails this test until someone has reviewed it.
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { scanSource, scanTree } from './scan.ts';

const DIRS = ['cni', 'ipam', 'lib', 'cmd', 'agent'];

/** Reviewed files that spawn programs, and why that is safe. */
const REVIEWED_SPAWNERS: Record<string, string> = {
  'lib/cni/invoke.ts': 'delegates to a plugin found on CNI_PATH (no "/" in the type): argv [], config on stdin, shell: false',
  'lib/plugin/exec.ts':
    'iptables-save/-restore, iptables -C and nft, as the reference bridge and portmap do: fixed argv, rules on stdin (names and IDs are pattern-checked first)',
};

describe('no shell is ever spawned', () => {
  it('the scanner finds each forbidden pattern (it can fail)', () => {
    const bad: Array<[string, string]> = [
      ["import { exec } from 'node:child_process'; exec(`ip link del ${name}`);", 'runs a shell'],
      ["import { execSync as run } from 'child_process'; run('ls');", 'runs a shell'],
      ["import { spawn } from 'node:child_process'; spawn('sh', ['-c', cmd]);", 'of a shell'],
      ["import { spawn } from 'node:child_process'; spawn('/bin/bash', ['x']);", 'of a shell'],
      ["import { spawnSync } from 'node:child_process'; const s = 'sh'; spawnSync(s, ['-c', cmd]);", 'with "-c"'],
      ["import { spawn } from 'node:child_process'; spawn('iptables', args, { shell: true });", 'shell option'],
      ["import * as cp from 'node:child_process'; cp.exec(cmd);", 'runs a shell'],
      ["import cp from 'node:child_process'; cp.execFile('/usr/bin/env', ['sh']);", 'of a shell'],
      ["const cp = require('child_process');", 'require'],
      ["const m = await import('node:child_process');", 'dynamic'],
      ["const cp = process.getBuiltinModule('node:child_process'); cp.spawn('x');", 'dynamic'],
      ["process.getBuiltinModule('node:child_process').exec(`ip link del ${name}`);", 'runs a shell'],
      ["process.getBuiltinModule('child_process').spawn('sh', ['-c', cmd]);", 'of a shell'],
      ['const f = new Function("return " + conf.expr);', 'code from a string'],
      ['eval(conf.x);', 'code from a string'],
    ];
    for (const [src, rule] of bad) {
      const f = scanSource(src);
      expect(f.map((x) => x.rule).join('; '), src).toContain(rule);
    }
    const good = [
      "import { spawn } from 'node:child_process'; spawn(exe, [], { shell: false, stdio: 'pipe' });",
      "import { spawn } from 'node:child_process'; spawn('/usr/sbin/iptables-restore', ['--noflush', '-w']);",
      "const child = process.getBuiltinModule('node:child_process').spawn(file, [], { shell: false });",
      "// exec('rm -rf /') in a comment\nconst re = /x/; re.exec('abc');",
    ];
    for (const src of good) expect(scanSource(src), src).toEqual([]);
  });

  it(`nothing under ${DIRS.join(', ')} spawns a shell or compiles strings`, () => {
    const { files, findings } = scanTree(repoRoot, DIRS);
    expect(files.length).toBeGreaterThan(30);
    expect(findings.map((f) => `${f.file}:${f.line} ${f.rule}: ${f.text}`)).toEqual([]);
  });

  it('only reviewed files spawn programs', () => {
    const { spawning } = scanTree(repoRoot, DIRS);
    const unreviewed = spawning.filter((f) => !(f in REVIEWED_SPAWNERS));
    expect(unreviewed, 'new code spawns programs: review it for shell/argument injection and add it to REVIEWED_SPAWNERS').toEqual([]);
  });
});
