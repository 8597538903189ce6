// ADD: the bridge, a veth pair with the container end made directly inside the pod
// namespace, IPAM through the delegate, addresses and routes in the pod, the gateway on
// the bridge, forwarding, masquerading. Every side effect pushes an undo step; a failure
// anywhere unwinds them last-in-first-out (IPAM DEL included), so a failed ADD leaves
// no veth, no address and no reserved IP behind.
import { CniError, Code } from '../../lib/cni/errors.ts';
import { phaseTracer } from '../../lib/cni/log.ts';
import type { CmdArgs } from '../../lib/cni/skel.ts';
import type { Interface, IPConfig, Result, Route } from '../../lib/cni/types.ts';
import { addrOf, formatIP, network, nextIP, overlaps, parseCidr, tryParseCidr } from '../../lib/addr/cidr.ts';
import { configureIface } from '../../lib/plugin/ipam-config.ts';
import { createVeth, enableForwarding, ensureBridge, bridgePorts, nl, openHostNetns, openPodNetns, trySysctl, waitOperUp } from '../../lib/plugin/link.ts';
import { delegateIpamAdd, resultDns } from '../../lib/plugin/result.ts';
import { UndoStack } from '../../lib/plugin/undo.ts';
import { readPodMtu } from '../../lib/plugin/mtu.ts';
import { isNetlinkError } from '../../lib/netlink/errors.ts';
import type { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { checkAddConfig, resolveMac, type BridgeConf } from './config.ts';
import { toolsFor, type Tools } from '../../lib/plugin/exec.ts';
import { setupMasq, teardownMasq } from './masq.ts';
import { setupSpoofCheck, spoofRefId, teardownSpoofCheck } from './spoofchk.ts';
import { ensureVlanGateway, setPortVlans } from './vlan.ts';

/** Index of the container interface in the result's `interfaces` (bridge, host veth, container). */
export const CONTAINER_IF_INDEX = 2;

interface Gateway {
  family: 4 | 6;
  /** The gateway address with the pod subnet's prefix ("10.1.0.1/24"), for the bridge. */
  cidr: string;
}

/**
 * Per IP: the interface index, the gateway (first address of the subnet when IPAM gave
 * none and the bridge is the gateway), a default route per family when the bridge is the
 * default gateway and IPAM gave no default route with a gateway. Returns the addresses
 * the bridge must carry.
 */
export function calcGateways(result: Result, conf: Pick<BridgeConf, 'isGateway' | 'isDefaultGateway'>): Gateway[] {
  const gws: Gateway[] = [];
  const defaultFound = { 4: false, 6: false };
  result.routes ??= [];
  const routes: Route[] = result.routes;
  for (const ip of result.ips ?? []) {
    const c = parseCidr(ip.address);
    const fam = c.family;
    ip.interface = CONTAINER_IF_INDEX;
    if (ip.gateway === undefined && conf.isGateway) {
      const gw = nextIP(addrOf(network(c)));
      if (gw) ip.gateway = formatIP(gw);
    }
    if (conf.isDefaultGateway && !defaultFound[fam]) {
      defaultFound[fam] = routes.some((r) => {
        const d = tryParseCidr(r.dst);
        return r.gw !== undefined && d !== undefined && d.family === fam && d.prefix === 0;
      });
      if (!defaultFound[fam]) {
        const route: Route = { dst: fam === 4 ? '0.0.0.0/0' : '::/0' };
        if (ip.gateway !== undefined) route.gw = ip.gateway;
        routes.push(route);
        defaultFound[fam] = true;
      }
    }
    if (conf.isGateway && ip.gateway !== undefined) gws.push({ family: fam, cidr: `${ip.gateway}/${c.prefix}` });
  }
  return gws;
}

function sameAddr(a: string, b: string): boolean {
  const x = tryParseCidr(a);
  const y = tryParseCidr(b);
  return !!x && !!y && x.family === y.family && x.ip === y.ip && x.prefix === y.prefix;
}

/**
 * Puts gateway address `gw` on link `dev` (the bridge, or its VLAN gateway interface).
 * Present already: nothing to do. Another IPv4 address, or an overlapping IPv6 one:
 * replaced when forceAddress, else an error. Then the link's MAC is pinned to `pinMac`
 * (the bridge's own, read before ports joined) so it stops following port churn. Undo
 * removes the address again (restoring a replaced one) when no other port uses the link.
 */
async function ensureGatewayAddr(
  host: Netns,
  dev: rtnl.Link,
  gw: Gateway,
  force: boolean,
  pinMac: string | undefined,
  ownPort: number,
  undo: UndoStack,
): Promise<void> {
  const have = await nl(`could not get list of IP addresses of ${dev.name}`, () => rtnl.listAddrs(host, { link: dev.index, version: gw.family }));
  if (have.some((a) => sameAddr(a.address, gw.cidr))) return;
  for (const a of have) {
    if (gw.family === 4 || overlaps(a.address, gw.cidr)) {
      if (!force)
        throw new CniError(
          Code.InvalidNetworkConfig,
          `${JSON.stringify(dev.name)} already has an IP address different from ${gw.cidr}`,
          `forceAddress: ${a.address} is on ${dev.name}`,
        );
      await nl(`could not remove IP address from ${JSON.stringify(dev.name)}`, () => rtnl.delAddr(host, { link: dev.index, address: a.address }));
      undo.push(`restore ${a.address} on ${dev.name}`, () => rtnl.newAddr(host, { link: dev.index, address: a.address }));
    }
  }
  try {
    await rtnl.newAddr(host, { link: dev.index, address: gw.cidr });
    undo.push(`remove gateway ${gw.cidr} from ${dev.name}`, async () => {
      // Other pods already route through it: leave it.
      if ((await bridgePorts(host, dev.master ?? dev.index)).some((p) => p !== ownPort)) return;
      try {
        await rtnl.delAddr(host, { link: dev.index, address: gw.cidr });
      } catch (e) {
        if (!isNetlinkError(e, 'EADDRNOTAVAIL')) throw e;
      }
    });
  } catch (e) {
    if (!isNetlinkError(e, 'EEXIST')) {
      if (isNetlinkError(e))
        throw new CniError(Code.NetlinkFailure, `could not add IP address ${gw.cidr} to ${JSON.stringify(dev.name)}`, e.message, { cause: e });
      throw e;
    }
  }
  if (pinMac) await nl(`could not set ${dev.name}'s mac`, () => rtnl.setLink(host, dev.index, { mac: pinMac }));
}

/** What the steps of one ADD share. */
interface AddCtx {
  a: CmdArgs;
  conf: BridgeConf;
  pod: Netns;
  host: Netns;
  undo: UndoStack;
  tools: Tools;
}

type Veth = Awaited<ReturnType<typeof createVeth>>;
type Bridge = Awaited<ReturnType<typeof ensureBridge>>;

export async function cmdAdd(a: CmdArgs, conf: BridgeConf): Promise<Result> {
  const phases = phaseTracer(a.log);
  checkAddConfig(conf);
  const mac = resolveMac(conf, a.args);
  // an explicit mtu wins; else the node's pod MTU from the agent's file, when named
  const mtu = conf.mtu || (conf.mtuFile !== undefined ? readPodMtu(conf.mtuFile) : 0);
  a.log?.debug(`mtu ${mtu || 'kernel default'}${conf.mtu ? '' : conf.mtuFile !== undefined ? ` from ${conf.mtuFile}` : ''}`);
  const pod = openPodNetns(a);
  const host = openHostNetns(a);
  const undo = new UndoStack((m) => a.log?.warn(m));
  const c: AddCtx = { a, conf, pod, host, undo, tools: toolsFor(a) };
  try {
    return await undo.run(async () => {
      // 1. the bridge
      const br = await ensureBridge(host, { name: conf.bridge, mtu, promisc: conf.promiscMode, vlanFiltering: conf.vlanFiltering }, undo);
      const brMacAtStart = br.mac;
      a.log?.debug(`bridge ${br.name} index ${br.index} mtu ${br.mtu}`);
      phases.mark('bridge');

      // 2. the veth pair: container end created inside the pod, host end on the bridge
      const veth = await addVeth(c, br, mtu, mac);
      phases.mark('veth');

      const hostIf: Interface = { name: veth.host.name };
      // the name the kernel gave the container end, as read back
      const contIf: Interface = { name: veth.cont.name, sandbox: a.netns };
      if (veth.cont.mac) contIf.mac = veth.cont.mac;
      const brIf: Interface = { name: br.name };
      const result: Result = { cniVersion: '1.1.0', interfaces: [brIf, hostIf, contIf] };

      // 3. MAC spoof check
      if (conf.macspoofchk) await addSpoofCheck(c, veth);

      if (conf.ipamType) {
        // 4. IPAM
        const gateways = await addIpam(c, conf.ipamType, result);
        phases.mark('ipam');
        // 5. the pod side: sysctls, addresses, up, routes
        await configurePod(c, veth, result);
        phases.mark('pod');
        // 6. the gateway on the bridge (or its VLAN interface), forwarding
        if (conf.isGateway) {
          await addGateways(c, br, brMacAtStart, veth, gateways, result);
          phases.mark('gateway');
        }
        // 7. masquerading
        if (conf.ipMasq) {
          await addMasq(c, result);
          phases.mark('masq');
        }
      } else if (!conf.disableContainerInterface) {
        await nl(`failed to set ${JSON.stringify(a.ifName)} up`, () => rtnl.setLink(pod, veth.cont.index, { up: true }));
      }

      // 8. the port must be up; then the final MACs
      await finalMacs(c, br, veth, hostIf, brIf);
      const dns = resultDns(conf.dns, result.dns);
      if (dns) result.dns = dns;
      phases.mark('final');
      phases.done('ADD phases (ms)');
      return result;
    });
  } finally {
    pod.close();
    host.close();
  }
}

/** The veth pair on the bridge, with the port options (hairpin, isolation, VLANs). */
async function addVeth({ a, conf, pod, host, undo }: AddCtx, br: Bridge, mtu: number, mac: string | undefined): Promise<Veth> {
  const veth = await createVeth(host, pod, { ifName: a.ifName, mtu, ...(mac ? { mac } : {}), master: br.index, hostUp: true }, undo);
  if (conf.hairpinMode || conf.portIsolation) {
    await nl(`failed to set bridge port options on ${veth.host.name}`, () =>
      rtnl.setLink(host, veth.host.index, { bridgePort: { hairpin: conf.hairpinMode, isolated: conf.portIsolation } }),
    );
  }
  if (conf.vlanFiltering) await setPortVlans(host, veth.host.index, conf);
  a.log?.debug(
    `veth ${veth.host.name} (index ${veth.host.index}) on ${br.name}, peer ${a.ifName} (index ${veth.cont.index}, mac ${veth.cont.mac ?? '?'}) in ${a.netns}`,
  );
  return veth;
}

async function addSpoofCheck({ a, undo, tools }: AddCtx, veth: Veth): Promise<void> {
  const ref = spoofRefId(a.containerId, a.ifName);
  await setupSpoofCheck(tools, veth.host.name, veth.cont.mac ?? '', ref);
  a.log?.debug(`macspoofchk rules for ${veth.host.name}`);
  undo.push('remove macspoofchk rules', () => teardownSpoofCheck(tools, ref));
}

/** The IPAM delegate's addresses, routes and DNS into `result`; the gateways they imply. */
async function addIpam({ a, conf, undo }: AddCtx, ipamType: string, result: Result): Promise<Gateway[]> {
  const ipam = await delegateIpamAdd(a, ipamType, undo);
  result.ips = (ipam.ips ?? []).map((ip): IPConfig => ({ ...ip }));
  result.routes = (ipam.routes ?? []).map((r) => ({ ...r }));
  if (ipam.dns) result.dns = ipam.dns;
  return calcGateways(result, conf);
}

/** The pod's interface: DAD and ARP sysctls, addresses, up, routes. */
async function configurePod({ a, conf, pod }: AddCtx, veth: Veth, result: Result): Promise<void> {
  if (conf.enabledad) {
    await trySysctl(pod, `net/ipv6/conf/${a.ifName}/enhanced_dad`, '1');
    await trySysctl(pod, `net/ipv6/conf/${a.ifName}/accept_dad`, '1');
  } else {
    await trySysctl(pod, `net/ipv6/conf/${a.ifName}/accept_dad`, '0');
  }
  await trySysctl(pod, `net/ipv4/conf/${a.ifName}/arp_notify`, '1');
  await configureIface(pod, { index: veth.cont.index, name: a.ifName }, result, CONTAINER_IF_INDEX, a.log);
}

/** The gateway addresses on the bridge (or its VLAN interface) and forwarding per family. */
async function addGateways(
  { a, conf, host, undo }: AddCtx,
  br: Bridge,
  brMacAtStart: string | undefined,
  veth: Veth,
  gateways: Gateway[],
  result: Result,
): Promise<void> {
  let gwDev = br;
  let gwPin = brMacAtStart;
  if (conf.vlan !== 0 && gateways.length) {
    const v = await ensureVlanGateway(host, br, conf, undo);
    gwDev = v.link;
    gwPin = undefined;
    result.interfaces!.push(v.iface);
  }
  for (const fam of [4, 6] as const) {
    const mine = gateways.filter((g) => g.family === fam);
    for (const g of mine) {
      await ensureGatewayAddr(host, gwDev, g, conf.forceAddress, gwPin, veth.host.index, undo);
      a.log?.debug(`gateway ${g.cidr} on ${gwDev.name}`);
    }
    if (mine.length) await enableForwarding(host, fam, undo);
  }
}

async function addMasq({ a, conf, undo, tools }: AddCtx, result: Result): Promise<void> {
  const addrs = (result.ips ?? []).map((ip) => ip.address);
  undo.push('remove masquerade rules', () => teardownMasq(tools, conf.name, a.ifName, a.containerId));
  await setupMasq(tools, conf.ipMasqBackend, addrs, conf.name, a.ifName, a.containerId);
  a.log?.debug(`ipMasq rules (${conf.ipMasqBackend ?? 'iptables'}) for ${addrs.join(', ')}`);
}

/**
 * Waits for the host port to be up, then reads the final MACs: the host end's may change,
 * the bridge's follows its lowest port until an address pins it.
 */
async function finalMacs({ conf, host }: AddCtx, br: Bridge, veth: Veth, hostIf: Interface, brIf: Interface): Promise<void> {
  let hostLink = veth.host;
  if (!conf.disableContainerInterface) hostLink = await waitOperUp(host, veth.host.index);
  else hostLink = await nl(`failed to look up ${veth.host.name}`, () => rtnl.getLink(host, veth.host.index));
  if (hostLink.mac) hostIf.mac = hostLink.mac;
  const brNow = await nl(`could not look up bridge ${conf.bridge}`, () => rtnl.getLink(host, br.index));
  if (brNow.mac) brIf.mac = brNow.mac;
}
