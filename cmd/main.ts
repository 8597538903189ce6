// The multi-call entry point of the single executable. The name it was started by
// decides what it is:
//   strand-bridge, strand-macvlan, strand-ipvlan, strand-ipam,
//   strand-portmap, loopback                                   a CNI plugin
//   anything else (strand)                                     the `strand <command>` CLI
// Every target is loaded with a dynamic import(): the bundle keeps each one's module
// initialisation lazy, so a plugin start evaluates only that plugin's code.
import { readSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { startupSnapshot } from 'node:v8';
import { registerInProcess, setShimBuild } from '../lib/cni/inprocess.ts';
import { type PluginIO, STDIN_LIMIT } from '../lib/cni/skel.ts';
import { useBlockingRoundTrips } from '../lib/netlink/socket.ts';
import { buildId } from './build-id.ts';

type PluginMain = (io: PluginIO) => Promise<number>;
type CommandMain = (argv: string[], io: PluginIO) => Promise<number>;

const plugins: Record<string, () => Promise<PluginMain>> = {
  'strand-bridge': async () => (await import('../cni/bridge/main.ts')).main,
  'strand-macvlan': async () => (await import('../cni/macvlan/main.ts')).main,
  'strand-ipvlan': async () => (await import('../cni/ipvlan/main.ts')).main,
  'strand-ipam': async () => (await import('../ipam/main.ts')).main,
  // chained by the runtime after the interface plugin (hostPort): never delegated
  'strand-portmap': async () => (await import('../cni/portmap/main.ts')).main,
  // run by the runtime itself for every pod (containerd's CRI: type "loopback", CNI_IFNAME=lo)
  loopback: async () => (await import('../cni/loopback/main.ts')).main,
};

// A strand plugin delegating IPAM to strand-ipam runs it in this process when the
// strand-ipam found on CNI_PATH is this very executable (a hardlink): no second start.
// STRAND_IPAM_EXEC=1 execs it anyway. lib/cni/invoke.ts decides per call.
registerInProcess('strand-ipam', { load: plugins['strand-ipam']!, execEnv: 'STRAND_IPAM_EXEC' });
// ...and so does a strand-ipam that is a shim of this build (an installed node: the shims
// are the plugin names, this executable sits beside them as `strand`).
setShimBuild(buildId());

interface Command {
  summary: string;
  load(): Promise<CommandMain>;
}

// Each module exports `main(argv: string[], io: PluginIO): Promise<number>`.
const commands: Record<string, Command> = {
  version: {
    summary: 'version [--json]     strand version, git commit, Node version, CNI spec versions (also --version)',
    load: async () => (await import('./version.ts')).main,
  },
  ipam: {
    summary: 'ipam <ls|show|usage|release|gc|repair|reserve|unreserve|import-host-local|pending|node> [--json]   inspect and repair IPAM records (--help)',
    load: async () => (await import('../ipam/cli.ts')).main,
  },
  install: {
    summary: 'install [options]    put strand and its conflist on a node (--help for options)',
    load: async () => (await import('./install.ts')).main,
  },
  certs: {
    summary: 'certs [options]      CA, etcd server and client certificates and their Secrets (--help)',
    load: async () => (await import('./certs.ts')).main,
  },
  agent: {
    summary: "agent [run|status]   node agent: routes to other nodes' pod blocks (host-gw, vxlan)",
    load: async () => (await import('../agent/main.ts')).main,
  },
  daemon: {
    summary: 'daemon [status]      serve the CNI calls of the shims on a unix socket (--help for options)',
    load: async () => {
      const { main } = await import('../daemon/main.ts');
      const host = {
        run: runPlugin,
        isPlugin: (name: string) => Object.hasOwn(plugins, name),
        warmUp: async () => (await import('./warmup.ts')).warmUp((name) => plugins[name]!()),
      };
      return (argv, io) => main(argv, io, host);
    },
  },
};

function usage(): string {
  const lines = Object.values(commands).map((c) => `  strand ${c.summary}`);
  return [
    'usage: strand <command> [arguments]',
    '',
    ...lines,
    '',
    `Started as ${Object.keys(plugins).join(', ')} (hardlinks of this binary),`,
    'strand is that CNI plugin and reads CNI_COMMAND and the network config as the CNI spec says.',
    '',
  ].join('\n');
}

/**
 * Reads fd 0 to its end, or to one byte over STDIN_LIMIT (skel rejects that: the memory
 * a config can take is bounded); falls back to the stream API when stdin is non-blocking.
 */
async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    while (total <= STDIN_LIMIT) {
      const buf = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(0, buf, 0, Math.min(buf.length, STDIN_LIMIT + 1 - total), null);
      if (n === 0) return Buffer.concat(chunks);
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EOF' || code === 'EBADF') return Buffer.concat(chunks); // no stdin at all
    if (code !== 'EAGAIN') throw e;
  }
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (total > STDIN_LIMIT) break;
  }
  return Buffer.concat(chunks);
}

/**
 * Writes straight to the file descriptor: creating process.stdout (a stream over a pipe)
 * costs ~5 ms of start-up, about a tenth of a plugin run. Pipes and files are blocking
 * here, so each write is complete when it returns; a non-blocking descriptor (EAGAIN)
 * hands the rest, in order, to Node's stream, which the event loop drains before exit.
 */
function fdWriter(fd: 1 | 2, stream: () => NodeJS.WriteStream): { write(s: string): void } {
  let useStream = false;
  return {
    write(s: string): void {
      if (useStream) {
        stream().write(s);
        return;
      }
      let buf = Buffer.from(s, 'utf8');
      while (buf.length > 0) {
        try {
          buf = buf.subarray(writeSync(fd, buf));
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EPIPE' || code === 'EBADF') return; // no reader, or no descriptor: nobody to tell
          if (code !== 'EAGAIN') throw e;
          useStream = true;
          stream().write(buf);
          return;
        }
      }
    },
  };
}

/** The real process behind PluginIO; the exit status goes through process.exitCode. */
function processIO(): PluginIO {
  return {
    env: process.env,
    stdin: readStdin,
    stdout: fdWriter(1, () => process.stdout),
    stderr: fdWriter(2, () => process.stderr),
  };
}

/** Picks the plugin or command for argv0 and argv (user arguments only) and runs it. */
async function dispatch(argv0: string, argv: string[], io: PluginIO): Promise<number> {
  const plugin = plugins[basename(argv0)];
  if (plugin) {
    // One CNI call per process: nothing else waits, so netlink round trips run on this
    // thread (no handoff to an addon thread; lib/netlink/socket.ts).
    useBlockingRoundTrips();
    return (await plugin())(io);
  }

  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(usage());
    return 2;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(usage());
    return 0;
  }
  if (name === '--version') return (await commands['version']!.load())(rest, io);
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.stderr.write(`strand: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  return (await command.load())(rest, io);
}

// A plugin that fails outside pluginMain (a module that cannot load) still owes its
// runtime an error object on stdout; details go to stderr, never a stack on stdout.
function internalError(argv0: string, io: PluginIO, e: unknown): void {
  const name = basename(argv0);
  if (Object.hasOwn(plugins, name)) {
    const msg = e instanceof Error ? e.message : String(e);
    io.stdout.write(`${JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: 'internal error', details: msg })}\n`);
  }
  io.stderr.write(`${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
}

/**
 * Runs plugin `name` with `io` as a plugin process would (the daemon runs each request
 * so), but keeps netlink asynchronous: many requests share the daemon's event loop.
 */
async function runPlugin(name: string, io: PluginIO): Promise<number> {
  try {
    if (!Object.hasOwn(plugins, name)) throw new Error(`no plugin ${JSON.stringify(name)}`);
    return await (await plugins[name]!())(io);
  } catch (e) {
    internalError(name, io, e);
    return 1;
  }
}

/** Runs this process: the plugin or command its name and arguments ask for. */
function run(): void {
  // In the single executable and under `node cmd/main.ts` alike, argv[0] is the runtime
  // and argv[1] the program; user arguments start at argv[2].
  const argv0 = process.argv0;
  const io = processIO();
  dispatch(argv0, process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      try {
        internalError(argv0, io, e);
      } finally {
        process.exitCode = 1;
      }
    },
  );
}

// The single executable starts from a V8 start-up snapshot (scripts/build.sh): at build
// time this file runs once and evaluates every plugin's modules, and the heap is saved;
// a plugin start deserialises it and calls run(), skipping the compilation and
// evaluation of those modules. The etcd client stays out (gRPC needs tls and http2,
// which cannot be snapshotted): it is loaded when an etcd store is used. Nothing
// process-specific may happen while modules are evaluated: no addon, environment,
// file or randomness (a module-level Math.random() or process.env read would be frozen
// into every process).
if (startupSnapshot.isBuildingSnapshot()) {
  // Module evaluation and warm-up finish before the heap is saved (the build runs the
  // event loop until it is empty); a failure fails the build.
  import('./warmup.ts')
    .then(({ warmUp }) => warmUp((name) => plugins[name]!()))
    .catch((e: unknown) => {
      process.stderr.write(`start-up snapshot: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    });
  startupSnapshot.setDeserializeMainFunction(run);
} else {
  run();
}
