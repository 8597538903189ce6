// Shared logic of the document stores (memory and local files): one JSON document per
// network holding its blocks, attachments and reservations, each with the revision of its
// last write. Also the record shape checks every store applies to what it reads (a record
// that fails them is a StoreDamagedError naming where it is and what is wrong, never
// quoting its bytes), and the salvage of a damaged document for `strand ipam repair`.
import { contains, parseCidr, tryParseCidr, tryParseIP } from '../../lib/addr/cidr.ts';
import type { Affinity, Attachment, Block, Holder, Reservations, Versioned, WriteOp } from './types.ts';
import { attachmentKey } from './types.ts';
import { isObject } from '../../lib/cni/json.ts';

const DOC_FORMAT = 'strand-ipam/v1';

export interface NetworkDoc {
  format: typeof DOC_FORMAT;
  network: string;
  /** Revision of the last commit; every record written by it carries this revision. */
  rev: number;
  blocks: Record<string, Versioned<Block>>;
  attachments: Record<string, Versioned<Attachment>>;
  reservations?: Versioned<Reservations>;
}

export function emptyDoc(network: string): NetworkDoc {
  return { format: DOC_FORMAT, network, rev: 0, blocks: {}, attachments: {} };
}

// ---------------------------------------------------------------------------------
// Record shapes. Each returns what is wrong (naming only fields of our own schema), or
// undefined when the value is a well-formed record.

const isStr = (v: unknown): v is string => typeof v === 'string';

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export function blockProblem(v: unknown): string | undefined {
  if (!isObject(v)) return `is ${kind(v)}, not a block`;
  for (const k of ['network', 'cidr', 'node'] as const) if (!isStr(v[k])) return `${k} is missing or not a string`;
  if (!tryParseCidr(v['cidr'] as string)) return 'cidr is not a CIDR';
  const al = v['allocations'];
  if (!isObject(al)) return `allocations is ${al === undefined ? 'missing' : kind(al)}, not an object`;
  let i = 0;
  for (const [ip, ref] of Object.entries(al)) {
    i++;
    if (!tryParseIP(ip)) return `allocation ${i} is not keyed by an IP address`;
    if (!isObject(ref) || !isStr(ref['containerId']) || !isStr(ref['ifname'])) return `allocation ${i} has no containerId/ifname`;
    if (ref['node'] !== undefined && !isStr(ref['node'])) return `allocation ${i}: node is not a string`;
  }
  if (v['last'] !== undefined && !(isStr(v['last']) && tryParseIP(v['last']))) return 'last is not an IP address';
  return undefined;
}

export function attachmentProblem(v: unknown): string | undefined {
  if (!isObject(v)) return `is ${kind(v)}, not an attachment`;
  for (const k of ['network', 'containerId', 'ifname', 'node', 'created'] as const) if (!isStr(v[k])) return `${k} is missing or not a string`;
  const ips = v['ips'];
  if (!Array.isArray(ips)) return `ips is ${ips === undefined ? 'missing' : kind(ips)}, not a list`;
  for (let i = 0; i < ips.length; i++) {
    const e: unknown = ips[i];
    if (!isObject(e) || !isStr(e['ip']) || !tryParseIP(e['ip'])) return `ips[${i}] has no valid ip`;
    if (!isStr(e['block']) || !tryParseCidr(e['block'])) return `ips[${i}] has no valid block`;
  }
  for (const k of ['netns', 'origin'] as const) if (v[k] !== undefined && !isStr(v[k])) return `${k} is not a string`;
  const pod = v['pod'];
  if (pod !== undefined) {
    if (!isObject(pod)) return 'pod is not an object';
    for (const k of ['namespace', 'name', 'uid'] as const) if (pod[k] !== undefined && !isStr(pod[k])) return `pod.${k} is not a string`;
  }
  return undefined;
}

export function reservationsProblem(v: unknown): string | undefined {
  if (!isObject(v)) return `is ${kind(v)}, not a reservation list`;
  if (!isStr(v['network'])) return 'network is missing or not a string';
  const list = v['reservations'];
  if (!Array.isArray(list)) return 'reservations is missing or not a list';
  for (let i = 0; i < list.length; i++) {
    const r: unknown = list[i];
    if (!isObject(r) || !isStr(r['cidr']) || !tryParseCidr(r['cidr'])) return `reservations[${i}] has no valid cidr`;
    if (!isStr(r['note']) || !isStr(r['created'])) return `reservations[${i}] has no note/created`;
    if (r['allowRequested'] !== undefined && typeof r['allowRequested'] !== 'boolean') return `reservations[${i}].allowRequested is not a boolean`;
  }
  return undefined;
}

function versionedProblem(v: unknown, inner: (x: unknown) => string | undefined): string | undefined {
  if (!isObject(v)) return `is ${kind(v)}, not a {value, rev} record`;
  if (typeof v['rev'] !== 'number' || !Number.isInteger(v['rev']) || v['rev'] < 1) return 'rev is not a positive integer';
  return inner(v['value']);
}

/**
 * The problem with a parsed store document of `network`, or undefined. Checks every
 * record: a document that passes can be used without further checks.
 */
export function docProblem(raw: unknown, network: string): string | undefined {
  if (raw === null) return 'holds null, not a store document';
  if (!isObject(raw)) return `holds ${kind(raw)}, not a store document`;
  if (raw['format'] !== DOC_FORMAT) return raw['format'] === undefined ? 'format is missing' : 'format is not strand-ipam/v1';
  if (raw['network'] !== network) return isStr(raw['network']) ? 'belongs to another network' : 'network is missing or not a string';
  if (typeof raw['rev'] !== 'number' || !Number.isInteger(raw['rev']) || raw['rev'] < 0) return 'rev is missing or not a non-negative integer';
  for (const part of ['blocks', 'attachments'] as const) {
    const m = raw[part];
    if (!isObject(m)) return `${part} is ${m === undefined ? 'missing' : kind(m)}, not an object`;
  }
  let i = 0;
  for (const [k, b] of Object.entries(raw['blocks'] as Record<string, unknown>)) {
    i++;
    const p = versionedProblem(b, blockProblem);
    if (p) return `blocks entry ${i}: ${p}`;
    if ((b as Versioned<Block>).value.cidr !== k) return `blocks entry ${i}: its key is not its cidr`;
  }
  i = 0;
  for (const [k, a] of Object.entries(raw['attachments'] as Record<string, unknown>)) {
    i++;
    const p = versionedProblem(a, attachmentProblem);
    if (p) return `attachments entry ${i}: ${p}`;
    const v = (a as Versioned<Attachment>).value;
    if (attachmentKey(v.containerId, v.ifname) !== k) return `attachments entry ${i}: its key is not containerId/ifname`;
  }
  if (raw['reservations'] !== undefined) {
    const p = versionedProblem(raw['reservations'], reservationsProblem);
    if (p) return `reservations: ${p}`;
  }
  return undefined;
}

/** The well-formed versioned records of one part of a damaged document (blocks, attachments); the rest is noted. */
function salvagePart<T>(part: string, m: unknown, inner: (x: unknown) => string | undefined, notes: string[]): Array<Versioned<T>> {
  if (!isObject(m)) {
    notes.push(`${part} ${m === undefined ? 'missing' : `was ${kind(m)}`}: rebuilt from the other records`);
    return [];
  }
  const out: Array<Versioned<T>> = [];
  let i = 0;
  for (const rec of Object.values(m)) {
    i++;
    const p = versionedProblem(rec, inner);
    if (p) {
      notes.push(`${part} entry ${i} dropped: ${p}`);
      continue;
    }
    const v = rec as Versioned<T>;
    out.push({ value: v.value, rev: v.rev });
  }
  return out;
}

/**
 * What can be kept of a damaged document (parsed JSON): every well-formed record. Blocks
 * and attachments that are missing entirely are rebuilt later from each other by the
 * allocator's repair. Returns the document and one line per thing dropped or fixed.
 */
export function salvageDoc(raw: unknown, network: string): { doc: NetworkDoc; notes: string[] } {
  const doc = emptyDoc(network);
  const notes: string[] = [];
  if (!isObject(raw)) {
    notes.push(`the document ${raw === null ? 'is null' : `is ${kind(raw)}`}: nothing to keep`);
    return { doc, notes };
  }
  if (raw['format'] !== DOC_FORMAT) notes.push('format set to strand-ipam/v1');
  if (raw['network'] !== network) notes.push('network set to the directory name');
  let maxRev = typeof raw['rev'] === 'number' && Number.isInteger(raw['rev']) && raw['rev'] >= 0 ? raw['rev'] : 0;
  for (const v of salvagePart<Block>('blocks', raw['blocks'], blockProblem, notes)) {
    maxRev = Math.max(maxRev, v.rev);
    v.value.network = network;
    doc.blocks[v.value.cidr] = v;
  }
  for (const v of salvagePart<Attachment>('attachments', raw['attachments'], attachmentProblem, notes)) {
    maxRev = Math.max(maxRev, v.rev);
    v.value.network = network;
    doc.attachments[attachmentKey(v.value.containerId, v.value.ifname)] = v;
  }
  if (raw['reservations'] !== undefined) {
    const p = versionedProblem(raw['reservations'], reservationsProblem);
    if (p) notes.push(`reservations dropped (re-add them with strand ipam reserve): ${p}`);
    else {
      const r = raw['reservations'] as Versioned<Reservations>;
      doc.reservations = { value: { ...r.value, network }, rev: r.rev };
      maxRev = Math.max(maxRev, r.rev);
    }
  }
  doc.rev = maxRev;
  return { doc, notes };
}

// ---------------------------------------------------------------------------------
// Address index: which attachment holds each address (computed from the attachments).

const indexes = new WeakMap<NetworkDoc, { rev: number; byIp: Map<string, string> }>();

/** Canonical IP -> attachment key, over the attachments of `doc`. */
function holderIndex(doc: NetworkDoc): Map<string, string> {
  const c = indexes.get(doc);
  if (c && c.rev === doc.rev) return c.byIp;
  const byIp = new Map<string, string>();
  for (const [k, a] of Object.entries(doc.attachments)) for (const e of a.value.ips) byIp.set(e.ip, k);
  indexes.set(doc, { rev: doc.rev, byIp });
  return byIp;
}

/** The addresses inside `cidr` that attachments of `doc` hold (Store.holders of the document stores). */
function docHolders(doc: NetworkDoc, cidr: string): Map<string, Holder> {
  const c = parseCidr(cidr);
  const out = new Map<string, Holder>();
  for (const [ip, key] of holderIndex(doc)) {
    const a = tryParseIP(ip);
    if (!a || !contains(c, a)) continue;
    const att = doc.attachments[key]?.value;
    if (att) out.set(ip, { containerId: att.containerId, ifname: att.ifname, node: att.node });
  }
  return out;
}

/** Whether no op of the commit claims an address another attachment holds (after the ops before it). */
function addressesFree(doc: NetworkDoc, ops: readonly WriteOp[]): boolean {
  const idx = holderIndex(doc);
  const now = new Map<string, string | null>();
  const holder = (ip: string): string | null | undefined => (now.has(ip) ? now.get(ip) : idx.get(ip));
  for (const op of ops) {
    if (op.op === 'delAttachment') {
      const key = attachmentKey(op.containerId, op.ifname);
      for (const e of doc.attachments[key]?.value.ips ?? []) if (holder(e.ip) === key) now.set(e.ip, null);
    } else if (op.op === 'putAttachment') {
      const a = op.attachment;
      const key = attachmentKey(a.containerId, a.ifname);
      const want = new Set(a.ips.map((e) => e.ip));
      for (const e of doc.attachments[key]?.value.ips ?? []) if (!want.has(e.ip) && holder(e.ip) === key) now.set(e.ip, null);
      for (const ip of want) {
        const h = holder(ip);
        if (h && h !== key) return false;
        now.set(ip, key);
      }
    }
  }
  return true;
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
    case 'putReservations':
    case 'expectReservations':
      return doc.reservations?.rev ?? 0;
  }
}

/**
 * Applies `ops` to `doc` in place when every prevRev holds and no address would be held
 * by two attachments; returns the new revision, or undefined (nothing applied).
 */
export function applyOps(doc: NetworkDoc, ops: readonly WriteOp[]): number | undefined {
  for (const op of ops) if (currentRev(doc, op) !== op.prevRev) return undefined;
  if (!addressesFree(doc, ops)) return undefined;
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
      case 'putReservations':
        doc.reservations = { value: structuredClone(op.reservations), rev };
        break;
      case 'expectReservations':
        break;
    }
  }
  doc.rev = rev;
  return rev;
}

/** The network every op of a commit belongs to (a commit never spans networks). */
export function opsNetwork(ops: readonly WriteOp[]): string {
  const nets = new Set(
    ops.map((o) =>
      o.op === 'putBlock' ? o.block.network : o.op === 'putAttachment' ? o.attachment.network : o.op === 'putReservations' ? o.reservations.network : o.network,
    ),
  );
  const [first] = nets;
  if (nets.size !== 1 || first === undefined) throw new Error(`a commit must touch exactly one network, got ${[...nets].join(', ')}`);
  return first;
}

function docAffinities(doc: NetworkDoc): Affinity[] {
  return Object.values(doc.blocks).map((b) => ({ network: doc.network, cidr: b.value.cidr, node: b.value.node }));
}

function docBlocks(doc: NetworkDoc, cidrs: readonly string[]): Array<Versioned<Block>> {
  const out: Array<Versioned<Block>> = [];
  for (const c of cidrs) {
    const b = doc.blocks[c];
    if (b) out.push(structuredClone(b));
  }
  return out;
}

/** A copy of the document's reservation record (Store.getReservations of the document stores). */
function docReservations(doc: NetworkDoc): Versioned<Reservations> | undefined {
  return doc.reservations && structuredClone(doc.reservations);
}

/** Whether the document holds any record (an empty one is not listed as a network). */
export function docHasRecords(doc: NetworkDoc): boolean {
  return Object.keys(doc.blocks).length > 0 || Object.keys(doc.attachments).length > 0 || (doc.reservations?.value.reservations.length ?? 0) > 0;
}

/**
 * The read side of the stores that keep one document per network (memory, local): a
 * subclass says how it reads a network's document and which documents exist; the
 * readers hand out copies, never the document's own objects.
 */
export abstract class DocumentReads {
  /** The network's document (an empty one when it has none). */
  protected abstract readDoc(network: string): NetworkDoc;
  /** The document of `network`, or of every network. */
  protected abstract readDocs(network?: string): NetworkDoc[];

  async getAttachment(network: string, containerId: string, ifname: string): Promise<Versioned<Attachment> | undefined> {
    const a = this.readDoc(network).attachments[attachmentKey(containerId, ifname)];
    return a && structuredClone(a);
  }

  async listAttachments(network?: string): Promise<Array<Versioned<Attachment>>> {
    return this.readDocs(network).flatMap((d) => Object.values(d.attachments).map((a) => structuredClone(a)));
  }

  async listAffinities(network?: string): Promise<Affinity[]> {
    return this.readDocs(network).flatMap(docAffinities);
  }

  async getBlocks(network: string, cidrs: readonly string[]): Promise<Array<Versioned<Block>>> {
    return docBlocks(this.readDoc(network), cidrs);
  }

  async listBlocks(network?: string): Promise<Array<Versioned<Block>>> {
    return this.readDocs(network).flatMap((d) => Object.values(d.blocks).map((b) => structuredClone(b)));
  }

  async holders(network: string, cidr: string): Promise<Map<string, Holder>> {
    return docHolders(this.readDoc(network), cidr);
  }

  async getReservations(network: string): Promise<Versioned<Reservations> | undefined> {
    return docReservations(this.readDoc(network));
  }
}
