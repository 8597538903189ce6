// DEL, idempotent: a missing netns, link or address is success. The pod's interface goes
// first (its veth peer on the bridge goes with it), then IPAM DEL, which always runs, then
// the MAC spoof-check and masquerade rules (found by name, so they are removed even when
// the pod's namespace is already gone). The bridge stays, as with the reference plugin.
import { delegateDel } from '../../lib/cni/invoke.ts';
import type { CmdArgs } from '../../lib/cni/skel.ts';
import { deleteLinkIfPresent, netlinkFailure, openPodNetnsForDel } from '../../lib/plugin/link.ts';
import { isNetlinkError } from '../../lib/netlink/errors.ts';
import type { BridgeConf } from './config.ts';
import { toolsFor } from '../../lib/plugin/exec.ts';
import { teardownMasq } from './masq.ts';
import { spoofRefId, teardownSpoofCheck } from './spoofchk.ts';

/** Removes CNI_IFNAME from the pod; a namespace or link that is gone is fine. */
async function deletePodLink(a: CmdArgs): Promise<void> {
  const pod = openPodNetnsForDel(a);
  if (!pod) {
    a.log?.debug(`DEL: namespace ${JSON.stringify(a.netns)} is gone, so is ${a.ifName}`);
    return; // the runtime already removed the namespace
  }
  try {
    await deleteLinkIfPresent(pod, a.ifName);
  } catch (e) {
    if (isNetlinkError(e)) throw netlinkFailure(`failed to delete ${JSON.stringify(a.ifName)}`, e);
    throw e;
  } finally {
    pod.close();
  }
}

export async function cmdDel(a: CmdArgs, conf: BridgeConf): Promise<void> {
  // Every step runs; the first failure is reported after the others had their turn.
  const errors: unknown[] = [];
  const step = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
      a.log?.debug(`DEL: ${what} done`);
    } catch (e) {
      a.log?.warn(`DEL: ${what} failed`, e);
      errors.push(e);
    }
  };
  await step('removing the pod interface', () => deletePodLink(a));
  if (conf.ipamType) {
    const t = conf.ipamType;
    await step(`IPAM DEL (${t})`, () => delegateDel(t, a.stdinData, a));
  }
  if (conf.macspoofchk) await step('removing macspoofchk rules', () => teardownSpoofCheck(toolsFor(a), spoofRefId(a.containerId, a.ifName)));
  if (conf.ipMasq && conf.ipamType) await step('removing masquerade rules', () => teardownMasq(toolsFor(a), conf.name, a.ifName, a.containerId));
  if (errors.length) throw errors[0];
}
