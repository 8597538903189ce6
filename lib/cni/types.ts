// CNI types in their 1.1.0 form. Every result handled inside strand is a `Result` in this
// form; `convert.ts` turns it into (and parses it from) the older wire formats.

/** The spec versions strand speaks, oldest first (the reference plugins' set). */
export const SPEC_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SPEC_VERSIONS)[number];
/** The version whose result shape `Result` is, and the one VERSION reports as its own. */
export const CURRENT_VERSION = '1.1.0' satisfies SpecVersion;

export const VERBS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

export interface Interface {
  name: string;
  mac?: string;
  /** 1.1.0 */
  mtu?: number;
  /** The CNI_NETNS path for an interface inside the container; absent on the host. */
  sandbox?: string;
  /** 1.1.0 */
  socketPath?: string;
  /** 1.1.0 */
  pciID?: string;
}

export interface IPConfig {
  /** Address with prefix, host bits kept: "10.1.0.5/24". */
  address: string;
  gateway?: string;
  /** Index into `Result.interfaces`. */
  interface?: number;
}

export interface Route {
  /** Destination in CIDR notation. */
  dst: string;
  gw?: string;
  /** 1.1.0 */
  mtu?: number;
  /** 1.1.0 */
  advmss?: number;
  /** 1.1.0 */
  priority?: number;
  /** 1.1.0 */
  table?: number;
  /** 1.1.0: 0 global, 253 link, 254 host. */
  scope?: number;
}

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** An ADD result in the 1.1.0 form. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

/**
 * The `ipam` section. `type` names the IPAM plugin; note that `"ipam": {}` (an L2-only
 * network for bridge/macvlan) is valid, so test `conf.ipam?.type`, not `conf.ipam`.
 */
export interface IpamConf {
  type: string;
  [k: string]: unknown;
}

/** One still-valid attachment in a GC request's `cni.dev/valid-attachments`. */
export interface GcAttachment {
  containerID: string;
  ifname: string;
}

const VALID_ATTACHMENTS_KEY = 'cni.dev/valid-attachments';
const ATTACHMENTS_KEY = 'cni.dev/attachments';

/** A single-plugin network config, as a runtime writes it on stdin. */
export interface NetConf {
  cniVersion: string;
  cniVersions?: string[];
  name: string;
  type: string;
  args?: { cni?: Record<string, unknown>; [k: string]: unknown };
  ipam?: IpamConf;
  dns?: DNS;
  runtimeConfig?: Record<string, unknown>;
  capabilities?: Record<string, boolean>;
  /** Already converted to the 1.1.0 form by skel, whatever version it came in. */
  prevResult?: Result;
  [k: string]: unknown;
}

/** The VERSION command's output. */
export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/** Valid GC attachments of a GC request (reads both the 1.1.0 key and `cni.dev/attachments`). */
export function gcAttachments(conf: NetConf): GcAttachment[] {
  const out: GcAttachment[] = [];
  for (const key of [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY]) {
    const list = conf[key];
    if (!Array.isArray(list)) continue;
    for (const a of list as unknown[]) {
      if (a && typeof a === 'object') {
        const { containerID, ifname } = a as Record<string, unknown>;
        if (typeof containerID === 'string' && typeof ifname === 'string') out.push({ containerID, ifname });
      }
    }
  }
  return out;
}
