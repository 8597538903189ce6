// JSON schema of the strand-macvlan network configuration: the reference `macvlan`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateMacvlanConf`).
// The common NetConf fields are validated by skel; unknown fields are allowed, as the
// spec asks of plugins.

const linkName = {
  type: 'string',
  minLength: 1,
  maxLength: 15,
  // The kernel's dev_valid_name(): not "." or "..", no "/", ":" or whitespace.
  pattern: '^(?!\\.{1,2}$)[^/:\\s]+$',
} as const;

/** An Ethernet address, ":" or "-" separated (what Go's net.ParseMAC takes for 6 bytes). */
const mac = { type: 'string', pattern: '^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$' } as const;

export const schemas = {
  validateMacvlanConf: {
    $id: 'strand/macvlan',
    type: 'object',
    properties: {
      // Absent or "": the link of the default route (in the pod namespace with linkInContainer).
      master: { anyOf: [linkName, { const: '' }] },
      // "" means bridge, as in the reference.
      mode: { enum: ['', 'bridge', 'private', 'vepa', 'passthru'] },
      // 0: the kernel's choice (the master's); never above the master's (checked at ADD).
      mtu: { type: 'integer', minimum: 0, maximum: 65535 },
      mac,
      linkInContainer: { type: 'boolean' },
      ipam: {
        // `ipam: {}` (no type) is an L2-only network.
        type: 'object',
        properties: { type: { type: 'string' } },
      },
      args: {
        type: 'object',
        properties: { cni: { type: 'object', properties: { mac } } },
      },
      runtimeConfig: { type: 'object', properties: { mac } },
    },
  },
} as const;
