// The one interface every IPAM store implements (memory, local files, etcd).
//
// The allocator (ipam/allocator.ts) keeps all policy; a store only keeps three kinds of
// records per network and applies a list of writes atomically when every write's
// expected revision still holds (compare-and-swap):
//
// - Block: an aligned sub-prefix of a configured subnet ("10.1.0.0/26"), owned by one
//   node (its affinity), with the addresses allocated inside it.
// - Affinity: block -> node, written and removed together with its block. It is a
//   separate, small record so that a watcher (the node agent) sees ownership changes
//   without seeing every allocation.
// - Attachment: (network, containerID, ifname) -> the addresses it holds. It is written
//   in the same transaction as the block change, so block and attachment agree after any
//   crash. Attachments are the truth: a store guarantees that no two attachments of a
//   network hold one address (a putAttachment claiming an address another attachment
//   holds fails like a revision conflict), whatever the blocks say; blocks and
//   affinities are bookkeeping that repair rebuilds from the attachments.
// - Reservations: per network, one record listing addresses and CIDRs that are never
//   handed out (hosts, routers, appliances on the pod subnet).

/** Who holds an address inside a block. `node` is set only when borrowed from another node's block. */
export interface AllocationRef {
  containerId: string;
  ifname: string;
  node?: string;
}

export interface Block {
  network: string;
  /** Canonical CIDR of the block, e.g. "10.1.0.0/26". */
  cidr: string;
  /** The node this block is affine to. */
  node: string;
  /** Allocated addresses (canonical text) -> holder. */
  allocations: Record<string, AllocationRef>;
  /** The last address reserved in this block (round-robin cursor, like host-local's last_reserved_ip). */
  last?: string;
}

export interface Affinity {
  network: string;
  cidr: string;
  node: string;
}

export interface AttachmentIP {
  ip: string;
  block: string;
}

/** The Kubernetes pod behind an attachment (CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID). */
export interface PodRef {
  namespace?: string;
  name?: string;
  uid?: string;
}

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
  /** The node that ran ADD. */
  node: string;
  ips: AttachmentIP[];
  /** ISO time of the first allocation. */
  created: string;
  /** The runtime's network namespace path (CNI_NETNS) at ADD. */
  netns?: string;
  pod?: PodRef;
  /** Where the record came from when not from an ADD: "host-local" (imported from its files). */
  origin?: string;
}

/** Who holds an address according to the attachments (the truth), for allocation and repair. */
export interface Holder {
  containerId: string;
  ifname: string;
  node: string;
}

/** One reserved address or CIDR of a network: never handed out. */
export interface Reservation {
  /** Canonical CIDR ("10.1.0.1/32" for one address). */
  cidr: string;
  note: string;
  /** A request naming an address inside it explicitly (ips, CNI_ARGS IP) may take it. */
  allowRequested?: boolean;
  /** ISO time it was added. */
  created: string;
}

export interface Reservations {
  network: string;
  reservations: Reservation[];
}

/** A record with the store revision at which it was last modified (> 0). */
export interface Versioned<T> {
  value: T;
  rev: number;
}

/**
 * One write of a commit. `prevRev` is the revision the writer read: 0 means "must not
 * exist" (create), otherwise the record must still be at exactly that revision.
 * putBlock with prevRev 0 also creates the block's affinity; delBlock removes both.
 */
export type WriteOp =
  | { op: 'putBlock'; block: Block; prevRev: number }
  | { op: 'delBlock'; network: string; cidr: string; prevRev: number }
  /**
   * `prevIps`: the addresses the attachment held at prevRev (none when created). Every
   * other address of `attachment` must be free of any other attachment, or the commit
   * fails like a revision conflict.
   */
  | { op: 'putAttachment'; attachment: Attachment; prevRev: number; prevIps: readonly string[] }
  /** `ips`: the addresses it held at prevRev (freed with it). */
  | { op: 'delAttachment'; network: string; containerId: string; ifname: string; prevRev: number; ips: readonly string[] }
  /** Replaces the network's reservation list (prevRev 0: there is none yet). */
  | { op: 'putReservations'; reservations: Reservations; prevRev: number }
  /** Writes nothing: the commit fails unless the network's reservations are still at prevRev (0: none). */
  | { op: 'expectReservations'; network: string; prevRev: number };

export interface Store {
  readonly kind: 'memory' | 'local' | 'etcd';
  /**
   * Runs `fn` with exclusive access to `network` when the store can offer it cheaply
   * (local: flock on the network's lock file, so commits inside never conflict);
   * other stores just run `fn` and rely on compare-and-swap.
   */
  exclusive<T>(network: string, fn: () => Promise<T>): Promise<T>;
  getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined>;
  /** Every attachment of `network`, or of every network when omitted. */
  listAttachments(network?: string): Promise<Array<Versioned<Attachment>>>;
  /** Block ownership of `network` (or of every network), without the allocations. */
  listAffinities(network?: string): Promise<Affinity[]>;
  /** The blocks named (missing ones are left out), in the order given. */
  getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>>;
  listBlocks(network?: string): Promise<Array<Versioned<Block>>>;
  /** Addresses inside `cidr` held by an attachment of `network` (canonical IP -> holder). */
  holders(network: string, cidr: string): Promise<Map<string, Holder>>;
  /** The network's reservation list, if any. */
  getReservations(network: string): Promise<Versioned<Reservations> | undefined>;
  /** Every network with a record in the store (blocks, attachments or reservations). */
  listNetworks(): Promise<string[]>;
  /** Applies every op atomically if every prevRev holds: the new revision, or undefined on conflict. */
  commit(ops: readonly WriteOp[]): Promise<number | undefined>;
  /** Throws StoreUnavailableError when the store cannot be used (STATUS). */
  ping(network?: string): Promise<void>;
  /**
   * Store-internal repair of `network`: damaged records (StoreDamagedError) rebuilt from
   * the others or removed, and derived records (etcd: affinities, the address index)
   * rebuilt from blocks and attachments. Changes nothing with `dryRun`. Returns what it
   * found, one line each; the allocator's repair then makes blocks agree with attachments.
   * A record of which nothing can be kept (a local document that is not JSON) throws
   * StoreDamagedError unless `force`, which sets it aside and starts it empty.
   */
  repairRecords(network: string, opts: RepairOptions): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * The node records of a store that has them (etcd: the agent's `<prefix>/nodes/<node>`,
 * and its liveness key `<prefix>/alive/<node>` on a lease). The local store has neither.
 */
export interface NodeDirectory {
  /** Node records by name, with their revision and the addresses they list. */
  nodeRecords(): Promise<Map<string, { rev: number; addresses: string[] }>>;
  /** Names of the nodes whose liveness key exists (their agent runs). */
  aliveNodes(): Promise<Set<string>>;
  /**
   * Deletes a node's record when it is still at `rev`, and, with `unlessAlive`, only while
   * the node has no liveness key (its agent did not come back meanwhile). Whether it did.
   */
  deleteNodeRecord(node: string, rev: number, unlessAlive: boolean): Promise<boolean>;
}

export function hasNodeDirectory(s: Store): s is Store & NodeDirectory {
  return typeof (s as Partial<NodeDirectory>).nodeRecords === 'function';
}

export interface RepairOptions {
  dryRun: boolean;
  force?: boolean;
}

/** The store cannot be reached or used (etcd down, data dir unwritable). Maps to CNI code 11 / 50. */
export class StoreUnavailableError extends Error {
  override readonly name: 'StoreUnavailableError' | 'StoreDamagedError' = 'StoreUnavailableError';
  readonly store: string;
  constructor(store: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.store = store;
  }
}

export function isStoreUnavailable(e: unknown): e is StoreUnavailableError {
  return e instanceof StoreUnavailableError;
}

/**
 * A store record is damaged: a file that is not a store document (truncated, garbage,
 * null, wrong structure, a symbolic link) or an etcd value that is not the record its key
 * names. `where` names the file or key, `problem` what is wrong; neither ever quotes the
 * record's bytes. `strand ipam repair` rebuilds what can be rebuilt. Code 11 (50 on STATUS).
 */
export class StoreDamagedError extends StoreUnavailableError {
  override readonly name = 'StoreDamagedError';
  readonly where: string;
  readonly problem: string;
  constructor(store: string, where: string, problem: string, hint = 'strand ipam repair rebuilds what it can') {
    super(store, `${where}: ${problem} (${hint})`);
    this.where = where;
    this.problem = problem;
  }
}

export function isStoreDamaged(e: unknown): e is StoreDamagedError {
  return e instanceof StoreDamagedError;
}

export function attachmentKey(containerId: string, ifname: string): string {
  return `${containerId}/${ifname}`;
}

/** Block CIDR as one path segment: "10.1.0.0/26" -> "10.1.0.0-26", "fd00::/122" -> "fd00::-122". */
export function blockSegment(cidr: string): string {
  return cidr.replace('/', '-');
}

export function blockFromSegment(seg: string): string {
  const i = seg.lastIndexOf('-');
  return i === -1 ? seg : `${seg.slice(0, i)}/${seg.slice(i + 1)}`;
}
