// JSON schema of the strand-bridge network configuration: the reference `bridge`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateBridgeConf`).
// The common NetConf fields (cniVersion, name, type, ipam, dns, prevResult ...) are
// validated by skel; this schema only adds the plugin's own fields. Unknown fields are
// allowed, as the spec asks of plugins.

import { ipamSection, linkName, macArgs, mtu } from '../../lib/cni/schema-parts.ts';

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
      mtu,
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
      ipam: ipamSection,
      ...macArgs,
    },
  },
} as const;
