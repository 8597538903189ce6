// ipMasq: source NAT for traffic from a pod address to anything outside its subnet
// (multicast excepted), with the reference plugins' rule layout so that rules made by
// either implementation are found and removed by the other:
//
// iptables backend (nat table, per family): a chain CNI-<sha512(network+containerID)>
// (28 characters) holding "-d <subnet> ACCEPT" and "! -d <multicast> MASQUERADE", jumped
// to from POSTROUTING by "-s <pod ip>", every rule commented `name: "<net>" id: "<id>"`.
// We read the table once with iptables-save and apply only the missing rules with one
// iptables-restore --noflush (the reference spends ~8 iptables runs per address).
//
// nftables backend: table inet cni_plugins_masquerade, chain masq_checks, one rule per
// address commented "<hash(net)>-<hash(ifname:id)>, net: ..., if: ..., id: ...".
//
// Teardown removes both backends' rules (the pod may come from another configuration),
// found by chain name / comment, so it needs no addresses and works after the pod's
// netns is gone. GC removes the rules of attachments that are not valid any more.
import { addrOf, formatCidr, formatIP, network, parseCidr } from '../../lib/addr/cidr.ts';
import type { GcAttachment } from '../../lib/cni/types.ts';
import { ToolError, type Tools } from '../../lib/plugin/exec.ts';
import {
  defaultBackend,
  formatChainName,
  goQuote,
  natCollectChains,
  natRemoveChains,
  natRestore,
  natSave,
  nftApply,
  saveQuote,
  savedHasChain,
  sha512hex,
  type NetfilterBackend,
} from '../../lib/plugin/netfilter.ts';

export type MasqBackend = NetfilterBackend;

/** iptables chain name for a (network, containerID): "CNI-" + 24 hex digits. */
export function masqChainName(netName: string, containerId: string): string {
  return formatChainName('', netName + containerId);
}

/** The iptables rule comment: name: "<net>" id: "<id>". */
export function masqComment(netName: string, containerId: string): string {
  return `name: ${goQuote(netName)} id: ${goQuote(containerId)}`;
}

/**
 * The three rules for one pod address ("10.1.0.5/24"), in iptables-save's canonical
 * form, in the order they are appended.
 */
export function iptablesMasqRules(address: string, chain: string, comment: string): { family: 4 | 6; rules: string[] } {
  const c = parseCidr(address);
  const v6 = c.family === 6;
  const host = `${formatIP(addrOf(c))}/${v6 ? 128 : 32}`;
  const subnet = formatCidr(network(c));
  const mcast = v6 ? 'ff00::/8' : '224.0.0.0/4';
  const cm = `-m comment --comment ${saveQuote(comment)}`;
  return {
    family: v6 ? 6 : 4,
    rules: [`-A ${chain} -d ${subnet} ${cm} -j ACCEPT`, `-A ${chain} ! -d ${mcast} ${cm} -j MASQUERADE`, `-A POSTROUTING -s ${host} ${cm} -j ${chain}`],
  };
}

async function setupIptables(t: Tools, addresses: string[], netName: string, containerId: string): Promise<void> {
  const chain = masqChainName(netName, containerId);
  const comment = masqComment(netName, containerId);
  for (const family of [4, 6] as const) {
    const wanted = addresses.map((a) => iptablesMasqRules(a, chain, comment)).filter((r) => r.family === family);
    if (!wanted.length) continue;
    const saved = await natSave(t, family);
    const have = new Set(saved);
    const input: string[] = [];
    if (!savedHasChain(saved, chain)) input.push(`:${chain} - [0:0]`);
    for (const { rules } of wanted) {
      for (const r of rules) {
        if (have.has(r)) continue;
        have.add(r);
        input.push(r);
      }
    }
    await natRestore(t, family, input);
  }
}

async function teardownIptables(t: Tools, netName: string, containerId: string): Promise<void> {
  await natRemoveChains(t, new Set([masqChainName(netName, containerId)]), ['POSTROUTING']);
}

const COMMENT_RE = /--comment "name: \\"((?:[^"\\]|\\\\.)*)\\" id: \\"((?:[^"\\]|\\\\.)*)\\""/;

async function gcIptables(t: Tools, netName: string, valid: GcAttachment[]): Promise<void> {
  const keep = new Set(valid.map((a) => masqChainName(netName, a.containerID)));
  await natCollectChains(t, 'POSTROUTING', (l) => {
    const m = COMMENT_RE.exec(l);
    const j = / -j (CNI-[0-9a-f]{24})$/.exec(l);
    if (!m || !j) return undefined;
    // The comment carries the network name and the container ID (Go %q inside
    // iptables-save quoting); the chain must be the one derived from them.
    const id = JSON.parse(`"${m[2]!.replace(/\\\\/g, '\\')}"`) as string;
    const net = JSON.parse(`"${m[1]!.replace(/\\\\/g, '\\')}"`) as string;
    if (net !== netName || j[1] !== masqChainName(netName, id)) return undefined;
    return keep.has(j[1]!) ? undefined : j[1]!;
  });
}

// ---------------------------------------------------------------------------------
// nftables

export const NFT_MASQ_TABLE = 'cni_plugins_masquerade';
const NFT_MASQ_CHAIN = 'masq_checks';
const NFT_COMMENT_MAX = 128;

function hashForNetwork(netName: string): string {
  return sha512hex(netName).slice(0, 16);
}

function hashForInstance(netName: string, ifName: string, containerId: string): string {
  return `${hashForNetwork(netName)}-${sha512hex(`${ifName}:${containerId}`).slice(0, 16)}`;
}

/** The nftables rule comment identifying one attachment's rules. */
export function nftMasqComment(netName: string, ifName: string, containerId: string): string {
  const strip = (s: string): string => s.replace(/"/g, '');
  const c = `${hashForInstance(netName, ifName, containerId)}, net: ${strip(netName)}, if: ${strip(ifName)}, id: ${strip(containerId)}`;
  return c.slice(0, NFT_COMMENT_MAX);
}

interface NftRule {
  handle: number;
  comment?: string;
}

/** Rules of the masquerade chain; [] when the table or chain does not exist. */
async function nftListMasqRules(t: Tools): Promise<NftRule[]> {
  const r = await t.run('nft', ['-j', 'list', 'chain', 'inet', NFT_MASQ_TABLE, NFT_MASQ_CHAIN]);
  if (r.code !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr) || r.code === 127) return [];
    throw new ToolError('nft', ['-j', 'list', 'chain', 'inet', NFT_MASQ_TABLE, NFT_MASQ_CHAIN], r);
  }
  const parsed = JSON.parse(r.stdout) as { nftables?: Array<{ rule?: NftRule }> };
  return (parsed.nftables ?? []).flatMap((e) => (e.rule ? [e.rule] : []));
}

function nftDeleteRules(handles: number[]): string[] {
  return handles.map((h) => `delete rule inet ${NFT_MASQ_TABLE} ${NFT_MASQ_CHAIN} handle ${h}`);
}

async function setupNftables(t: Tools, addresses: string[], netName: string, ifName: string, containerId: string): Promise<void> {
  const prefix = hashForInstance(netName, ifName, containerId);
  const stale = (await nftListMasqRules(t)).filter((r) => r.comment?.startsWith(prefix)).map((r) => r.handle);
  const tbl = `inet ${NFT_MASQ_TABLE}`;
  const comment = nftMasqComment(netName, ifName, containerId);
  const lines = [
    `add table ${tbl} { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }`,
    `add chain ${tbl} ${NFT_MASQ_CHAIN} { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }`,
    `add chain ${tbl} postrouting { type nat hook postrouting priority srcnat ; }`,
    `flush chain ${tbl} postrouting`,
    `add rule ${tbl} postrouting ip daddr 224.0.0.0/4 return`,
    `add rule ${tbl} postrouting ip6 daddr ff00::/8 return`,
    `add rule ${tbl} postrouting goto ${NFT_MASQ_CHAIN}`,
    ...nftDeleteRules(stale),
  ];
  for (const a of addresses) {
    const c = parseCidr(a);
    const fam = c.family === 6 ? 'ip6' : 'ip';
    const ip = formatIP(addrOf(c));
    lines.push(`add rule ${tbl} ${NFT_MASQ_CHAIN} ${fam} saddr ${ip} ${fam} daddr != ${formatCidr(network(c))} masquerade comment "${comment}"`);
  }
  await nftApply(t, lines);
}

async function teardownNftables(t: Tools, netName: string, ifName: string, containerId: string): Promise<void> {
  if (!(await t.find('nft'))) return;
  const prefix = hashForInstance(netName, ifName, containerId);
  const rules = await nftListMasqRules(t);
  await nftApply(t, nftDeleteRules(rules.filter((r) => r.comment?.startsWith(prefix)).map((r) => r.handle)));
}

async function gcNftables(t: Tools, netName: string, valid: GcAttachment[]): Promise<void> {
  if (!(await t.find('nft'))) return;
  const net = hashForNetwork(netName);
  const keep = new Set(valid.map((a) => nftMasqComment(netName, a.ifname, a.containerID)));
  const rules = await nftListMasqRules(t);
  await nftApply(t, nftDeleteRules(rules.filter((r) => r.comment?.startsWith(net) && !keep.has(r.comment)).map((r) => r.handle)));
}

// ---------------------------------------------------------------------------------

/** Installs masquerading for the pod addresses (CIDR with host bits, "10.1.0.5/24"). */
export async function setupMasq(
  t: Tools,
  backend: MasqBackend | undefined,
  addresses: string[],
  netName: string,
  ifName: string,
  containerId: string,
): Promise<void> {
  const b = backend ?? defaultBackend(t);
  if (b === 'nftables') await setupNftables(t, addresses, netName, ifName, containerId);
  else await setupIptables(t, addresses, netName, containerId);
}

/** Removes this attachment's masquerade rules from both backends; absent rules are fine. */
export async function teardownMasq(t: Tools, netName: string, ifName: string, containerId: string): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all([
    teardownIptables(t, netName, containerId).catch((e: unknown) => errors.push(e)),
    teardownNftables(t, netName, ifName, containerId).catch((e: unknown) => errors.push(e)),
  ]);
  if (errors.length) throw errors[0];
}

/** Removes masquerade rules of this network whose attachment is not in `valid`. */
export async function gcMasq(t: Tools, netName: string, valid: GcAttachment[]): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all([gcIptables(t, netName, valid).catch((e: unknown) => errors.push(e)), gcNftables(t, netName, valid).catch((e: unknown) => errors.push(e))]);
  if (errors.length) throw errors[0];
}
