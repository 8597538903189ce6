// `strand install --uninstall --node-state`: removes what strand made on this node (in
// the network namespace it runs in), beyond the files install wrote, for a node that
// stays in service without strand (issue #19 item 6):
//
// 1. Refuses (listing them) while pods use strand's network here: a bridge of the
//    installed conflist with veth ports, or IPAM attachments recorded on this node; and while
//    this node's agent runs (its state file is fresh and synced: stop the DaemonSet
//    first). --force goes on anyway and removes the pods' network too.
//    Then the caller's beforeRemoval (flat mode's takeover undone, the uplink back).
// 2. IPAM: this node's pending releases are completed; its empty blocks are released and
//    its record removed (ipam/nodes.ts; etcd), with --force its attachments first; the
//    local store's files of the network go. An unreachable store is reported (exit 1):
//    `strand ipam node release <node>` finishes it from anywhere later.
// 3. Netfilter: the masquerade rules and hostPort rules left by strand (the per-pod ones
//    of forced pods, then the shared chains and tables once nothing uses them: the
//    reference plugins' rules, which share the layout, keep them).
// 4. Links and routes: the conflist's bridges (their veth ports with --force), the agent's
//    VXLAN device and every route of the agent's protocol (115, or the state file's).
// 5. Files: the pod MTU file, the agent's state file, strand's CNI log files, the
//    journal of pending releases (once empty).
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { NetConf } from '../../lib/cni/types.ts';
import { isNetlinkError } from '../../lib/netlink/errors.ts';
import { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';

export const DEFAULT_AGENT_STATE_FILE = '/run/strand/agent.json';
export const DEFAULT_POD_MTU_FILE_PATH = '/run/strand/pod-mtu';
export const DEFAULT_LOG_DIR = '/var/log/strand';
const AGENT_ROUTE_PROTOCOL = 115;

export interface NodeStateOptions {
  /** The installed conflist (read before install's files go). */
  conflist: Record<string, unknown>;
  /** Run once nothing refuses the removal, before anything is removed (flat mode's takeover restore). */
  beforeRemoval?: () => Promise<void>;
  env: Record<string, string | undefined>;
  force: boolean;
  agentStateFile: string;
  podMtuFile: string;
  logDir: string;
  log: (line: string) => void;
}

export interface NodeStateResult {
  /** Why nothing was removed (pods attached, the agent running): one line each. */
  refused: string[];
  /** What could not be removed: one line each (exit status 1). */
  failed: string[];
}

interface Plan {
  network: string;
  bridges: string[];
  ipam: NetConf | undefined;
}

function planOf(c: Record<string, unknown>, ipam: NetConf | undefined): Plan {
  const plugins = (Array.isArray(c['plugins']) ? c['plugins'] : [c]) as Array<Record<string, unknown> | null>;
  const out: Plan = { network: typeof c['name'] === 'string' ? c['name'] : '', bridges: [], ipam };
  for (const p of plugins) {
    if (p === null || typeof p !== 'object') continue;
    if (p['type'] === 'strand-bridge') out.bridges.push(typeof p['bridge'] === 'string' ? p['bridge'] : 'cni0');
  }
  out.bridges = [...new Set(out.bridges)];
  return out;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

type IpamMain = typeof import('../../ipam/main.ts');
type Status = typeof import('../../agent/status.ts');
type Held = Array<{ network: string; containerId: string; ifname: string; ips: string[] }>;

/** The IPAM side of the node: the open store, its config, this node's name and attachments. */
interface NodeIpam {
  store: Awaited<ReturnType<IpamMain['openStore']>>;
  cfg: ReturnType<IpamMain['loadConfig']>;
  node: string;
  held: Held;
}

/** Removes strand's node state; see the module comment. Never throws for one step's failure. */
export async function removeNodeState(o: NodeStateOptions): Promise<NodeStateResult> {
  const out: NodeStateResult = { refused: [], failed: [] };
  const [{ strandIpamConf }, ipamMain, status] = await Promise.all([
    import('../../ipam/cli.ts'),
    import('../../ipam/main.ts'),
    import('../../agent/status.ts'),
  ]);
  const plan = planOf(o.conflist, strandIpamConf(o.conflist));
  const ns = Netns.current();
  let ipam: NodeIpam | undefined;
  try {
    // --- who still uses the network here
    const links = await rtnl.listLinks(ns);
    const ports = podPorts(plan, links);
    for (const [b, p] of ports) if (p.length) out.refused.push(`bridge ${b} has pod ports: ${p.join(', ')}`);
    const agentState = agentUsage(o, status, out);
    // --- IPAM: pending releases completed, this node's attachments listed
    if (plan.ipam) ipam = await nodeIpam(o, plan, plan.ipam, ipamMain, out);

    if (out.refused.length && !o.force) return out;
    if (out.refused.length) o.log(`--force: removing strand's network although ${out.refused.length} thing(s) still use it`);
    await o.beforeRemoval?.();

    // --- the pods' rules (forced), then what their DELs leave shared
    try {
      await removeRules(plan.network, ipam?.held ?? []);
      o.log('masquerade and hostPort rules: none of strand left');
    } catch (e) {
      out.failed.push(`netfilter rules: ${message(e)}`);
    }
    // --- IPAM records of this node
    if (ipam) await releaseNodeIpam(o, plan, ipam, out);
    // --- routes of the agent, links
    await removeAgentRoutes(ns, agentState?.routeProtocol ?? AGENT_ROUTE_PROTOCOL, o, out);
    const vxlan = links.filter((l) => l.kind === 'vxlan' && (l.name === agentState?.vtep?.device || /^strand\.\d+$/.test(l.name)));
    const doomed = [...plan.bridges.flatMap((b) => (o.force ? (ports.get(b) ?? []) : [])), ...vxlan.map((l) => l.name), ...[...ports.keys()]];
    await removeLinks(ns, doomed, o, out);
    // --- files
    for (const f of [o.podMtuFile, o.agentStateFile]) removeFile(f, o.log, out);
    removeEmptyDir(dirname(o.agentStateFile));
    removeLogs(o.logDir, o.log, out);
    return out;
  } finally {
    await ipam?.store.close().catch(() => undefined);
    ns.close();
  }
}

/** The veth ports of the plan's bridges that exist (pods; flat mode's uplink is a port too, until its takeover is undone). */
function podPorts(plan: Plan, links: rtnl.Link[]): Map<string, string[]> {
  const ports = new Map<string, string[]>();
  for (const b of plan.bridges) {
    const br = links.find((l) => l.name === b);
    if (br)
      ports.set(
        b,
        links.filter((l) => l.master === br.index && l.kind === 'veth').map((l) => l.name),
      );
  }
  return ports;
}

/** The agent's state file; a refusal when a synced agent updated it recently (it runs). */
function agentUsage(o: NodeStateOptions, status: Status, out: NodeStateResult): ReturnType<Status['readState']> | undefined {
  let agentState: ReturnType<Status['readState']> | undefined;
  try {
    agentState = status.readState(o.agentStateFile);
  } catch {
    return undefined; // no agent here
  }
  let stale = true;
  try {
    stale = status.readiness(agentState, Date.now(), () => true).stale;
  } catch {
    // unreadable state: not a running agent
  }
  if (agentState.synced && !stale)
    out.refused.push(`strand agent runs on this node (${o.agentStateFile} updated ${agentState.updated}): delete the DaemonSet first`);
  return agentState;
}

/** Opens the conflist's IPAM store, completes this node's pending releases, lists its attachments (refusals). */
async function nodeIpam(
  o: NodeStateOptions,
  plan: Plan,
  conf: NonNullable<Plan['ipam']>,
  ipamMain: IpamMain,
  out: NodeStateResult,
): Promise<NodeIpam | undefined> {
  const pending = await import('../../ipam/pending.ts');
  let store: NodeIpam['store'] | undefined;
  let node = '';
  try {
    const cfg = ipamMain.loadConfig(conf, '', false);
    node = ipamMain.nodeName(cfg, o.env);
    store = await ipamMain.openStore(cfg);
    const journal = ipamMain.journalOf(cfg);
    const r = await pending.completePending(journal, store, ipamMain.storeRefOfConf(cfg, conf), { config: cfg });
    for (const l of r.completed) o.log(`completed the pending release ${l}`);
    for (const l of r.failed) out.failed.push(`pending release not completed: ${l}`);
    const held = (await store.listAttachments())
      .map((a) => a.value)
      .filter((a) => a.node === node)
      .map((a) => ({ network: a.network, containerId: a.containerId, ifname: a.ifname, ips: a.ips.map((e) => e.ip) }));
    for (const a of held) out.refused.push(`pod attachment ${a.network} ${a.containerId}/${a.ifname} (${a.ips.join(',')}) on node ${node}`);
    return { store, cfg, node, held };
  } catch (e) {
    out.failed.push(`IPAM store of network ${plan.network}: ${message(e)}; release this node's blocks later with strand ipam node release ${node || '<node>'}`);
    await store?.close().catch(() => undefined);
    return undefined;
  }
}

/** Releases this node's blocks, attachments (forced) and record; the local store's files and the journal. */
async function releaseNodeIpam(o: NodeStateOptions, plan: Plan, { store, cfg, node }: NodeIpam, out: NodeStateResult): Promise<void> {
  const [nodes, pending] = await Promise.all([import('../../ipam/nodes.ts'), import('../../ipam/pending.ts')]);
  try {
    const r = await nodes.releaseNode(store, node, { force: o.force, ignoreAlive: true });
    for (const x of r.attachmentsReleased) o.log(`released attachment ${x}`);
    for (const x of r.blocksReleased) o.log(`released block ${x} of node ${node}`);
    for (const x of r.blocksKept) out.failed.push(`block kept: ${x}`);
    for (const x of r.attachmentsHeld) out.failed.push(`attachment kept: ${x}`);
    if (r.recordRemoved) o.log(`removed the node record of ${node}`);
    if (!cfg.etcd) removeLocalStore(cfg.dataDir, plan.network, o.log);
    removeJournal(pending.pendingDirOf(cfg.dataDir), o.force, o.log, out);
  } catch (e) {
    out.failed.push(`IPAM records of node ${node}: ${message(e)}; strand ipam node release ${node} finishes it later`);
  }
}

/** Every route of the agent's protocol, in all tables. */
async function removeAgentRoutes(ns: Netns, proto: number, o: NodeStateOptions, out: NodeStateResult): Promise<void> {
  let routes = 0;
  for (const r of await rtnl.listRoutes(ns, { table: 'all' })) {
    if (r.protocol !== proto) continue;
    try {
      await rtnl.delRoute(ns, {
        dst: r.dst,
        version: r.version,
        table: r.table,
        protocol: r.protocol,
        type: r.type,
        ...(r.gw ? { gw: r.gw } : {}),
        ...(r.oif !== undefined ? { link: r.oif } : {}),
      });
      routes++;
    } catch (e) {
      if (!isNetlinkError(e, 'ESRCH')) out.failed.push(`route ${r.dst} proto ${proto}: ${message(e)}`);
    }
  }
  if (routes) o.log(`removed ${routes} route(s) of strand agent (proto ${proto})`);
}

async function removeLinks(ns: Netns, names: string[], o: NodeStateOptions, out: NodeStateResult): Promise<void> {
  for (const name of names) {
    try {
      await rtnl.delLink(ns, name);
      o.log(`removed link ${name}`);
    } catch (e) {
      if (!isNetlinkError(e, 'ENODEV')) out.failed.push(`link ${name}: ${message(e)}`);
    }
  }
}

/**
 * The masquerade and hostPort rules of `pods` (forced: their DEL never ran) and every
 * iptables masquerade and hostPort rule of `network` (a DEL that ran without the port
 * mappings leaves its pod's; iptables rules name their network), then the shared hostPort
 * chains (iptables) and tables (nftables), and strand's masquerade table, when no rule
 * uses them any more: the reference plugins' rules, which share the layout, keep them.
 * nftables hostPort rules name only their container, so those of other networks' pods
 * stay. Each backend only when its tools are installed: none of its rules exist otherwise.
 */
async function removeRules(network: string, pods: ReadonlyArray<{ network: string; containerId: string; ifname: string }>): Promise<void> {
  const [{ toolsFor }, netfilter, masq, ipt, nft] = await Promise.all([
    import('../../lib/plugin/exec.ts'),
    import('../../lib/plugin/netfilter.ts'),
    import('../../cni/bridge/masq.ts'),
    import('../../cni/portmap/iptables.ts'),
    import('../../cni/portmap/nftables.ts'),
  ]);
  // this process's PATH and namespaces: `strand install` runs in the node's
  const t = toolsFor({ env: process.env });
  const has = async (tool: string): Promise<boolean> => (await t.find(tool)) !== undefined;
  const iptables = await has('iptables-save');
  for (const a of pods) {
    await masq.teardownMasq(t, a.network, a.ifname, a.containerId);
    if (iptables) await ipt.unforwardPorts(t, a.network, a.containerId);
    await nft.unforwardPorts(t, a.containerId);
  }
  if (network && iptables) {
    await ipt.gcPorts(t, network, []);
    await masq.gcMasq(t, network, []);
  }
  if (iptables) await ipt.removeSharedIfUnused(t, 4);
  if (await has('ip6tables-save')) await ipt.removeSharedIfUnused(t, 6);
  if (await has('nft')) {
    await nft.removeSharedIfUnused(t, 4);
    await nft.removeSharedIfUnused(t, 6);
    const table = await netfilter.nftListTable(t, 'inet', masq.NFT_MASQ_TABLE);
    if (table && !table.rules.some((r) => r.comment !== undefined)) await netfilter.nftApply(t, [`delete table inet ${masq.NFT_MASQ_TABLE}`]);
  }
}

function removeFile(f: string, log: (s: string) => void, out: NodeStateResult): void {
  if (!existsSync(f)) return;
  try {
    rmSync(f);
    log(`removed ${f}`);
  } catch (e) {
    out.failed.push(`${f}: ${message(e)}`);
  }
}

function removeEmptyDir(d: string): boolean {
  try {
    rmdirSync(d); // only when empty
    return true;
  } catch {
    return false;
  }
}

/** strand-ipam's files of the network in a local store (the store and its lock), then the directory when nothing else is in it. */
function removeLocalStore(dataDir: string, network: string, log: (s: string) => void): void {
  const dir = join(dataDir, network);
  for (const f of ['strand-ipam.json', 'strand-ipam.lock']) {
    if (existsSync(join(dir, f))) {
      rmSync(join(dir, f));
      log(`removed ${join(dir, f)}`);
    }
  }
  if (removeEmptyDir(dir)) log(`removed ${dir}`);
}

/** The journal of pending releases: once empty (or, forced, with what is left). */
function removeJournal(dir: string, force: boolean, log: (s: string) => void, out: NodeStateResult): void {
  if (!existsSync(dir)) return;
  const entries = readdirSync(dir).filter((n) => n.endsWith('.json'));
  if (entries.length && !force) {
    out.failed.push(`${entries.length} pending release(s) in ${dir} not completed (strand ipam pending --complete; --force drops them)`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
  log(`removed ${dir}${entries.length ? ` (${entries.length} pending release(s) dropped)` : ''}`);
}

/** strand's CNI log files (cni.log and its rotations) and the directory once empty. */
function removeLogs(dir: string, log: (s: string) => void, out: NodeStateResult): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names.filter((x) => /^cni\.log(\.\d+)?$/.test(x))) removeFile(join(dir, n), log, out);
  if (removeEmptyDir(dir)) log(`removed ${dir}`);
}
