// `strand ipam ...`: the admin CLI over either store.
//
//   strand ipam [store flags] [--network N] [--json] ls
//   strand ipam ... show <ip>
//   strand ipam ... usage                       per pool, per node, per block
//   strand ipam ... release <ip|containerID>
//   strand ipam ... gc                          repair block/attachment disagreements
//
// Store flags: --conf <file> (a network config or conflist holding a strand-ipam
// section: its store and network are used), or --data-dir <dir> (local store, default
// /var/lib/cni/networks), or --etcd-endpoints <url,...> [--etcd-prefix P]
// [--etcd-ca F --etcd-cert F --etcd-key F] [--etcd-username U] with the password from
// --etcd-password-file F or $STRAND_ETCD_PASSWORD (--etcd-password P still works, with a
// warning: a command line is readable by every local user in /proc/<pid>/cmdline).
import { readFileSync, statSync } from 'node:fs';
import type { PluginIO } from '../lib/cni/skel.ts';
import { CniError } from '../lib/cni/errors.ts';
import type { NetConf } from '../lib/cni/types.ts';
import { bitsOf, contains, parseCidr, tryParseIP, formatIP } from '../lib/addr/cidr.ts';
import { Allocator } from './allocator.ts';
import { DEFAULT_DATA_DIR, usableIn, type IpamConfig } from './config.ts';
import { parseEtcdConfig } from './store/etcd-config.ts';
import { LocalStore } from './store/local.ts';
import type { Store } from './store/types.ts';
import { loadConfig, openStore } from './main.ts';

/** stdout/stderr, and the environment (process.env when not given). */
type CliIO = Pick<PluginIO, 'stdout' | 'stderr'> & { env?: Record<string, string | undefined> };

/** The environment variable holding the etcd password (not visible in /proc/<pid>/cmdline to other users). */
export const PASSWORD_ENV = 'STRAND_ETCD_PASSWORD';

const USAGE = `usage: strand ipam [options] <command>

commands:
  ls                         attachments and their addresses
  show <ip>                  the block, owner and holder of an address
  usage                      used/free per pool, per node and per block
  release <ip|containerID>   release an address, or every address of a container
  gc                         drop block entries without attachment and vice versa

options:
  --conf <file>              network config or conflist with a strand-ipam section
  --data-dir <dir>           local store directory (default ${DEFAULT_DATA_DIR})
  --etcd-endpoints <urls>    etcd store (comma-separated); --etcd-prefix, --etcd-ca,
                             --etcd-cert, --etcd-key, --etcd-username
  --etcd-password-file <f>   the etcd password: first line of file f (keep it 0600);
                             or set $${PASSWORD_ENV} (with --etcd-username)
  --etcd-password <pw>       discouraged: other local users can read a command line
  --network <name>           only this network
  --json                     machine-readable output
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface Opts {
  flags: Map<string, string>;
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
]);

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
    warn(`warning: --etcd-password is visible to other users of this machine (/proc/<pid>/cmdline); use --etcd-password-file or ${PASSWORD_ENV}`);
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
  const flags = new Map<string, string>();
  const args: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--json') json = true;
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq === -1 ? undefined : eq);
      if (!VALUE_FLAGS.has(name)) throw new UsageError(`unknown option ${a}`);
      const v = eq === -1 ? argv[++i] : a.slice(eq + 1);
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      flags.set(name, v);
    } else args.push(a);
  }
  return { flags, json, args };
}

/** The strand-ipam section of a network config or conflist file, as a NetConf. */
function confFromFile(file: string): NetConf {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const plugins = Array.isArray(raw['plugins']) ? (raw['plugins'] as Array<Record<string, unknown>>) : [raw];
  const p = plugins.find((x) => {
    const ipam = x['ipam'] as { type?: unknown } | undefined;
    return ipam?.type === 'strand-ipam' || x['type'] === 'strand-ipam';
  });
  if (!p) throw new UsageError(`${file}: no plugin with a strand-ipam IPAM section`);
  const ipam = p['type'] === 'strand-ipam' ? p : p['ipam'];
  return { cniVersion: String(raw['cniVersion'] ?? '1.1.0'), name: String(raw['name']), type: String(p['type']), ipam: ipam as NetConf['ipam'] & object };
}

interface Ctx {
  store: Store;
  /** From --conf: ranges known, so usage can show capacity. */
  config?: IpamConfig;
  network?: string;
}

async function openCtx(o: Opts, io: CliIO): Promise<Ctx> {
  const conf = o.flags.get('conf');
  const network = o.flags.get('network');
  if (conf) {
    const cfg = loadConfig(confFromFile(conf), '', false);
    const store = await openStore(cfg);
    return { store, config: cfg, network: network ?? cfg.network };
  }
  const eps = o.flags.get('etcd-endpoints');
  let store: Store;
  if (eps) {
    const { openEtcdStore } = await import('./store/etcd.ts');
    const raw: Record<string, unknown> = { endpoints: eps.split(',') };
    const prefix = o.flags.get('etcd-prefix');
    if (prefix) raw['prefix'] = prefix;
    const tls = { ca: o.flags.get('etcd-ca'), cert: o.flags.get('etcd-cert'), key: o.flags.get('etcd-key') };
    if (tls.ca || tls.cert || tls.key) raw['tls'] = tls;
    if (o.flags.has('etcd-username')) raw['username'] = o.flags.get('etcd-username');
    const password = etcdPassword(o.flags, io.env ?? process.env, (line) => io.stderr.write(`strand ipam: ${line}\n`));
    if (password !== undefined) raw['password'] = password;
    store = await openEtcdStore(parseEtcdConfig(raw, '--etcd'));
  } else {
    store = new LocalStore(o.flags.get('data-dir') ?? DEFAULT_DATA_DIR);
  }
  return network === undefined ? { store } : { store, network };
}

/** An allocator able to release in `network` (any node); ranges known only with --conf. */
function adminAllocator(ctx: Ctx, network: string): Allocator {
  const config: IpamConfig =
    ctx.config && ctx.config.network === network
      ? ctx.config
      : { network, rangeSets: [], routes: [], dataDir: '', blockSize: { 4: 26, 6: 122 }, strictAffinity: false, requested: [] };
  return new Allocator({ store: ctx.store, config, node: 'strand-ipam-cli' });
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

async function cmdLs(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const atts = (await ctx.store.listAttachments(ctx.network)).map((a) => a.value);
  atts.sort((a, b) => a.network.localeCompare(b.network) || a.containerId.localeCompare(b.containerId) || a.ifname.localeCompare(b.ifname));
  if (o.json) {
    io.stdout.write(`${JSON.stringify(atts, null, 2)}\n`);
    return 0;
  }
  io.stdout.write(
    table(
      ['NETWORK', 'CONTAINER', 'IFNAME', 'NODE', 'IPS', 'CREATED'],
      atts.map((a) => [a.network, a.containerId, a.ifname, a.node, a.ips.map((e) => e.ip).join(','), a.created]),
    ),
  );
  return 0;
}

async function cmdShow(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const ipText = o.args[1];
  const ip = ipText === undefined ? undefined : tryParseIP(ipText);
  if (!ip) throw new UsageError('show needs an IP address');
  const canon = formatIP(ip);
  const found = (await ctx.store.listBlocks(ctx.network)).filter((b) => contains(b.value.cidr, ip));
  const out = found.map((b) => {
    const ref = b.value.allocations[canon];
    return {
      ip: canon,
      network: b.value.network,
      block: b.value.cidr,
      blockNode: b.value.node,
      allocated: ref !== undefined,
      ...(ref ? { containerId: ref.containerId, ifname: ref.ifname, node: ref.node ?? b.value.node, borrowed: ref.node !== undefined } : {}),
    };
  });
  if (o.json) io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else if (out.length === 0) io.stdout.write(`${canon}: not in any block\n`);
  else {
    io.stdout.write(
      table(
        ['IP', 'NETWORK', 'BLOCK', 'BLOCK NODE', 'STATE', 'HOLDER', 'NODE'],
        out.map((r) => [
          r.ip,
          r.network,
          r.block,
          r.blockNode,
          r.allocated ? (r.borrowed ? 'borrowed' : 'allocated') : 'free',
          r.containerId ? `${r.containerId}/${r.ifname}` : '-',
          r.node ?? '-',
        ]),
      ),
    );
  }
  return out.some((r) => r.allocated) ? 0 : 1;
}

async function cmdUsage(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const blocks = (await ctx.store.listBlocks(ctx.network)).map((b) => b.value);
  const blockRows = blocks.map((b) => {
    const c = parseCidr(b.cidr);
    // Capacity: usable addresses of the block under the configured ranges when known.
    let capacity = blockSize(b.cidr);
    if (ctx.config && ctx.config.network === b.network) {
      const rs = ctx.config.rangeSets.filter((s) => s.family === c.family);
      let n = 0n;
      if (capacity <= 65536n) {
        for (let v = c.ip; v < c.ip + capacity; v++) if (rs.some((s) => s.ranges.some((r) => usableIn(r, v)))) n++;
        capacity = n;
      }
    }
    return { network: b.network, family: c.family, block: b.cidr, node: b.node, used: Object.keys(b.allocations).length, capacity: Number(capacity) };
  });
  const group = (key: (r: (typeof blockRows)[number]) => string): Array<{ key: string; blocks: number; used: number; capacity: number }> => {
    const m = new Map<string, { key: string; blocks: number; used: number; capacity: number }>();
    for (const r of blockRows) {
      const k = key(r);
      const g = m.get(k) ?? { key: k, blocks: 0, used: 0, capacity: 0 };
      g.blocks++;
      g.used += r.used;
      g.capacity += r.capacity;
      m.set(k, g);
    }
    return [...m.values()].sort((a, b) => a.key.localeCompare(b.key));
  };
  const pools = group((r) => `${r.network} IPv${r.family}`);
  const nodes = group((r) => `${r.network} ${r.node}`);
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ pools, nodes, blocks: blockRows }, null, 2)}\n`);
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
  return 0;
}

async function cmdRelease(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const what = o.args[1];
  if (!what) throw new UsageError('release needs an IP address or a container ID');
  const targets: Array<{ network: string; containerId: string; ifname: string }> = [];
  const ip = tryParseIP(what);
  if (ip) {
    const canon = formatIP(ip);
    for (const b of await ctx.store.listBlocks(ctx.network)) {
      const ref = b.value.allocations[canon];
      if (ref) targets.push({ network: b.value.network, containerId: ref.containerId, ifname: ref.ifname });
    }
  } else {
    for (const a of await ctx.store.listAttachments(ctx.network)) {
      if (a.value.containerId === what) targets.push({ network: a.value.network, containerId: a.value.containerId, ifname: a.value.ifname });
    }
  }
  const released: Array<{ network: string; containerId: string; ifname: string; ips: string[] }> = [];
  for (const t of targets) {
    const ips = await adminAllocator(ctx, t.network).release(t.containerId, t.ifname);
    released.push({ ...t, ips });
  }
  if (o.json) io.stdout.write(`${JSON.stringify(released, null, 2)}\n`);
  else if (released.length === 0) io.stdout.write(`nothing allocated to ${what}\n`);
  else
    io.stdout.write(
      table(
        ['NETWORK', 'CONTAINER', 'IFNAME', 'RELEASED'],
        released.map((r) => [r.network, r.containerId, r.ifname, r.ips.join(',')]),
      ),
    );
  return released.length ? 0 : 1;
}

async function cmdGc(ctx: Ctx, o: Opts, io: CliIO): Promise<number> {
  const nets =
    ctx.network !== undefined
      ? [ctx.network]
      : [...new Set([...(await ctx.store.listAffinities()).map((a) => a.network), ...(await ctx.store.listAttachments()).map((a) => a.value.network)])].sort();
  const rows: Array<{ network: string; allocations: string[]; attachmentIPs: string[] }> = [];
  for (const n of nets) rows.push({ network: n, ...(await adminAllocator(ctx, n).repair()) });
  if (o.json) io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else
    io.stdout.write(
      table(
        ['NETWORK', 'ORPHAN ALLOCATIONS', 'DANGLING ATTACHMENT IPS'],
        rows.map((r) => [r.network, r.allocations.join(',') || '-', r.attachmentIPs.join(',') || '-']),
      ),
    );
  return 0;
}

const COMMANDS: Record<string, (ctx: Ctx, o: Opts, io: CliIO) => Promise<number>> = {
  ls: cmdLs,
  show: cmdShow,
  usage: cmdUsage,
  release: cmdRelease,
  gc: cmdGc,
};

export async function main(argv: string[], io: CliIO): Promise<number> {
  let ctx: Ctx | undefined;
  try {
    const o = parseArgv(argv);
    const name = o.args[0];
    if (name === undefined || name === 'help' || argv.includes('-h')) {
      (name === undefined ? io.stderr : io.stdout).write(USAGE);
      return name === undefined ? 2 : 0;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    ctx = await openCtx(o, io);
    return await cmd(ctx, o, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`strand ipam: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    const msg = e instanceof CniError ? e.message : e instanceof Error ? e.message : String(e);
    io.stderr.write(`strand ipam: ${msg}\n`);
    return 1;
  } finally {
    await ctx?.store.close().catch(() => undefined);
  }
}
