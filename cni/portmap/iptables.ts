// The iptables backend of strand-portmap, with the reference portmap plugin's layout so
// that either implementation finds, checks and removes the other's rules (nat table,
// per family):
//
//   PREROUTING, OUTPUT:   -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//   CNI-HOSTPORT-DNAT:    per protocol and 15 ports, commented `dnat name: "<net>" id: "<id>"`:
//                         -p tcp -m multiport --dports 8080,8081 [conditionsV4/V6] -j CNI-DN-<hash>
//   CNI-DN-<hash>:        per mapping (hostIP of the other family skipped), in this order:
//                         -s <pod ip/prefix or 0/0 with masqAll> -p tcp --dport 8080 [-d hostIP] -j CNI-HOSTPORT-SETMARK
//                         -s 127.0.0.1 ... -j CNI-HOSTPORT-SETMARK             (IPv4 without masqAll)
//                         -p tcp --dport 8080 [-d hostIP] -j DNAT --to-destination <pod>:<port>
//   CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark <bit>/<bit>
//   CNI-HOSTPORT-MASQ:    -m mark --mark <bit>/<bit> -j MASQUERADE, jumped to from the top
//                         of POSTROUTING ("CNI portfwd requiring masquerade")
//
// <hash> is the hex SHA-512 of network name + container ID (chain names are 28
// characters). SETMARK/MASQ are skipped without snat and replaced by the user's chain
// with externalSetMarkChain. The shared chains and their entry rules stay when the last
// pod goes (as with the reference). One iptables-save and one iptables-restore per
// family and ADD, where the reference runs iptables once per rule; the callers hold the
// node's portmap lock (lock.ts), so the shared rules are never added twice.
import type { GcAttachment } from '../../lib/cni/types.ts';
import {
  deleteChainsLines,
  formatChainName,
  type IpFamily,
  natCollectChains,
  natRemoveChains,
  natRestore,
  natRuleExists,
  natSave,
  restoreArg,
  ruleComment,
  ruleTarget,
  savedHasChain,
  splitSaveLine,
} from '../../lib/plugin/netfilter.ts';
import type { Tools } from '../../lib/plugin/exec.ts';
import type { ContainerAddr, PortMapping, PortmapConf } from './config.ts';

const TOP_DNAT_CHAIN = 'CNI-HOSTPORT-DNAT';
const SETMARK_CHAIN = 'CNI-HOSTPORT-SETMARK';
const MASQ_CHAIN = 'CNI-HOSTPORT-MASQ';
/** The top-level SNAT chain of old reference versions: its per-pod chains are still removed. */
const OLD_TOP_SNAT_CHAIN = 'CNI-HOSTPORT-SNAT';

type Rule = string[];

interface Chain {
  name: string;
  /** Chains holding the rules that jump here. */
  entryChains: string[];
  /** The match part of those rules ("-j <name>" is appended). */
  entryRules: Rule[];
  rules: Rule[];
  /** Entry rules go to the top of the entry chains. */
  prependEntry?: boolean;
}

export function dnatChainName(netName: string, containerId: string): string {
  return formatChainName('DN-', netName + containerId);
}

function oldSnatChainName(netName: string, containerId: string): string {
  return formatChainName('SN-', netName + containerId);
}

/** The comment on the rules jumping to a pod's chain; iptables keeps at most 255 characters. */
export function dnatComment(netName: string, containerId: string): string {
  const c = `dnat name: "${netName}" id: "${containerId}"`;
  return c.length <= 255 ? c : `${c.slice(0, 253)}...`;
}

const COMMENT_RE = /^dnat name: "(.*)" id: "(.*)"$/;

function markDef(bit: number): string {
  const v = `0x${(2 ** bit).toString(16)}`;
  return `${v}/${v}`;
}

function setMarkChain(bit: number): Chain {
  return {
    name: SETMARK_CHAIN,
    entryChains: [],
    entryRules: [],
    rules: [['-m', 'comment', '--comment', 'CNI portfwd masquerade mark', '-j', 'MARK', '--set-xmark', markDef(bit)]],
  };
}

function markMasqChain(bit: number): Chain {
  return {
    name: MASQ_CHAIN,
    entryChains: ['POSTROUTING'],
    // first in POSTROUTING, before the masquerade rules of bridge/ptp
    prependEntry: true,
    entryRules: [['-m', 'comment', '--comment', 'CNI portfwd requiring masquerade']],
    rules: [['-m', 'mark', '--mark', markDef(bit), '-j', 'MASQUERADE']],
  };
}

function topDnatChain(): Chain {
  return { name: TOP_DNAT_CHAIN, entryChains: ['PREROUTING', 'OUTPUT'], entryRules: [['-m', 'addrtype', '--dst-type', 'LOCAL']], rules: [] };
}

function fmtIPPort(c: ContainerAddr, port: number): string {
  return c.family === 6 ? `[${c.ip}]:${port}` : `${c.ip}:${port}`;
}

function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

/** Port lists of at most 15 ports (the multiport match's limit). */
function splitPorts(ports: number[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ports.length; i += 15) out.push(ports.slice(i, i + 15).join(','));
  return out;
}

/** The pod's chain with its rules and the entry rules jumping to it. */
export function podDnatChain(conf: PortmapConf, containerId: string, cont: ContainerAddr): Chain {
  const v6 = cont.family === 6;
  const comment = dnatComment(conf.name, containerId);
  const conditions = v6 ? conf.conditionsV6 : conf.conditionsV4;
  const setMark = conf.externalSetMarkChain ?? SETMARK_CHAIN;

  const byProto = new Map<string, number[]>();
  for (const m of conf.portMappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const entryRules: Rule[] = [];
  for (const proto of [...byProto.keys()].sort()) {
    for (const ports of splitPorts(byProto.get(proto)!)) {
      entryRules.push(['-m', 'comment', '--comment', comment, '-m', 'multiport', '-p', proto, '--destination-ports', ports, ...conditions]);
    }
  }

  const rules: Rule[] = [];
  for (const m of conf.portMappings) {
    const base = ruleBase(m, v6);
    if (!base) continue;
    if (conf.snat) {
      rules.push([...base, '-s', conf.masqAll ? (v6 ? '::/0' : '0.0.0.0/0') : cont.cidr, '-j', setMark]);
      if (!v6 && !conf.masqAll) rules.push([...base, '-s', '127.0.0.1', '-j', setMark]);
    }
    rules.push([...base, '-j', 'DNAT', '--to-destination', fmtIPPort(cont, m.containerPort)]);
  }
  return { name: dnatChainName(conf.name, containerId), entryChains: [TOP_DNAT_CHAIN], entryRules, rules };
}

/** "-p proto --dport N [-d hostIP]"; undefined when hostIP is of the other family. */
function ruleBase(m: PortMapping, v6: boolean): Rule | undefined {
  const base = ['-p', m.protocol, '--dport', String(m.hostPort)];
  if (m.hostIP !== undefined) {
    if (m.hostIP.includes(':') !== v6) return undefined;
    if (!isUnspecified(m.hostIP)) base.push('-d', m.hostIP);
  }
  return base;
}

/** One iptables-restore line: "-A chain rule..." (or "-I chain 1 rule..."), arguments quoted as needed. */
const line = (op: '-A' | '-I', chain: string, rule: Rule): string => [op, chain, ...(op === '-I' ? ['1'] : []), ...rule].map(restoreArg).join(' ');

/**
 * Whether a rule equal to `rule` is in the saved table. Only for the fixed rules of the
 * shared chains, whose iptables-save form is the order given here.
 */
function savedHasRule(saved: readonly string[], chain: string, rule: Rule): boolean {
  const want = ['-A', chain, ...rule].join('\0');
  return saved.some((l) => l.startsWith(`-A ${chain} `) && splitSaveLine(l).join('\0') === want);
}

/** Restore lines making a shared chain and its entry rules exist (idempotent, unique rules). */
function ensureShared(saved: readonly string[], c: Chain): string[] {
  const out: string[] = [];
  if (!savedHasChain(saved, c.name)) out.push(`:${c.name} - [0:0]`);
  for (const r of c.rules) if (!savedHasRule(saved, c.name, r)) out.push(line('-A', c.name, r));
  for (const from of c.entryChains) {
    for (const r of c.entryRules) {
      const rule = [...r, '-j', c.name];
      if (!savedHasRule(saved, from, rule)) out.push(line(c.prependEntry ? '-I' : '-A', from, rule));
    }
  }
  return out;
}

/** Installs the rules forwarding the mapped ports of one pod address; says whether it made the shared chains. */
export async function forwardPorts(t: Tools, conf: PortmapConf, containerId: string, cont: ContainerAddr): Promise<{ createdShared: boolean }> {
  const family: IpFamily = cont.family;
  const saved = await natSave(t, family);
  const createdShared = !savedHasChain(saved, TOP_DNAT_CHAIN);
  const lines: string[] = [];
  if (conf.snat && conf.externalSetMarkChain === undefined) {
    lines.push(...ensureShared(saved, setMarkChain(conf.markMasqBit)), ...ensureShared(saved, markMasqChain(conf.markMasqBit)));
  }
  lines.push(...ensureShared(saved, topDnatChain()));
  const pod = podDnatChain(conf, containerId, cont);
  // The pod's chain is rewritten whole (a chain line flushes an existing user chain
  // under --noflush), and the jumps to it from an earlier ADD make way for the new ones.
  lines.push(...deleteChainsLines(saved, new Set([pod.name]), [TOP_DNAT_CHAIN]).filter((l) => l.startsWith('-D')));
  lines.push(`:${pod.name} - [0:0]`);
  for (const r of pod.rules) lines.push(line('-A', pod.name, r));
  for (const r of pod.entryRules) lines.push(line('-A', TOP_DNAT_CHAIN, [...r, '-j', pod.name]));
  await natRestore(t, family, lines);
  return { createdShared };
}

/**
 * Rollback of an ADD that made the shared chains: removes them and the rules jumping to
 * them while no pod's chain is jumped to from CNI-HOSTPORT-DNAT.
 */
export async function removeSharedIfUnused(t: Tools, family: IpFamily): Promise<void> {
  const saved = await natSave(t, family);
  if (saved.some((l) => l.startsWith(`-A ${TOP_DNAT_CHAIN} `))) return;
  const shared = new Set([TOP_DNAT_CHAIN, MASQ_CHAIN, SETMARK_CHAIN]);
  await natRestore(t, family, deleteChainsLines(saved, shared, ['PREROUTING', 'OUTPUT', 'POSTROUTING']));
}

/** CHECK of one pod address: its chain, its rules and the rules jumping to it (iptables -C, as the reference). */
export async function checkPorts(t: Tools, conf: PortmapConf, containerId: string, cont: ContainerAddr): Promise<string | undefined> {
  const pod = podDnatChain(conf, containerId, cont);
  if (!savedHasChain(await natSave(t, cont.family), pod.name)) return `chain ${pod.name} not found in iptables table nat`;
  for (const r of pod.rules) {
    if (!(await natRuleExists(t, cont.family, pod.name, r))) return `rule ${r.join(' ')} in chain ${pod.name} not found in table nat`;
  }
  for (const r of pod.entryRules) {
    if (!(await natRuleExists(t, cont.family, TOP_DNAT_CHAIN, [...r, '-j', pod.name]))) {
      return `rule ${r.join(' ')} in chain ${TOP_DNAT_CHAIN} not found in table nat`;
    }
  }
  return undefined;
}

/** Removes one pod's chains (and an old version's SNAT chain) with every rule jumping to them, both families. */
export function unforwardPorts(t: Tools, netName: string, containerId: string): Promise<void> {
  const chains = new Set([dnatChainName(netName, containerId), oldSnatChainName(netName, containerId)]);
  return natRemoveChains(t, chains, [TOP_DNAT_CHAIN, OLD_TOP_SNAT_CHAIN]);
}

/** Removes the chains of this network's pods that are not in `valid` (found through the comments). */
export function gcPorts(t: Tools, netName: string, valid: readonly GcAttachment[]): Promise<void> {
  const keep = new Set(valid.map((a) => a.containerID));
  return natCollectChains(t, TOP_DNAT_CHAIN, (l) => {
    const target = ruleTarget(l);
    const m = COMMENT_RE.exec(ruleComment(l) ?? '');
    if (!target || !m) return undefined;
    const [, net, id] = m as unknown as [string, string, string];
    // the chain must be the one derived from the comment: never someone else's
    return net === netName && target === dnatChainName(net, id) && !keep.has(id) ? target : undefined;
  });
}
