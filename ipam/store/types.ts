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
//   in the same transaction as the block change, so block and attachment never disagree.

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

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
  /** The node that ran ADD. */
  node: string;
  ips: AttachmentIP[];
  /** ISO time of the first allocation. */
  created: string;
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
  | { op: 'putAttachment'; attachment: Attachment; prevRev: number }
  | { op: 'delAttachment'; network: string; containerId: string; ifname: string; prevRev: number };

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
  /** Applies every op atomically if every prevRev holds: the new revision, or undefined on conflict. */
  commit(ops: readonly WriteOp[]): Promise<number | undefined>;
  /** Throws StoreUnavailableError when the store cannot be used (STATUS). */
  ping(network?: string): Promise<void>;
  close(): Promise<void>;
}

/** The store cannot be reached or used (etcd down, data dir unwritable). Maps to CNI code 11 / 50. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly store: string;
  constructor(store: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.store = store;
  }
}

export function isStoreUnavailable(e: unknown): e is StoreUnavailableError {
  return e instanceof StoreUnavailableError;
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
