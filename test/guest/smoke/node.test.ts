import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetnsSet } from '../../helpers/netns.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { pinnedNodeVersion, whereAmI } from '../../helpers/vm.ts';

// The pinned Node and the project's native addon work on the guest's kernel: the addon
// is built on the host (scripts/build.sh) into the shared repository and loaded here
// by the same Node binary, also shared.

const nodeBin = join(repoRoot, 'node_modules', '.bin', 'node');
const addon = join(repoRoot, 'native', 'build', 'Release', 'strand_native.node');

const set = new NetnsSet();
afterEach(() => set.cleanup());

describe('pinned node in the guest', () => {
  it('runs the tests themselves', () => {
    expect(process.version, whereAmI()).toBe(pinnedNodeVersion());
  });

  it('loads the native addon and enters a namespace with it', () => {
    if (!existsSync(addon)) {
      throw new Error(`native addon missing: ${addon} (build it on the host with scripts/build.sh before the guest tests)`);
    }
    const ns = set.add('n');
    // A separate process of the pinned binary, as the plugins run: dlopen the addon,
    // then open a netlink socket inside the namespace (setns in the addon's C call).
    const script = `
      const m = { exports: {} };
      process.dlopen(m, process.argv[1]);
      const a = m.exports;
      const fd = a.nlOpen(process.argv[2], 0);
      a.close(fd);
      console.log(JSON.stringify({
        version: process.version,
        fns: Object.keys(a).filter((k) => typeof a[k] === 'function').sort(),
        isNetns: a.isNetns('/proc/self/ns/net'),
        utsIsNetns: a.isNetns('/proc/self/ns/uts'),
        fd,
      }));`;
    const out = execFileSync(nodeBin, ['-e', script, addon, set.path(ns)], { encoding: 'utf8' });
    const r = JSON.parse(out) as { version: string; fns: string[]; isNetns: boolean; utsIsNetns: boolean; fd: number };
    expect(r.version).toBe(pinnedNodeVersion());
    expect(r.fns).toEqual(expect.arrayContaining(['nlOpen', 'nlRequest', 'nlRequestSync', 'close', 'nsOpenFile', 'isNetns', 'flock']));
    expect(r.isNetns).toBe(true);
    expect(r.utsIsNetns).toBe(false);
    expect(r.fd).toBeGreaterThanOrEqual(0);
  });
});
