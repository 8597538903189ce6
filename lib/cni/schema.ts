// JSON schemas compiled at build time by scripts/gen-validators.ts into gen/validators.js
// (one export per key). Plain data only: the generator imports this file.

const NAME_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$';
/**
 * The spec sets no length limit on a network name, but the name becomes a directory (the
 * local IPAM store, as host-local's /var/lib/cni/networks/<name>), a key segment in etcd
 * and a rule comment: longer than one file name (NAME_MAX, 255 bytes) it can name nothing.
 * The pattern is ASCII only, so characters are bytes.
 */
export const NAME_MAX_LENGTH = 255;
/** A plugin executable name: no path separators. */
const TYPE_PATTERN = '^[^/\\\\]+$';

const dns = {
  type: 'object',
  properties: {
    nameservers: { type: 'array', items: { type: 'string', format: 'ip' } },
    domain: { type: 'string' },
    search: { type: 'array', items: { type: 'string' } },
    options: { type: 'array', items: { type: 'string' } },
  },
} as const;

export const schemas = {
  /** The common single-plugin network config (fields of the spec; plugin fields pass). */
  validateNetConf: {
    type: 'object',
    required: ['cniVersion', 'name', 'type'],
    properties: {
      cniVersion: { type: 'string', minLength: 1 },
      cniVersions: { type: 'array', items: { type: 'string' } },
      // maxLength before pattern: a huge name is refused without running the pattern over it
      name: { type: 'string', minLength: 1, maxLength: NAME_MAX_LENGTH, pattern: NAME_PATTERN },
      type: { type: 'string', minLength: 1, pattern: TYPE_PATTERN },
      args: {
        type: 'object',
        properties: { cni: { type: 'object' } },
      },
      runtimeConfig: { type: 'object' },
      capabilities: { type: 'object', additionalProperties: { type: 'boolean' } },
      prevResult: { type: 'object' },
      // `"ipam": {}` is valid (an L2-only network): `type` is optional here.
      ipam: {
        type: 'object',
        properties: { type: { type: 'string', minLength: 1, pattern: TYPE_PATTERN } },
      },
      dns,
      logFile: { type: 'string', minLength: 1, maxLength: 4096 },
      logLevel: { enum: ['debug', 'info', 'warn', 'error'] },
      // bytes; at most 1 TiB
      logFileMaxSize: { type: 'integer', minimum: 4096, maximum: 1099511627776 },
      logFileMaxFiles: { type: 'integer', minimum: 1, maximum: 100 },
      // null: what libcni sends for a nil list (no attachment is valid), as is []
      'cni.dev/valid-attachments': {
        type: ['array', 'null'],
        items: {
          type: 'object',
          required: ['containerID', 'ifname'],
          properties: { containerID: { type: 'string' }, ifname: { type: 'string' } },
        },
      },
    },
  },
} as const;
