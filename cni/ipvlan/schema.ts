// JSON schema of the strand-ipvlan network configuration: the reference `ipvlan`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateIpvlanConf`).
// The common NetConf fields are validated by skel; unknown fields are allowed.

const linkName = {
  type: 'string',
  minLength: 1,
  maxLength: 15,
  // The kernel's dev_valid_name(): not "." or "..", no "/", ":" or whitespace.
  pattern: '^(?!\\.{1,2}$)[^/:\\s]+$',
} as const;

export const schemas = {
  validateIpvlanConf: {
    $id: 'strand/ipvlan',
    type: 'object',
    properties: {
      // Absent or "": the single interface of prevResult when chained, else the link of
      // the default route (in the pod namespace with linkInContainer).
      master: { anyOf: [linkName, { const: '' }] },
      // "" means l2, as in the reference.
      mode: { enum: ['', 'l2', 'l3', 'l3s'] },
      mtu: { type: 'integer', minimum: 0, maximum: 65535 },
      linkInContainer: { type: 'boolean' },
      ipam: {
        // Chained use leaves it out; `ipam: {}` means no IPAM too.
        type: 'object',
        properties: { type: { type: 'string' } },
      },
    },
  },
} as const;
