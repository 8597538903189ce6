// The nftables backend of strand-portmap, with the reference portmap plugin's layout
// (plugins/meta/portmap/portmap_nftables.go), so that either implementation finds,
// checks and removes the other's rules. One table per family, `ip cni_hostport` and
// `ip6 cni_hostport`:
//
//   prerouting  (nat, prerouting, -100):  [conditions] fib daddr type local jump hostports_all
//   output      (nat, output, -100):      [conditions] fib daddr type local jump hostports_all
//   hostports_all:                          jump hostip_hostports; jump hostports
//   hostip_hostports:                       (kept empty, for older versions' rules)
//   hostports:    per mapping   [ip daddr <hostIP>] tcp dport 8080 dnat to <pod>:<port>
//   masquerading (nat, postrouting, 100): ip saddr <pod ip | 0.0.0.0/0> ip daddr <pod ip> masquerade
//                                            ip saddr 127.0.0.1 ip daddr <pod ip> masquerade (IPv4, no masqAll)
//
// A pod's rules carry its container ID as their comment; that is how DEL, CHECK and GC
// find them. prerouting/output are rewritten by every ADD with that ADD's conditions.
// Every change is one `nft -f` transaction.
import type { GcAttachment } from '../../lib/cni/types.ts';
import type { Tools } from '../../lib/plugin/exec.ts';
import { nftApply, nftListTable, nftTables, type NftRule } from '../../lib/plugin/netfilter.ts';
import type { ContainerAddr, PortmapConf } from './config.ts';

const NFT_TABLE = 'cni_hostport';
const HOSTPORTS_ALL = 'hostports_all';
const HOSTIP_HOSTPORTS = 'hostip_hostports';
const HOSTPORTS = 'hostports';
const MASQUERADING = 'masquerading';
/** The chains holding per-pod rules. */
const POD_CHAINS = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];

const FAMILIES = { 4: 'ip', 6: 'ip6' } as const;

function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

/** The pod's rules of one family (chain, rule text without the comment). */
export function podRules(conf: PortmapConf, cont: ContainerAddr): Array<{ chain: string; rule: string }> {
  const v6 = cont.family === 6;
  const ipX = FAMILIES[cont.family];
  const to = v6 ? `[${cont.ip}]` : cont.ip;
  const out: Array<{ chain: string; rule: string }> = [];
  for (const m of conf.portMappings) {
    let daddr = '';
    if (m.hostIP !== undefined) {
      if (m.hostIP.includes(':') !== v6) continue;
      if (!isUnspecified(m.hostIP)) daddr = `${ipX} daddr ${m.hostIP} `;
    }
    out.push({ chain: HOSTPORTS, rule: `${daddr}${m.protocol} dport ${m.hostPort} dnat to ${to}:${m.containerPort}` });
  }
  if (conf.snat) {
    const src = conf.masqAll ? (v6 ? '::/0' : '0.0.0.0/0') : cont.ip;
    out.push({ chain: MASQUERADING, rule: `${ipX} saddr ${src} ${ipX} daddr ${cont.ip} masquerade` });
    if (!v6 && !conf.masqAll) out.push({ chain: MASQUERADING, rule: `${ipX} saddr 127.0.0.1 ${ipX} daddr ${cont.ip} masquerade` });
  }
  return out;
}

function podRuleHandles(table: { rules: NftRule[] } | undefined, containerId: string, chains = POD_CHAINS): NftRule[] {
  return (table?.rules ?? []).filter((r) => chains.includes(r.chain) && r.comment === containerId);
}

/**
 * Installs the rules forwarding the mapped ports of one pod address (replacing the pod's
 * rules of an earlier ADD); says whether it made the table.
 */
export async function forwardPorts(t: Tools, conf: PortmapConf, containerId: string, cont: ContainerAddr): Promise<{ createdShared: boolean }> {
  const fam = FAMILIES[cont.family];
  const tbl = `${fam} ${NFT_TABLE}`;
  const conditions = (cont.family === 6 ? conf.conditionsV6 : conf.conditionsV4).join(' ');
  const cond = conditions ? `${conditions} ` : '';
  const before = await nftListTable(t, fam, NFT_TABLE);
  const lines = [
    `add table ${tbl} { comment "CNI portmap plugin" ; }`,
    `add chain ${tbl} ${HOSTPORTS}`,
    `add chain ${tbl} ${HOSTIP_HOSTPORTS}`,
    `add chain ${tbl} ${HOSTPORTS_ALL}`,
    `flush chain ${tbl} ${HOSTPORTS_ALL}`,
    `add rule ${tbl} ${HOSTPORTS_ALL} jump ${HOSTIP_HOSTPORTS}`,
    `add rule ${tbl} ${HOSTPORTS_ALL} jump ${HOSTPORTS}`,
    `add chain ${tbl} prerouting { type nat hook prerouting priority -100 ; }`,
    `flush chain ${tbl} prerouting`,
    `add rule ${tbl} prerouting ${cond}fib daddr type local jump ${HOSTPORTS_ALL}`,
    `add chain ${tbl} output { type nat hook output priority -100 ; }`,
    `flush chain ${tbl} output`,
    `add rule ${tbl} output ${cond}fib daddr type local jump ${HOSTPORTS_ALL}`,
  ];
  if (conf.snat) lines.push(`add chain ${tbl} ${MASQUERADING} { type nat hook postrouting priority 100 ; }`);
  for (const r of podRuleHandles(before, containerId)) lines.push(`delete rule ${tbl} ${r.chain} handle ${r.handle}`);
  for (const r of podRules(conf, cont)) lines.push(`add rule ${tbl} ${r.chain} ${r.rule} comment "${containerId}"`);
  await nftApply(t, lines);
  return { createdShared: before === undefined };
}

/** Rollback of an ADD that made the table: deletes it while it holds no pod's rule. */
export async function removeSharedIfUnused(t: Tools, family: 4 | 6): Promise<void> {
  const fam = FAMILIES[family];
  const table = await nftListTable(t, fam, NFT_TABLE);
  if (!table || table.rules.some((r) => r.comment !== undefined)) return;
  await nftApply(t, [`delete table ${fam} ${NFT_TABLE}`]);
}

/** CHECK of one pod address: as many rules carrying its container ID as it should have, per chain. */
export async function checkPorts(t: Tools, conf: PortmapConf, containerId: string, cont: ContainerAddr): Promise<string | undefined> {
  const table = await nftListTable(t, FAMILIES[cont.family], NFT_TABLE);
  const want = podRules(conf, cont);
  for (const chain of [HOSTPORTS, MASQUERADING]) {
    const n = want.filter((r) => r.chain === chain).length;
    if (n > 0 && podRuleHandles(table, containerId, [chain]).length < n) return `missing hostport rules in ${JSON.stringify(chain)} chain`;
  }
  return undefined;
}

async function deleteWhere(t: Tools, pick: (r: NftRule) => boolean): Promise<void> {
  if (!(await t.find('nft'))) return;
  // one listing of the tables first: on a node without them (the iptables backend), that is all
  const present = new Set((await nftTables(t)).filter((t) => t.name === NFT_TABLE).map((t) => t.family));
  await Promise.all(
    Object.values(FAMILIES).map(async (fam) => {
      if (!present.has(fam)) return;
      const table = await nftListTable(t, fam, NFT_TABLE);
      const doomed = (table?.rules ?? []).filter((r) => POD_CHAINS.includes(r.chain) && pick(r));
      await nftApply(
        t,
        doomed.map((r) => `delete rule ${fam} ${NFT_TABLE} ${r.chain} handle ${r.handle}`),
      );
    }),
  );
}

/** Removes one pod's rules from both families' tables; the tables stay (as with the reference). */
export function unforwardPorts(t: Tools, containerId: string): Promise<void> {
  return deleteWhere(t, (r) => r.comment === containerId);
}

/**
 * Removes the rules of pods that are not in `valid`. The reference's nftables rules name
 * the container but not the network: with several networks chaining portmap with the
 * nftables backend on one node, each network's GC would also remove the others' rules.
 */
export function gcPorts(t: Tools, valid: readonly GcAttachment[]): Promise<void> {
  const keep = new Set(valid.map((a) => a.containerID));
  return deleteWhere(t, (r) => r.comment !== undefined && !keep.has(r.comment));
}
