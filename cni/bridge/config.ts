// The strand-bridge network config: validated by the compiled schema (schema.ts), then
// narrowed into BridgeConf with the reference plugin's defaults and cross-field rules.
import { validateBridgeConf } from '../../gen/validators.js';
import { resolveMac as resolveLinkMac } from '../../lib/cni/args.ts';
import { CniError, Code } from '../../lib/cni/errors.ts';
import { validateWith } from '../../lib/cni/skel.ts';
import { invalidField } from '../../lib/cni/validate.ts';
import type { NetConf } from '../../lib/cni/types.ts';
import type { MasqBackend } from './masq.ts';

const DEFAULT_BRIDGE = 'cni0';

export interface VlanTrunkEntry {
  minID?: number;
  maxID?: number;
  id?: number;
}

/** The config as it arrives (after schema validation). */
export interface RawBridgeConf extends NetConf {
  bridge?: string;
  isGateway?: boolean;
  isDefaultGateway?: boolean;
  forceAddress?: boolean;
  ipMasq?: boolean;
  ipMasqBackend?: MasqBackend;
  mtu?: number;
  /** strand's own: take the MTU from this file (written by `strand agent`) when `mtu` is unset. */
  mtuFile?: string;
  hairpinMode?: boolean;
  promiscMode?: boolean;
  vlan?: number;
  vlanTrunk?: VlanTrunkEntry[];
  preserveDefaultVlan?: boolean;
  macspoofchk?: boolean;
  enabledad?: boolean;
  disableContainerInterface?: boolean;
  portIsolation?: boolean;
  runtimeConfig?: { mac?: string; [k: string]: unknown };
}

/** The narrowed config the handlers use: defaults applied, derived fields computed. */
export interface BridgeConf extends RawBridgeConf {
  bridge: string;
  /** isGateway, or implied by isDefaultGateway. */
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  mtu: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  /** vlanTrunk expanded into a sorted list of VLAN IDs. */
  trunkVlans: number[];
  /** vlan != 0 or vlanTrunk given (the reference turns on bridge VLAN filtering then). */
  vlanFiltering: boolean;
  preserveDefaultVlan: boolean;
  macspoofchk: boolean;
  enabledad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  /** The IPAM plugin type, or undefined for an L2-only network (`ipam: {}`). */
  ipamType: string | undefined;
}

/** vlanTrunk -> sorted unique VLAN IDs (ranges expanded). */
export function collectTrunk(trunk: VlanTrunkEntry[] | undefined): number[] {
  if (!trunk) return [];
  const ids = new Set<number>();
  for (const [i, t] of trunk.entries()) {
    if (t.minID !== undefined && t.maxID !== undefined) {
      if (t.maxID < t.minID) throw invalidField(`vlanTrunk[${i}]`, 'minID is greater than maxID');
      for (let v = t.minID; v <= t.maxID; v++) ids.add(v);
    }
    if (t.id !== undefined) ids.add(t.id);
  }
  return [...ids].sort((a, b) => a - b);
}

export function parseConfig(raw: NetConf): BridgeConf {
  const c = validateWith<RawBridgeConf>(validateBridgeConf, raw);
  if (c.mtu !== undefined && c.mtu !== 0 && c.mtu < 68) throw invalidField('mtu', `must be 0 (default) or at least 68; got ${c.mtu}`);
  const ipamType = c.ipam?.type || undefined;
  const trunkVlans = collectTrunk(c.vlanTrunk);
  return {
    ...c,
    bridge: c.bridge || DEFAULT_BRIDGE,
    isGateway: !!(c.isGateway || c.isDefaultGateway),
    isDefaultGateway: !!c.isDefaultGateway,
    forceAddress: !!c.forceAddress,
    ipMasq: !!c.ipMasq,
    mtu: c.mtu ?? 0,
    hairpinMode: !!c.hairpinMode,
    promiscMode: !!c.promiscMode,
    vlan: c.vlan ?? 0,
    trunkVlans,
    vlanFiltering: (c.vlan ?? 0) !== 0 || c.vlanTrunk !== undefined,
    preserveDefaultVlan: !!c.preserveDefaultVlan,
    macspoofchk: !!c.macspoofchk,
    enabledad: !!c.enabledad,
    disableContainerInterface: !!c.disableContainerInterface,
    portIsolation: !!c.portIsolation,
    ipamType,
  };
}

/** Option combinations ADD refuses (DEL of such a config still cleans up, as the reference). */
export function checkAddConfig(c: BridgeConf): void {
  if (c.hairpinMode && c.promiscMode) {
    throw new CniError(Code.InvalidNetworkConfig, 'cannot set hairpin mode and promiscuous mode at the same time', 'hairpinMode, promiscMode: pick one');
  }
  if (c.ipamType && c.disableContainerInterface) {
    throw new CniError(Code.InvalidNetworkConfig, 'cannot use IPAM when DisableContainerInterface flag is set', 'disableContainerInterface: needs ipam {}');
  }
}

/**
 * The container interface's MAC, lowest precedence first as the reference: CNI_ARGS
 * `MAC=`, then `args.cni.mac`, then `runtimeConfig.mac` (capability "mac"), each checked
 * to be a unicast address (lib/cni/args.ts). Lower-case ":" form; undefined: let the
 * kernel pick.
 */
export function resolveMac(conf: RawBridgeConf, cniArgs: string): string | undefined {
  return resolveLinkMac(conf, cniArgs);
}
