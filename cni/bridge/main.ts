// strand-bridge: pods on a Linux bridge of the node through veth pairs, addresses from
// the IPAM delegate. Options and their meaning are the reference `bridge` plugin's
// (see config.ts / schema.ts); the verbs live in add.ts, del.ts, check.ts.
import { delegateGc, delegateStatus } from '../../lib/cni/invoke.ts';
import { pluginMain, type CmdArgs, type PluginIO } from '../../lib/cni/skel.ts';
import { gcAttachments } from '../../lib/cni/types.ts';
import { cmdAdd } from './add.ts';
import { cmdCheck } from './check.ts';
import { parseConfig, type BridgeConf } from './config.ts';
import { cmdDel } from './del.ts';
import { toolsFor } from '../../lib/plugin/exec.ts';
import { gcMasq } from './masq.ts';

export const NAME = 'strand-bridge';
export const VERSION = '0.1.0';

async function cmdStatus(a: CmdArgs, conf: BridgeConf): Promise<void> {
  if (conf.ipamType) await delegateStatus(conf.ipamType, a.stdinData, a);
}

/** GC: IPAM's GC, then the masquerade rules of attachments no longer valid. */
async function cmdGc(a: CmdArgs, conf: BridgeConf): Promise<void> {
  if (conf.ipamType) await delegateGc(conf.ipamType, a.stdinData, a);
  if (conf.ipMasq) await gcMasq(toolsFor(a), conf.name, gcAttachments(conf));
}

export function main(io: PluginIO): Promise<number> {
  return pluginMain<BridgeConf>(
    { add: cmdAdd, del: cmdDel, check: cmdCheck, status: cmdStatus, gc: cmdGc },
    { name: NAME, about: `strand bridge plugin v${VERSION}`, parseConfig },
    io,
  );
}
