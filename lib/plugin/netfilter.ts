// What the plugins that write netfilter rules share (strand-bridge's ipMasq and
// macspoofchk, strand-portmap): the reference plugins' chain-name hash, rule comments,
// iptables-save/-restore of the nat table, the quoting iptables-restore reads and
// iptables-save writes, the default backend, and listing one nftables table as JSON.
// Tools run through exec.ts: an argv array, never a shell, input on stdin.
import { createHash } from 'node:crypto';
import { findTool, ToolError, type Tools } from './exec.ts';

export type NetfilterBackend = 'iptables' | 'nftables';
export type IpFamily = 4 | 6;

export function sha512hex(s: string): string {
  return createHash('sha512').update(s).digest('hex');
}

/**
 * An iptables chain name as the reference plugins make it (utils.MustFormatChainNameWithPrefix):
 * "CNI-" + prefix + hex SHA-512 of `toHash`, cut to 28 characters.
 */
export function formatChainName(prefix: string, toHash: string): string {
  return `CNI-${prefix}${sha512hex(toHash)}`.slice(0, 28);
}

/** Go's %q for the printable strings used in rule comments. */
export function goQuote(s: string): string {
  return JSON.stringify(s);
}

/** How iptables-save prints an argument that needs quoting (and iptables-restore reads it). */
export function saveQuote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** One argument of an iptables-restore line: quoted when it holds blanks, quotes or backslashes. */
export function restoreArg(s: string): string {
  return s === '' || /[\s"'\\]/.test(s) ? saveQuote(s) : s;
}

/** Splits an iptables-save line into its arguments (double quotes grouping, backslash escaping). */
export function splitSaveLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  let started = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      started = true;
    } else if (c === '"') {
      inQuote = !inQuote;
      started = true;
    } else if (!inQuote && /\s/.test(c)) {
      if (started) out.push(cur);
      cur = '';
      started = false;
    } else {
      cur += c;
      started = true;
    }
  }
  if (started) out.push(cur);
  return out;
}

/** The value after `--comment` in a saved rule, if any. */
export function ruleComment(line: string): string | undefined {
  const args = splitSaveLine(line);
  const i = args.indexOf('--comment');
  return i >= 0 ? args[i + 1] : undefined;
}

/** The target of a saved rule ("-j X" or "-g X" as its last arguments), if any. */
export function ruleTarget(line: string): string | undefined {
  return /\s-[jg] (\S+)$/.exec(line)?.[1];
}

const SAVE_TOOL = { 4: 'iptables-save', 6: 'ip6tables-save' } as const;
const RESTORE_TOOL = { 4: 'iptables-restore', 6: 'ip6tables-restore' } as const;
const IPTABLES_TOOL = { 4: 'iptables', 6: 'ip6tables' } as const;

/** Whether the iptables tools of `family` are installed. */
async function hasIptables(t: Tools, family: IpFamily): Promise<boolean> {
  return (await t.find(SAVE_TOOL[family])) !== undefined;
}

/** The nat table as iptables-save prints it, one line per element. */
export async function natSave(t: Tools, family: IpFamily): Promise<string[]> {
  const out = await t.mustRun(SAVE_TOOL[family], ['-t', 'nat']);
  return out.split('\n');
}

/** Applies restore lines (chain declarations, -A/-I/-D/-F/-X) to the nat table in one transaction. */
export async function natRestore(t: Tools, family: IpFamily, lines: string[]): Promise<void> {
  if (!lines.length) return;
  await t.mustRun(RESTORE_TOOL[family], ['-w', '--noflush'], `*nat\n${lines.join('\n')}\nCOMMIT\n`);
}

/** `iptables -t nat -C chain rule...`: whether the rule exists (false when the chain does not). */
export async function natRuleExists(t: Tools, family: IpFamily, chain: string, rule: readonly string[]): Promise<boolean> {
  const args = ['-w', '-t', 'nat', '-C', chain, ...rule];
  const r = await t.run(IPTABLES_TOOL[family], args);
  if (r.code === 0) return true;
  if (r.code === 1 || /does a matching rule exist|No chain\/target\/match by that name|doesn't exist/i.test(r.stderr)) return false;
  throw new ToolError(IPTABLES_TOOL[family], args, r);
}

/** Whether `chain` is declared in a saved table. */
export function savedHasChain(saved: readonly string[], chain: string): boolean {
  return saved.some((l) => l.startsWith(`:${chain} `));
}

/**
 * Restore lines removing every rule of `fromChains` that jumps to one of `chains`, then
 * flushing and deleting those chains (the ones the saved table declares).
 */
export function deleteChainsLines(saved: readonly string[], chains: ReadonlySet<string>, fromChains: readonly string[]): string[] {
  const out: string[] = [];
  for (const l of saved) {
    const from = fromChains.find((c) => l.startsWith(`-A ${c} `));
    if (!from) continue;
    const t = ruleTarget(l);
    if (t && chains.has(t)) out.push(`-D${l.slice(2)}`);
  }
  for (const chain of chains) if (savedHasChain(saved, chain)) out.push(`-F ${chain}`, `-X ${chain}`);
  return out;
}

/**
 * Removes `chains` and every rule of `fromChains` jumping to them, in each family whose
 * tools are installed (absent chains are fine): the teardown of per-pod chains.
 */
export async function natRemoveChains(t: Tools, chains: ReadonlySet<string>, fromChains: readonly string[]): Promise<void> {
  await Promise.all(
    ([4, 6] as const).map(async (family) => {
      if (!(await hasIptables(t, family))) return;
      const saved = await natSave(t, family);
      await natRestore(t, family, deleteChainsLines(saved, chains, fromChains));
    }),
  );
}

/**
 * Garbage collection of per-pod chains: `stale(line)` names the chain a saved rule of
 * `fromChain` jumps to when that chain is to go (undefined to keep it); those chains and
 * their jumps are removed, in each family.
 */
export async function natCollectChains(t: Tools, fromChain: string, stale: (line: string) => string | undefined): Promise<void> {
  await Promise.all(
    ([4, 6] as const).map(async (family) => {
      if (!(await hasIptables(t, family))) return;
      const saved = await natSave(t, family);
      const doomed = new Set<string>();
      for (const l of saved) {
        if (!l.startsWith(`-A ${fromChain} `)) continue;
        const chain = stale(l);
        if (chain) doomed.add(chain);
      }
      if (doomed.size) await natRestore(t, family, deleteChainsLines(saved, doomed, [fromChain]));
    }),
  );
}

/** The reference's default backend: iptables unless only nft is installed. */
export async function defaultBackend(t: Tools): Promise<NetfilterBackend> {
  if (!(await t.find('iptables-restore')) && (await t.find('nft'))) return 'nftables';
  return 'iptables';
}

/**
 * The same, decided while a config is parsed (no request there): on `env`'s PATH in
 * this process's mount namespace. Under a daemon in a container that is the container's,
 * not the node's: a config that names its backend needs no guess.
 */
export function defaultBackendNow(env: Record<string, string | undefined>): NetfilterBackend {
  if (!findTool('iptables-restore', env) && findTool('nft', env)) return 'nftables';
  return 'iptables';
}

// ---------------------------------------------------------------------------------
// nftables

export interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  expr?: unknown[];
}

export interface NftTable {
  chains: string[];
  rules: NftRule[];
}

const NOT_FOUND = /No such file or directory|does not exist/i;

/** `nft -j list table <family> <name>`; undefined when the table (or nft) does not exist. */
export async function nftListTable(t: Tools, family: string, name: string): Promise<NftTable | undefined> {
  const args = ['-j', 'list', 'table', family, name];
  const r = await t.run('nft', args);
  if (r.code !== 0) {
    if (r.code === 127 || NOT_FOUND.test(r.stderr)) return undefined;
    throw new ToolError('nft', args, r);
  }
  type Entry = { chain?: { name: string }; rule?: NftRule };
  const entries = (JSON.parse(r.stdout) as { nftables?: Entry[] }).nftables ?? [];
  return {
    chains: entries.flatMap((e) => (e.chain ? [e.chain.name] : [])),
    rules: entries.flatMap((e) => (e.rule ? [e.rule] : [])),
  };
}

/** `nft -j list tables`: every table as {family, name}; [] when nft is not installed. */
export async function nftTables(t: Tools): Promise<Array<{ family: string; name: string }>> {
  const args = ['-j', 'list', 'tables'];
  const r = await t.run('nft', args);
  if (r.code === 127) return [];
  if (r.code !== 0) throw new ToolError('nft', args, r);
  type Entry = { table?: { family: string; name: string } };
  return ((JSON.parse(r.stdout) as { nftables?: Entry[] }).nftables ?? []).flatMap((e) => (e.table ? [{ family: e.table.family, name: e.table.name }] : []));
}

/** Runs nft commands (one per line) as one transaction. */
export async function nftApply(t: Tools, lines: readonly string[]): Promise<void> {
  if (!lines.length) return;
  await t.mustRun('nft', ['-f', '-'], `${lines.join('\n')}\n`);
}
