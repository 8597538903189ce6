// The etcd store: cluster-wide IPAM state in etcd v3, through the `etcd3` client, which
// is imported lazily (only a config with `ipam.etcd` pays for loading it).
//
// Key layout (<prefix> defaults to /strand/ipam; <block> is the block CIDR with "/"
// replaced by "-", e.g. 10.1.0.64-26 or fd00::40-122):
//
//   <prefix>/affinity/<network>/<block>       {"network","cidr","node"}
//       Block ownership. Created in the same transaction as the block (create-if-absent:
//       compare create_revision == 0) and deleted with it. Small and written only on
//       claim/release, so a node agent lists and watches <prefix>/affinity/ to build
//       routes (block -> node) without seeing every allocation.
//   <prefix>/blocks/<network>/<block>         {"network","cidr","node","allocations":{ip:{containerId,ifname[,node]}},"last"}
//       Allocations inside the block; every change is a compare-and-swap on this key's
//       mod_revision. `node` inside an allocation marks an address borrowed by another
//       node (routes for such addresses need a /32 or /128 towards the borrower).
//   <prefix>/attachments/<network>/<containerID>/<ifname>   {"network","containerId","ifname","node","ips":[{ip,block}],"created"}
//       The allocation key of ADD/DEL/CHECK/GC, written in the same transaction as the
//       block change, so blocks and attachments always agree.
//
// Every revision the Store interface exposes is the key's etcd mod_revision.
//
// Transport (etcd-kv.ts): openEtcdStore talks gRPC through the `etcd3` client and
// exposes it as `client` (the node agent's leases and watches use it);
// openEtcdHttpStore talks to the same etcd through its JSON gateway over node:http(s),
// without loading etcd3 and gRPC, which is what a short-lived plugin process wants.
import { isIP } from 'node:net';
import type { Etcd3 } from 'etcd3';
import type { EtcdConfig } from './etcd-config.ts';
import { endpointUrl, grpcKv, httpKv, type EtcdKv, type KvCompare, type KvOp, type KvPair } from './etcd-kv.ts';
import type { Affinity, Attachment, Block, Store, Versioned, WriteOp } from './types.ts';
import { blockSegment, StoreUnavailableError } from './types.ts';

export function etcdKeys(prefix: string): {
  affinity(network?: string, cidr?: string): string;
  block(network?: string, cidr?: string): string;
  attachment(network?: string, containerId?: string, ifname?: string): string;
} {
  // With fewer arguments each returns the directory prefix (ending in "/").
  const path = (kind: string, parts: Array<string | undefined>): string => {
    const defined = parts.filter((p): p is string => p !== undefined);
    const tail = defined.join('/');
    return defined.length === parts.length ? `${prefix}/${kind}/${tail}` : `${prefix}/${kind}/${tail ? `${tail}/` : ''}`;
  };
  return {
    affinity: (n, c) => path('affinity', [n, c === undefined ? undefined : blockSegment(c)]),
    block: (n, c) => path('blocks', [n, c === undefined ? undefined : blockSegment(c)]),
    attachment: (n, id, ifn) => path('attachments', [n, id, ifn]),
  };
}

/** The end of a prefix range: the prefix with its last byte incremented. */
function prefixEnd(p: string): Buffer {
  const b = Buffer.from(p);
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      b[i] = (b[i] as number) + 1;
      return b.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

interface SecureConnector {
  connectionOptions?: { servername?: string };
}
interface PatchableCredentials {
  _createSecureConnector?: (...a: unknown[]) => SecureConnector;
}
let sslPatched = false;

/**
 * grpc-js passes the endpoint host as the TLS server name, and this Node refuses an IP
 * address there (RFC 6066), so https://127.0.0.1:2379 would never connect. Wrap the
 * credentials etcd3 creates so an IP server name is dropped: Node then verifies the
 * certificate against the IP (its IP SANs), which is what the user asked for.
 */
function allowIpEndpoints(grpc: { credentials: { createSsl: (...a: never[]) => unknown } }): void {
  if (sslPatched) return;
  sslPatched = true;
  const orig = grpc.credentials.createSsl;
  grpc.credentials.createSsl = ((...args: never[]) => {
    const creds = orig(...args) as PatchableCredentials;
    const make = creds._createSecureConnector?.bind(creds);
    if (make) {
      creds._createSecureConnector = (...a: unknown[]) => {
        const conn = make(...a);
        const o = conn.connectionOptions;
        if (o?.servername !== undefined && isIP(o.servername)) delete o.servername;
        return conn;
      };
    }
    return creds;
  }) as typeof orig;
}

export async function openEtcdStore(cfg: EtcdConfig): Promise<EtcdStore> {
  let mod: typeof import('etcd3');
  try {
    mod = await import('etcd3');
    if (cfg.tls) allowIpEndpoints((await import('@grpc/grpc-js')) as unknown as Parameters<typeof allowIpEndpoints>[0]);
  } catch (e) {
    throw new StoreUnavailableError('etcd', 'cannot load the etcd3 client', { cause: e });
  }
  const tls = cfg.tls;
  const opts: import('etcd3').IOptions = {
    hosts: cfg.endpoints.map((e) => endpointUrl(e, tls !== undefined)),
    dialTimeout: cfg.dialTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + cfg.requestTimeoutMs }),
  };
  if (tls) {
    const creds: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer } = { rootCertificate: tls.ca as Buffer };
    if (tls.key) creds.privateKey = tls.key;
    if (tls.cert) creds.certChain = tls.cert;
    opts.credentials = creds;
  }
  if (cfg.username !== undefined && cfg.password !== undefined) opts.auth = { username: cfg.username, password: cfg.password };
  return new EtcdStore(new mod.Etcd3(opts), cfg.prefix);
}

/**
 * The etcd store over etcd's JSON gateway (node:http or node:https): no etcd3/gRPC
 * load, for short-lived plugin processes. Same keys, same transactions as openEtcdStore.
 */
export function openEtcdHttpStore(cfg: EtcdConfig): EtcdStore {
  return new EtcdStore(httpKv(cfg), cfg.prefix);
}

export class EtcdStore implements Store {
  readonly kind = 'etcd' as const;
  readonly kv: EtcdKv;
  readonly keys: ReturnType<typeof etcdKeys>;
  private readonly grpc: Etcd3 | undefined;

  /** Over an etcd3 client (gRPC), or over any EtcdKv transport (httpKv). */
  constructor(client: Etcd3 | EtcdKv, prefix: string) {
    if ('transport' in client) {
      this.kv = client;
    } else {
      this.grpc = client;
      this.kv = grpcKv(client);
    }
    this.keys = etcdKeys(prefix);
  }

  /** The etcd3 client of a store opened with openEtcdStore (gRPC); an HTTP store has none. */
  get client(): Etcd3 {
    if (!this.grpc) throw new Error(`this etcd store talks to etcd over ${this.kv.transport}, not through an etcd3 client`);
    return this.grpc;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new StoreUnavailableError('etcd', `etcd ${what} failed: ${msg}`, { cause: e });
    }
  }

  private range(key: string, prefix: boolean): Promise<KvPair[]> {
    return this.call('range', () => this.kv.range(Buffer.from(key), prefix ? prefixEnd(key) : undefined));
  }

  private static parse<T>(kv: KvPair): Versioned<T> {
    return { value: JSON.parse(kv.value.toString()) as T, rev: kv.modRevision };
  }

  async exclusive<T>(_network: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined> {
    const [kv] = await this.range(this.keys.attachment(network, containerId, ifname), false);
    return kv && EtcdStore.parse<Attachment>(kv);
  }

  async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
    return (await this.range(this.keys.attachment(network), true)).map((kv) => EtcdStore.parse<Attachment>(kv));
  }

  async listAffinities(network?: string): Promise<Affinity[]> {
    return (await this.range(this.keys.affinity(network), true)).map((kv) => JSON.parse(kv.value.toString()) as Affinity);
  }

  async getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>> {
    if (cidrs.length === 0) return [];
    if (cidrs.length === 1) {
      const [kv] = await this.range(this.keys.block(network, cidrs[0]), false);
      return kv ? [EtcdStore.parse<Block>(kv)] : [];
    }
    // One round trip for many keys: a read-only transaction of range requests.
    const ops: KvOp[] = cidrs.map((c) => ({ range: Buffer.from(this.keys.block(network, c)) }));
    const res = await this.call('txn', () => this.kv.txn([], ops));
    return res.ranges.flatMap((kvs) => kvs.map((kv) => EtcdStore.parse<Block>(kv)));
  }

  async listBlocks(network?: string): Promise<Array<Versioned<Block>>> {
    return (await this.range(this.keys.block(network), true)).map((kv) => EtcdStore.parse<Block>(kv));
  }

  async commit(ops: readonly WriteOp[]): Promise<number | undefined> {
    const compare: KvCompare[] = [];
    const success: KvOp[] = [];
    const expect = (key: string, prevRev: number): void => {
      compare.push(prevRev === 0 ? { key: Buffer.from(key), target: 'Create', rev: 0 } : { key: Buffer.from(key), target: 'Mod', rev: prevRev });
    };
    const put = (key: string, value: unknown): void => {
      success.push({ put: Buffer.from(key), value: Buffer.from(JSON.stringify(value)) });
    };
    const del = (key: string): void => {
      success.push({ del: Buffer.from(key) });
    };
    for (const op of ops) {
      switch (op.op) {
        case 'putBlock': {
          const b = op.block;
          const key = this.keys.block(b.network, b.cidr);
          expect(key, op.prevRev);
          put(key, b);
          if (op.prevRev === 0) {
            const ak = this.keys.affinity(b.network, b.cidr);
            expect(ak, 0);
            put(ak, { network: b.network, cidr: b.cidr, node: b.node } satisfies Affinity);
          }
          break;
        }
        case 'delBlock': {
          const key = this.keys.block(op.network, op.cidr);
          expect(key, op.prevRev);
          del(key);
          del(this.keys.affinity(op.network, op.cidr));
          break;
        }
        case 'putAttachment': {
          const a = op.attachment;
          const key = this.keys.attachment(a.network, a.containerId, a.ifname);
          expect(key, op.prevRev);
          put(key, a);
          break;
        }
        case 'delAttachment': {
          const key = this.keys.attachment(op.network, op.containerId, op.ifname);
          expect(key, op.prevRev);
          del(key);
          break;
        }
      }
    }
    const res = await this.call('txn', () => this.kv.txn(compare, success));
    return res.succeeded ? res.revision : undefined;
  }

  async ping(): Promise<void> {
    await this.range(this.keys.affinity(), false);
  }

  async close(): Promise<void> {
    this.kv.close();
  }
}
