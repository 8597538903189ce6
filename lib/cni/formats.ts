// String formats usable in any schema.ts ("format": "cidr"). The generated validators
// import this module (scripts/gen-validators.ts), so keep it small and pure. The rules
// themselves live in lib/addr/ (addresses, MACs, interface names).
import { tryParseCidr, tryParseIP } from '../addr/cidr.ts';
import { ifNameProblem, isValidIfName } from '../addr/ifname.ts';
import { isMac } from '../addr/mac.ts';

/** The spec's container ID: an alphanumeric first character, then [A-Za-z0-9_.-]. */
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function isContainerId(s: string): boolean {
  return CONTAINER_ID.test(s);
}

export const formats = {
  /** An IPv4 or IPv6 address. */
  ip: (s: string): boolean => tryParseIP(s) !== undefined,
  ipv4: (s: string): boolean => tryParseIP(s)?.family === 4,
  ipv6: (s: string): boolean => tryParseIP(s)?.family === 6,
  /** An address or network with a prefix length; host bits allowed ("10.1.0.5/24"). */
  cidr: (s: string): boolean => tryParseCidr(s) !== undefined,
  /** A network: host bits must be zero ("10.1.0.0/24"). */
  'cidr-network': (s: string): boolean => tryParseCidr(s, { strict: true }) !== undefined,
  /** An Ethernet MAC address, ":" or "-" separated ("aa:bb:cc:dd:ee:ff"). */
  mac: isMac,
  /** A CNI container ID. */
  'container-id': isContainerId,
  /** A Linux interface name (lib/addr/ifname.ts: the kernel's rules, templates refused). */
  ifname: isValidIfName,
} as const satisfies Record<string, (s: string) => boolean>;

/** For the formats whose rule can say what is wrong: the reason a value fails (lib/cni/validate.ts). */
export const formatProblems: Readonly<Record<string, (s: string) => string | undefined>> = {
  ifname: (s) => {
    const why = ifNameProblem(s);
    return why && `not an interface name: it ${why}`;
  },
  mac: (s) => (isMac(s) ? undefined : 'not a MAC address (six hex bytes separated by ":" or "-")'),
};
