// Security review, item 4: the native addon inside the single executable is written to
// disk only to be dlopen'ed. The directory must be private (0700, made by mkdtemp), the
// file not writable by others, and both removed right after loading, before the plugin
// does its work, so a later crash leaves nothing behind. Observed with strace on the
// built strand-ipam (local store: it needs the addon's flock), then checked on disk.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binDir } from '../../helpers/run-plugin.ts';

let dir: string;
let trace: string[];
let result: { code: number | null; stdout: string; stderr: string };

beforeAll(() => {
  const exe = join(binDir, 'strand-ipam');
  if (!existsSync(exe)) throw new Error(`${exe} missing: run scripts/build.sh`);
  dir = mkdtempSync(join(tmpdir(), 'sa-sec-addon-'));
  const out = join(dir, 'strace.out');
  const conf = {
    cniVersion: '1.1.0',
    name: 'sec-addon',
    type: 'strand-ipam',
    ipam: { type: 'strand-ipam', dataDir: join(dir, 'data'), ranges: [[{ subnet: '10.97.0.0/24' }]] },
  };
  const r = spawnSync('strace', ['-f', '-qq', '-o', out, '-e', 'trace=mkdir,mkdirat,openat,open,unlink,unlinkat,rmdir,chmod,fchmod,flock', exe], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: '/usr/bin:/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'sec-addon', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/sa-none', CNI_PATH: binDir },
  });
  result = { code: r.status, stdout: r.stdout, stderr: r.stderr };
  trace = readFileSync(out, 'utf8').split('\n');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('native addon extraction', () => {
  it('the traced run succeeded and loaded the addon', () => {
    expect(result.code, `${result.stdout} ${result.stderr}`).toBe(0);
    expect(
      trace.some((l) => /strand_native\.node/.test(l)),
      'the trace shows the addon file',
    ).toBe(true);
  });

  it('goes into a fresh 0700 directory, the file is created exclusively and not writable by others', () => {
    const mk = trace.filter((l) => /mkdir(at)?\(.*strand-native-/.test(l));
    expect(mk, trace.join('\n').slice(0, 2000)).toHaveLength(1);
    expect(mk[0]).toMatch(/, 0700\) = 0$/);
    const create = trace.filter((l) => /open(at)?\(.*strand-native-.*strand_native\.node".*O_CREAT/.test(l));
    expect(create).toHaveLength(1);
    expect(create[0]).toMatch(/O_EXCL/);
    const m = /, 0([0-7]{3})\) = \d+$/.exec(create[0]!);
    expect(m, create[0]).not.toBeNull();
    expect(Number.parseInt(m![1]!, 8) & 0o022, 'group/other write bits').toBe(0);
  });

  it('file and directory are removed right after loading, with nothing else done in between', () => {
    const made = trace.findIndex((l) => /mkdir(at)?\(.*strand-native-/.test(l));
    const dirPath = /"([^"]*strand-native-[^"/]*)"/.exec(trace[made] ?? '')?.[1];
    expect(dirPath).toBeDefined();
    const loaded = trace.findLastIndex((l) => /open(at)?\(.*strand_native\.node".*O_RDONLY/.test(l) && !/O_CREAT/.test(l));
    const unlinked = trace.findIndex((l) => /unlink(at)?\(.*strand_native\.node", 0\) = 0/.test(l));
    const removed = trace.findIndex((l) => (/rmdir\(/.test(l) || /AT_REMOVEDIR/.test(l)) && l.includes(dirPath!) && /= 0$/.test(l));
    expect(loaded, 'dlopen').toBeGreaterThan(made);
    expect(unlinked, 'file unlinked after dlopen').toBeGreaterThan(loaded);
    expect(removed, 'directory removed after the file').toBeGreaterThan(unlinked);
    // Between creating the directory and removing it, only the extraction itself: the
    // window in which a crash could leave the file behind is a few syscalls wide.
    const pid = /^(\d+) /.exec(trace[made]!)?.[1];
    expect(pid, 'strace -f -o prefixes each line with the pid').toBeDefined();
    const between = trace.slice(made + 1, removed).filter((l) => l.startsWith(`${pid} `));
    expect(between.length, 'the write/open/unlink calls of the extraction').toBeGreaterThanOrEqual(3);
    for (const l of between)
      expect(l, 'unrelated work while the addon file exists').toMatch(/strand-native-|strand_native\.node|unlinkat\(\d+, "strand_native\.node"/);
    expect(existsSync(dirPath!), `${dirPath} left behind`).toBe(false);
  });

  it('no strand-native-* directory of this run is left in /run, the temp dir or /dev/shm', () => {
    const ours = new Set(trace.flatMap((l) => [...(/"([^"]*strand-native-[^"/]*)"/.exec(l)?.slice(1) ?? [])]));
    expect(ours.size).toBe(1);
    for (const base of ['/run', tmpdir(), '/dev/shm']) {
      let names: string[] = [];
      try {
        names = readdirSync(base);
      } catch {
        continue;
      }
      for (const n of names.filter((x) => x.startsWith('strand-native-')))
        expect(ours.has(join(base, n)), `${join(base, n)} is ours and left behind`).toBe(false);
    }
  });
});
