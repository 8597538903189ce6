// `strand version [--json]`: what this binary is.
import { readFileSync } from 'node:fs';
import { isSea } from 'node:sea';
import type { PluginIO } from '../lib/cni/skel.ts';
import { SPEC_VERSIONS } from '../lib/cni/types.ts';

// Replaced by scripts/esbuild.ts at build time; absent when run from source.
declare const __STRAND_VERSION__: string | undefined;
declare const __STRAND_COMMIT__: string | undefined;

export interface StrandVersion {
  version: string;
  commit: string;
  node: string;
  cniVersions: string[];
  singleExecutable: boolean;
}

function sourceVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function strandVersion(): StrandVersion {
  return {
    version: typeof __STRAND_VERSION__ === 'string' ? __STRAND_VERSION__ : sourceVersion(),
    commit: typeof __STRAND_COMMIT__ === 'string' ? __STRAND_COMMIT__ : 'source',
    node: process.version,
    cniVersions: [...SPEC_VERSIONS],
    singleExecutable: isSea(),
  };
}

export async function main(argv: string[], io: PluginIO): Promise<number> {
  const json = argv.includes('--json');
  const unknown = argv.filter((a) => a !== '--json');
  if (unknown.length > 0) {
    io.stderr.write(`strand version: unexpected argument ${JSON.stringify(unknown[0])}\nusage: strand version [--json]\n`);
    return 2;
  }
  const v = strandVersion();
  if (json) {
    io.stdout.write(`${JSON.stringify(v)}\n`);
  } else {
    io.stdout.write(
      [
        `strand ${v.version} (commit ${v.commit})`,
        `node ${v.node}${v.singleExecutable ? ' (single executable)' : ''}`,
        `CNI spec versions: ${v.cniVersions.join(', ')}`,
        '',
      ].join('\n'),
    );
  }
  return 0;
}
