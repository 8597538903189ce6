// JSON schema of the strand-macvlan network configuration: the reference `macvlan`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateMacvlanConf`).
// The common NetConf fields are validated by skel; unknown fields are allowed, as the
// spec asks of plugins.

import { ipamSection, mac, macArgs, masterName, mtu } from '../../lib/cni/schema-parts.ts';

export const schemas = {
  validateMacvlanConf: {
    $id: 'strand/macvlan',
    type: 'object',
    properties: {
      // Absent or "": the link of the default route (in the pod namespace with linkInContainer).
      master: masterName,
      // "" means bridge, as in the reference.
      mode: { enum: ['', 'bridge', 'private', 'vepa', 'passthru'] },
      // 0: the kernel's choice (the master's); never above the master's (checked at ADD).
      mtu,
      mac,
      linkInContainer: { type: 'boolean' },
      ipam: ipamSection,
      ...macArgs,
    },
  },
} as const;
