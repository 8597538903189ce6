// loopback: brings `lo` up in the pod's network namespace, as the reference `loopback`
// plugin does. Container runtimes run it for every pod from the CNI bin dir themselves
// (containerd's CRI: a network {"cniVersion": "0.3.1", "name": "cni-loopback",
// "plugins": [{"type": "loopback"}]} with CNI_IFNAME=lo), so a node needs a `loopback`
// executable there even when its conflist never names it.
//
// ADD: `lo` up (whatever CNI_IFNAME says), every address on it must be a loopback one;
// the result is prevResult unchanged when there is one, else `lo` with MAC
// 00:00:00:00:00:00 and its first IPv4 and first IPv6 address. CHECK: `lo` is up.
// DEL: `lo` down; no CNI_NETNS, or one that is gone, is success. STATUS, GC: nothing
// to do. No options.
import { CniError, Code } from '../../lib/cni/errors.ts';
import { pluginMain, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import type { IPConfig, NetConf, Result } from '../../lib/cni/types.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { nl, openPodNetns, openPodNetnsForDel } from '../../lib/plugin/link.ts';
import { UndoStack } from '../../lib/plugin/undo.ts';

export const NAME = 'loopback';
export const VERSION = '0.1.0';
const LO = 'lo';

/** A loopback address as Go's net.IP.IsLoopback: 127.0.0.0/8 or ::1. */
export function isLoopbackAddress(ip: string): boolean {
  return ip === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(ip);
}

async function getLo(ns: Netns): Promise<rtnl.Link> {
  return await nl(`failed to look up ${LO}`, () => rtnl.getLink(ns, LO));
}

/** lo's addresses of one family; a non-loopback one is an error (the namespace is not what it seems). */
async function loAddrs(ns: Netns, index: number, version: 4 | 6): Promise<rtnl.Addr[]> {
  const addrs = await nl(`failed to list the addresses of ${LO}`, () => rtnl.listAddrs(ns, { link: index, version }));
  for (const a of addrs) {
    if (!isLoopbackAddress(a.ip)) {
      throw new CniError(Code.InvalidEnvironment, `loopback interface found with non-loopback address ${JSON.stringify(a.ip)}`, `${LO}: ${a.address}`);
    }
  }
  return addrs;
}

async function cmdAdd(a: CmdArgs, conf: NetConf): Promise<Result> {
  const pod = openPodNetns(a);
  const undo = new UndoStack((m) => a.log?.warn(m));
  try {
    const ips = await undo.run(async () => {
      const lo = await getLo(pod);
      if (!lo.up) {
        await nl(`failed to set ${LO} up`, () => rtnl.setLink(pod, lo.index, { up: true }));
        undo.push(`set ${LO} down again`, () => rtnl.setLink(pod, lo.index, { up: false }));
      }
      const out: IPConfig[] = [];
      for (const version of [4, 6] as const) {
        const first = (await loAddrs(pod, lo.index, version))[0];
        if (first) out.push({ address: first.address, interface: 0 });
      }
      return out;
    });
    // Chained after another plugin: pass its result on unchanged.
    if (conf.prevResult) return conf.prevResult;
    const result: Result = { cniVersion: conf.cniVersion, interfaces: [{ name: LO, mac: '00:00:00:00:00:00', sandbox: a.netns }] };
    if (ips.length) result.ips = ips;
    return result;
  } finally {
    pod.close();
  }
}

async function cmdCheck(a: CmdArgs): Promise<void> {
  const pod = openPodNetns(a);
  try {
    if (!(await getLo(pod)).up) throw new CniError(Code.CheckFailed, 'loopback interface is down', `${LO} in ${a.netns}`);
  } finally {
    pod.close();
  }
}

async function cmdDel(a: CmdArgs): Promise<void> {
  const pod = openPodNetnsForDel(a);
  if (!pod) return; // no namespace given, or it is gone already
  try {
    const lo = await nl(`failed to look up ${LO}`, () => rtnl.findLink(pod, LO));
    if (lo?.up) await nl(`failed to set ${LO} down`, () => rtnl.setLink(pod, lo.index, { up: false }));
  } finally {
    pod.close();
  }
}

const nothing = async (): Promise<void> => {};

export function main(io: PluginIO): Promise<number> {
  return pluginMain<NetConf>(
    { add: cmdAdd, del: cmdDel, check: cmdCheck, status: nothing, gc: nothing },
    { name: NAME, about: `strand loopback plugin v${VERSION}`, parseConfig: (raw) => raw },
    io,
  );
}
