// The one rule for a Linux interface name, used for CNI_IFNAME (lib/cni/skel.ts), config
// fields naming links (the `ifname` schema format, lib/cni/formats.ts), the netlink layer
// (lib/netlink/rtnl.ts) and the agent's flags. Pure: no I/O.
//
// The kernel (net/core/dev.c) takes a name when dev_valid_name() does: 1 to 15 bytes (it
// is a C string in IFNAMSIZ = 16 bytes), not "." or "..", no '/', ':' or isspace() byte;
// its isspace() is bytewise over Latin-1 (lib/ctype.c): \t \n \v \f \r, space and 0xA0,
// so any character whose UTF-8 form holds byte 0xA0 ("à" is C3 A0) is refused too. A name
// with a '%' is a template: "eth%d" becomes the first free eth<N> (dev_alloc_name), any
// other '%' is EINVAL; a plugin that passed one on would report a name the kernel did not
// use, so it is refused. libcni's ValidateInterfaceName also refuses every character
// Go's unicode.IsSpace calls a space (U+0085, U+2028...), which the kernel allows: the
// runtime's own check would refuse such a name, so strand does as well.

/** The longest interface name in bytes (IFNAMSIZ - 1). */
export const IFNAME_MAX_BYTES = 15;

/** Go's unicode.IsSpace: ASCII and Latin-1 spaces, then the Unicode White_Space characters. */
const UNICODE_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

/** Bytes the kernel's isspace() takes for a space (lib/ctype.c _S): \t..\r, ' ' and 0xA0. */
function isKernelSpaceByte(b: number): boolean {
  return (b >= 0x09 && b <= 0x0d) || b === 0x20 || b === 0xa0;
}

/**
 * Why `name` cannot be an interface name, or undefined when it can. The reasons read
 * after the name: `CNI_IFNAME "eth%d": ${problem}`.
 */
export function ifNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  // Every UTF-16 unit is at least one UTF-8 byte: a long string is refused without encoding it.
  const bytes = name.length > IFNAME_MAX_BYTES ? undefined : Buffer.from(name, 'utf8');
  if (!bytes || bytes.length > IFNAME_MAX_BYTES) return `is longer than ${IFNAME_MAX_BYTES} bytes`;
  if (name === '.' || name === '..') return 'is . or ..';
  if (name.includes('%')) return 'contains %, which the kernel reads as a name template (eth%d becomes eth0)';
  if (name.includes('/') || name.includes(':')) return 'contains / or :';
  if (name.includes('\0')) return 'contains a NUL character';
  if (UNICODE_SPACE.test(name) || bytes.some(isKernelSpaceByte)) return 'contains whitespace';
  return undefined;
}

/** Whether `name` is a valid interface name (ifNameProblem finds nothing). */
export function isValidIfName(name: string): boolean {
  return ifNameProblem(name) === undefined;
}
