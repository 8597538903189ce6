// The strand-portmap network config: validated by the compiled schema (schema.ts), then
// narrowed into PortmapConf with the reference plugin's defaults and cross-field rules
// (plugins/meta/portmap parseConfig and ensureBackend).
import { validatePortmapConf } from '../../gen/validators.js';
import { formatIP, tryParseIP, unmap } from '../../lib/addr/cidr.ts';
import { validateWith } from '../../lib/cni/skel.ts';
import { goFieldKeys, invalidField } from '../../lib/cni/validate.ts';
import type { NetConf, Result } from '../../lib/cni/types.ts';
import { defaultBackendNow, type NetfilterBackend } from '../../lib/plugin/netfilter.ts';

export type Protocol = 'tcp' | 'udp' | 'sctp';

/** One entry of runtimeConfig.portMappings (the `portMappings` capability). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** The host address to match ("" or absent: any; 0.0.0.0 or :: likewise). */
  hostIP?: string;
}

interface RawPortmapConf extends NetConf {
  backend?: NetfilterBackend;
  snat?: boolean;
  masqAll?: boolean;
  markMasqBit?: number;
  externalSetMarkChain?: string;
  conditionsV4?: string[];
  conditionsV6?: string[];
  runtimeConfig?: { portMappings?: Array<{ hostPort: number; containerPort: number; protocol: string; hostIP?: string }>; [k: string]: unknown };
}

export interface PortmapConf extends NetConf {
  backend: NetfilterBackend;
  /** Masquerade hairpin and localhost traffic to the mapped ports (default true). */
  snat: boolean;
  /** Masquerade traffic from any source to the mapped ports, not only hairpin/localhost. */
  masqAll: boolean;
  /** The mark bit CNI-HOSTPORT-SETMARK sets (default 13). */
  markMasqBit: number;
  /** A chain of someone else's that marks for masquerading (iptables only). */
  externalSetMarkChain: string | undefined;
  conditionsV4: string[];
  conditionsV6: string[];
  portMappings: PortMapping[];
}

/** Kubernetes uses mark bits 14 and 15, Calico 20-31. */
const DEFAULT_MARK_BIT = 13;

/**
 * Which backend a conditions list is written for, as the reference guesses it: an
 * iptables condition starts with "-" or "!"; undefined for none.
 */
export function backendOfConditions(c: readonly string[] | undefined): NetfilterBackend | undefined {
  const first = c?.[0];
  if (!first) return undefined;
  return first.startsWith('-') || first.startsWith('!') ? 'iptables' : 'nftables';
}

/** The backend to use: `backend`, else iptables unless only nft is installed; options of the other backend are an error. */
function resolveBackend(c: RawPortmapConf, defaultOf: () => NetfilterBackend): NetfilterBackend {
  const wants: Array<[string, NetfilterBackend | undefined]> = [
    ['externalSetMarkChain', c.externalSetMarkChain !== undefined ? 'iptables' : undefined],
    ['conditionsV4', backendOfConditions(c.conditionsV4)],
    ['conditionsV6', backendOfConditions(c.conditionsV6)],
  ];
  const backend = c.backend ?? defaultOf();
  const wrong = wants.filter(([, b]) => b !== undefined && b !== backend).map(([f]) => f);
  if (wrong.length) {
    const other = backend === 'iptables' ? 'nftables' : 'iptables';
    throw invalidField(wrong[0]!, `${backend} backend was requested but configuration contains ${other}-specific options [${wrong.join(' ')}]`);
  }
  return backend;
}

const MAPPING_FIELDS = ['hostPort', 'containerPort', 'protocol', 'hostIP'] as const;

/** runtimeConfig.portMappings with its entries' keys matched as Go does (containerd sends "HostPort"...). */
function withGoMappingKeys(raw: NetConf): NetConf {
  const rc = raw.runtimeConfig;
  const maps = rc?.['portMappings'];
  if (!Array.isArray(maps)) return raw;
  return { ...raw, runtimeConfig: { ...rc, portMappings: maps.map((m) => goFieldKeys(m, MAPPING_FIELDS)) } };
}

export function parseConfig(raw: NetConf, defaultOf: () => NetfilterBackend = () => defaultBackendNow({})): PortmapConf {
  const c = validateWith<RawPortmapConf>(validatePortmapConf, withGoMappingKeys(raw));
  if (c.markMasqBit !== undefined && c.externalSetMarkChain !== undefined) {
    throw invalidField('markMasqBit', 'cannot specify externalSetMarkChain and markMasqBit');
  }
  const portMappings: PortMapping[] = (c.runtimeConfig?.portMappings ?? []).map((m, i) => {
    const pm: PortMapping = { hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol.toLowerCase() as Protocol };
    if (m.hostIP !== undefined && m.hostIP !== '') {
      const ip = tryParseIP(m.hostIP);
      if (!ip) throw invalidField(`runtimeConfig.portMappings[${i}].hostIP`, `${JSON.stringify(m.hostIP)} is not an IP address`);
      // canonical form; an IPv4-mapped IPv6 address is IPv4 (Go's To4)
      pm.hostIP = formatIP(unmap(ip));
    }
    return pm;
  });
  return {
    ...c,
    backend: resolveBackend(c, defaultOf),
    snat: c.snat ?? true,
    masqAll: c.masqAll ?? false,
    markMasqBit: c.markMasqBit ?? DEFAULT_MARK_BIT,
    externalSetMarkChain: c.externalSetMarkChain,
    conditionsV4: c.conditionsV4 ?? [],
    conditionsV6: c.conditionsV6 ?? [],
    portMappings,
  };
}

/** A container address the rules point at: its IP and the address with prefix ("10.1.0.5/24"). */
export interface ContainerAddr {
  family: 4 | 6;
  ip: string;
  cidr: string;
}

/**
 * The pod's first IPv4 and first IPv6 address in prevResult, as the reference picks
 * them: addresses of interfaces that are not CNI_IFNAME inside a sandbox are skipped.
 */
export function containerAddrs(prev: Result, ifName: string): ContainerAddr[] {
  const found = new Map<4 | 6, ContainerAddr>();
  const ifs = prev.interfaces ?? [];
  for (const ip of prev.ips ?? []) {
    const [addr, prefix] = ip.address.split('/') as [string, string];
    const parsed = tryParseIP(addr);
    if (!parsed) continue;
    const family = unmap(parsed).family;
    if (found.has(family)) continue;
    const idx = ip.interface;
    if (idx !== undefined && idx >= 0 && idx < ifs.length && (ifs[idx]!.name !== ifName || !ifs[idx]!.sandbox)) continue;
    const bare = formatIP(unmap(parsed));
    found.set(family, { family, ip: bare, cidr: `${bare}/${prefix}` });
  }
  return [...found.values()].sort((a, b) => a.family - b.family);
}
