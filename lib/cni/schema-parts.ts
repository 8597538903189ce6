// JSON schema fragments that several plugins' schema.ts share (cni/*/schema.ts). Plain
// data only: scripts/gen-validators.ts imports the schemas, which import this file. The
// rules behind the formats are in lib/cni/formats.ts (and lib/addr/).

/** A Linux interface name: the kernel's rules, name templates ("eth%d") refused. */
export const linkName = { type: 'string', format: 'ifname' } as const;

/** A link name, or "" for "the link of the default route" (macvlan's and ipvlan's `master`). */
export const masterName = { anyOf: [linkName, { const: '' }] } as const;

/** An Ethernet address, ":" or "-" separated (what Go's net.ParseMAC takes for 6 bytes). */
export const mac = { type: 'string', format: 'mac' } as const;

/** A link MTU; 0 is the kernel's choice. */
export const mtu = { type: 'integer', minimum: 0, maximum: 65535 } as const;

/** The plugin's `ipam` section as the interface plugins see it: `{}` (no type) is an L2-only network. */
export const ipamSection = { type: 'object', properties: { type: { type: 'string' } } } as const;

/** `args.cni.mac` and `runtimeConfig.mac` (capability "mac"), the pod interface's MAC. */
export const macArgs = {
  args: { type: 'object', properties: { cni: { type: 'object', properties: { mac } } } },
  runtimeConfig: { type: 'object', properties: { mac } },
} as const;
