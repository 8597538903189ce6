// In-memory store, for tests and the allocator's unit tests. Same semantics as the
// other stores: revisions, compare-and-swap commits, copies out (never shared objects).
import { applyOps, docAffinities, docBlocks, docHasRecords, docHolders, docReservations, emptyDoc, opsNetwork, type NetworkDoc } from './doc.ts';
import type { Affinity, Attachment, Block, Holder, Reservations, RepairOptions, Store, Versioned, WriteOp } from './types.ts';
import { attachmentKey, StoreUnavailableError } from './types.ts';

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly docs = new Map<string, NetworkDoc>();
  /** Set by tests to simulate an unreachable store. */
  down = false;
  /** Number of commits refused because a revision moved (for tests and benchmarks). */
  conflicts = 0;
  commits = 0;

  private doc(network: string): NetworkDoc {
    this.check();
    let d = this.docs.get(network);
    if (!d) {
      d = emptyDoc(network);
      this.docs.set(network, d);
    }
    return d;
  }

  private check(): void {
    if (this.down) throw new StoreUnavailableError('memory', 'memory store marked down');
  }

  private all(network?: string): NetworkDoc[] {
    this.check();
    return network === undefined ? [...this.docs.values()] : [this.doc(network)];
  }

  async exclusive<T>(_network: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined> {
    const a = this.doc(network).attachments[attachmentKey(containerId, ifname)];
    return a && structuredClone(a);
  }

  async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
    return this.all(network).flatMap((d) => Object.values(d.attachments).map((a) => structuredClone(a)));
  }

  async listAffinities(network?: string): Promise<Affinity[]> {
    return this.all(network).flatMap(docAffinities);
  }

  async getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>> {
    return docBlocks(this.doc(network), cidrs);
  }

  async listBlocks(network?: string): Promise<Array<Versioned<Block>>> {
    return this.all(network).flatMap((d) => Object.values(d.blocks).map((b) => structuredClone(b)));
  }

  async holders(network: string, cidr: string): Promise<Map<string, Holder>> {
    return docHolders(this.doc(network), cidr);
  }

  async getReservations(network: string): Promise<Versioned<Reservations> | undefined> {
    return docReservations(this.doc(network));
  }

  async listNetworks(): Promise<string[]> {
    this.check();
    return [...this.docs.values()]
      .filter(docHasRecords)
      .map((d) => d.network)
      .sort();
  }

  async repairRecords(_network: string, _opts: RepairOptions): Promise<string[]> {
    this.check();
    return [];
  }

  /** The document of `network`, for tests that damage a store on purpose. */
  rawDoc(network: string): NetworkDoc {
    return this.doc(network);
  }

  async commit(ops: readonly WriteOp[]): Promise<number | undefined> {
    if (ops.length === 0) return this.doc('').rev;
    const rev = applyOps(this.doc(opsNetwork(ops)), ops);
    if (rev === undefined) this.conflicts++;
    else this.commits++;
    return rev;
  }

  async ping(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {}
}
