// strand-ipvlan: the pod's interface is an ipvlan link on a master link of the node (the
// master's MAC, demultiplexed by IP address). Options and their meaning are the reference
// `ipvlan` plugin's: master, mode (l2, l3, l3s), mtu, linkInContainer, ipam. Chained use:
// without `master`, the single interface of prevResult is the master, and without IPAM the
// addresses of prevResult go on the ipvlan link.
import { validateIpvlanConf } from '../../gen/validators.js';
import { CniError, Code } from '../../lib/cni/errors.ts';
import { pluginMain, validateWith, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import type { NetConf, Result } from '../../lib/cni/types.ts';
import type * as rtnl from '../../lib/netlink/rtnl.ts';
import {
  addSublink,
  checkAttachment,
  delAttachment,
  gcAttachments,
  ipamType,
  statusAttachment,
  type AddressSource,
  type SublinkConf,
} from '../sublink/plugin.ts';

export type IpvlanMode = 'l2' | 'l3' | 'l3s';

export interface IpvlanConf extends SublinkConf {
  mode?: '' | IpvlanMode;
}

function modeOf(conf: IpvlanConf): IpvlanMode {
  return conf.mode || 'l2';
}

export function parseConfig(raw: NetConf): IpvlanConf {
  return validateWith<IpvlanConf>(validateIpvlanConf, raw);
}

/** The master a chain hands over: the one named interface of prevResult. */
export function chainedMaster(conf: IpvlanConf): string | undefined {
  if (conf.master || !conf.prevResult) return undefined;
  const ifs = conf.prevResult.interfaces ?? [];
  if (ifs.length !== 1 || !ifs[0]!.name) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      'chained master failure: prevResult lacks a single named interface',
      `master: not set, and prevResult has ${ifs.length} interfaces`,
    );
  }
  return ifs[0]!.name;
}

/** Where the addresses come from: IPAM when configured, else prevResult's (chained). */
export function addressSource(conf: IpvlanConf): AddressSource {
  if (ipamType(conf)) return { from: 'ipam' };
  const prev = conf.prevResult;
  if (prev?.ips?.length) return { from: 'prev', result: prev };
  throw new CniError(
    Code.InvalidNetworkConfig,
    'no IPAM configured and no addresses in prevResult',
    'ipam: needed unless a previous plugin provides the addresses',
  );
}

async function cmdAdd(a: CmdArgs, conf: IpvlanConf): Promise<Result> {
  const master = chainedMaster(conf);
  const addresses = addressSource(conf);
  const info: rtnl.IpvlanInfo = { kind: 'ipvlan', mode: modeOf(conf) };
  return addSublink(a, conf, { info, master, mtu: conf.mtu, addresses });
}

async function cmdCheck(a: CmdArgs, conf: IpvlanConf): Promise<void> {
  return checkAttachment(a, conf, 'ipvlan', modeOf(conf));
}

async function cmdStatus(a: CmdArgs, conf: IpvlanConf): Promise<void> {
  // A chained config names its master only in prevResult, which STATUS does not carry.
  return statusAttachment(a, conf, !!conf.master);
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain(
    { add: cmdAdd, del: delAttachment, check: cmdCheck, status: cmdStatus, gc: gcAttachments },
    { name: 'strand-ipvlan', about: 'strand ipvlan plugin v0.1.0', parseConfig },
    io,
  );
}
