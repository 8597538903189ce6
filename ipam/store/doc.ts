// Shared logic of the document stores (memory and local files): one JSON document per
// network holding its blocks and attachments, each with the revision of its last write.
import type { Affinity, Attachment, Block, Versioned, WriteOp } from './types.ts';
import { attachmentKey } from './types.ts';

export interface NetworkDoc {
  format: 'strand-ipam/v1';
  network: string;
  /** Revision of the last commit; every record written by it carries this revision. */
  rev: number;
  blocks: Record<string, Versioned<Block>>;
  attachments: Record<string, Versioned<Attachment>>;
}

export function emptyDoc(network: string): NetworkDoc {
  return { format: 'strand-ipam/v1', network, rev: 0, blocks: {}, attachments: {} };
}

function currentRev(doc: NetworkDoc, op: WriteOp): number {
  switch (op.op) {
    case 'putBlock':
      return doc.blocks[op.block.cidr]?.rev ?? 0;
    case 'delBlock':
      return doc.blocks[op.cidr]?.rev ?? 0;
    case 'putAttachment':
      return doc.attachments[attachmentKey(op.attachment.containerId, op.attachment.ifname)]?.rev ?? 0;
    case 'delAttachment':
      return doc.attachments[attachmentKey(op.containerId, op.ifname)]?.rev ?? 0;
  }
}

/** Applies `ops` to `doc` in place when every prevRev holds; returns the new revision or undefined. */
export function applyOps(doc: NetworkDoc, ops: readonly WriteOp[]): number | undefined {
  for (const op of ops) if (currentRev(doc, op) !== op.prevRev) return undefined;
  const rev = doc.rev + 1;
  for (const op of ops) {
    switch (op.op) {
      case 'putBlock':
        doc.blocks[op.block.cidr] = { value: structuredClone(op.block), rev };
        break;
      case 'delBlock':
        delete doc.blocks[op.cidr];
        break;
      case 'putAttachment': {
        const a = op.attachment;
        doc.attachments[attachmentKey(a.containerId, a.ifname)] = { value: structuredClone(a), rev };
        break;
      }
      case 'delAttachment':
        delete doc.attachments[attachmentKey(op.containerId, op.ifname)];
        break;
    }
  }
  doc.rev = rev;
  return rev;
}

/** The network every op of a commit belongs to (a commit never spans networks). */
export function opsNetwork(ops: readonly WriteOp[]): string {
  const nets = new Set(ops.map((o) => (o.op === 'putBlock' ? o.block.network : o.op === 'putAttachment' ? o.attachment.network : o.network)));
  const [first] = nets;
  if (nets.size !== 1 || first === undefined) throw new Error(`a commit must touch exactly one network, got ${[...nets].join(', ')}`);
  return first;
}

export function docAffinities(doc: NetworkDoc): Affinity[] {
  return Object.values(doc.blocks).map((b) => ({ network: doc.network, cidr: b.value.cidr, node: b.value.node }));
}

export function docBlocks(doc: NetworkDoc, cidrs: readonly string[]): Array<Versioned<Block>> {
  const out: Array<Versioned<Block>> = [];
  for (const c of cidrs) {
    const b = doc.blocks[c];
    if (b) out.push(structuredClone(b));
  }
  return out;
}
