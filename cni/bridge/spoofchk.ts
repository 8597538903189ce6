// macspoofchk: drop frames entering the bridge from the pod's host-side veth unless
// their source MAC is the pod's. Same nftables layout as the reference (bridge table
// "nat", base chain PREROUTING at priority -300, per-attachment chains
// cni-br-iface-<id> and cni-br-iface-<id>-mac, every rule commented
// "macspoofchk-<id>", id = <containerID>-<ifname>), so either implementation can remove
// the other's rules.
import { ToolError, type Tools } from '../../lib/plugin/exec.ts';

const TABLE = 'bridge nat';
const BASE = 'PREROUTING';

export function spoofRefId(containerId: string, ifName: string): string {
  return `${containerId}-${ifName}`;
}

function chains(refId: string): { iface: string; mac: string; comment: string } {
  const iface = `cni-br-iface-${refId}`;
  return { iface, mac: `${iface}-mac`, comment: `macspoofchk-${refId}` };
}

/** Installs the rules for `hostVeth` accepting only `mac`. */
export async function setupSpoofCheck(t: Tools, hostVeth: string, mac: string, refId: string): Promise<void> {
  const c = chains(refId);
  const lines = [
    `add table ${TABLE}`,
    `add chain ${TABLE} ${BASE} { type filter hook prerouting priority -300 ; policy accept ; }`,
    `add chain ${TABLE} ${c.iface}`,
    `add chain ${TABLE} ${c.mac}`,
    `flush chain ${TABLE} ${c.iface}`,
    `flush chain ${TABLE} ${c.mac}`,
    `add rule ${TABLE} ${BASE} iifname "${hostVeth}" jump ${c.iface} comment "${c.comment}"`,
    `add rule ${TABLE} ${c.iface} jump ${c.mac} comment "${c.comment}"`,
    `add rule ${TABLE} ${c.mac} ether saddr ${mac.toLowerCase()} return comment "${c.comment}"`,
    `add rule ${TABLE} ${c.mac} drop comment "${c.comment}"`,
  ];
  await t.mustRun('nft', ['-f', '-'], `${lines.join('\n')}\n`);
}

/** Removes the attachment's rules and chains; absent ones are fine. */
export async function teardownSpoofCheck(t: Tools, refId: string): Promise<void> {
  if (!(await t.find('nft'))) return;
  const c = chains(refId);
  const args = ['-j', 'list', 'table', 'bridge', 'nat'];
  const r = await t.run('nft', args);
  if (r.code !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return;
    throw new ToolError('nft', args, r);
  }
  type Entry = { rule?: { chain: string; handle: number; comment?: string }; chain?: { name: string } };
  const entries = (JSON.parse(r.stdout) as { nftables?: Entry[] }).nftables ?? [];
  const names = new Set(entries.flatMap((e) => (e.chain ? [e.chain.name] : [])));
  const lines = entries.flatMap((e) =>
    e.rule?.chain === BASE && e.rule.comment === c.comment ? [`delete rule ${TABLE} ${BASE} handle ${e.rule.handle}`] : [],
  );
  for (const ch of [c.iface, c.mac]) if (names.has(ch)) lines.push(`flush chain ${TABLE} ${ch}`);
  for (const ch of [c.iface, c.mac]) if (names.has(ch)) lines.push(`delete chain ${TABLE} ${ch}`);
  if (lines.length) await t.mustRun('nft', ['-f', '-'], `${lines.join('\n')}\n`);
}
