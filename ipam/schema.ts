// JSON schema of strand-ipam's `ipam` section, compiled at build time into
// gen/validators.js (validateIpamConf). Structure only; the semantic checks (subnet has
// no host bits, rangeStart inside the subnet, overlaps, requested IPs, TLS files) are in
// ipam/config.ts and also name the field. Unknown fields are accepted, as host-local does.

const range = {
  type: 'object',
  required: ['subnet'],
  properties: {
    subnet: { type: 'string', format: 'cidr' },
    rangeStart: { type: 'string', format: 'ip' },
    rangeEnd: { type: 'string', format: 'ip' },
    gateway: { type: 'string', format: 'ip' },
    // Whereabouts' name: CIDRs (or addresses) never handed out
    exclude: { type: 'array', items: { type: 'string' } },
  },
} as const;

/** "500ms", "10s", "1m" or plain milliseconds as a string. */
const durationText = { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m)?$' } as const;
/** A timeout: milliseconds (above 0) or durationText. */
const duration = { anyOf: [{ type: 'number', exclusiveMinimum: 0 }, durationText] } as const;

export const schemas = {
  validateIpamConf: {
    type: 'object',
    required: ['type'],
    properties: {
      type: { type: 'string', minLength: 1 },
      ranges: { type: 'array', items: { type: 'array', minItems: 1, items: range } },
      // legacy single range (host-local accepts it at the top level)
      subnet: { type: 'string', format: 'cidr' },
      rangeStart: { type: 'string', format: 'ip' },
      rangeEnd: { type: 'string', format: 'ip' },
      gateway: { type: 'string', format: 'ip' },
      routes: {
        type: 'array',
        items: {
          type: 'object',
          required: ['dst'],
          properties: { dst: { type: 'string', format: 'cidr' }, gw: { type: 'string', format: 'ip' } },
        },
      },
      resolvConf: { type: 'string' },
      dataDir: { type: 'string', minLength: 1 },
      nodeName: { type: 'string', minLength: 1 },
      strictAffinity: { type: 'boolean' },
      blockAffinity: { type: 'boolean' },
      exclude: { type: 'array', items: { type: 'string' } },
      gcKeepLiveNetns: { type: 'boolean' },
      // 0 allowed: no attachment is kept for being young
      gcGracePeriod: { anyOf: [{ type: 'number', minimum: 0 }, durationText] },
      blockSize: { type: 'integer', minimum: 1, maximum: 32 },
      blockSizeV6: { type: 'integer', minimum: 1, maximum: 128 },
      etcd: {
        type: 'object',
        required: ['endpoints'],
        properties: {
          endpoints: {
            anyOf: [
              { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              { type: 'string', minLength: 1 },
            ],
          },
          prefix: { type: 'string' },
          transport: { enum: ['http', 'grpc'] },
          dialTimeout: duration,
          requestTimeout: duration,
          tls: {
            type: 'object',
            properties: { ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' } },
          },
          username: { type: 'string' },
          password: { type: 'string' },
        },
      },
    },
  },
};
