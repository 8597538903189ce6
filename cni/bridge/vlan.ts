// Bridge VLAN options (vlan, vlanTrunk, preserveDefaultVlan) on a bridge with VLAN
// filtering, as the reference: the pod's port leaves the default VLAN (unless
// preserveDefaultVlan), `vlan` becomes its untagged PVID, trunk VLANs are tagged, and a
// trunk without `vlan` keeps VLAN 1 as its native VLAN. With isGateway, the gateway
// address lives on "<bridge>.<vlan>", one end of a veth pair whose other end is a
// tagged port of the bridge.
import type { Interface } from '../../lib/cni/types.ts';
import { createVeth, nl, nlMaybe } from '../../lib/plugin/link.ts';
import type { UndoStack } from '../../lib/plugin/undo.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import type { BridgeConf } from './config.ts';

/** Consecutive IDs as [first, last] ranges. */
export function vlanRanges(ids: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const id of ids) {
    const last = out[out.length - 1];
    if (last && id === last[1] + 1) last[1] = id;
    else out.push([id, id]);
  }
  return out;
}

export async function setPortVlans(host: Netns, port: number, conf: Pick<BridgeConf, 'vlan' | 'trunkVlans' | 'preserveDefaultVlan'>): Promise<void> {
  const trunk = conf.trunkVlans;
  if ((conf.vlan !== 0 || trunk.length) && !conf.preserveDefaultVlan) {
    const have = (await nl('failed to list bridge VLANs', () => rtnl.listBridgeVlans(host))).get(port) ?? [];
    for (const v of have) {
      const spec: rtnl.BridgeVlanSpec = { vid: v.vid };
      if (v.vidEnd !== undefined) spec.vidEnd = v.vidEnd;
      await nl(`failed to remove default vlan ${v.vid} from port ${port}`, () => rtnl.delBridgeVlan(host, port, spec));
    }
  }
  if (conf.vlan !== 0) {
    await nl(`failed to setup vlan tag ${conf.vlan}`, () => rtnl.newBridgeVlan(host, port, { vid: conf.vlan, pvid: true, untagged: true }));
  }
  for (const [first, last] of vlanRanges(trunk)) {
    const spec: rtnl.BridgeVlanSpec = first === last ? { vid: first } : { vid: first, vidEnd: last };
    await nl(`failed to setup trunk vlans ${first}-${last}`, () => rtnl.newBridgeVlan(host, port, spec));
  }
  if (conf.vlan === 0 && trunk.length) {
    await nl('failed to setup default native vlan 1', () => rtnl.newBridgeVlan(host, port, { vid: 1, pvid: true, untagged: true }));
  }
}

/** The "<bridge>.<vlan>" gateway interface, created when missing (undo deletes it then). */
export async function ensureVlanGateway(host: Netns, br: rtnl.Link, conf: BridgeConf, undo: UndoStack): Promise<{ link: rtnl.Link; iface: Interface }> {
  const name = `${br.name}.${conf.vlan}`;
  let link = await nlMaybe(`failed to find interface ${name}`, () => rtnl.getLink(host, name));
  if (!link) {
    const pair = await createVeth(host, host, { ifName: name, mtu: br.mtu, master: br.index, hostUp: true }, undo);
    await setPortVlans(host, pair.host.index, { vlan: conf.vlan, trunkVlans: [], preserveDefaultVlan: conf.preserveDefaultVlan });
    await nl(`failed to set ${name} up`, () => rtnl.setLink(host, pair.cont.index, { up: true }));
    link = await nl(`failed to look up ${name}`, () => rtnl.getLink(host, pair.cont.index));
  }
  const iface: Interface = { name };
  if (link.mac) iface.mac = link.mac;
  return { link, iface };
}
