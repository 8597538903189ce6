// The one rule for an Ethernet (48-bit) MAC address in text: what Go's net.ParseMAC takes
// for six bytes, hex pairs separated by ':' or by '-' (one kind in one address), any case.
// Pure: no I/O.

const MAC_TEXT = /^[0-9a-fA-F]{2}(?:([:-])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){4}$/;

/** Whether `s` is a 6-byte MAC address ("0a:58:0a:01:00:05", "0A-58-0A-01-00-05"). */
export function isMac(s: string): boolean {
  return MAC_TEXT.test(s);
}

/** The lower-case, ':'-separated form of a MAC that isMac() accepts ("0a:58:0a:01:00:05"). */
export function canonicalMac(s: string): string {
  return s.toLowerCase().replaceAll('-', ':');
}

/**
 * Why `s` cannot be the address of an interface, or undefined when it can: not a MAC,
 * the all-zero address, or a multicast/broadcast one (bit 0 of the first byte), which
 * the kernel refuses for a link (EADDRNOTAVAIL).
 */
export function macProblem(s: string): string | undefined {
  if (!isMac(s)) return 'is not a MAC address (six hex bytes separated by ":" or "-")';
  const bytes = s.split(/[:-]/).map((h) => Number.parseInt(h, 16));
  if (bytes.every((b) => b === 0)) return 'is the all-zero address, not an interface address';
  if (((bytes[0] ?? 0) & 1) === 1) return 'is a multicast address; an interface needs a unicast MAC';
  return undefined;
}
