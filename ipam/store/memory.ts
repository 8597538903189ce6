// In-memory store, for tests and the allocator's unit tests. Same semantics as the
// other stores: revisions, compare-and-swap commits, copies out (never shared objects).
import { applyOps, docHasRecords, emptyDoc, opsNetwork, type NetworkDoc, DocumentReads } from './doc.ts';
import type { RepairOptions, Store, WriteOp } from './types.ts';
import { StoreUnavailableError } from './types.ts';

export class MemoryStore extends DocumentReads implements Store {
  readonly kind = 'memory' as const;
  private readonly docs = new Map<string, NetworkDoc>();
  /** Set by tests to simulate an unreachable store. */
  down = false;
  /** Number of commits refused because a revision moved (for tests and benchmarks). */
  conflicts = 0;
  commits = 0;

  protected readDoc(network: string): NetworkDoc {
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

  protected readDocs(network?: string): NetworkDoc[] {
    this.check();
    return network === undefined ? [...this.docs.values()] : [this.readDoc(network)];
  }

  async exclusive<T>(_network: string, fn: () => Promise<T>): Promise<T> {
    return fn();
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
    return this.readDoc(network);
  }

  async commit(ops: readonly WriteOp[]): Promise<number | undefined> {
    if (ops.length === 0) return this.readDoc('').rev;
    const rev = applyOps(this.readDoc(opsNetwork(ops)), ops);
    if (rev === undefined) this.conflicts++;
    else this.commits++;
    return rev;
  }

  async ping(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {}
}
