// strand-macvlan: the pod's interface is a macvlan link on a master link of the node (its
// own MAC address on the master's L2 network, no veth or bridge hop). Options and their
// meaning are the reference `macvlan` plugin's: master, mode, mtu, mac, linkInContainer,
// ipam ({} or absent: L2 only).
import { validateMacvlanConf } from '../../gen/validators.js';
import { resolveMac as resolveLinkMac } from '../../lib/cni/args.ts';
import { CniError, Code } from '../../lib/cni/errors.ts';
import { pluginMain, validateWith, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import type { NetConf, Result } from '../../lib/cni/types.ts';
import { versionGte } from '../../lib/cni/version.ts';
import type * as rtnl from '../../lib/netlink/rtnl.ts';
import { addSublink, checkAttachment, delAttachment, gcAttachments, ipamType, statusAttachment, type SublinkConf } from '../sublink/plugin.ts';

export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru';

export interface MacvlanConf extends SublinkConf {
  mode?: '' | MacvlanMode;
  mac?: string;
  runtimeConfig?: { mac?: string; [k: string]: unknown };
}

function modeOf(conf: MacvlanConf): MacvlanMode {
  return conf.mode || 'bridge';
}

/**
 * The MAC to give the link, lowest precedence first as in the reference plugins:
 * `mac`, CNI_ARGS `MAC=`, `args.cni.mac`, `runtimeConfig.mac` (capability "mac"), each
 * checked to be a unicast address (lib/cni/args.ts). Lower-case ":" form.
 */
export function resolveMac(conf: MacvlanConf, cniArgs: string): string | undefined {
  return resolveLinkMac(conf, cniArgs, { field: 'mac', value: conf.mac });
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

async function cmdCheck(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  return checkAttachment(a, conf, 'macvlan', modeOf(conf));
}

async function cmdStatus(a: CmdArgs, conf: MacvlanConf): Promise<void> {
  return statusAttachment(a, conf, true);
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain(
    { add: cmdAdd, del: delAttachment, check: cmdCheck, status: cmdStatus, gc: gcAttachments },
    { name: 'strand-macvlan', about: 'strand macvlan plugin v0.1.0', parseConfig },
    io,
  );
}
