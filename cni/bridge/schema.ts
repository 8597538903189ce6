// JSON schema of the strand-bridge network configuration: the reference `bridge`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateBridgeConf`).
// The common NetConf fields (cniVersion, name, type, ipam, dns, prevResult ...) are
// validated by skel; this schema only adds the plugin's own fields. Unknown fields are
// allowed, as the spec asks of plugins.

const linkName = {
  type: 'string',
  minLength: 1,
  maxLength: 15,
  // The kernel's dev_valid_name(): not "." or "..", no "/", ":" or whitespace.
  pattern: '^(?!\\.{1,2}$)[^/:\\s]+$',
} as const;

const mac = {
  type: 'string',
  pattern: '^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$',
} as const;

const vlanId = { type: 'integer', minimum: 1, maximum: 4094 } as const;

export const schemas = {
  validateBridgeConf: {
    $id: 'strand/bridge',
    type: 'object',
    properties: {
      bridge: linkName,
      isGateway: { type: 'boolean' },
      isDefaultGateway: { type: 'boolean' },
      forceAddress: { type: 'boolean' },
      ipMasq: { type: 'boolean' },
      ipMasqBackend: { enum: ['iptables', 'nftables'] },
      mtu: { type: 'integer', minimum: 0, maximum: 65535 },
      // strand's own: the node's pod MTU file written by `strand agent` (lib/plugin/mtu.ts)
      mtuFile: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/' },
      hairpinMode: { type: 'boolean' },
      promiscMode: { type: 'boolean' },
      vlan: { type: 'integer', minimum: 0, maximum: 4094 },
      vlanTrunk: {
        type: 'array',
        items: {
          type: 'object',
          properties: { minID: vlanId, maxID: vlanId, id: vlanId },
          dependentRequired: { minID: ['maxID'], maxID: ['minID'] },
        },
      },
      preserveDefaultVlan: { type: 'boolean' },
      macspoofchk: { type: 'boolean' },
      enabledad: { type: 'boolean' },
      disableContainerInterface: { type: 'boolean' },
      portIsolation: { type: 'boolean' },
      ipam: {
        // `ipam: {}` (no type) is an L2-only network.
        type: 'object',
        properties: { type: { type: 'string' } },
      },
      args: {
        type: 'object',
        properties: {
          cni: { type: 'object', properties: { mac } },
        },
      },
      runtimeConfig: {
        type: 'object',
        properties: { mac },
      },
    },
  },
} as const;
