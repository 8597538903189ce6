// String formats usable in any schema.ts ("format": "cidr"). The generated validators
// import this module (scripts/gen-validators.ts), so keep it small and pure.
import { tryParseCidr, tryParseIP } from '../addr/cidr.ts';

const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

/** Characters an interface name may not contain: / : and whitespace (Go's unicode.IsSpace includes U+0085). */
export const IFNAME_FORBIDDEN = /[/:\s\u0085]/u;

/** Linux interface name rules (dev_valid_name): 1-15 bytes, not . or .., no / : or whitespace. */
export function isValidIfName(s: string): boolean {
  if (s.length === 0 || Buffer.byteLength(s) > 15 || s === '.' || s === '..') return false;
  return !IFNAME_FORBIDDEN.test(s);
}

/** An Ethernet address as Go's net.ParseMAC takes 6 bytes: ":" or "-" separated hex. */
const MAC_TEXT = /^[0-9a-fA-F]{2}(?:([:-])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){4}$/;

/**
 * Why `s` cannot be the address of an interface, or undefined when it can: not a MAC,
 * the all-zero address, or a multicast/broadcast one (bit 0 of the first byte), which
 * the kernel refuses for a link (EADDRNOTAVAIL).
 */
export function macProblem(s: string): string | undefined {
  if (!MAC_TEXT.test(s)) return 'is not a MAC address (six hex bytes separated by ":" or "-")';
  const bytes = s.split(/[:-]/).map((h) => Number.parseInt(h, 16));
  if (bytes.every((b) => b === 0)) return 'is the all-zero address, not an interface address';
  if (((bytes[0] ?? 0) & 1) === 1) return 'is a multicast address; an interface needs a unicast MAC';
  return undefined;
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
  /** An Ethernet MAC address "aa:bb:cc:dd:ee:ff". */
  mac: (s: string): boolean => MAC.test(s),
  /** A Linux interface name. */
  ifname: isValidIfName,
} as const satisfies Record<string, (s: string) => boolean>;

export type FormatName = keyof typeof formats;
