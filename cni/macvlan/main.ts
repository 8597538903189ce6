// strand-macvlan: the pod's interface is a macvlan link on a master link of the node (its
// own MAC address on the master's L2 network, no veth or bridge hop). Options and their
// meaning are the reference `macvlan` plugin's: master, mode, mtu, mac, linkInContainer,
// ipam ({} or absent: L2 only).
import { validateMacvlanConf } from '../../gen/validators.js';
import { loadCniArgs } from '../../lib/cni/args.ts';
import { CniError, Code } from '../../lib/cni/errors.ts';
import { delegateCheck, delegateDel, delegateGc, delegateStatus } from '../../lib/cni/invoke.ts';
import { pluginMain, validateWith, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import type { NetConf, Result } from '../../lib/cni/types.ts';
import { versionGte } from '../../lib/cni/version.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { addSublink, checkAttachment, ipamType, statusMaster } from './plugin.ts';
import { deleteSublink } from './sublink.ts';

export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru';

export interface MacvlanConf extends NetConf {
  master?: string;
  mode?: '' | MacvlanMode;
  mtu?: number;
  mac?: string;
  linkInContainer?: boolean;
  runtimeConfig?: { mac?: string; [k: string]: unknown };
}

const MAC = /^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/;

function modeOf(conf: MacvlanConf): MacvlanMode {
  return conf.mode || 'bridge';
}

/**
 * The MAC to give the link, lowest precedence first as in the reference plugins:
 * `mac`, CNI_ARGS `MAC=`, `args.cni.mac`, `runtimeConfig.mac` (capability "mac").
 */
export function resolveMac(conf: MacvlanConf, cniArgs: string): string | undefined {
  let mac = conf.mac;
  const fromEnv = loadCniArgs(cniArgs, ['MAC']).get('MAC');
  if (fromEnv) {
    if (!MAC.test(fromEnv)) throw new CniError(Code.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: MAC=${JSON.stringify(fromEnv)} is not a MAC address`);
    mac = fromEnv;
  }
  const fromArgs = conf.args?.cni?.['mac'];
  if (typeof fromArgs === 'string' && fromArgs) mac = fromArgs;
  if (conf.runtimeConfig?.mac) mac = conf.runtimeConfig.mac;
  return mac;
}

export function parseConfig(raw: NetConf): MacvlanConf {
  return validateWith<MacvlanConf>(validateMacvlanConf, raw);
}

async function cmdAdd(a: CmdArgs, conf: MacvlanConf): Promise<Result> {
  if (!ipamType(conf) && !versionGte(conf.cniVersion, '0.3.0')) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      'an L2-only network needs cniVersion 0.3.0 or later',
      `ipam: a ${conf.cniVersion} result cannot describe an interface without addresses`,
    );
  }
  const mac = resolveMac(conf, a.args);
  const info: rtnl.MacvlanInfo = { kind: 'macvlan', mode: modeOf(conf) };
  return addSublink(a, conf, { info, mtu: conf.mtu, mac, addresses: { from: 'ipam' } });
}

async function cmdDel(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  let linkErr: unknown;
  try {
    deleteSublink(a.netns, a.ifName);
  } catch (e) {
    linkErr = e;
  }
  // IPAM DEL always runs, whatever happened to the link.
  const type = ipamType(conf);
  if (type) await delegateDel(type, a.stdinData, a);
  if (linkErr !== undefined) throw linkErr;
}

async function cmdCheck(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  const type = ipamType(conf);
  if (type) await delegateCheck(type, a.stdinData, a);
  checkAttachment(a, conf, 'macvlan', modeOf(conf));
}

async function cmdStatus(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  statusMaster(conf);
  const type = ipamType(conf);
  if (type) await delegateStatus(type, a.stdinData, a);
}

async function cmdGc(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  // The links live in the pods' namespaces and go with them; only IPAM keeps state.
  const type = ipamType(conf);
  if (type) await delegateGc(type, a.stdinData, a);
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain(
    { add: cmdAdd, del: cmdDel, check: cmdCheck, status: cmdStatus, gc: cmdGc },
    { name: 'strand-macvlan', about: 'strand macvlan plugin v0.1.0', parseConfig },
    io,
  );
}
