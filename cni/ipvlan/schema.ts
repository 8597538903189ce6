// JSON schema of the strand-ipvlan network configuration: the reference `ipvlan`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validateIpvlanConf`).
// The common NetConf fields are validated by skel; unknown fields are allowed.

import { ipamSection, masterName, mtu } from '../../lib/cni/schema-parts.ts';

export const schemas = {
  validateIpvlanConf: {
    $id: 'strand/ipvlan',
    type: 'object',
    properties: {
      // Absent or "": the single interface of prevResult when chained, else the link of
      // the default route (in the pod namespace with linkInContainer).
      master: masterName,
      // "" means l2, as in the reference.
      mode: { enum: ['', 'l2', 'l3', 'l3s'] },
      mtu,
      linkInContainer: { type: 'boolean' },
      // Chained use leaves it out; `ipam: {}` means no IPAM too.
      ipam: ipamSection,
    },
  },
} as const;
