// Link helpers for the plugins, built on rtnl: a netlink step that fails as a CniError
// naming what failed, bridge ensure/cleanup, a veth pair whose container end is created
// directly inside the pod namespace, forwarding sysctls, waiting for a link to come up.
// Every helper that changes the host can push its own undo onto an UndoStack.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CniError, Code, invalidNetns } from '../cni/errors.ts';
import type { CmdArgs } from '../cni/skel.ts';
import { isNetlinkError, NetlinkError } from '../netlink/errors.ts';
import { Netns } from '../netlink/netns.ts';
import * as rtnl from '../netlink/rtnl.ts';
import type { UndoStack } from './undo.ts';

/** A NetlinkError as the CniError a plugin reports (code 101), saying what failed. */
export function netlinkFailure(what: string, e: NetlinkError): CniError {
  return new CniError(Code.NetlinkFailure, what, e.message, { cause: e });
}

/** What opens a request's namespaces: CNI_NETNS, and under a daemon the descriptors the shim passed. */
export type NetnsArgs = Pick<CmdArgs, 'netns' | 'namespaces'>;

/** The pod's namespace as a Netns named by CNI_NETNS (through the shim's descriptor under a daemon). */
function openPod(a: NetnsArgs): Netns {
  const ns = a.namespaces;
  if (ns?.podErrno !== undefined) throw new NetlinkError('netns.open', ns.podErrno, `${a.netns}: opened by the shim`);
  return ns?.pod ? Netns.open(ns.pod, a.netns) : Netns.open(a.netns);
}

/** Opens the pod's namespace (CNI_NETNS); missing, not a namespace or unusable is CniError 4 naming CNI_NETNS. */
export function openPodNetns(a: NetnsArgs): Netns {
  try {
    return openPod(a);
  } catch (e) {
    if (isNetlinkError(e)) throw invalidNetns(a.netns, e.code, e);
    throw e;
  }
}

/**
 * For DEL: the pod's namespace, or undefined when it is gone: no path, a missing path, or
 * one that is no longer a network namespace (unmounted, leaving a plain file). Any other
 * failure is CniError 4 naming CNI_NETNS.
 */
export function openPodNetnsForDel(a: NetnsArgs): Netns | undefined {
  if (!a.netns) return undefined;
  try {
    return openPod(a);
  } catch (e) {
    if (isNetlinkError(e, 'ENOENT') || isNetlinkError(e, 'EINVAL')) return undefined;
    if (isNetlinkError(e)) throw invalidNetns(a.netns, e.code, e);
    throw e;
  }
}

/**
 * The plugin's "host" namespace: the one this process runs in, or under a daemon the
 * namespace of the shim's caller (the runtime's; the daemon's own in a deployment).
 */
export function openHostNetns(a: NetnsArgs): Netns {
  const ns = a.namespaces;
  if (!ns || ns.hostIsOwn) return Netns.current();
  try {
    return Netns.open(ns.host, "the caller's network namespace");
  } catch (e) {
    if (isNetlinkError(e)) throw netlinkFailure("cannot open the caller's network namespace", e);
    throw e;
  }
}

/** Runs one netlink step; a NetlinkError becomes CniError 101 with `what` as the message. */
export async function nl<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isNetlinkError(e)) throw netlinkFailure(what, e);
    throw e;
  }
}

/** Like nl() but "no such device" is undefined instead of an error. */
export async function nlMaybe<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (isNetlinkError(e, 'ENODEV')) return undefined;
    if (isNetlinkError(e)) throw netlinkFailure(what, e);
    throw e;
  }
}

// ------------------------------------------------------------------------- bridge ----

export interface BridgeSpec {
  name: string;
  /** 0 or undefined: the kernel's default. Only used when the bridge is created. */
  mtu?: number;
  promisc?: boolean;
  /** Only used when the bridge is created. */
  vlanFiltering?: boolean;
}

/**
 * The bridge named `spec.name`, made when missing (EEXIST from a concurrent ADD that won
 * the race is fine); `created` when this call made it.
 */
async function findOrCreateBridge(host: Netns, spec: BridgeSpec): Promise<{ link: rtnl.Link; created: boolean }> {
  // Usually the bridge exists: look first, create only when missing.
  const found = await nlMaybe(`could not look up bridge ${JSON.stringify(spec.name)}`, () => rtnl.getLink(host, spec.name));
  if (found) return { link: found, created: false };
  let created = false;
  try {
    const link: rtnl.NewLinkSpec = { name: spec.name, info: spec.vlanFiltering ? { kind: 'bridge', vlanFiltering: true } : { kind: 'bridge' } };
    if (spec.mtu) link.mtu = spec.mtu;
    await rtnl.newLink(host, link);
    created = true;
  } catch (e) {
    if (!isNetlinkError(e, 'EEXIST')) {
      if (isNetlinkError(e)) throw netlinkFailure(`could not add bridge ${JSON.stringify(spec.name)}`, e);
      throw e;
    }
  }
  return { link: await nl(`could not look up bridge ${JSON.stringify(spec.name)}`, () => rtnl.getLink(host, spec.name)), created };
}

/**
 * Undo for a bridge that was there before: put back what this ADD changed on it
 * (accept_ra, promiscuity, up). Its MAC too: a bridge whose only port leaves again drops
 * to 00:00:00:00:00:00.
 */
function pushBridgeRestore(host: Netns, before: rtnl.Link, change: rtnl.SetLinkSpec, ra: { key: string; before: string | undefined }, undo: UndoStack): void {
  undo.push(`restore bridge ${before.name}`, async () => {
    if (ra.before !== undefined && ra.before !== '0') await trySysctl(host, ra.key, ra.before);
    const back: rtnl.SetLinkSpec = {};
    if (change.promisc) back.promisc = false;
    if (change.up) back.up = false;
    const now = await rtnl.findLink(host, before.index);
    if (!now) return;
    if (before.mac && now.mac !== before.mac && (await bridgePorts(host, before.index)).length === 0) back.mac = before.mac;
    if (Object.keys(back).length) await rtnl.setLink(host, before.index, back);
  });
}

/**
 * Makes sure bridge `spec.name` exists and is up (creating it with the given MTU and
 * VLAN filtering), promiscuous when asked, accept_ra off (we own its routes). A link of
 * that name that is not a bridge is an error. When this call created the bridge it pushes
 * an undo that deletes it again, unless other ports have joined it by then.
 */
export async function ensureBridge(host: Netns, spec: BridgeSpec, undo?: UndoStack): Promise<rtnl.Link> {
  const { link: br, created } = await findOrCreateBridge(host, spec);
  if (created && undo) {
    const index = br.index;
    undo.push(`delete bridge ${spec.name}`, () => deleteBridgeIfUnused(host, index));
  }
  if (br.kind !== 'bridge') {
    throw new CniError(
      Code.InvalidNetworkConfig,
      `${JSON.stringify(spec.name)} already exists but is not a bridge`,
      `bridge: ${spec.name} is a ${br.kind ?? 'device'}`,
    );
  }
  const change: rtnl.SetLinkSpec = {};
  if (spec.promisc && !br.promisc) change.promisc = true;
  if (!br.up) change.up = true;
  // We own the routes of this interface: no router advertisements (errors ignored, as
  // the reference does: IPv6 may be disabled).
  const raKey = `net/ipv6/conf/${spec.name}/accept_ra`;
  let raBefore: string | undefined;
  if (!created) {
    try {
      raBefore = await rtnl.sysctlGet(host, raKey);
    } catch {
      // no IPv6 on this link
    }
  }
  if (raBefore !== '0') await trySysctl(host, raKey, '0');
  if (Object.keys(change).length) {
    await nl(`could not set bridge ${JSON.stringify(spec.name)} up`, () => rtnl.setLink(host, br.index, change));
  }
  if (!created && undo) pushBridgeRestore(host, br, change, { key: raKey, before: raBefore }, undo);
  return Object.keys(change).length ? { ...br, up: true, promisc: br.promisc || !!change.promisc } : br;
}

/** Indexes of the links enslaved to bridge `bridgeIndex`. */
export async function bridgePorts(ns: Netns, bridgeIndex: number): Promise<number[]> {
  return (await rtnl.listLinks(ns)).filter((l) => l.master === bridgeIndex).map((l) => l.index);
}

/** Deletes a bridge this ADD created, unless someone else attached a port meanwhile. */
async function deleteBridgeIfUnused(host: Netns, index: number): Promise<void> {
  if ((await bridgePorts(host, index)).length) return;
  try {
    await rtnl.delLink(host, index);
  } catch (e) {
    if (!isNetlinkError(e, 'ENODEV')) throw e;
  }
}

// --------------------------------------------------------------------------- veth ----

/** "veth" + 8 random hex digits, as the reference plugins name host-side veths. */
function randomVethName(): string {
  return `veth${randomBytes(4).toString('hex')}`;
}

export interface VethSpec {
  /** The container end's name inside `pod` (CNI_IFNAME). */
  ifName: string;
  /** The host end's name; default random veth<hex> (retried on a clash). */
  hostName?: string;
  mtu?: number;
  /** MAC of the container end. */
  mac?: string;
  /** Enslave the host end to this bridge at creation. */
  master?: number;
  /** Bring the host end up at creation. */
  hostUp?: boolean;
}

export interface VethPair {
  host: rtnl.Link;
  cont: rtnl.Link;
}

/**
 * Creates a veth pair in one RTM_NEWLINK: the host end in `host` (optionally enslaved to
 * a bridge and up), the container end directly inside `pod` as `spec.ifName` (down). A
 * clash on the random host name is retried; a clash on the container name is CniError 4.
 * The host end gets accept_ra=0. Pushes an undo deleting the pair.
 */
export async function createVeth(host: Netns, pod: Netns, spec: VethSpec, undo?: UndoStack): Promise<VethPair> {
  for (let attempt = 0; ; attempt++) {
    const hostName = spec.hostName ?? randomVethName();
    const peer: rtnl.VethPeerSpec = { name: spec.ifName, netns: pod };
    if (spec.mtu) peer.mtu = spec.mtu;
    if (spec.mac) peer.mac = spec.mac;
    const link: rtnl.NewLinkSpec = { name: hostName, info: { kind: 'veth', peer } };
    if (spec.mtu) link.mtu = spec.mtu;
    if (spec.master !== undefined) link.master = spec.master;
    if (spec.hostUp) link.up = true;
    try {
      await rtnl.newLink(host, link);
    } catch (e) {
      if (isNetlinkError(e, 'EEXIST')) {
        if (spec.hostName === undefined && attempt < 10 && (await rtnl.findLink(host, hostName))) continue;
        if (!(await rtnl.findLink(host, hostName))) {
          throw new CniError(
            Code.InvalidEnvironment,
            `container veth name ${JSON.stringify(spec.ifName)} already exists`,
            `CNI_IFNAME: ${spec.ifName} exists in ${pod}`,
            { cause: e },
          );
        }
        throw new CniError(Code.NetlinkFailure, `host veth name ${JSON.stringify(hostName)} already exists`, e.message, { cause: e });
      }
      if (isNetlinkError(e)) throw netlinkFailure(`failed to create veth pair ${hostName}/${spec.ifName}`, e);
      throw e;
    }
    undo?.push(`delete veth ${spec.ifName}`, async () => {
      await deleteLinkIfPresent(pod, spec.ifName);
    });
    // We own the routes of the host end: no router advertisements (as the reference).
    await trySysctl(host, `net/ipv6/conf/${hostName}/accept_ra`, '0');
    const hostLink = await nl(`failed to look up ${hostName}`, () => rtnl.getLink(host, hostName));
    // The container end by the peer index the host end names: the name the kernel gave it.
    const cont = await nl(`failed to look up ${spec.ifName} in ${pod}`, () => rtnl.getLink(pod, hostLink.parent ?? spec.ifName));
    return { host: hostLink, cont };
  }
}

/** Deletes a link; a link that is already gone is fine. */
export async function deleteLinkIfPresent(ns: Netns, ref: rtnl.LinkRef): Promise<boolean> {
  try {
    await rtnl.delLink(ns, ref);
    return true;
  } catch (e) {
    if (isNetlinkError(e, 'ENODEV')) return false;
    throw e;
  }
}

// ------------------------------------------------------------------------ sysctls ----

/** Sets a sysctl, ignoring failures (the reference plugins ignore these too). */
export async function trySysctl(ns: Netns, name: string, value: string): Promise<boolean> {
  try {
    await rtnl.sysctlSet(ns, name, value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Turns on IPv4 or IPv6 forwarding in `ns` (net.ipv4.ip_forward,
 * net.ipv6.conf.all.forwarding) unless it is on; pushes an undo turning it back off
 * when this call turned it on.
 */
export async function enableForwarding(ns: Netns, family: 4 | 6, undo?: UndoStack): Promise<void> {
  const key = family === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding';
  const cur = await nl(`failed to read ${key}`, () => rtnl.sysctlGet(ns, key));
  if (cur === '1') return;
  await nl(`failed to enable forwarding (${key})`, () => rtnl.sysctlSet(ns, key, '1'));
  undo?.push(`restore ${key}=${cur}`, () => rtnl.sysctlSet(ns, key, cur));
}

// ----------------------------------------------------------------------- waiting ----

/**
 * Waits until link `index` reports operstate up (a veth once both ends are up; the kernel
 * signals it through linkwatch). Returns the link; throws CniError 101 after `timeoutMs`.
 */
export async function waitOperUp(ns: Netns, index: number, timeoutMs = 2500): Promise<rtnl.Link> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 200)) {
    const l = await nl('failed to look up bridge port', () => rtnl.getLink(ns, index));
    if (l.operstate === 'up') return l;
    if (Date.now() >= deadline) throw new CniError(Code.NetlinkFailure, `bridge port in error state: ${l.operstate}`, `${l.name} did not come up`);
    await sleep(delay);
  }
}
