// prom-client and the observability listener belong to long-lived processes only: no
// plugin's module graph (what `strand-bridge` and the others evaluate, and what the
// single executable's start-up snapshot holds) may reach them. Checked on the module
// graph esbuild resolves from each plugin entry, static imports only (a dynamic
// import() is lazy in the bundle).
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../helpers/run-plugin.ts';

const ENTRIES = [
  'cni/bridge/main.ts',
  'cni/macvlan/main.ts',
  'cni/ipvlan/main.ts',
  'cni/portmap/main.ts',
  'cni/loopback/main.ts',
  'ipam/main.ts',
  'cmd/warmup.ts',
];

describe('plugin module graphs', () => {
  it.each(ENTRIES)('%s never statically imports prom-client or lib/observe', async (entry) => {
    const r = await build({
      absWorkingDir: repoRoot,
      entryPoints: [join(repoRoot, entry)],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      logLevel: 'silent',
      // a dynamic import() stays lazy in the product bundle: leave its target out here
      plugins: [
        {
          name: 'static-only',
          setup(b) {
            b.onResolve({ filter: /.*/ }, (args) => (args.kind === 'dynamic-import' ? { path: args.path, external: true } : undefined));
          },
        },
      ],
    });
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs.length).toBeGreaterThan(5);
    expect(inputs.filter((f) => f.includes('prom-client') || f.includes('lib/observe/') || f.startsWith('agent/'))).toEqual([]);
  });
});
