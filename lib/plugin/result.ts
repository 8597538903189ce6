// What the interface plugins (strand-bridge, strand-macvlan, strand-ipvlan) share in
// building their ADD result: the IPAM delegate's answer, and which DNS the result carries.
// One rule each, so the plugins agree on error codes and DNS precedence.
import { CniError, Code } from '../cni/errors.ts';
import { delegateAddWithRollback, delegateDel } from '../cni/invoke.ts';
import type { CmdArgs } from '../cni/skel.ts';
import type { DNS, Result } from '../cni/types.ts';
import type { UndoStack } from './undo.ts';

/**
 * Runs the IPAM delegate's ADD (its DEL pushed on `undo`, run if a later step fails) and
 * checks it gave addresses: none is the reference plugins' error ("IPAM plugin returned
 * missing IP config", code 999).
 */
export async function delegateIpamAdd(a: CmdArgs, ipamType: string, undo: UndoStack): Promise<Result> {
  const ipam = await delegateAddWithRollback(ipamType, a.stdinData, a);
  undo.push(`IPAM DEL (${ipamType})`, () => delegateDel(ipamType, a.stdinData, a));
  if (!ipam.ips?.length) throw new CniError(Code.Internal, 'IPAM plugin returned missing IP config', `${ipamType} answered without ips`);
  a.log?.debug(
    `IPAM ${ipamType}: ${ipam.ips.map((i) => i.address).join(', ')}${ipam.routes?.length ? `, routes ${ipam.routes.map((r) => r.dst).join(', ')}` : ''}`,
  );
  return ipam;
}

/**
 * Whether the network config sets DNS: any field present, even an empty list (the
 * reference bridge's rule: a JSON list decodes to a non-nil Go slice).
 */
function dnsConfigured(d: DNS | undefined): d is DNS {
  return !!d && (d.nameservers !== undefined || d.search !== undefined || d.options !== undefined || !!d.domain);
}

/** The result's DNS: the network config's when it sets any (as the reference plugins), else the IPAM delegate's. */
export function resultDns(conf: DNS | undefined, ipam: DNS | undefined): DNS | undefined {
  return dnsConfigured(conf) ? conf : ipam;
}
