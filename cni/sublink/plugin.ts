// ADD and CHECK of a macvlan/ipvlan attachment, shared by strand-macvlan and
// strand-ipvlan (their main.ts supply the link kind, mode and where the addresses come
// from). ADD order, each side effect followed by its undo step:
//   1. master looked up, MTU checked against it (CniError 7 before anything is made)
//   2. link created in the pod under a temporary name, renamed   undo: delete the link
//   3. IPAM ADD (a failed ADD is followed by IPAM DEL)            undo: IPAM DEL
//   4. arp_notify/ndisc_notify, addresses, link up, routes (all on the link: step 2's
//      undo removes them)
import { CniError, Code } from '../../lib/cni/errors.ts';
import { delegateCheck, delegateDel, delegateGc, delegateStatus } from '../../lib/cni/invoke.ts';
import type { CmdArgs } from '../../lib/cni/skel.ts';
import { CURRENT_VERSION, type NetConf, type Result } from '../../lib/cni/types.ts';
import { delegateIpamAdd, resultDns } from '../../lib/plugin/result.ts';
import { UndoStack } from '../../lib/plugin/undo.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { checkIface, configureIface } from '../../lib/plugin/ipam-config.ts';
import { nl, openHostNetns, openPodNetns, trySysctl } from '../../lib/plugin/link.ts';
import { checkMtu, checkSublink, createSublink, deleteSublink, resolveMaster } from './link.ts';

/** Config fields both plugins share. */
export interface SublinkConf extends NetConf {
  master?: string;
  mtu?: number;
  linkInContainer?: boolean;
}

/** The IPAM plugin to delegate to; undefined for `"ipam": {}` or no ipam at all. */
export function ipamType(conf: NetConf): string | undefined {
  const t = conf.ipam?.type;
  return typeof t === 'string' && t !== '' ? t : undefined;
}

export type AddressSource =
  /** IPAM when configured, else an L2-only interface (link up, no address). */
  | { from: 'ipam' }
  /** Addresses and routes of a previous plugin's result (chained ipvlan). */
  | { from: 'prev'; result: Result };

export interface AddSpec {
  info: rtnl.MacvlanInfo | rtnl.IpvlanInfo;
  /** Master name from the chain (ipvlan) when the config has none. */
  master?: string | undefined;
  mtu: number | undefined;
  mac?: string | undefined;
  addresses: AddressSource;
}

async function setNotify(pod: Netns, ifName: string, a: CmdArgs): Promise<void> {
  // As the reference: best effort (a kernel without IPv6 has no ndisc_notify).
  for (const key of [`net/ipv4/conf/${ifName}/arp_notify`, `net/ipv6/conf/${ifName}/ndisc_notify`]) {
    if (!(await trySysctl(pod, key, '1'))) a.log?.warn(`cannot set ${key}`);
  }
}

/** ADD: the link in the pod, its addresses and routes; the 1.1.0 result. */
export async function addSublink(a: CmdArgs, conf: SublinkConf, spec: AddSpec): Promise<Result> {
  const host = openHostNetns(a);
  const pod = openPodNetns(a);
  const undo = new UndoStack((m) => a.log?.warn(m));
  try {
    return await undo.run(async () => {
      const linkInContainer = conf.linkInContainer === true;
      const master = await resolveMaster(host, pod, { master: conf.master || spec.master, linkInContainer });
      checkMtu(spec.mtu, master);
      const { link, iface } = await createSublink(
        host,
        pod,
        a.ifName,
        a.netns,
        { info: spec.info, master, linkInContainer, mtu: spec.mtu, mac: spec.mac },
        undo,
      );
      a.log?.debug(`${spec.info.kind} ${a.ifName} (index ${link.index}, mac ${iface.mac ?? '?'}) on ${master.name} in ${a.netns}`);
      const result: Result = { cniVersion: CURRENT_VERSION, interfaces: [iface] };

      let source: Result | undefined;
      const type = ipamType(conf);
      if (spec.addresses.from === 'prev') {
        source = spec.addresses.result;
      } else if (type) {
        source = await delegateIpamAdd(a, type, undo);
      }

      if (source) {
        // Every address goes on this one interface (index 0 of our result).
        result.ips = (source.ips ?? []).map((ip) => ({ ...ip, interface: 0 }));
        if (source.routes?.length) result.routes = source.routes;
        await setNotify(pod, a.ifName, a);
        await configureIface(pod, link, result, 0, a.log);
      } else {
        await nl(`failed to set ${a.ifName} up`, () => rtnl.setLink(pod, link.index, { up: true }));
      }
      // The config's DNS when it sets any (the reference macvlan/ipvlan always report the
      // config's, dropping IPAM's), else IPAM's: lib/plugin/result.ts.
      const dns = resultDns(conf.dns, source?.dns);
      if (dns) result.dns = dns;
      return result;
    });
  } finally {
    pod.close();
    host.close();
  }
}

/**
 * CHECK of the attachment against prevResult: the interface named CNI_IFNAME in this
 * sandbox, the configured master, the link's kind, mode and MAC, its addresses and the
 * routes.
 */
async function checkLink(a: CmdArgs, conf: SublinkConf, kind: 'macvlan' | 'ipvlan', mode: string): Promise<void> {
  const prev = conf.prevResult;
  if (!prev) throw new CniError(Code.InvalidNetworkConfig, 'required prevResult missing', 'prevResult: needed by CHECK');
  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === a.ifName && i.sandbox === a.netns);
  if (idx < 0) {
    throw new CniError(Code.CheckFailed, `no interface ${a.ifName} with sandbox ${a.netns} in prevResult`);
  }
  const host = openHostNetns(a);
  const pod = openPodNetns(a);
  try {
    // A configured master must exist. Without one (default route, chained) there is
    // nothing to compare: a macvlan/ipvlan link disappears with its master anyway.
    if (conf.master) await resolveMaster(host, pod, { master: conf.master, linkInContainer: conf.linkInContainer === true });
    const link = await checkSublink(pod, a.ifName, kind, mode, prev.interfaces![idx]!.mac);
    await checkIface(pod, link, prev, idx);
  } finally {
    pod.close();
    host.close();
  }
}

/** CHECK: IPAM's CHECK first (as the reference), then the link against prevResult. */
export async function checkAttachment(a: CmdArgs, conf: SublinkConf, kind: 'macvlan' | 'ipvlan', mode: string): Promise<void> {
  const type = ipamType(conf);
  if (type) await delegateCheck(type, a.stdinData, a);
  await checkLink(a, conf, kind, mode);
}

/**
 * DEL, idempotent: the link goes (a missing namespace or link is success), and IPAM DEL
 * always runs, whatever happened to the link.
 */
export async function delAttachment(a: CmdArgs, conf: SublinkConf): Promise<void> {
  let linkErr: unknown;
  try {
    await deleteSublink(a, a.ifName);
    a.log?.debug(`DEL: ${a.ifName} removed (or already gone)`);
  } catch (e) {
    linkErr = e;
  }
  const type = ipamType(conf);
  if (type) await delegateDel(type, a.stdinData, a);
  if (linkErr !== undefined) throw linkErr;
}

/**
 * STATUS: the master is usable (when `checkMaster`) and IPAM answers its own STATUS.
 * With linkInContainer the master lives in pods, which STATUS does not name.
 */
export async function statusAttachment(a: CmdArgs, conf: SublinkConf, checkMaster: boolean): Promise<void> {
  if (checkMaster && !conf.linkInContainer) await statusMaster(a, conf);
  const type = ipamType(conf);
  if (type) await delegateStatus(type, a.stdinData, a);
}

/** GC: the links live in the pods' namespaces and go with them; only IPAM keeps state. */
export async function gcAttachments(a: CmdArgs, conf: SublinkConf): Promise<void> {
  const type = ipamType(conf);
  if (type) await delegateGc(type, a.stdinData, a);
}

/** Code 50 unless the master (or a default route to take it from) exists in the host namespace. */
async function statusMaster(a: CmdArgs, conf: SublinkConf): Promise<void> {
  const host = openHostNetns(a);
  try {
    await resolveMaster(host, host, { master: conf.master, linkInContainer: false });
  } catch (e) {
    if (e instanceof CniError) throw new CniError(Code.PluginNotAvailable, 'master link not available', e.details || e.msg, { cause: e });
    throw e;
  } finally {
    host.close();
  }
}
