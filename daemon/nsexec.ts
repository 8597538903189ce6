// The daemon's helper for running a tool or a delegate where the runtime would have run
// it: the shim (native/shim.c) started as `strand-nsexec NETFD MNTFD FILE...` enters the
// caller's network and mount namespaces (descriptors the request brought) and execs
// FILE. In the single executable the shim is an embedded asset, written once at start
// into a fresh private directory on an exec-allowed mount (as the addon is) and removed
// at exit; from source it is the build's dist/bin/strand-shim.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extractBases } from '../lib/native/index.ts';

export interface NsexecHelper {
  file: string;
  argv0: string;
  /** Removes the extracted copy. */
  remove(): void;
}

interface SeaModule {
  isSea(): boolean;
  getRawAsset(key: string): ArrayBuffer;
}

export function nsexecHelper(): NsexecHelper | undefined {
  const sea = process.getBuiltinModule('node:sea') as SeaModule | undefined;
  if (sea?.isSea()) {
    const bytes = new Uint8Array(sea.getRawAsset('strand-shim'));
    const errors: string[] = [];
    for (const base of extractBases()) {
      let dir: string | undefined;
      try {
        dir = mkdtempSync(join(base, 'strand-nsexec-')); // mode 0700
        const file = join(dir, 'strand-nsexec');
        writeFileSync(file, bytes, { mode: 0o500, flag: 'wx' });
        const d = dir;
        return { file, argv0: 'strand-nsexec', remove: () => rmSync(d, { recursive: true, force: true }) };
      } catch (e) {
        errors.push(`${base}: ${(e as Error).message}`);
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    }
    throw new Error(`cannot write the strand-nsexec helper: ${errors.join('; ')}`);
  }
  const url = (import.meta as { url?: string }).url;
  if (!url?.startsWith('file:')) return undefined;
  const file = fileURLToPath(new URL('../dist/bin/strand-shim', url));
  return existsSync(file) ? { file, argv0: 'strand-nsexec', remove: () => {} } : undefined;
}
