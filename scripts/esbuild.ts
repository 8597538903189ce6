// Bundles cmd/main.ts into one minified CommonJS file for the single executable.
//
//   node scripts/esbuild.ts --outfile <path> [--metafile <path>]
//
// Called by scripts/build.sh. The SEA runtime can only `require()` Node built-ins and
// does not support a real `import()` (the code cache is on), so this script fails the
// build when the output still needs anything outside the bundle. Dynamic `import()` of
// our own modules stays in the source: esbuild turns each into a lazily initialised
// module inside the one file, so `strand-bridge` VERSION never evaluates etcd or grpc.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build, type Metafile, type Plugin } from 'esbuild';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function gitCommit(): string {
  // scripts/build.sh passes the commit it also compiles into the shim's marker; a build
  // without .git (the Dockerfile's build stage) is told it too
  const given = process.env['STRAND_COMMIT'];
  if (given) return given;
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: repoRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return 'unknown';
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
  return pkg.version;
}

/**
 * etcd3 reads its .proto files from `${__dirname}/../proto` when its connection pool
 * module is first evaluated; inside the single executable there is no such directory.
 * Parse them now and hand proto-loader the same definitions as JSON (its `fromJSON`),
 * so the bundle carries them. Fails the build if etcd3 no longer loads them that way.
 */
function etcdProtoPlugin(): Plugin {
  const filter = /[\\/]node_modules[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/;
  const call = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`,/;
  return {
    name: 'etcd3-proto',
    setup(b) {
      b.onLoad({ filter }, (args) => {
        const source = readFileSync(args.path, 'utf8');
        if (!call.test(source)) {
          return { errors: [{ text: `etcd3 changed how it loads rpc.proto; update etcdProtoPlugin (${args.path})` }] };
        }
        // protobufjs as proto-loader itself resolves it, with the option etcd3 passes.
        const fromEtcd = createRequire(args.path);
        const loaderPath = fromEtcd.resolve('@grpc/proto-loader');
        const protobuf = createRequire(loaderPath)('protobufjs') as typeof import('protobufjs');
        const root = new protobuf.Root();
        root.loadSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
        const json = JSON.stringify(root.toJSON());
        return { contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${json},`), loader: 'js' };
      });
    },
  };
}

/** Everything the bundle still loads from outside itself, which the SEA cannot do. */
function externalLoads(meta: Metafile): string[] {
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  const bad = new Set<string>();
  for (const [file, input] of Object.entries(meta.inputs)) {
    for (const imp of input.imports) {
      if (!imp.external) continue;
      if (imp.kind === 'dynamic-import') bad.add(`${file}: import(${JSON.stringify(imp.path)})`);
      else if (!builtins.has(imp.path)) bad.add(`${file}: ${imp.kind} ${JSON.stringify(imp.path)}`);
    }
  }
  return [...bad].sort();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { outfile: { type: 'string' }, metafile: { type: 'string' } },
    strict: true,
  });
  if (!values.outfile) throw new Error('usage: node scripts/esbuild.ts --outfile <path> [--metafile <path>]');

  const result = await build({
    absWorkingDir: repoRoot,
    entryPoints: ['cmd/main.ts'],
    outfile: resolve(values.outfile),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node26',
    minify: true,
    legalComments: 'none',
    sourcemap: false,
    metafile: true,
    logLevel: 'warning',
    plugins: [etcdProtoPlugin()],
    // import.meta is empty in CommonJS; modules that locate files relative to themselves
    // (development paths) get the bundle's own location instead, computed only when read.
    // The banner comes before esbuild's own "use strict", so it carries the directive.
    banner: {
      js: '"use strict";var __strand_import_meta={get url(){return require("node:url").pathToFileURL(__filename).href}};',
    },
    define: {
      'import.meta.url': '__strand_import_meta.url',
      __STRAND_VERSION__: JSON.stringify(packageVersion()),
      __STRAND_COMMIT__: JSON.stringify(gitCommit()),
      'process.env.NODE_ENV': '"production"',
    },
  });

  const bad = externalLoads(result.metafile);
  if (bad.length > 0) {
    throw new Error(`the bundle loads modules from outside itself, which the single executable cannot:\n  ${bad.join('\n  ')}`);
  }
  if (values.metafile) writeFileSync(values.metafile, JSON.stringify(result.metafile));
}

main().catch((e: unknown) => {
  process.stderr.write(`scripts/esbuild.ts: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
