// JSON schema of the strand-portmap network configuration: the reference `portmap`
// plugin's options, same names and meaning. Compiled at build time by
// scripts/gen-validators.ts into gen/validators.js (export `validatePortmapConf`).
// Cross-field rules (backend against conditions, markMasqBit with
// externalSetMarkChain, hostIP syntax) are checked in config.ts.

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;

/**
 * One condition argument: what a rule of either backend needs (addresses, ports,
 * interface names, sets in braces, negation), nothing a shell or nft's parser would
 * read as the end of a statement, a comment, a quote or a substitution.
 */
const condition = { type: 'string', maxLength: 256, pattern: '^[A-Za-z0-9 _.:/,!=+@%{}\\[\\]-]*$' } as const;
const conditions = { type: 'array', maxItems: 64, items: condition } as const;

export const schemas = {
  validatePortmapConf: {
    $id: 'strand/portmap',
    type: 'object',
    properties: {
      backend: { enum: ['iptables', 'nftables'] },
      snat: { type: 'boolean' },
      masqAll: { type: 'boolean' },
      markMasqBit: { type: 'integer', minimum: 0, maximum: 31 },
      // an iptables chain name (at most 28 characters), used as a jump target
      externalSetMarkChain: { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}$' },
      conditionsV4: conditions,
      conditionsV6: conditions,
      runtimeConfig: {
        type: 'object',
        properties: {
          portMappings: {
            type: 'array',
            items: {
              type: 'object',
              required: ['hostPort', 'containerPort', 'protocol'],
              properties: {
                hostPort: port,
                containerPort: port,
                protocol: { type: 'string', pattern: '^([tT][cC][pP]|[uU][dD][pP]|[sS][cC][tT][pP])$' },
                hostIP: { type: 'string', maxLength: 64 },
              },
            },
          },
        },
      },
    },
  },
} as const;
