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
//   <prefix>/attachments/<network>/<containerID>/<ifname>   {"network","containerId","ifname","node","ips":[{ip,block}],"created",
//                                                            "netns","pod":{namespace,name,uid},"origin"}
//       The allocation key of ADD/DEL/CHECK/GC, written in the same transaction as the
//       block change, so blocks and attachments always agree.
//   <prefix>/addresses/<network>/v4/<8 hex digits>  (v6: 32)   {"ip","containerId","ifname","node"}
//       The attachments' address index: one key per address an attachment holds, created
//       (create-if-absent) and deleted in the same transaction as its attachment. It is
//       what makes "no two attachments hold one address" atomic whatever the blocks say;
//       fixed-width hex keeps a block's addresses one key range (holders()).
//   <prefix>/reservations/<network>            {"network","reservations":[{cidr,note,allowRequested,created}]}
//       Addresses never handed out; every allocation compares this key's revision.
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
import { endpointUrl, grpcKv, httpKv, requestDeadline, type EtcdKv, type KvCompare, type KvOp, type KvOptions, type KvPair } from './etcd-kv.ts';
import { bitsOf, bounds, parseCidr, tryParseIP, type IPAddr } from '../../lib/addr/cidr.ts';
import { attachmentProblem, blockProblem, reservationsProblem } from './doc.ts';
import type { Affinity, Attachment, Block, Holder, NodeDirectory, RepairOptions, Reservations, Store, Versioned, WriteOp } from './types.ts';
import { attachmentKey, blockFromSegment, blockSegment, StoreDamagedError, StoreUnavailableError } from './types.ts';

/** The path segment of an address in the address index: "v4/0a010005", "v6/fd00...0005". */
function addressSegment(ip: IPAddr): string {
  return `v${ip.family}/${ip.value.toString(16).padStart(bitsOf(ip.family) / 4, '0')}`;
}

export function etcdKeys(prefix: string): {
  affinity(network?: string, cidr?: string): string;
  block(network?: string, cidr?: string): string;
  attachment(network?: string, containerId?: string, ifname?: string): string;
  /** The address index key of `ip` (canonical text or parsed), or the network's directory. */
  address(network?: string, ip?: IPAddr): string;
  reservations(network?: string): string;
  /** The agent's node record (agent/registry.ts), or the directory of them. */
  node(name?: string): string;
  /** The agent's liveness key (on its lease), or the directory of them. */
  alive(name?: string): string;
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
    address: (n, ip) => path('addresses', [n, ip === undefined ? undefined : addressSegment(ip)]),
    reservations: (n) => path('reservations', [n]),
    node: (n) => path('nodes', [n]),
    alive: (n) => path('alive', [n]),
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

/**
 * The etcd store over the etcd3 client (gRPC). With `opts.deadline` (a plugin call's
 * deadline) every request ends by then, retries included: etcd3 retries a failed call
 * three times, each with a fresh request timeout, which a hung etcd would otherwise
 * turn into four timeouts.
 */
export async function openEtcdStore(cfg: EtcdConfig, opts: KvOptions = {}): Promise<EtcdStore> {
  let mod: typeof import('etcd3');
  try {
    mod = await import('etcd3');
    if (cfg.tls) allowIpEndpoints((await import('@grpc/grpc-js')) as unknown as Parameters<typeof allowIpEndpoints>[0]);
  } catch (e) {
    throw new StoreUnavailableError('etcd', 'cannot load the etcd3 client', { cause: e });
  }
  const tls = cfg.tls;
  const options: import('etcd3').IOptions = {
    hosts: cfg.endpoints.map((e) => endpointUrl(e, tls !== undefined)),
    dialTimeout: cfg.dialTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: requestDeadline(cfg.requestTimeoutMs, opts) }),
  };
  if (tls) {
    const creds: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer } = { rootCertificate: tls.ca as Buffer };
    if (tls.key) creds.privateKey = tls.key;
    if (tls.cert) creds.certChain = tls.cert;
    options.credentials = creds;
  }
  if (cfg.username !== undefined && cfg.password !== undefined) options.auth = { username: cfg.username, password: cfg.password };
  const closing: { closed: boolean; onClose?: () => void } = { closed: false };
  if (opts.deadline !== undefined) {
    // A plugin call: each endpoint once (etcd3's default is 4 attempts), none past the
    // call's deadline; refused connections then cost one connection attempt per endpoint.
    const deadline = opts.deadline;
    const attempts = cfg.endpoints.length;
    closing.onClose = () => {
      closing.closed = true;
    };
    const once = { execute: <T>(fn: (ctx: { signal: AbortSignal }) => Promise<T>) => fn({ signal: new AbortController().signal }) };
    const global = {
      async execute<T>(fn: (ctx: { signal: AbortSignal; attempt: number }) => Promise<T>): Promise<T> {
        for (let attempt = 1; ; attempt++) {
          try {
            return await fn({ signal: new AbortController().signal, attempt });
          } catch (e) {
            // after close(), a retry would open a new connection that keeps the process alive
            if (attempt >= attempts || closing.closed || Date.now() >= deadline || !(e instanceof Error) || !mod.isRecoverableError(e)) throw e;
          }
        }
      },
    };
    type Policies = NonNullable<import('etcd3').IOptions['faultHandling']>;
    options.faultHandling = {
      global: global as unknown as NonNullable<Policies['global']>,
      host: () => once as unknown as ReturnType<NonNullable<Policies['host']>>,
    };
  }
  const client = new mod.Etcd3(options);
  if (opts.deadline !== undefined) closeChannelsAtOnce(client);
  return new EtcdStore(client, cfg.prefix, closing.onClose ? { ...opts, onClose: closing.onClose } : opts);
}

/**
 * The etcd store over etcd's JSON gateway (node:http or node:https): no etcd3/gRPC
 * load, for short-lived plugin processes. Same keys, same transactions as openEtcdStore.
 */
export function openEtcdHttpStore(cfg: EtcdConfig, opts: KvOptions = {}): EtcdStore {
  return new EtcdStore(httpKv(cfg, opts), cfg.prefix, opts);
}

/** repairRecords' writer: notes what it does, and does it unless a dry run. */
type RepairWrite = (what: string, ops: KvOp[]) => Promise<void>;

const delKey = (kv: KvPair): KvOp => ({ del: kv.key });
const putKey = (key: string, v: unknown): KvOp => ({ put: Buffer.from(key), value: Buffer.from(JSON.stringify(v)) });

/** The record of `kv`, or why it is damaged. */
function decodeOrWhy<T>(kv: KvPair, problem: (v: unknown) => string | undefined): { ok: true; v: T } | { ok: false; why: string } {
  try {
    return { ok: true, v: EtcdStore.decode<T>(kv, problem) };
  } catch (e) {
    if (e instanceof StoreDamagedError) return { ok: false, why: e.problem };
    throw e;
  }
}

/** The valid records by `keyOf`; damaged ones removed (derived records: rebuilt from the attachments). */
async function validRecords<T>(
  kvs: KvPair[],
  problem: (v: unknown) => string | undefined,
  keyOf: (v: T) => string,
  write: RepairWrite,
): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for (const kv of kvs) {
    const r = decodeOrWhy<T>(kv, problem);
    if (r.ok) out.set(keyOf(r.v), r.v);
    else await write(`${kv.key.toString()}: ${r.why}: removed (rebuilt from the attachments)`, [delKey(kv)]);
  }
  return out;
}

/** The addresses the index and the blocks record for one attachment (rebuilding a damaged attachment record). */
function addressesNaming(
  containerId: string,
  ifname: string,
  blocks: Map<string, Block>,
  index: Map<string, Holder & { ip: string }>,
): Array<{ ip: string; block: string; node: string }> {
  const ips = new Map<string, { ip: string; block: string; node: string }>();
  for (const h of index.values()) {
    if (h.containerId !== containerId || h.ifname !== ifname) continue;
    const block = [...blocks.values()].find((b) => b.allocations[h.ip] !== undefined)?.cidr;
    if (block) ips.set(h.ip, { ip: h.ip, block, node: h.node });
  }
  for (const b of blocks.values()) {
    for (const [ip, ref] of Object.entries(b.allocations)) {
      if (ref.containerId === containerId && ref.ifname === ifname && !ips.has(ip)) ips.set(ip, { ip, block: b.cidr, node: ref.node ?? b.node });
    }
  }
  return [...ips.values()];
}

export class EtcdStore implements Store, NodeDirectory {
  readonly kind = 'etcd' as const;
  readonly kv: EtcdKv;
  readonly keys: ReturnType<typeof etcdKeys>;
  private readonly grpc: Etcd3 | undefined;
  /** The call's deadline (KvOptions.deadline), if any. */
  private readonly deadline: number | undefined;
  /**
   * The first failure to reach etcd, once the store has a call deadline: every later
   * request of the call fails with it at once (a hung etcd costs a call one timeout,
   * however many steps, undo steps included, the call still has).
   */
  private broken: StoreUnavailableError | undefined;
  private readonly onClose: (() => void) | undefined;
  private readonly prefix: string;
  /** A view of another store's client (forCall): close() leaves the client open. */
  private readonly borrowed: boolean;

  /** Over an etcd3 client (gRPC), or over any EtcdKv transport (httpKv). `onClose`: told first by close(). */
  constructor(client: Etcd3 | EtcdKv, prefix: string, opts: KvOptions & { onClose?: () => void; borrowed?: boolean } = {}) {
    this.deadline = opts.deadline;
    this.onClose = opts.onClose;
    this.prefix = prefix;
    this.borrowed = opts.borrowed ?? false;
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
    if (this.broken) throw this.broken;
    try {
      return await (this.deadline === undefined ? fn() : beforeDeadline(fn(), this.deadline));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const err = new StoreUnavailableError('etcd', `etcd ${what} failed: ${msg}`, { cause: e });
      if (this.deadline !== undefined) this.broken = err;
      throw err;
    }
  }

  private range(key: string, prefix: boolean, keysOnly = false): Promise<KvPair[]> {
    return this.call('range', () => this.kv.range(Buffer.from(key), prefix ? prefixEnd(key) : undefined, keysOnly));
  }

  /** Parses and checks one value; a value that is not the record its key names is StoreDamagedError naming the key. */
  static decode<T>(kv: KvPair, problem: (v: unknown) => string | undefined): T {
    let v: unknown;
    try {
      v = JSON.parse(kv.value.toString()) as unknown;
    } catch {
      throw new StoreDamagedError('etcd', kv.key.toString(), `is not valid JSON (${kv.value.length} bytes)`);
    }
    const p = problem(v);
    if (p) throw new StoreDamagedError('etcd', kv.key.toString(), p);
    return v as T;
  }

  private static parse<T>(kv: KvPair, problem: (v: unknown) => string | undefined): Versioned<T> {
    return { value: EtcdStore.decode<T>(kv, problem), rev: kv.modRevision };
  }

  async exclusive<T>(_network: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined> {
    const [kv] = await this.range(this.keys.attachment(network, containerId, ifname), false);
    return kv && EtcdStore.parse<Attachment>(kv, attachmentProblem);
  }

  async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
    return (await this.range(this.keys.attachment(network), true)).map((kv) => EtcdStore.parse<Attachment>(kv, attachmentProblem));
  }

  async listAffinities(network?: string): Promise<Affinity[]> {
    return (await this.range(this.keys.affinity(network), true)).map((kv) => EtcdStore.decode<Affinity>(kv, affinityProblem));
  }

  async getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>> {
    if (cidrs.length === 0) return [];
    if (cidrs.length === 1) {
      const [kv] = await this.range(this.keys.block(network, cidrs[0]), false);
      return kv ? [EtcdStore.parse<Block>(kv, blockProblem)] : [];
    }
    // One round trip for many keys: a read-only transaction of range requests.
    const ops: KvOp[] = cidrs.map((c) => ({ range: Buffer.from(this.keys.block(network, c)) }));
    const res = await this.call('txn', () => this.kv.txn([], ops));
    return res.ranges.flatMap((kvs) => kvs.map((kv) => EtcdStore.parse<Block>(kv, blockProblem)));
  }

  async listBlocks(network?: string): Promise<Array<Versioned<Block>>> {
    return (await this.range(this.keys.block(network), true)).map((kv) => EtcdStore.parse<Block>(kv, blockProblem));
  }

  async holders(network: string, cidr: string): Promise<Map<string, Holder>> {
    const c = parseCidr(cidr);
    const span = bounds(c);
    const lo = this.keys.address(network, { family: c.family, value: span.lo });
    const hi = this.keys.address(network, { family: c.family, value: span.hi });
    const kvs = await this.call('range', () => this.kv.range(Buffer.from(lo), Buffer.from(`${hi}\0`)));
    const out = new Map<string, Holder>();
    for (const kv of kvs) {
      const h = EtcdStore.decode<Holder & { ip: string }>(kv, addressProblem);
      out.set(h.ip, { containerId: h.containerId, ifname: h.ifname, node: h.node });
    }
    return out;
  }

  async getReservations(network: string): Promise<Versioned<Reservations> | undefined> {
    const [kv] = await this.range(this.keys.reservations(network), false);
    return kv && EtcdStore.parse<Reservations>(kv, reservationsProblem);
  }

  async listNetworks(): Promise<string[]> {
    const nets = new Set<string>();
    for (const dir of [this.keys.block(), this.keys.attachment(), this.keys.reservations()]) {
      for (const kv of await this.range(dir, true, true)) {
        const n = kv.key.toString().slice(dir.length).split('/')[0];
        if (n) nets.add(n);
      }
    }
    return [...nets].sort();
  }

  /** One etcd transaction for `ops` (long as a table: one case per write op, each its compares and writes). */
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
    const addr = (network: string, ip: string): string => {
      const a = tryParseIP(ip);
      if (!a) throw new Error(`not an IP address: ${ip}`);
      return this.keys.address(network, a);
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
          const before = new Set(op.prevIps);
          const after = new Set(a.ips.map((e) => e.ip));
          for (const ip of after) {
            if (before.has(ip)) continue;
            // create-if-absent: the address must not be held by any other attachment
            const k = addr(a.network, ip);
            expect(k, 0);
            put(k, { ip, containerId: a.containerId, ifname: a.ifname, node: a.node });
          }
          for (const ip of before) if (!after.has(ip)) del(addr(a.network, ip));
          break;
        }
        case 'delAttachment': {
          const key = this.keys.attachment(op.network, op.containerId, op.ifname);
          expect(key, op.prevRev);
          del(key);
          for (const ip of op.ips) del(addr(op.network, ip));
          break;
        }
        case 'putReservations': {
          const key = this.keys.reservations(op.reservations.network);
          expect(key, op.prevRev);
          put(key, op.reservations);
          break;
        }
        case 'expectReservations':
          expect(this.keys.reservations(op.network), op.prevRev);
          break;
      }
    }
    const res = await this.call('txn', () => this.kv.txn(compare, success));
    return res.succeeded ? res.revision : undefined;
  }

  /**
   * Damaged values: blocks, affinities and index entries are removed (rebuilt from the
   * attachments); a damaged attachment is rebuilt from the index entries and block
   * entries that name it, or removed when none does; damaged reservations are removed
   * (reported: re-add them). Then the derived records are made to agree: an affinity for
   * every block and none without, an index entry for every attachment address.
   */
  async repairRecords(network: string, opts: RepairOptions): Promise<string[]> {
    const notes: string[] = [];
    const write = async (what: string, ops: KvOp[]): Promise<void> => {
      notes.push(what);
      if (!opts.dryRun && ops.length) await this.call('txn', () => this.kv.txn([], ops));
    };
    const [blockKvs, affKvs, attKvs, addrKvs, resKvs] = await Promise.all([
      this.range(this.keys.block(network), true),
      this.range(this.keys.affinity(network), true),
      this.range(this.keys.attachment(network), true),
      this.range(this.keys.address(network), true),
      this.range(this.keys.reservations(network), false),
    ]);
    const blocks = await validRecords<Block>(blockKvs, blockProblem, (b) => b.cidr, write);
    const index = await validRecords<Holder & { ip: string }>(addrKvs, addressProblem, (h) => h.ip, write);
    const atts = await this.repairAttachments(network, attKvs, blocks, index, write);
    for (const kv of resKvs) {
      const r = decodeOrWhy<Reservations>(kv, reservationsProblem);
      if (!r.ok) await write(`${kv.key.toString()}: ${r.why}: removed; re-add the reservations with strand ipam reserve`, [delKey(kv)]);
    }
    await this.repairAffinities(network, affKvs, blocks, write);
    await this.repairIndex(network, atts, index, write, notes);
    return notes;
  }

  /** Valid attachments as they are; a damaged one rebuilt from the index and block entries naming it, or removed. */
  private async repairAttachments(
    network: string,
    attKvs: KvPair[],
    blocks: Map<string, Block>,
    index: Map<string, Holder & { ip: string }>,
    write: RepairWrite,
  ): Promise<Map<string, Attachment>> {
    const atts = new Map<string, Attachment>();
    for (const kv of attKvs) {
      const r = decodeOrWhy<Attachment>(kv, attachmentProblem);
      if (r.ok) {
        atts.set(attachmentKey(r.v.containerId, r.v.ifname), r.v);
        continue;
      }
      // the key names the attachment: <dir>/<containerID>/<ifname>
      const [containerId, ifname] = kv.key.toString().slice(this.keys.attachment(network).length).split('/');
      const ips = addressesNaming(containerId ?? '', ifname ?? '', blocks, index);
      if (!containerId || !ifname || ips.length === 0) {
        await write(`${kv.key.toString()}: ${r.why}: removed (no index or block entry names it)`, [delKey(kv)]);
        continue;
      }
      const a: Attachment = {
        network,
        containerId,
        ifname,
        node: (ips[0] as { node: string }).node,
        ips: ips.map((e) => ({ ip: e.ip, block: e.block })),
        created: new Date().toISOString(),
      };
      atts.set(attachmentKey(containerId, ifname), a);
      await write(`${kv.key.toString()}: ${r.why}: rebuilt from the records naming it (${a.ips.map((e) => e.ip).join(',')})`, [putKey(kv.key.toString(), a)]);
    }
    return atts;
  }

  /** An affinity for every block, naming the block's node, and none without a block. */
  private async repairAffinities(network: string, affKvs: KvPair[], blocks: Map<string, Block>, write: RepairWrite): Promise<void> {
    const affs = new Set<string>();
    for (const kv of affKvs) {
      const r = decodeOrWhy<Affinity>(kv, affinityProblem);
      const cidr = blockFromSegment(kv.key.toString().slice(this.keys.affinity(network).length));
      const owner = blocks.get(cidr)?.node;
      if (!r.ok) await write(`${kv.key.toString()}: ${r.why}: removed`, [delKey(kv)]);
      else if (!blocks.has(cidr)) await write(`affinity ${cidr} (node ${r.v.node}) has no block: removed`, [delKey(kv)]);
      else {
        if (r.v.node !== owner) {
          await write(`affinity ${cidr} names node ${r.v.node}, its block ${owner}: rewritten`, [putKey(kv.key.toString(), { network, cidr, node: owner })]);
        }
        affs.add(cidr);
      }
    }
    for (const b of blocks.values()) {
      if (!affs.has(b.cidr))
        await write(`block ${b.cidr} (node ${b.node}) had no affinity: added`, [
          putKey(this.keys.affinity(network, b.cidr), { network, cidr: b.cidr, node: b.node }),
        ]);
    }
  }

  /** The address index: exactly the attachments' addresses (an address two attachments hold is reported). */
  private async repairIndex(
    network: string,
    atts: Map<string, Attachment>,
    index: Map<string, Holder & { ip: string }>,
    write: RepairWrite,
    notes: string[],
  ): Promise<void> {
    const wanted = new Map<string, Holder & { ip: string }>();
    for (const a of atts.values()) {
      for (const e of a.ips) {
        const other = wanted.get(e.ip);
        if (other) {
          notes.push(
            `${e.ip} is held by two attachments, ${other.containerId}/${other.ifname} and ${a.containerId}/${a.ifname}: release one (strand ipam release)`,
          );
          continue;
        }
        wanted.set(e.ip, { ip: e.ip, containerId: a.containerId, ifname: a.ifname, node: a.node });
      }
    }
    for (const [ip, h] of wanted) {
      const cur = index.get(ip);
      if (cur && cur.containerId === h.containerId && cur.ifname === h.ifname && cur.node === h.node) continue;
      const a = tryParseIP(ip) as IPAddr;
      await write(`index entry of ${ip} ${cur ? `named ${cur.containerId}/${cur.ifname}` : 'missing'}: set to ${h.containerId}/${h.ifname}`, [
        putKey(this.keys.address(network, a), h),
      ]);
    }
    for (const [ip, h] of index) {
      if (wanted.has(ip)) continue;
      const a = tryParseIP(ip) as IPAddr;
      await write(`index entry of ${ip} names ${h.containerId}/${h.ifname}, which does not hold it: removed`, [
        { del: Buffer.from(this.keys.address(network, a)) },
      ]);
    }
  }

  async nodeRecords(): Promise<Map<string, { rev: number; addresses: string[] }>> {
    const dir = this.keys.node();
    const out = new Map<string, { rev: number; addresses: string[] }>();
    for (const kv of await this.range(dir, true)) {
      const name = kv.key.toString().slice(dir.length);
      if (!name || name.includes('/')) continue;
      let addresses: string[] = [];
      try {
        const v = JSON.parse(kv.value.toString()) as { addresses?: unknown };
        if (Array.isArray(v.addresses)) addresses = v.addresses.filter((a): a is string => typeof a === 'string');
      } catch {
        // a record the agent will rewrite: still the node's
      }
      out.set(name, { rev: kv.modRevision, addresses });
    }
    return out;
  }

  async aliveNodes(): Promise<Set<string>> {
    const dir = this.keys.alive();
    return new Set((await this.range(dir, true, true)).map((kv) => kv.key.toString().slice(dir.length)).filter((n) => n && !n.includes('/')));
  }

  async deleteNodeRecord(node: string, rev: number, unlessAlive: boolean): Promise<boolean> {
    const compare: KvCompare[] = [{ key: Buffer.from(this.keys.node(node)), target: 'Mod', rev }];
    // a key that does not exist has create revision 0
    if (unlessAlive) compare.push({ key: Buffer.from(this.keys.alive(node)), target: 'Create', rev: 0 });
    const res = await this.call('txn', () => this.kv.txn(compare, [{ del: Buffer.from(this.keys.node(node)) }]));
    return res.succeeded;
  }

  /** Reachable; with a network, the records every ADD of it reads are readable too. */
  async ping(network?: string): Promise<void> {
    if (network === undefined) await this.range(this.keys.affinity(), false);
    else await Promise.all([this.listAffinities(network), this.getReservations(network)]);
  }

  /**
   * This store's client for one plugin call in a long-lived process (the daemon's warm
   * pool): every request of the view ends by `deadline` and, as with a store opened for
   * one call, the first failure to reach etcd ends the call's later requests at once.
   * The client's own retries may go on in the background until its request timeout.
   * Closing the view leaves the client open.
   */
  forCall(deadline: number | undefined): EtcdStore {
    const opts = { borrowed: true, ...(deadline === undefined ? {} : { deadline }) };
    return new EtcdStore(this.grpc ?? this.kv, this.prefix, opts);
  }

  async close(): Promise<void> {
    if (this.borrowed) return;
    this.onClose?.();
    if (this.grpc) closeChannelsNow(this.grpc);
    this.kv.close();
  }
}

interface PoolHost {
  cachedServices?: Record<string, { close(): void } | undefined>;
  resetAllServices?: () => void;
}

function poolHosts(client: Etcd3): PoolHost[] {
  return (client as unknown as { pool?: { hosts?: PoolHost[] } }).pool?.hosts ?? [];
}

function closeServices(h: PoolHost): void {
  for (const svc of Object.values(h.cachedServices ?? {})) {
    try {
      svc?.close();
    } catch {
      // closed already
    }
  }
  h.cachedServices = Object.create(null) as Record<string, undefined>;
}

/** Closes the etcd3 client's gRPC channels at once (see closeChannelsAtOnce). */
function closeChannelsNow(client: Etcd3): void {
  for (const h of poolHosts(client)) closeServices(h);
}

/**
 * Makes etcd3 close a failed host's gRPC channels at once. etcd3 gives a channel that is
 * still connecting a second to finish first, after every failed call and on close() (a
 * workaround for an old grpc-js bug the pinned grpc-js does not have): with etcd hung or
 * unreachable, that second keeps a plugin process alive after it has answered, and the
 * runtime waits for the process.
 */
function closeChannelsAtOnce(client: Etcd3): void {
  for (const h of poolHosts(client)) h.resetAllServices = () => closeServices(h);
}

/** `p`, or a rejection once `deadline` (Date.now() ms) has passed: a backstop for a transport that overruns it. */
function beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the call's deadline passed")), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function affinityProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'is not an affinity record';
  const o = v as Record<string, unknown>;
  for (const k of ['network', 'cidr', 'node'] as const) if (typeof o[k] !== 'string') return `${k} is missing or not a string`;
  return undefined;
}

function addressProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'is not an address index record';
  const o = v as Record<string, unknown>;
  for (const k of ['ip', 'containerId', 'ifname', 'node'] as const) if (typeof o[k] !== 'string') return `${k} is missing or not a string`;
  if (!tryParseIP(o['ip'] as string)) return 'ip is not an IP address';
  return undefined;
}
