// CHECK: IPAM's CHECK first, then what ADD made, against prevResult: the bridge (a
// bridge, same MAC, promiscuous as configured), the container interface in the right
// sandbox (a veth, same MAC), the host veth that is its peer and a port of the bridge,
// and the pod's addresses and routes.
import { CniError, Code } from '../../lib/cni/errors.ts';
import { delegateCheck } from '../../lib/cni/invoke.ts';
import type { CmdArgs } from '../../lib/cni/skel.ts';
import type { Interface } from '../../lib/cni/types.ts';
import { checkIface } from '../../lib/plugin/ipam-config.ts';
import { nl, nlMaybe, openHostNetns, openPodNetns } from '../../lib/plugin/link.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { CONTAINER_IF_INDEX } from './add.ts';
import type { BridgeConf } from './config.ts';

function fail(msg: string): CniError {
  return new CniError(Code.CheckFailed, msg);
}

function sameMac(want: string | undefined, have: string | undefined): boolean {
  return want === undefined || want === '' || want.toLowerCase() === (have ?? '').toLowerCase();
}

export async function cmdCheck(a: CmdArgs, conf: BridgeConf): Promise<void> {
  if (conf.ipamType) await delegateCheck(conf.ipamType, a.stdinData, a);
  const prev = conf.prevResult;
  if (!prev) throw new CniError(Code.InvalidNetworkConfig, 'Required prevResult missing', 'prevResult: required by CHECK');
  const ifs = prev.interfaces ?? [];
  const brIf = ifs.find((i) => i.name === conf.bridge);
  const contIdx = ifs.findIndex((i) => i.name === a.ifName && i.sandbox === a.netns);
  const contIf: Interface | undefined = ifs[contIdx];
  const host = openHostNetns(a);
  const pod = openPodNetns(a);
  try {
    // the bridge
    if (!brIf) throw fail(`CNI created bridge ${conf.bridge} in host namespace was not found`);
    if (brIf.sandbox) throw fail(`Interface ${brIf.name} should not be in sandbox`);
    const br = await nlMaybe('failed to look up the bridge', () => rtnl.getLink(host, brIf.name));
    if (!br) throw fail(`Interface name ${brIf.name} not found`);
    if (br.kind !== 'bridge') throw fail(`Interface ${brIf.name} does not have link type of bridge`);
    if (!sameMac(brIf.mac, br.mac)) throw fail(`Bridge interface ${brIf.name} Mac doesn't match: ${brIf.mac}`);
    if (br.promisc !== conf.promiscMode) {
      throw fail(`Bridge interface ${brIf.name} configured Promisc Mode ${conf.promiscMode} doesn't match current state: ${br.promisc}`);
    }

    // the container interface
    if (!contIf) throw fail(`Sandbox in prevResult doesn't match configured netns: ${a.netns}`);
    const cont = await nlMaybe(`failed to look up ${a.ifName}`, () => rtnl.getLink(pod, a.ifName));
    if (!cont) throw fail(`Interface name ${a.ifName} not found`);
    if (cont.kind !== 'veth') throw fail(`Error: Container interface ${a.ifName} not of type veth`);
    if (!sameMac(contIf.mac, cont.mac)) throw fail(`Interface ${a.ifName} Mac ${contIf.mac} doesn't match container Mac: ${cont.mac}`);

    // its peer: a host veth of prevResult, on the bridge
    let found = false;
    for (const i of ifs) {
      if (i === brIf || i === contIf || i.sandbox) continue;
      const l = await nlMaybe(`failed to look up ${i.name}`, () => rtnl.getLink(host, i.name));
      if (l?.kind !== 'veth') continue;
      if (l.index !== cont.parent || l.parent !== cont.index || l.master !== br.index) continue;
      if (!sameMac(i.mac, l.mac)) throw fail(`Interface ${i.name} Mac doesn't match: ${i.mac} not found`);
      found = true;
      break;
    }
    if (!found) throw fail(`CNI veth created for bridge ${conf.bridge} was not found`);

    // addresses and routes in the pod
    const ifIndex = contIdx >= 0 ? contIdx : CONTAINER_IF_INDEX;
    await nl('failed to check the pod interface', () => checkIface(pod, { index: cont.index, name: a.ifName }, prev, ifIndex));
  } finally {
    pod.close();
    host.close();
  }
}
