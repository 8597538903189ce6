// `strand agent ...`: the node agent (long-running) and its status command.
//
//   strand agent [run] [options]        run until SIGTERM/SIGINT (routes stay in place)
//   strand agent status [--json] [--state-file F | --config F]
//                                       exit 0 when synced, 1 when not, 2 on usage errors
//   strand agent --restore [--flat-record F | --config F]
//                                       undo flat mode's uplink takeover (agent/flat.ts)
//
// See docs/agent.md and agent/config.ts for the options.
import { readFileSync } from 'node:fs';
import { parseLongFlags } from '../lib/cli/flags.ts';
import type { PluginIO } from '../lib/cni/skel.ts';
import { createLogger, isLogLevel } from '../lib/cni/log.ts';
import { passwordOnCommandLineWarning } from '../ipam/store/etcd-config.ts';
import { DEFAULT_POD_MTU_FILE } from '../lib/plugin/mtu.ts';
import { DEFAULT_OBSERVE_ADDRESS } from '../lib/observe/server.ts';
import { AgentConfigError, DEFAULT_STATE_FILE, FLAGS, flatRecordOf, loadAgentConfig, loadRawConfig } from './config.ts';

type CliIO = Pick<PluginIO, 'env' | 'stdout' | 'stderr'>;

const USAGE = `usage: strand agent [run] [options]
       strand agent status [--json] [--state-file F | --config F]
       strand agent --restore [--flat-record F | --config F]

Keeps this node's routes to the other nodes' pod address blocks (from strand-ipam's
etcd store) in step: mode host-gw routes via the other nodes' addresses, mode vxlan
through a VXLAN device; mode flat puts the uplink into a bridge that takes over the
node's addresses and routes, and routes nothing (pods are on the segment). Runs until
SIGTERM; routes (and a flat takeover) stay in place when it stops.

options (flags override --config, which overrides --cni-conf):
  --config <file>            JSON config (docs/agent.md)
  --cni-conf <file>          use the etcd store and network name of this conflist's
                             strand-ipam section
  --node-name <name>         default: K8S_NODE_NAME, NODENAME, hostname
  --node-ip <ip>[,<ip6>]     underlay address(es) of this node
  --node-interface <name>    take the node address from this interface
                             (default: the interface of the IPv4 default route)
  --network <name>[,...]     IPAM networks to route (default: all; flat: required, the
                             node's addresses are reserved there)
  --mode host-gw|vxlan|flat  default host-gw
  --uplink <name>            flat: the interface the bridge takes over
  --flat-bridge <name>       flat: the bridge (default br0; strand-bridge's "bridge")
  --flat-record <path>       flat: record of the takeover (default /run/strand/flat.json)
  --flat-vlans <id>[,...]    flat: pod VLANs, tagged on the uplink (bridge VLAN filtering)
  --restore                  undo the flat takeover recorded there, then exit
  --vni <n>                  VXLAN network identifier (default 4096)
  --vxlan-port <n>           VXLAN UDP port (default 4789)
  --vxlan-device <name>      default strand.<vni>
  --mtu <n>                  VXLAN device MTU (default: underlay MTU - 50)
  --etcd-endpoints <urls>    comma-separated; --etcd-prefix (default /strand/ipam),
                             --etcd-ca, --etcd-cert, --etcd-key, --etcd-username,
                             --etcd-password (warns: a command line is readable
                             by other users; prefer the --config or --cni-conf file)
  --lease-ttl <duration>     node record lease (default 20s)
  --resync <duration>        periodic full check of the data plane (default 30s)
  --state-file <path>        default ${DEFAULT_STATE_FILE}
  --pod-mtu-file <path>      where the pods' MTU is written for strand-bridge's
                             mtuFile (default ${DEFAULT_POD_MTU_FILE})
  --route-protocol <n>       protocol number marking the agent's routes (default 115)
  --proxy-arp true|false     proxy ARP on pod bridges (default true)
  --metrics-address <a:p>    listener of /metrics, /healthz, /readyz
                             (default ${DEFAULT_OBSERVE_ADDRESS}; ":9476" for every address)
  --reconcile-stuck-after <duration>
                             a reconcile pass this long fails /healthz (default 60s)
  --ipam-data-dir <dir>      strand-ipam's node-local directory, where DEL records the
                             releases it could not make (default: the --cni-conf's
                             ipam.dataDir, else /var/lib/cni/networks); the agent
                             completes them once etcd answers
  --node-release-after <duration>
                             release the empty blocks and the record of a node whose
                             agent has been gone this long (default 1h; "never")
  --log-level <level>        debug, info, warn, error
  --log-format text|json     lines on stderr (default text; json: one object per line)
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function parseFlags(
  argv: readonly string[],
  allowed: ReadonlySet<string>,
  bools: ReadonlySet<string>,
): { flags: Map<string, string>; bool: Set<string>; rest: string[] } {
  const p = parseLongFlags(argv, allowed, bools, (m) => new UsageError(m));
  return { flags: p.flags, bool: p.bools, rest: p.rest };
}

async function status(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, bool, rest } = parseFlags(argv, new Set(['state-file', 'config']), new Set(['json']));
  if (rest.length) throw new UsageError(`unexpected argument ${rest[0] as string}`);
  const { readState, readiness, formatState } = await import('./status.ts');
  let file = flags.get('state-file');
  if (file === undefined && flags.has('config')) {
    const j = JSON.parse(readFileSync(flags.get('config') as string, 'utf8')) as { stateFile?: unknown };
    if (typeof j.stateFile === 'string') file = j.stateFile;
  }
  const s = readState(file ?? DEFAULT_STATE_FILE);
  const r = readiness(s, Date.now());
  if (bool.has('json'))
    io.stdout.write(`${JSON.stringify({ ...s, ready: r.ready, running: r.running, stale: r.stale, ...(r.reason ? { reason: r.reason } : {}) }, null, 2)}\n`);
  else io.stdout.write(formatState(s, r));
  return r.ready ? 0 : 1;
}

/** `strand agent --restore`: the node's uplink gets back what the flat takeover moved. */
async function restoreCmd(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, rest } = parseFlags(argv, new Set(Object.keys(FLAGS)), new Set(['restore']));
  if (rest.length) throw new UsageError(`unexpected argument ${rest[0] as string}`);
  const raw = loadRawConfig(flags);
  const level = typeof raw['logLevel'] === 'string' && isLogLevel(raw['logLevel']) ? raw['logLevel'] : 'info';
  const log = createLogger({ name: 'strand-agent', stderr: io.stderr, level, format: raw['logFormat'] === 'json' ? 'json' : 'text' });
  const [{ restore, TakeoverError }, { Netns }] = await Promise.all([import('./flat.ts'), import('../lib/netlink/netns.ts')]);
  const ns = Netns.current();
  try {
    const r = await restore(ns, flatRecordOf(raw), { log });
    return r.warnings.length ? 1 : 0;
  } catch (e) {
    if (e instanceof TakeoverError) {
      io.stderr.write(`strand agent --restore: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    ns.close();
  }
}

async function run(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, rest } = parseFlags(argv, new Set(Object.keys(FLAGS)), new Set());
  if (rest.length) throw new UsageError(`unexpected argument ${rest[0] as string}`);
  // before the config is checked: a command line is readable by every local user at once
  if (flags.has('etcd-password'))
    io.stderr.write(`strand agent: ${passwordOnCommandLineWarning('"etcd": {"password"} in --config or the --cni-conf file (mode 0600)')}\n`);
  const cfg = loadAgentConfig(flags, io.env);
  const log = createLogger({ name: 'strand-agent', stderr: io.stderr, level: cfg.logLevel, format: cfg.logFormat });
  // prom-client and the HTTP server are loaded here only: plugin processes never load them
  const [{ Agent }, { Netns }, { StrandMetrics }, { startObserveServer }] = await Promise.all([
    import('./agent.ts'),
    import('../lib/netlink/netns.ts'),
    import('../lib/observe/metrics.ts'),
    import('../lib/observe/server.ts'),
  ]);
  const metrics = new StrandMetrics();
  const agent = new Agent(cfg, { ns: Netns.current(), log, metrics });
  const where = `${cfg.metricsAddress.host.includes(':') ? `[${cfg.metricsAddress.host}]` : cfg.metricsAddress.host}:${cfg.metricsAddress.port}`;
  let server: Awaited<ReturnType<typeof startObserveServer>>;
  try {
    server = await startObserveServer(cfg.metricsAddress, agent.observeSources(), log);
  } catch (e) {
    io.stderr.write(`strand agent: cannot listen on ${where} (metricsAddress): ${(e as Error).message}\n`);
    return 1;
  }
  log.info(`metrics on http://${where}/metrics, liveness /healthz, readiness /readyz`);
  // A daemon must outlive a stray rejection inside the etcd client: log it, keep going.
  const onRejection = (e: unknown): void => log.error('unhandled rejection', e);
  process.on('unhandledRejection', onRejection);
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info(`${sig}: stopping (routes stay in place)`);
      if (stopping) return;
      stopping = true;
      void agent.stop().finally(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  await agent.start();
  await stopped;
  await server.close();
  process.off('unhandledRejection', onRejection);
  // grpc may keep sockets open for a moment after close(): do not wait on them
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  return 0;
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'help' || sub === '--help' || sub === '-h') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (sub === 'status') return await status(rest, io);
    if (argv.includes('--restore')) return await restoreCmd(sub === 'run' ? rest : argv, io);
    if (sub === 'run') return await run(rest, io);
    return await run(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`strand agent: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof AgentConfigError) {
      io.stderr.write(`strand agent: invalid configuration: ${e.message}\n`);
      return 2;
    }
    if (e instanceof Error && e.name === 'StateFileError') {
      io.stderr.write(`strand agent status: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
