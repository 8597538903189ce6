// A virtual link stacked on a "master" link (macvlan, ipvlan), made for one pod. Shared by
// strand-macvlan and strand-ipvlan; each plugin supplies the link kind and its options.
//
//   - the master is looked up in the host namespace, or in the pod's with linkInContainer;
//     without `master`, the link of that namespace's default route;
//   - the link is created directly inside the pod namespace (IFLA_NET_NS_FD in the one
//     RTM_NEWLINK; no move afterwards) under a random temporary name, then renamed to
//     CNI_IFNAME there: a name taken in the host namespace never collides, a name taken
//     in the pod fails the rename (EEXIST), which the undo step cleans up;
//   - DEL removes it by name; a missing namespace or link is success.
import { randomBytes } from 'node:crypto';
import { CniError, Code } from '../../lib/cni/errors.ts';
import type { Interface } from '../../lib/cni/types.ts';
import type { UndoStack } from '../../lib/plugin/undo.ts';
import { isNetlinkError } from '../../lib/netlink/errors.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import type { PodLink } from '../../lib/plugin/ipam-config.ts';
import { deleteLinkIfPresent, netlinkFailure, type NetnsArgs, nl, nlMaybe, openPodNetnsForDel } from '../../lib/plugin/link.ts';

export interface MasterOptions {
  /** Configured master name; undefined or "" means the default route's link. */
  master: string | undefined;
  /** The master lives in the pod namespace. */
  linkInContainer: boolean;
}

/** The link of the namespace's default route (the first default route of the main table, IPv4 first). */
async function defaultRouteLink(ns: Netns): Promise<rtnl.Link | undefined> {
  for (const version of [4, 6] as const) {
    const routes = await nl('failed to list routes', () => rtnl.listRoutes(ns, { version }));
    const def = routes.find((r) => r.dst === (version === 4 ? '0.0.0.0/0' : '::/0') && r.oif !== undefined);
    if (def?.oif !== undefined) return await nl('failed to look up the default route link', () => rtnl.getLink(ns, def.oif!));
  }
  return undefined;
}

/**
 * The master link: by name, or the default route's link. CniError 7 naming `master` when
 * it does not exist (or there is no default route to pick one from).
 */
export async function resolveMaster(host: Netns, pod: Netns, opts: MasterOptions): Promise<rtnl.Link> {
  const ns = opts.linkInContainer ? pod : host;
  const where = opts.linkInContainer ? 'in the container namespace' : 'in the host namespace';
  if (!opts.master) {
    const link = await defaultRouteLink(ns);
    if (!link) {
      throw new CniError(Code.InvalidNetworkConfig, 'no master given and no default route to take it from', `master: no default route ${where}`);
    }
    return link;
  }
  const name = opts.master;
  const link = await nlMaybe(`failed to look up master ${JSON.stringify(name)}`, () => rtnl.getLink(ns, name));
  if (!link) throw new CniError(Code.InvalidNetworkConfig, `master ${JSON.stringify(name)} not found`, `master: no link ${JSON.stringify(name)} ${where}`);
  return link;
}

/** CniError 7 unless 0 <= mtu <= the master's MTU (0 or undefined: the kernel's choice). */
export function checkMtu(mtu: number | undefined, master: rtnl.Link): void {
  if (mtu === undefined || mtu === 0) return;
  if (mtu < 0 || mtu > master.mtu) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      `invalid MTU ${mtu}, must be [0, master MTU(${master.mtu})]`,
      `mtu: ${mtu} exceeds the MTU ${master.mtu} of master ${master.name}`,
    );
  }
}

export interface SublinkSpec {
  info: rtnl.MacvlanInfo | rtnl.IpvlanInfo;
  master: rtnl.Link;
  linkInContainer: boolean;
  mtu?: number | undefined;
  mac?: string | undefined;
}

export function tempLinkName(): string {
  return `tmp${randomBytes(4).toString('hex')}`;
}

function interfaceExists(ifName: string, netnsPath: string): CniError {
  return new CniError(
    Code.InvalidEnvironment,
    `interface ${JSON.stringify(ifName)} already exists in the container`,
    `CNI_IFNAME ${JSON.stringify(ifName)} is taken in ${netnsPath}`,
  );
}

/**
 * Creates the link inside `pod` as `ifName` (through a temporary name) and pushes its
 * removal onto `undo`. Returns the link and the result's interface entry.
 */
export async function createSublink(
  host: Netns,
  pod: Netns,
  ifName: string,
  netnsPath: string,
  spec: SublinkSpec,
  undo: UndoStack,
): Promise<{ link: PodLink; iface: Interface }> {
  const kind = spec.info.kind;
  if (await nlMaybe(`failed to look up ${ifName}`, () => rtnl.getLink(pod, ifName))) throw interfaceExists(ifName, netnsPath);
  const tmp = tempLinkName();
  const req: rtnl.NewLinkSpec = { name: tmp, info: spec.info, parent: spec.master.index };
  if (spec.mtu) req.mtu = spec.mtu;
  if (spec.mac) req.mac = spec.mac;
  // Without linkInContainer the request goes to the host namespace (where the parent
  // index is valid) and the link is born in the pod namespace.
  const via = spec.linkInContainer ? pod : host;
  if (!spec.linkInContainer) req.netns = pod;
  try {
    await rtnl.newLink(via, req);
  } catch (e) {
    if (isNetlinkError(e)) throw netlinkFailure(`failed to create ${kind} link on ${spec.master.name}`, e);
    throw e;
  }
  const made = await nl(`failed to find the new ${kind} link`, () => rtnl.getLink(pod, tmp));
  undo.push(`delete ${kind} link ${made.index} in ${netnsPath}`, () => rtnl.delLink(pod, made.index));
  try {
    await rtnl.setLink(pod, made.index, { name: ifName });
  } catch (e) {
    if (isNetlinkError(e, 'EEXIST')) throw interfaceExists(ifName, netnsPath);
    if (isNetlinkError(e)) throw netlinkFailure(`failed to rename ${kind} link to ${JSON.stringify(ifName)}`, e);
    throw e;
  }
  // Report the name the kernel gave the link, as read back.
  const named = await nl(`failed to look up the ${kind} link ${made.index}`, () => rtnl.getLink(pod, made.index));
  const iface: Interface = { name: named.name, sandbox: netnsPath };
  if (made.mac !== undefined) iface.mac = made.mac;
  return { link: { index: made.index, name: named.name }, iface };
}

/**
 * DEL: removes `ifName` from the namespace at `netnsPath`. A namespace that is gone (or
 * no longer a network namespace) or a missing link is success.
 */
export async function deleteSublink(a: NetnsArgs, ifName: string): Promise<void> {
  const pod = openPodNetnsForDel(a);
  if (!pod) return;
  try {
    await nl(`failed to delete ${ifName}`, () => deleteLinkIfPresent(pod, ifName));
  } finally {
    pod.close();
  }
}

/**
 * CHECK of the link itself: `ifName` exists in `pod`, is of `kind`, in `mode`, and has the
 * MAC the previous result reported.
 */
export async function checkSublink(pod: Netns, ifName: string, kind: 'macvlan' | 'ipvlan', mode: string, mac: string | undefined): Promise<PodLink> {
  const link = await nlMaybe(`failed to look up ${ifName}`, () => rtnl.getLink(pod, ifName));
  if (!link) throw new CniError(Code.CheckFailed, `container interface ${ifName} not found`);
  if (link.info?.kind !== kind) throw new CniError(Code.CheckFailed, `container interface ${ifName} is not of type ${kind}`);
  const actual = link.info.mode ?? '';
  if (actual !== mode) {
    throw new CniError(Code.CheckFailed, `container ${kind} mode ${actual} does not match expected value: ${mode}`);
  }
  if (mac && link.mac?.toLowerCase() !== mac.toLowerCase()) {
    throw new CniError(Code.CheckFailed, `interface ${ifName} MAC ${mac} does not match container MAC ${link.mac ?? ''}`);
  }
  return { index: link.index, name: link.name };
}
