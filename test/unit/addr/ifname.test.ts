// The interface-name rule (lib/addr/ifname.ts): the kernel's dev_valid_name() (bytes,
// its Latin-1 isspace), its name templates, and libcni's unicode.IsSpace. The
// integration test test/integration/netlink/ifname.test.ts checks the same names
// against a real kernel.
import { describe, expect, it } from 'vitest';
import { IFNAME_MAX_BYTES, ifNameProblem, isValidIfName } from '../../../lib/addr/ifname.ts';

describe('ifNameProblem', () => {
  it.each([
    'eth0',
    'a',
    'a'.repeat(IFNAME_MAX_BYTES),
    'veth1234abcd',
    'br-0_1.x',
    'é'.repeat(7), // 14 bytes
    '...',
    '.a',
    'eth0\u0001', // control characters other than NUL and spaces: the kernel takes them
    'a\ufeff', // not a space for Go nor the kernel (JavaScript's \s says it is)
    'ü', // C3 BC: no 0xA0 byte
  ])('%j: valid', (name) => {
    expect(ifNameProblem(name)).toBeUndefined();
    expect(isValidIfName(name)).toBe(true);
  });

  it.each([
    ['', /empty/],
    ['a'.repeat(IFNAME_MAX_BYTES + 1), /longer than 15 bytes/],
    ['é'.repeat(8), /longer than 15 bytes/], // 8 characters, 16 bytes
    ['x'.repeat(1 << 20), /longer than 15 bytes/],
    ['.', /\. or \.\./],
    ['..', /\. or \.\./],
    ['eth%d', /template/],
    ['%s', /template/],
    ['eth%', /template/],
    ['100%', /template/],
    ['eth/0', /\/ or :/],
    ['eth0:1', /\/ or :/],
    ['eth\u00000', /NUL/],
    ['eth 0', /whitespace/],
    ['eth\t0', /whitespace/],
    ['eth0\n', /whitespace/],
    ['eth\v0', /whitespace/],
    ['eth\f0', /whitespace/],
    ['eth\r0', /whitespace/],
    ['eth\u00a00', /whitespace/], // NBSP: Go and the kernel (byte 0xA0)
    ['eth\u00850', /whitespace/], // NEL: Go's unicode.IsSpace (libcni refuses it)
    ['eth\u20280', /whitespace/],
    ['eth\u30000', /whitespace/],
    ['à', /whitespace/], // C3 A0: the kernel's isspace(0xA0)
    ['\u0420', /whitespace/], // Cyrillic Er, D0 A0
  ])('%j: %s', (name, why) => {
    expect(ifNameProblem(name)).toMatch(why);
    expect(isValidIfName(name)).toBe(false);
  });
});
