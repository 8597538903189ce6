// `strand daemon`: serves the CNI calls of the shims (native/shim.c) on a unix socket,
// each through the same plugin entry as the standalone executable. docs/daemon.md.
//
//   strand daemon [--socket PATH] [--max-requests N] [--max-connections N]
//                 [--request-timeout S] [--read-timeout S] [--max-rss MIB] [--grace S]
//                 [--log-level LEVEL] [--ipam-data-dir DIR]... [--pending-interval S]
//                 [--metrics-address HOST:PORT|off]
//   strand daemon status [--socket PATH]     exit 0 when the socket accepts connections
//
// Start-up: warm-up first (the plugins' code paths run a few times, the native addon is
// loaded), then the socket is created: readiness is the socket accepting, and the first
// ADD is as fast as the hundredth. SIGTERM/SIGINT: the socket file goes first (new calls
// fall back to the standalone binary at once), then running requests get --grace
// seconds to finish. Every --pending-interval seconds it completes the IPAM releases that
// DELs recorded while the store could not be used (ipam/pending.ts), in the journals of
// the --ipam-data-dir directories.
import { parseArgs } from 'node:util';
import { createLogger, isLogLevel, type Logger } from '../lib/cni/log.ts';
import type { PluginIO } from '../lib/cni/skel.ts';
import { native } from '../lib/native/index.ts';
import { completePendingReleases } from '../ipam/pending.ts';
import { keepEtcdStores } from '../ipam/store/pool.ts';
import { type ListenAddress, ListenAddressError, parseListenAddress } from '../lib/observe/server.ts';
import type { RunPlugin } from './request.ts';
import { type NsexecHelper, nsexecHelper } from './nsexec.ts';
import { Daemon, type DaemonOptions } from './server.ts';

export const DEFAULT_SOCKET = '/run/strand/cni.sock';
/** strand-ipam's default dataDir (ipam/config.ts): the DaemonSet mounts it. */
const DEFAULT_IPAM_DATA_DIR = '/var/lib/cni/networks';
/** The daemon's observability listener: the node's loopback, beside the agent's 9476. */
const DEFAULT_DAEMON_METRICS = '127.0.0.1:9477';

const USAGE = `usage: strand daemon [--socket PATH] [--max-requests N] [--max-connections N]
                     [--request-timeout S] [--read-timeout S] [--max-rss MIB]
                     [--grace S] [--log-level debug|info|warn|error]
                     [--ipam-data-dir DIR]... [--pending-interval S]
                     [--metrics-address HOST:PORT|off]
       strand daemon status [--socket PATH]

  --socket           unix socket (default $STRAND_DAEMON_SOCKET or ${DEFAULT_SOCKET});
                     its directory is made root-only (0700)
  --max-requests     requests running at once; more get "busy" and run standalone (default 128)
  --max-connections  connections open at once, running or still sending (default 512)
  --request-timeout  seconds a request may run before it fails with code 999 (default 80;
                     keep it below the shims' STRAND_SHIM_TIMEOUT, default 90)
  --read-timeout     seconds a shim has to send its whole request (default 10)
  --max-rss          MiB of resident memory above which new requests get "busy" (default 400)
  --grace            seconds running requests get to finish on SIGTERM (default 20)
  --log-level        daemon log level on stderr (default info)
  --ipam-data-dir    strand-ipam's node-local directory whose pending releases (DELs
                     recorded while the store could not be used) the daemon completes;
                     repeatable (default ${DEFAULT_IPAM_DATA_DIR})
  --pending-interval seconds between two passes over those journals (default 15; 0: never)
  --metrics-address  listener of /metrics, /healthz, /readyz (default ${DEFAULT_DAEMON_METRICS};
                     off: none); docs/metrics.md
`;

/** What the multi-call entry (cmd/main.ts) gives the daemon. */
export interface DaemonHost {
  run: RunPlugin;
  isPlugin(name: string): boolean;
  /** Runs the I/O-free parts of every plugin once (cmd/warmup.ts). */
  warmUp(): Promise<void>;
}

function num(v: string | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, not ${JSON.stringify(v)}`);
  return n;
}

export function parseDaemonOptions(
  argv: string[],
  env: PluginIO['env'],
): Omit<DaemonOptions, 'run' | 'isPlugin' | 'log'> & {
  graceMs: number;
  logLevel: string;
  ipamDataDirs: string[];
  pendingIntervalMs: number;
  metricsAddress: ListenAddress | undefined;
} {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      socket: { type: 'string' },
      'max-requests': { type: 'string' },
      'max-connections': { type: 'string' },
      'request-timeout': { type: 'string' },
      'read-timeout': { type: 'string' },
      'max-rss': { type: 'string' },
      grace: { type: 'string' },
      'log-level': { type: 'string' },
      'ipam-data-dir': { type: 'string', multiple: true },
      'pending-interval': { type: 'string' },
      'metrics-address': { type: 'string' },
    },
  });
  void positionals;
  const logLevel = values['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) throw new Error(`--log-level must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`);
  return {
    socket: values.socket ?? (env['STRAND_DAEMON_SOCKET'] || DEFAULT_SOCKET),
    maxRequests: num(values['max-requests'], 'max-requests', 128, 1),
    maxConnections: num(values['max-connections'], 'max-connections', 512, 1),
    requestTimeoutMs: num(values['request-timeout'], 'request-timeout', 80, 0.001) * 1000,
    readTimeoutMs: num(values['read-timeout'], 'read-timeout', 10, 0.001) * 1000,
    writeTimeoutMs: 10_000,
    maxRssBytes: num(values['max-rss'], 'max-rss', 400, 16) * 1024 * 1024,
    backlog: 512,
    graceMs: num(values.grace, 'grace', 20, 0) * 1000,
    logLevel,
    ipamDataDirs: values['ipam-data-dir'] ?? [DEFAULT_IPAM_DATA_DIR],
    pendingIntervalMs: num(values['pending-interval'], 'pending-interval', 15, 0) * 1000,
    metricsAddress: metricsAddressOf(values['metrics-address'] ?? DEFAULT_DAEMON_METRICS),
  };
}

function metricsAddressOf(v: string): ListenAddress | undefined {
  if (v === 'off') return undefined;
  try {
    return parseListenAddress(v);
  } catch (e) {
    if (e instanceof ListenAddressError) throw new Error(`--metrics-address: ${e.message}`);
    throw e;
  }
}

/** `strand daemon status`: whether the socket accepts a connection within a second. */
async function status(argv: string[], io: PluginIO): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: { socket: { type: 'string' } } });
  const path = values.socket ?? (io.env['STRAND_DAEMON_SOCKET'] || DEFAULT_SOCKET);
  const net = process.getBuiltinModule('node:net');
  const ok = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.end();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  io.stdout.write(ok ? `strand daemon: ${path} accepts connections\n` : `strand daemon: ${path} does not accept connections\n`);
  return ok ? 0 : 1;
}

/**
 * Completes the pending releases in the journals of `dataDirs` every `intervalMs` (a
 * readdir per directory when nothing is pending), one pass at a time; `stop` waits for
 * the pass in progress.
 */
function completePendingEvery(dataDirs: string[], intervalMs: number, log: Logger): { stop(): Promise<void> } {
  if (intervalMs <= 0) return { stop: async () => undefined };
  let pass: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (pass) return;
    pass = completePendingReleases(dataDirs, { log })
      .then((r) => {
        if (r.completed.length) log.info(`completed ${r.completed.length} pending IPAM releases`);
      })
      .catch((e: unknown) => log.warn('completing pending IPAM releases failed', e))
      .finally(() => {
        pass = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await pass;
    },
  };
}

/**
 * /metrics (the request series of the plugin code it runs, its connections' outcomes,
 * prom-client's process series), /healthz (fails when the socket file is gone or was
 * replaced: a restart recreates it), /readyz (serving). A listener that cannot be bound
 * is logged and skipped: serving CNI calls matters more.
 */
async function serveObservability(
  address: ListenAddress,
  metrics: import('../lib/observe/metrics.ts').StrandMetrics,
  daemon: Daemon,
  log: Logger,
): Promise<{ close(): Promise<void> } | undefined> {
  const { startObserveServer } = await import('../lib/observe/server.ts');
  const where = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  try {
    const server = await startObserveServer(
      address,
      { metrics, liveness: [{ name: 'socket', problem: () => daemon.socketProblem() }], readiness: () => daemon.socketProblem() },
      log,
    );
    log.info(`metrics on http://${where}/metrics, liveness /healthz, readiness /readyz`);
    return server;
  } catch (e) {
    log.error(`cannot listen on ${where} (--metrics-address): no metrics`, e);
    return undefined;
  }
}

/** `strand daemon status`, `--help` and bad options end here with an exit status; otherwise the options. */
async function commandLine(argv: string[], io: PluginIO): Promise<number | ReturnType<typeof parseDaemonOptions>> {
  if (argv[0] === 'status') {
    try {
      return await status(argv.slice(1), io);
    } catch (e) {
      io.stderr.write(`strand daemon status: ${(e as Error).message}\n`);
      return 2;
    }
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(USAGE);
    return 0;
  }
  try {
    return parseDaemonOptions(argv, io.env);
  } catch (e) {
    io.stderr.write(`strand daemon: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
}

/** One log line per connection (served ones at debug, the others at info with the reason), and the metrics' count. */
function observeOutcomes(daemon: Daemon, log: Logger, metrics: import('../lib/observe/metrics.ts').StrandMetrics | undefined): void {
  if (metrics) daemon.observe((e) => metrics.daemonConnection(e.outcome, daemon.inFlight));
  daemon.observe((e) => {
    const line = `request ${e.plugin || '-'} ${e.verb || '-'}: ${e.outcome}${e.exitCode !== undefined ? ` ${e.exitCode}` : ''} in ${e.durationMs.toFixed(1)} ms${e.reason ? ` (${e.reason})` : ''}`;
    if (e.outcome === 'done') log.debug(line);
    else log.info(line);
  });
}

export async function main(argv: string[], io: PluginIO, host: DaemonHost): Promise<number> {
  const o = await commandLine(argv, io);
  if (typeof o === 'number') return o;
  const log = createLogger({ name: 'strand daemon', stderr: io.stderr, level: o.logLevel as 'info' });
  if (process.getuid?.() !== 0) log.warn('not running as root: shims (root) can connect, but plugins will fail to configure networks');

  // Warm-up before the socket exists: the first request finds compiled code and a loaded addon.
  const t0 = performance.now();
  native();
  for (let i = 0; i < 5; i++) await host.warmUp();
  const stores = keepEtcdStores({ max: 8, idleMs: 5 * 60_000 });
  let helper: NsexecHelper | undefined;
  try {
    helper = nsexecHelper();
  } catch (e) {
    log.error('cannot set up strand-nsexec', e);
    return 1;
  }
  if (!helper) log.warn('no strand-nsexec helper: calls from another network or mount namespace cannot run tools or delegates');

  const metrics = o.metricsAddress ? new (await import('../lib/observe/metrics.ts')).StrandMetrics() : undefined;
  const daemon = new Daemon({
    ...o,
    run: host.run,
    isPlugin: host.isPlugin,
    log,
    nsexec: helper && { file: helper.file, argv0: helper.argv0 },
    observer: metrics,
  });
  observeOutcomes(daemon, log, metrics);
  try {
    daemon.start();
  } catch (e) {
    log.error(`cannot listen on ${o.socket}`, e);
    helper?.remove();
    return 1;
  }
  log.info(`serving ${o.socket} (pid ${process.pid}, warm-up ${(performance.now() - t0).toFixed(0)} ms)`);
  const pending = completePendingEvery(o.ipamDataDirs, o.pendingIntervalMs, log);
  const observeServer = o.metricsAddress && metrics ? await serveObservability(o.metricsAddress, metrics, daemon, log) : undefined;

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info(`${signal}: socket removed, ${daemon.inFlight} requests running, up to ${o.graceMs / 1000} s to finish`);
  const left = await daemon.stop(o.graceMs);
  await pending.stop();
  await observeServer?.close();
  if (left > 0) log.warn(`${left} requests still running after the grace period: their shims report code 999`);
  await stores.close();
  if (left === 0) helper?.remove(); // abandoned requests may still run it
  log.info(`stopped (${JSON.stringify(daemon.counts)})`);
  // Work abandoned after the grace period must not keep the process alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  return 0;
}
