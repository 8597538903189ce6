// strand-portmap: hostPort for pods, the reference `portmap` plugin's configuration and
// behaviour (plugins/meta/portmap). Chained after an interface plugin (strand-bridge,
// strand-macvlan, strand-ipvlan or a reference one): it reads the pod's addresses from
// prevResult and forwards runtimeConfig.portMappings (the `portMappings` capability) of
// the node to them, with the iptables (iptables.ts) or nftables (nftables.ts) backend.
// Rules live in the node's network namespace, the one the plugin runs in.
//
// ADD: rules per pod address (first IPv4, first IPv6), stale UDP conntrack entries of
// the mapped ports removed (so traffic that hit the port before the rules existed is not
// blackholed), route_localnet on the link towards an IPv4 pod (the node reaching the
// port on 127.0.0.1, with snat); prevResult is the result. A failure removes what the
// ADD made. DEL: the pod's rules of both backends (found by name and comment, so DEL
// needs no addresses and works after the pod's netns is gone), idempotent. CHECK: the
// rules are there. GC: removes the rules of attachments that are no longer valid.
// STATUS: the backend's tools are installed.
import { CniError, Code } from '../../lib/cni/errors.ts';
import { pluginMain, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import { gcAttachments, type Result } from '../../lib/cni/types.ts';
import { deleteConntrack, IpProto } from '../../lib/netlink/conntrack.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { type Tools, toolsFor } from '../../lib/plugin/exec.ts';
import { nl, openHostNetns } from '../../lib/plugin/link.ts';
import { defaultBackendNow } from '../../lib/plugin/netfilter.ts';
import { withNetnsLock } from '../../lib/plugin/netns-lock.ts';
import { UndoStack } from '../../lib/plugin/undo.ts';
import { containerAddrs, parseConfig, type ContainerAddr, type PortmapConf } from './config.ts';
import * as ipt from './iptables.ts';
import * as nft from './nftables.ts';

export const NAME = 'strand-portmap';
export const VERSION = '0.1.0';

// What ADD and CHECK do through the configured backend (DEL and GC clean both).
const backends = {
  iptables: { forwardPorts: ipt.forwardPorts, removeSharedIfUnused: ipt.removeSharedIfUnused, checkPorts: ipt.checkPorts },
  nftables: { forwardPorts: nft.forwardPorts, removeSharedIfUnused: nft.removeSharedIfUnused, checkPorts: nft.checkPorts },
} as const;

function needPrevResult(conf: PortmapConf, what: string): Result {
  if (!conf.prevResult)
    throw new CniError(Code.InvalidNetworkConfig, what, 'prevResult: strand-portmap must be chained after a plugin that gives the pod addresses');
  return conf.prevResult;
}

/** Removes the pod's rules of both backends: the pod may have been added by another configuration or implementation. */
async function unforward(t: Tools, conf: PortmapConf, containerId: string): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all([
    ipt.unforwardPorts(t, conf.name, containerId).catch((e: unknown) => errors.push(e)),
    nft.unforwardPorts(t, containerId).catch((e: unknown) => errors.push(e)),
  ]);
  if (errors.length) throw errors[0];
}

/** Deletes the conntrack entries of the mapped UDP ports: they would keep steering packets past the new DNAT rules. */
async function deleteStaleUdp(host: Netns, conf: PortmapConf, cont: ContainerAddr, a: CmdArgs): Promise<void> {
  const ports = new Set(conf.portMappings.filter((m) => m.protocol === 'udp').map((m) => m.hostPort));
  if (!ports.size) return;
  try {
    const n = await deleteConntrack(host, cont.family, (e) => e.orig.proto === IpProto.udp && e.orig.dport !== undefined && ports.has(e.orig.dport));
    if (n) a.log?.debug(`deleted ${n} stale UDP conntrack entries (IPv${cont.family})`);
  } catch (e) {
    // informative only, as with the reference
    a.log?.warn(`failed to delete stale UDP conntrack entries for ${cont.ip}`, e);
  }
}

/** net.ipv4.conf.<link>.route_localnet=1 on the link the node reaches the pod through: 127.0.0.1 may then be DNATed to it. */
async function enableLocalnetRouting(host: Netns, cont: ContainerAddr): Promise<void> {
  let link: rtnl.Link | undefined;
  try {
    const route = await rtnl.getRoute(host, cont.ip);
    if (route.oif !== undefined) link = await rtnl.findLink(host, route.oif);
  } catch {
    return; // no route to the pod: nothing to enable (as the reference)
  }
  if (!link) return;
  const name = link.name;
  await nl(`unable to enable route_localnet on ${name}`, () => rtnl.sysctlSet(host, `net/ipv4/conf/${name}/route_localnet`, '1'));
}

async function cmdAdd(a: CmdArgs, conf: PortmapConf): Promise<Result> {
  const prev = needPrevResult(conf, 'must be called as chained plugin');
  if (!conf.portMappings.length) return prev;
  const addrs = containerAddrs(prev, a.ifName);
  const host = openHostNetns(a);
  const t = toolsFor(a);
  const undo = new UndoStack((m) => a.log?.warn(m));
  try {
    await withNetnsLock(host, 'portmap', () =>
      undo.run(async () => {
        const backend = backends[conf.backend];
        // The families' tables are independent: both at once. One transaction per
        // family, so a failed one changed nothing; a family that succeeded is undone.
        const results = await Promise.allSettled(
          addrs.map(async (cont) => {
            const made = await backend.forwardPorts(t, conf, a.containerId, cont);
            undo.push(`remove the hostPort rules of ${cont.ip}`, async () => {
              await unforward(t, conf, a.containerId);
              if (made.createdShared) await backend.removeSharedIfUnused(t, cont.family);
            });
          }),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        for (const cont of addrs) await deleteStaleUdp(host, conf, cont, a);
        const v4 = addrs.find((c) => c.family === 4);
        if (conf.snat && v4) await enableLocalnetRouting(host, v4);
      }),
    );
  } finally {
    host.close();
  }
  return prev;
}

async function cmdCheck(a: CmdArgs, conf: PortmapConf): Promise<void> {
  const prev = needPrevResult(conf, 'Required prevResult missing');
  if (!conf.portMappings.length) return;
  const host = openHostNetns(a);
  const t = toolsFor(a);
  try {
    await withNetnsLock(host, 'portmap', async () => {
      for (const cont of containerAddrs(prev, a.ifName)) {
        const problem = await backends[conf.backend].checkPorts(t, conf, a.containerId, cont);
        if (problem) throw new CniError(Code.CheckFailed, `could not check IPv${cont.family} hostPort rules`, problem);
      }
    });
  } finally {
    host.close();
  }
}

async function cmdDel(a: CmdArgs, conf: PortmapConf): Promise<void> {
  // as the reference: without mappings the ADD made nothing
  if (!conf.portMappings.length) return;
  const host = openHostNetns(a);
  try {
    await withNetnsLock(host, 'portmap', () => unforward(toolsFor(a), conf, a.containerId));
  } finally {
    host.close();
  }
}

async function cmdGc(a: CmdArgs, conf: PortmapConf): Promise<void> {
  const valid = gcAttachments(conf);
  const host = openHostNetns(a);
  const t = toolsFor(a);
  try {
    await withNetnsLock(host, 'portmap', async () => {
      // iptables rules name their network: always safe to collect. nftables rules name
      // only the container, so they are collected by networks using that backend.
      await ipt.gcPorts(t, conf.name, valid);
      if (conf.backend === 'nftables') await nft.gcPorts(t, valid);
    });
  } finally {
    host.close();
  }
  a.log?.debug(`GC kept the hostPort rules of ${valid.length} attachments`);
}

/** STATUS: the configured backend's tools must be there (code 50, "plugin not available", when not). */
async function cmdStatus(a: CmdArgs, conf: PortmapConf): Promise<void> {
  const tools = conf.backend === 'nftables' ? ['nft'] : ['iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore'];
  const t = toolsFor(a);
  const missing: string[] = [];
  for (const name of tools) if (!(await t.find(name))) missing.push(name);
  if (missing.length) throw new CniError(Code.PluginNotAvailable, `the ${conf.backend} backend is not available`, `not found on PATH: ${missing.join(', ')}`);
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain<PortmapConf>(
    { add: cmdAdd, del: cmdDel, check: cmdCheck, status: cmdStatus, gc: cmdGc },
    // the default backend (none configured) on the request's PATH
    { name: NAME, about: `strand portmap plugin v${VERSION}`, parseConfig: (raw, ctx) => parseConfig(raw, () => defaultBackendNow(ctx.env)) },
    io,
  );
}
