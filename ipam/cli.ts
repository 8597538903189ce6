// `strand ipam ...`: the admin CLI over either store.
//
//   strand ipam [store flags] [--network N] [--json] ls [--namespace NS] [--node N]
//   strand ipam ... show <ip>
//   strand ipam ... usage                       per pool, per node and per block; reservations
//   strand ipam ... release <ip|containerID> [--dry-run]
//   strand ipam ... gc [--dry-run] [--repair] [--valid F --node N [--force]]
//   strand ipam ... repair [--dry-run] [--force]
//   strand ipam ... reserve <ip|cidr> --note TEXT [--allow-requested]
//   strand ipam ... unreserve <ip|cidr>
//   strand ipam --conf F import-host-local [--host-local-dir D] [--node N] [--dry-run]
//   strand ipam ... pending [--complete [--dry-run]]   this node's pending releases
//   strand ipam ... node ls                              nodes: record, agent, blocks, attachments
//   strand ipam ... node release <node> [--force] [--dry-run]
//
// Store flags: --conf <file> (a network config or conflist holding a strand-ipam
// section: its store and network are used), or --data-dir <dir> (local store, default
// /var/lib/cni/networks; with --etcd-endpoints: where this node's journal of pending
// releases is), or --etcd-endpoints <url,...> [--etcd-prefix P]
// [--etcd-ca F --etcd-cert F --etcd-key F] [--etcd-username U] with the password from
// --etcd-password-file F or $STRAND_ETCD_PASSWORD (--etcd-password P still works, with a
// warning: a command line is readable by every local user in /proc/<pid>/cmdline).
//
// Exit status: 0 done, 1 failed or nothing found (show, release), 2 usage error (also a
// --data-dir that does not exist).
import { parseLongFlags } from '../lib/cli/flags.ts';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PluginIO } from '../lib/cni/skel.ts';
import type { NetConf } from '../lib/cni/types.ts';
import { bitsOf, contains, parseCidr, tryParseIP, formatIP } from '../lib/addr/cidr.ts';
import { Allocator, emptyRepairReport, reservationIntervals, type RepairReport } from './allocator.ts';
import { DEFAULT_DATA_DIR, excludedBy, usableIn, type IpamConfig } from './config.ts';
import { readHostLocal, removeHostLocal, withHostLocalLock } from './host-local.ts';
import { listReservations, reserve, ReservationError, unreserve } from './reservations.ts';
import { DEFAULT_ETCD_PREFIX, parseEtcdConfig, passwordOnCommandLineWarning } from './store/etcd-config.ts';
import { LocalStore } from './store/local.ts';
import { isStoreDamaged, type Attachment, type Reservation, type Store } from './store/types.ts';
import { journalOf, loadConfig, netnsHoldsAddress, nodeName, openStore, storeRefOfConf } from './main.ts';
import { listNodes, releaseNode } from './nodes.ts';
import { completePending, PendingJournal, pendingDirOf, releaseConfig, sameStore, storeRefText, type PendingRelease, type StoreRef } from './pending.ts';

/** stdout/stderr, and the environment (process.env when not given). */
type CliIO = Pick<PluginIO, 'stdout' | 'stderr'> & { env?: Record<string, string | undefined> };

/** The environment variable holding the etcd password (not visible in /proc/<pid>/cmdline to other users). */
export const PASSWORD_ENV = 'STRAND_ETCD_PASSWORD';

const USAGE = `usage: strand ipam [options] <command>

commands:
  ls                         attachments: addresses, node, pod (--namespace NS, --node N);
                             a release pending on this node is shown
  show <ip>                  who holds an address: attachment, pod, block, reservation
  usage                      used/free per pool, per node and per block; reservations
  release <ip|containerID>   release an address, or every address of a container
  gc                         make blocks agree with the attachments (the truth): drop
                             block entries no attachment holds, re-enter the missing;
                             --repair: also rebuild damaged records (= repair);
                             --valid <file> --node <n>: also release that node's
                             attachments not in the file's list (CNI GC's JSON list of
                             {containerID, ifname}), except young ones and those whose
                             network namespace still holds their address, unless --force
  repair                     rebuild damaged store records, then gc; --force sets a
                             document that cannot be read aside and starts it empty
  reserve <ip|cidr>          never hand out these addresses (--note TEXT,
                             --allow-requested: a request naming one may take it)
  unreserve <ip|cidr>        remove a reservation
  import-host-local          move the reference host-local's reservations of the
                             network (--conf) into the store: --host-local-dir D
                             (default <dataDir>/<network>), --node N (default this node)
  node ls                    the nodes the store knows: record, agent alive, blocks,
                             attachments
  node release <node>        a node that left the cluster: release its empty blocks
                             and, once it holds nothing, its record (the agents drop
                             their routes to it); --force: release its attachments
                             too (and even when its agent is alive)
  pending                    this node's releases that DEL recorded while the store
                             was unavailable (<data dir>/.strand-ipam-pending);
                             --complete: complete those of this store now

options:
  --conf <file>              network config or conflist with a strand-ipam section
  --data-dir <dir>           local store directory (default ${DEFAULT_DATA_DIR}); with
                             --etcd-endpoints: where this node's pending releases are
  --etcd-endpoints <urls>    etcd store (comma-separated); --etcd-prefix (default
                             ${DEFAULT_ETCD_PREFIX}), --etcd-ca, --etcd-cert, --etcd-key,
                             --etcd-username
  --etcd-password-file <f>   the etcd password: first line of file f (keep it 0600);
                             or set $${PASSWORD_ENV} (with --etcd-username)
  --etcd-password <pw>       discouraged: other local users can read a command line
  --network <name>           only this network
  --dry-run                  release, gc, repair, import-host-local, pending --complete,
                             node release:
                             show, change nothing
  --json                     machine-readable output
  -h, --help                 this text
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
  /** Print the usage text after the message (not for a wrong path, say). */
  readonly showUsage: boolean;
  constructor(message: string, opts: { showUsage?: boolean } = {}) {
    super(message);
    this.showUsage = opts.showUsage ?? true;
  }
}

interface Opts {
  flags: Map<string, string>;
  bools: Set<string>;
  json: boolean;
  args: string[];
}

const VALUE_FLAGS = new Set([
  'conf',
  'data-dir',
  'etcd-endpoints',
  'etcd-prefix',
  'etcd-ca',
  'etcd-cert',
  'etcd-key',
  'etcd-username',
  'etcd-password',
  'etcd-password-file',
  'network',
  'namespace',
  'node',
  'note',
  'valid',
  'host-local-dir',
]);

const BOOL_FLAGS = new Set(['json', 'dry-run', 'repair', 'force', 'allow-requested', 'help', 'complete']);

/**
 * The etcd password for the store flags: --etcd-password-file (its first line), or
 * --etcd-password (works, with a warning on stderr: the command line is world-readable in
 * /proc/<pid>/cmdline), or $STRAND_ETCD_PASSWORD when --etcd-username is given. Both
 * flags at once is a usage error. A password file readable by group or others is used,
 * with a warning. Never echoes the password.
 */
export function etcdPassword(flags: ReadonlyMap<string, string>, env: Record<string, string | undefined>, warn: (line: string) => void): string | undefined {
  const file = flags.get('etcd-password-file');
  const inline = flags.get('etcd-password');
  if (file !== undefined && inline !== undefined) throw new UsageError('give the etcd password one way: --etcd-password-file or --etcd-password');
  if (inline !== undefined) {
    warn(passwordOnCommandLineWarning(`--etcd-password-file or ${PASSWORD_ENV}`));
    return inline;
  }
  if (file !== undefined) {
    let text: string;
    try {
      if ((statSync(file).mode & 0o077) !== 0) warn(`warning: the etcd password file ${file} is open to group or others (mode bits 077); chmod 600 it`);
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--etcd-password-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const pw = text.split(/\r?\n/, 1)[0] ?? '';
    if (pw === '') throw new UsageError(`--etcd-password-file ${file}: the first line is empty`);
    return pw;
  }
  const fromEnv = env[PASSWORD_ENV];
  return flags.has('etcd-username') && fromEnv ? fromEnv : undefined;
}

function parseArgv(argv: string[]): Opts {
  const { flags, bools, rest } = parseLongFlags(argv, VALUE_FLAGS, BOOL_FLAGS, (m) => new UsageError(m));
  return { flags, bools, json: bools.has('json'), args: rest };
}

/** The strand-ipam section of a network config or conflist file, as a NetConf. */
function confFromFile(file: string): NetConf {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--conf ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new UsageError(`--conf ${file}: not valid JSON`);
  }
  if (typeof raw !== 'object' || raw === null) throw new UsageError(`--conf ${file}: not a network config`);
  const conf = strandIpamConf(raw);
  if (!conf) throw new UsageError(`${file}: no plugin with a strand-ipam IPAM section`);
  return conf;
}

/**
 * The strand-ipam section of a parsed network config or conflist, as the NetConf
 * strand-ipam would get (network name, cniVersion, its ipam), or undefined when it has none.
 */
export function strandIpamConf(raw: Record<string, unknown>): NetConf | undefined {
  const plugins = Array.isArray(raw['plugins']) ? (raw['plugins'] as Array<Record<string, unknown>>) : [raw];
  const p = plugins.find((x) => {
    const ipam = x?.['ipam'] as { type?: unknown } | undefined;
    return ipam?.type === 'strand-ipam' || x?.['type'] === 'strand-ipam';
  });
  if (!p) return undefined;
  const ipam = p['type'] === 'strand-ipam' ? p : p['ipam'];
  return { cniVersion: String(raw['cniVersion'] ?? '1.1.0'), name: String(raw['name']), type: String(p['type']), ipam: ipam as NetConf['ipam'] & object };
}

interface Ctx {
  store: Store;
  /** From --conf: ranges known, so usage can show capacity. */
  config?: IpamConfig;
  network?: string;
  env: Record<string, string | undefined>;
  /** This node's journal of pending releases, and which store the CLI talks to. */
  journal: PendingJournal;
  ref: StoreRef;
}

/** Commands that may create a local data directory; the others need it to exist (exit 2 otherwise). */
const CREATES_DATA_DIR = new Set(['reserve', 'import-host-local']);

function requireDir(dir: string, command: string): void {
  if (CREATES_DATA_DIR.has(command)) return;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UsageError(`data dir ${dir} does not exist (--data-dir, or the config's ipam.dataDir)`, { showUsage: false });
  }
  if (!isDir) throw new UsageError(`data dir ${dir} is not a directory`, { showUsage: false });
}

async function openCtx(o: Opts, io: CliIO, command: string): Promise<Ctx> {
  const conf = o.flags.get('conf');
  const network = o.flags.get('network');
  const env = io.env ?? process.env;
  if (conf) {
    const netconf = confFromFile(conf);
    const cfg = loadConfig(netconf, '', false);
    if (!cfg.etcd) requireDir(cfg.dataDir, command);
    const store = await openStore(cfg);
    return { store, config: cfg, network: network ?? cfg.network, env, journal: journalOf(cfg), ref: storeRefOfConf(cfg, netconf) };
  }
  const eps = o.flags.get('etcd-endpoints');
  const dir = o.flags.get('data-dir') ?? DEFAULT_DATA_DIR;
  const journal = new PendingJournal(pendingDirOf(dir));
  let store: Store;
  let ref: StoreRef;
  if (eps) {
    const { openEtcdStore } = await import('./store/etcd.ts');
    const raw: Record<string, unknown> = { endpoints: eps.split(',') };
    const prefix = o.flags.get('etcd-prefix');
    if (prefix) raw['prefix'] = prefix;
    const tls = { ca: o.flags.get('etcd-ca'), cert: o.flags.get('etcd-cert'), key: o.flags.get('etcd-key') };
    if (tls.ca || tls.cert || tls.key) raw['tls'] = tls;
    if (o.flags.has('etcd-username')) raw['username'] = o.flags.get('etcd-username');
    const password = etcdPassword(o.flags, env, (line) => io.stderr.write(`strand ipam: ${line}\n`));
    if (password !== undefined) raw['password'] = password;
    const cfg = parseEtcdConfig(raw, '--etcd');
    store = await openEtcdStore(cfg);
    ref = { kind: 'etcd', prefix: cfg.prefix, etcd: {} };
  } else {
    requireDir(dir, command);
    store = new LocalStore(dir);
    ref = { kind: 'local', dataDir: dir };
  }
  return network === undefined ? { store, env, journal, ref } : { store, network, env, journal, ref };
}

/** This node's pending releases of the CLI's store (warned about, not fatal, when the journal cannot be read). */
async function pendingOf(ctx: Ctx, io: CliIO): Promise<PendingRelease[]> {
  try {
    const { entries, damaged } = await ctx.journal.list();
    for (const d of damaged) io.stderr.write(`strand ipam: warning: ${d}\n`);
    return entries.filter((e) => sameStore(e.store, ctx.ref));
  } catch (e) {
    io.stderr.write(`strand ipam: warning: cannot read the pending releases in ${ctx.journal.dir}: ${e instanceof Error ? e.message : String(e)}\n`);
    return [];
  }
}

/** An allocator acting in `network` (as `node`, default any); ranges known only with --conf. */
function adminAllocator(ctx: Ctx, network: string, node = 'strand-ipam-cli'): Allocator {
  return new Allocator({ store: ctx.store, config: releaseConfig(network, ctx.config), node });
}

/** The networks a command covers: --network / --conf's, or every one in the store. */
async function networksOf(ctx: Ctx): Promise<string[]> {
  return ctx.network !== undefined ? [ctx.network] : ctx.store.listNetworks();
}

function needNetwork(ctx: Ctx, command: string): string {
  if (ctx.network === undefined) throw new UsageError(`${command} needs --network or --conf`);
  return ctx.network;
}

function table(headers: string[], rows: string[][]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(w[i] as number))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

function blockSize(cidr: string): bigint {
  const c = parseCidr(cidr);
  return 1n << BigInt(bitsOf(c.family) - c.prefix);
}

const podText = (a: Attachment): string => (a.pod?.name ? a.pod.name : '-');

async function cmdLs(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const ns = o.flags.get('namespace');
  const node = o.flags.get('node');
  const atts = (await ctx.store.listAttachments(ctx.network))
    .map((a) => a.value)
    .filter((a) => (ns === undefined || a.pod?.namespace === ns) && (node === undefined || a.node === node));
  atts.sort((a, b) => a.network.localeCompare(b.network) || a.containerId.localeCompare(b.containerId) || a.ifname.localeCompare(b.ifname));
  const pending = await pendingOf(ctx, io);
  const pendingFor = (a: Attachment): PendingRelease | undefined =>
    pending.find((p) => p.network === a.network && p.containerId === a.containerId && p.ifname === a.ifname && p.node === a.node);
  if (o.json) {
    const rows = atts.map((a) => {
      const p = pendingFor(a);
      return p ? { ...a, pendingRelease: { since: p.since, reason: p.reason } } : a;
    });
    io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  io.stdout.write(
    table(
      ['NETWORK', 'CONTAINER', 'IFNAME', 'NODE', 'IPS', 'NAMESPACE', 'POD', 'CREATED', 'STATE'],
      atts.map((a) => {
        const p = pendingFor(a);
        return [
          a.network,
          a.containerId,
          a.ifname,
          a.node,
          a.ips.map((e) => e.ip).join(','),
          a.pod?.namespace ?? '-',
          podText(a),
          a.created,
          p ? `release pending since ${p.since}` : 'held',
        ];
      }),
    ),
  );
  return 0;
}

async function cmdPending(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const { entries, damaged } = await ctx.journal.list();
  const report = o.bools.has('complete')
    ? await completePending(ctx.journal, ctx.store, ctx.ref, {
        dryRun: o.bools.has('dry-run'),
        ...(ctx.network === undefined ? {} : { network: ctx.network }),
        ...(ctx.config ? { config: ctx.config } : {}),
      })
    : undefined;
  const shown = entries.filter((e) => ctx.network === undefined || e.network === ctx.network);
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ dir: ctx.journal.dir, pending: shown, damaged, ...(report ? { complete: report } : {}) }, null, 2)}\n`);
  } else if (!report) {
    if (shown.length === 0) io.stdout.write(`no pending releases in ${ctx.journal.dir}\n`);
    else
      io.stdout.write(
        table(
          ['NETWORK', 'CONTAINER', 'IFNAME', 'NODE', 'SINCE', 'STORE', 'REASON'],
          shown.map((e) => [
            e.network,
            e.containerId,
            e.ifname,
            e.node,
            e.since,
            `${storeRefText(e.store)}${sameStore(e.store, ctx.ref) ? '' : ' (another store)'}`,
            e.reason,
          ]),
        ),
      );
  } else {
    for (const l of report.completed) io.stdout.write(`${o.bools.has('dry-run') ? 'would complete' : 'completed'}: ${l}\n`);
    for (const l of report.failed) io.stdout.write(`failed, kept: ${l}\n`);
    if (report.left) io.stdout.write(`${report.left} left (another store or network)\n`);
  }
  for (const d of damaged) io.stderr.write(`strand ipam: warning: ${d}\n`);
  return report?.failed.length ? 1 : 0;
}

async function cmdShow(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const ipText = o.args[1];
  const ip = ipText === undefined ? undefined : tryParseIP(ipText);
  if (!ip) throw new UsageError('show needs an IP address');
  const canon = formatIP(ip);
  const out: Array<Record<string, unknown>> = [];
  for (const network of await networksOf(ctx)) {
    const [blocks, atts, res] = await Promise.all([ctx.store.listBlocks(network), ctx.store.listAttachments(network), ctx.store.getReservations(network)]);
    const b = blocks.find((x) => contains(x.value.cidr, ip))?.value;
    const a = atts.find((x) => x.value.ips.some((e) => e.ip === canon))?.value;
    const reservation = reservationIntervals(res?.value).find((x) => x.family === ip.family && x.lo <= ip.value && ip.value <= x.hi);
    if (!b && !a && !reservation) continue;
    const ref = b?.allocations[canon];
    const row: Record<string, unknown> = { ip: canon, network, allocated: a !== undefined };
    if (b) Object.assign(row, { block: b.cidr, blockNode: b.node });
    if (a) {
      Object.assign(row, { containerId: a.containerId, ifname: a.ifname, node: a.node, borrowed: b !== undefined && a.node !== b.node, created: a.created });
      if (a.pod) row['pod'] = a.pod;
      if (a.netns) row['netns'] = a.netns;
      // the block's own record of the address (bookkeeping; `gc` makes it agree)
      row['blockAgrees'] = ref !== undefined && ref.containerId === a.containerId && ref.ifname === a.ifname;
    } else if (ref) row['orphanBlockEntry'] = `${ref.containerId}/${ref.ifname}`;
    if (reservation) row['reserved'] = reservation.source;
    out.push(row);
  }
  if (o.json) io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else if (out.length === 0) io.stdout.write(`${canon}: not in any block, attachment or reservation\n`);
  else {
    io.stdout.write(
      table(
        ['IP', 'NETWORK', 'STATE', 'HOLDER', 'NODE', 'POD', 'BLOCK', 'BLOCK NODE'],
        out.map((r) => {
          const pod = r['pod'] as Attachment['pod'];
          const state = r['allocated'] ? (r['borrowed'] ? 'borrowed' : 'allocated') : r['reserved'] ? 'reserved' : 'free';
          return [
            canon,
            String(r['network']),
            state,
            r['containerId'] ? `${String(r['containerId'])}/${String(r['ifname'])}` : '-',
            String(r['node'] ?? '-'),
            pod ? `${pod.namespace ?? '?'}/${pod.name ?? '?'}${pod.uid ? ` (${pod.uid})` : ''}` : '-',
            String(r['block'] ?? '-'),
            String(r['blockNode'] ?? '-'),
          ];
        }),
      ),
    );
    for (const r of out) if (r['reserved']) io.stdout.write(`${canon} in ${String(r['network'])}: ${String(r['reserved'])}\n`);
  }
  return out.some((r) => r['allocated']) ? 0 : 1;
}

/**
 * A block's capacity: its usable addresses under the configured ranges when known (and
 * the block is small enough to count), less `exclude` and the store's reservations.
 */
function blockCapacity(ctx: Ctx, b: { network: string; cidr: string }, reservations: Array<{ network: string } & Reservation>): bigint {
  const c = parseCidr(b.cidr);
  const size = blockSize(b.cidr);
  if (!ctx.config || ctx.config.network !== b.network || size > 65536n) return size;
  const rs = ctx.config.rangeSets.filter((s) => s.family === c.family);
  const reserved = reservationIntervals({ network: b.network, reservations: reservations.filter((r) => r.network === b.network) });
  let n = 0n;
  for (let v = c.ip; v < c.ip + size; v++) {
    if (reserved.some((x) => x.family === c.family && x.lo <= v && v <= x.hi)) continue;
    if (rs.some((s) => s.ranges.some((r) => usableIn(r, v) && !excludedBy(r.exclude, v)))) n++;
  }
  return n;
}

interface UsageGroup {
  key: string;
  blocks: number;
  used: number;
  capacity: number;
}

/** Block rows summed by `key`, sorted. */
function groupUsage<R extends { used: number; capacity: number }>(rows: R[], key: (r: R) => string): UsageGroup[] {
  const m = new Map<string, UsageGroup>();
  for (const r of rows) {
    const k = key(r);
    const g = m.get(k) ?? { key: k, blocks: 0, used: 0, capacity: 0 };
    g.blocks++;
    g.used += r.used;
    g.capacity += r.capacity;
    m.set(k, g);
  }
  return [...m.values()].sort((a, b) => a.key.localeCompare(b.key));
}

async function cmdUsage(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const blocks = (await ctx.store.listBlocks(ctx.network)).map((b) => b.value);
  const reservations = (
    await Promise.all((await networksOf(ctx)).map(async (network) => (await listReservations(ctx.store, network)).map((r) => ({ network, ...r }))))
  ).flat();
  const blockRows = blocks.map((b) => ({
    network: b.network,
    family: parseCidr(b.cidr).family,
    block: b.cidr,
    node: b.node,
    used: Object.keys(b.allocations).length,
    capacity: Number(blockCapacity(ctx, b, reservations)),
  }));
  const group = (key: (r: (typeof blockRows)[number]) => string): UsageGroup[] => groupUsage(blockRows, key);
  const pools = group((r) => `${r.network} IPv${r.family}`);
  const nodes = group((r) => `${r.network} ${r.node}`);
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ pools, nodes, blocks: blockRows, reservations }, null, 2)}\n`);
    return 0;
  }
  const pct = (u: number, c: number): string => (c ? `${((100 * u) / c).toFixed(1)}%` : '-');
  io.stdout.write('POOLS\n');
  io.stdout.write(
    table(
      ['POOL', 'BLOCKS', 'USED', 'CAPACITY', 'USE'],
      pools.map((p) => [p.key, String(p.blocks), String(p.used), String(p.capacity), pct(p.used, p.capacity)]),
    ),
  );
  io.stdout.write('\nNODES\n');
  io.stdout.write(
    table(
      ['NETWORK NODE', 'BLOCKS', 'USED', 'CAPACITY', 'USE'],
      nodes.map((p) => [p.key, String(p.blocks), String(p.used), String(p.capacity), pct(p.used, p.capacity)]),
    ),
  );
  io.stdout.write('\nBLOCKS\n');
  io.stdout.write(
    table(
      ['NETWORK', 'BLOCK', 'NODE', 'USED', 'CAPACITY'],
      blockRows.map((b) => [b.network, b.block, b.node, String(b.used), String(b.capacity)]),
    ),
  );
  io.stdout.write('\nRESERVATIONS\n');
  io.stdout.write(
    table(
      ['NETWORK', 'RESERVED', 'NOTE', 'REQUESTABLE', 'CREATED'],
      reservations.map((r) => [r.network, r.cidr, r.note || '-', r.allowRequested ? 'yes' : 'no', r.created]),
    ),
  );
  return 0;
}

async function cmdRelease(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const what = o.args[1];
  if (!what) throw new UsageError('release needs an IP address or a container ID');
  const dryRun = o.bools.has('dry-run');
  const ip = tryParseIP(what);
  const canon = ip && formatIP(ip);
  const targets = (await ctx.store.listAttachments(ctx.network))
    .map((a) => a.value)
    .filter((a) => (canon ? a.ips.some((e) => e.ip === canon) : a.containerId === what));
  const released: Array<{ network: string; containerId: string; ifname: string; ips: string[] }> = [];
  for (const t of targets) {
    const ips = dryRun ? t.ips.map((e) => e.ip) : await adminAllocator(ctx, t.network).release(t.containerId, t.ifname);
    released.push({ network: t.network, containerId: t.containerId, ifname: t.ifname, ips });
  }
  if (o.json) io.stdout.write(`${JSON.stringify(released, null, 2)}\n`);
  else if (released.length === 0) io.stdout.write(`nothing allocated to ${what}\n`);
  else
    io.stdout.write(
      table(
        ['NETWORK', 'CONTAINER', 'IFNAME', dryRun ? 'WOULD RELEASE' : 'RELEASED'],
        released.map((r) => [r.network, r.containerId, r.ifname, r.ips.join(',')]),
      ),
    );
  return released.length ? 0 : 1;
}

interface GcRow extends RepairReport {
  network: string;
  /** Store-internal repair (repair / gc --repair). */
  notes: string[];
  /** With --valid: attachments released, and those kept with why. */
  released: string[];
  kept: string[];
}

function readValid(file: string): Array<{ containerID: string; ifname: string }> {
  let raw: unknown;
  try {
    raw = JSON.parse(file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--valid ${file}: not a readable JSON list (${(e as NodeJS.ErrnoException).code ?? 'invalid JSON'})`);
  }
  if (raw === null) return [];
  const list = Array.isArray(raw) ? raw : (raw as Record<string, unknown>)['cni.dev/valid-attachments'];
  if (list === null || list === undefined) return [];
  if (!Array.isArray(list)) throw new UsageError(`--valid ${file}: expected a list of {"containerID", "ifname"}`);
  return list.map((x: unknown, i) => {
    const o = x as Record<string, unknown>;
    if (typeof o?.['containerID'] !== 'string' || typeof o['ifname'] !== 'string')
      throw new UsageError(`--valid ${file}: entry ${i} has no containerID/ifname`);
    return { containerID: o['containerID'], ifname: o['ifname'] };
  });
}

async function gcRun(ctx: Ctx, o: Opts, io: CliIO, repairRecords: boolean): Promise<number> {
  const dryRun = o.bools.has('dry-run');
  const force = o.bools.has('force');
  const validFile = o.flags.get('valid');
  const valid = validFile === undefined ? undefined : readValid(validFile);
  const node = o.flags.get('node');
  if (valid && node === undefined) throw new UsageError('gc --valid needs --node (the node whose attachments the list covers)');
  const rows: GcRow[] = [];
  for (const n of await networksOf(ctx)) {
    const row: GcRow = { network: n, notes: [], released: [], kept: [], ...emptyRepairReport() };
    if (repairRecords) row.notes = await ctx.store.repairRecords(n, { dryRun, force });
    if (valid && node !== undefined) {
      const r = await adminAllocator(ctx, n, node).gc(valid, { startedAt: Date.now(), isLive: netnsHoldsAddress, force, dryRun });
      row.released = r.released;
      row.kept = r.kept.map((k) => `${k.containerId}/${k.ifname} (${k.ips.join(',')}): ${k.why}`);
    }
    Object.assign(row, await adminAllocator(ctx, n).repair({ dryRun }));
    rows.push(row);
  }
  if (o.json) io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else {
    const list = (x: string[]): string => x.join(',') || '-';
    io.stdout.write(
      table(
        ['NETWORK', 'ORPHAN ENTRIES', 'RESTORED', 'BLOCKS REBUILT', 'CONFLICTS', ...(valid ? ['RELEASED'] : [])],
        rows.map((r) => [
          r.network,
          list(r.orphans),
          list(r.restored),
          list(r.blocksCreated),
          String(r.conflicts.length),
          ...(valid ? [list(r.released)] : []),
        ]),
      ),
    );
    for (const r of rows) {
      for (const x of [...r.notes, ...r.conflicts, ...r.attachmentsFixed.map((a) => `attachment ${a}: block corrected`), ...r.kept.map((k) => `kept ${k}`)]) {
        io.stdout.write(`${r.network}: ${x}\n`);
      }
    }
    if (dryRun) io.stdout.write('(dry run: nothing changed)\n');
  }
  return rows.some((r) => r.conflicts.length) ? 1 : 0;
}

async function cmdGc(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  return gcRun(ctx, o, io, o.bools.has('repair'));
}

async function cmdRepair(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  return gcRun(ctx, o, io, true);
}

async function cmdReserve(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const network = needNetwork(ctx, 'reserve');
  const what = o.args[1];
  if (!what) throw new UsageError('reserve needs an IP address or CIDR');
  const note = o.flags.get('note') ?? '';
  const r = await reserve(ctx.store, network, { cidr: what, note, allowRequested: o.bools.has('allow-requested') });
  if (o.json) io.stdout.write(`${JSON.stringify({ network, ...r }, null, 2)}\n`);
  else {
    io.stdout.write(`${r.changed ? 'reserved' : 'already reserved'}: ${r.cidr} in ${network}${note ? ` (${note})` : ''}\n`);
    for (const h of r.holders) io.stdout.write(`warning: ${h.ip} is held by ${h.containerId}/${h.ifname} on ${h.node}; it keeps it until released\n`);
  }
  return 0;
}

async function cmdUnreserve(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const network = needNetwork(ctx, 'unreserve');
  const what = o.args[1];
  if (!what) throw new UsageError('unreserve needs an IP address or CIDR');
  const removed = await unreserve(ctx.store, network, what);
  if (o.json) io.stdout.write(`${JSON.stringify({ network, removed }, null, 2)}\n`);
  else io.stdout.write(removed ? `unreserved ${what} in ${network}\n` : `${what} is not reserved in ${network}\n`);
  return removed ? 0 : 1;
}

async function cmdImportHostLocal(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  if (!ctx.config) throw new UsageError('import-host-local needs --conf (the network config: its ranges and store)');
  const cfg = ctx.config;
  const dryRun = o.bools.has('dry-run');
  const dir = o.flags.get('host-local-dir') ?? join(cfg.dataDir, cfg.network);
  const node = o.flags.get('node') ?? nodeName(cfg, ctx.env);
  const al = new Allocator({ store: ctx.store, config: cfg, node });
  const run = async (): Promise<{ imported: string[]; already: string[]; conflicts: string[]; outside: string[]; skipped: string[] }> => {
    const hl = readHostLocal(dir);
    if (!hl) return { imported: [], already: [], conflicts: [], outside: [], skipped: [] };
    const res = await al.adopt(hl.entries, hl.cursors, { dryRun });
    if (!dryRun)
      removeHostLocal(
        hl,
        [...res.imported, ...res.already].map((x) => x.split(' ')[0] as string),
      );
    return { ...res, skipped: hl.skipped };
  };
  const res = dryRun || !readHostLocal(dir) ? await run() : await withHostLocalLock(dir, run);
  if (o.json) io.stdout.write(`${JSON.stringify({ network: cfg.network, node, dir, dryRun, ...res }, null, 2)}\n`);
  else {
    const total = res.imported.length + res.already.length + res.conflicts.length + res.outside.length + res.skipped.length;
    if (total === 0) io.stdout.write(`no host-local reservations in ${dir}\n`);
    for (const x of res.imported) io.stdout.write(`${dryRun ? 'would import' : 'imported'} ${x}\n`);
    for (const x of res.already) io.stdout.write(`already in the store: ${x}\n`);
    for (const x of res.conflicts) io.stdout.write(`CONFLICT, kept in ${dir}: ${x}\n`);
    for (const x of res.outside) io.stdout.write(`outside every range of ${cfg.network}, kept in ${dir}: ${x}\n`);
    for (const x of res.skipped) io.stdout.write(`skipped: ${x}\n`);
  }
  return res.conflicts.length ? 1 : 0;
}

async function cmdNode(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const sub = o.args[1];
  if (sub === 'ls') {
    const nodes = await listNodes(ctx.store);
    if (o.json) {
      io.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
      return 0;
    }
    const yes = (b: boolean | undefined): string => (b === undefined ? '-' : b ? 'yes' : 'no');
    io.stdout.write(
      table(
        ['NODE', 'RECORD', 'AGENT ALIVE', 'ADDRESSES', 'BLOCKS', 'EMPTY BLOCKS', 'ATTACHMENTS'],
        nodes.map((n) => [
          n.name,
          yes(n.record),
          yes(n.alive),
          n.addresses.join(',') || '-',
          String(n.blocks.length),
          String(n.blocks.filter((b) => b.allocated === 0).length),
          String(n.attachments),
        ]),
      ),
    );
    return 0;
  }
  if (sub === 'release') {
    const node = o.args[2];
    if (!node) throw new UsageError('node release needs a node name');
    const dryRun = o.bools.has('dry-run');
    const r = await releaseNode(ctx.store, node, { force: o.bools.has('force'), dryRun });
    if (o.json) io.stdout.write(`${JSON.stringify({ ...r, dryRun }, null, 2)}\n`);
    else {
      const verb = dryRun ? 'would release' : 'released';
      if (r.refused) io.stdout.write(`${r.refused}\n`);
      for (const x of r.attachmentsReleased) io.stdout.write(`${verb} attachment ${x}\n`);
      for (const x of r.blocksReleased) io.stdout.write(`${verb} block ${x}\n`);
      for (const x of r.blocksKept) io.stdout.write(`kept block ${x}\n`);
      for (const x of r.attachmentsHeld) io.stdout.write(`held by the node: ${x} (--force releases it)\n`);
      if (r.recordRemoved) io.stdout.write(`${dryRun ? 'would remove' : 'removed'} the record of node ${node}\n`);
      if (!r.refused && !r.attachmentsReleased.length && !r.blocksReleased.length && !r.blocksKept.length && !r.attachmentsHeld.length && !r.recordRemoved)
        io.stdout.write(`nothing of node ${node} in the store\n`);
      if (dryRun) io.stdout.write('(dry run: nothing changed)\n');
    }
    return r.refused || r.attachmentsHeld.length || r.blocksKept.length ? 1 : 0;
  }
  throw new UsageError('node needs ls or release <node>');
}

const COMMANDS: Record<string, (ctx: Ctx, o: Opts, io: CliIO) => Promise<number>> = {
  ls: cmdLs,
  show: cmdShow,
  usage: cmdUsage,
  release: cmdRelease,
  gc: cmdGc,
  repair: cmdRepair,
  reserve: cmdReserve,
  unreserve: cmdUnreserve,
  'import-host-local': cmdImportHostLocal,
  pending: cmdPending,
  node: cmdNode,
};

export async function main(argv: string[], io: CliIO): Promise<number> {
  let ctx: Ctx | undefined;
  try {
    const o = parseArgv(argv);
    const name = o.args[0];
    if (o.bools.has('help') || name === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (name === undefined) {
      io.stderr.write(USAGE);
      return 2;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    ctx = await openCtx(o, io, name);
    return await cmd(ctx, o, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`strand ipam: ${e.message}\n${e.showUsage ? `\n${USAGE}` : ''}`);
      return 2;
    }
    if (e instanceof ReservationError) {
      io.stderr.write(`strand ipam: ${e.message}\n`);
      return 2;
    }
    const msg = isStoreDamaged(e) ? `IPAM store damaged: ${e.message}` : e instanceof Error ? e.message : String(e);
    io.stderr.write(`strand ipam: ${msg}\n`);
    return 1;
  } finally {
    await ctx?.store.close().catch(() => undefined);
  }
}
