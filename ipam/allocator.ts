// The IPAM allocator: all allocation policy, over the Store interface (no I/O of its own).
//
// Model: each configured subnet is cut into aligned blocks (default /26 and /122, never
// larger than the subnet). A node claims a free block (create-if-absent), then allocates
// inside its own blocks with compare-and-swap on the block record, so nodes never
// contend with each other on the hot path. When its blocks are full it claims another;
// when no block is free it borrows an address from another node's block (unless
// strictAffinity). An empty block is released unless it is its owner's last block in
// that range set. With blockAffinity false (flat mode) blocks belong to no node (owner
// SHARED_BLOCK_OWNER): every node allocates in any of them, each node starting at its
// own block so that nodes seldom contend, and every allocation names its node. Every write to a block also writes the attachment record
// (network, containerID, ifname) in the same commit, so after a crash at any point the
// two agree and an interrupted ADD is either invisible or a normal (GC-able) attachment.
import { setTimeout as sleep } from 'node:timers/promises';
import { bounds, formatIP, parseIP, tryParseCidr, tryParseIP, type Family, type IPAddr } from '../lib/addr/cidr.ts';
import { excludedBy, maxBig, minBig, rangeFor, rangeSetText, usableIn, type Interval, type IpamConfig, type Range, type RangeSet } from './config.ts';
import type { Affinity, AllocationRef, Attachment, Block, Holder, PodRef, Reservations, Store, Versioned, WriteOp } from './store/types.ts';
import { attachmentKey } from './store/types.ts';

export class IpamExhaustedError extends Error {
  override readonly name = 'IpamExhaustedError';
  readonly rangeSet: string;
  constructor(rangeSet: string, field: string) {
    super(`no IP addresses available in range set ${rangeSet} (${field})`);
    this.rangeSet = rangeSet;
  }
}

/** A requested address is held by another attachment. */
export class IpamConflictError extends Error {
  override readonly name = 'IpamConflictError';
  readonly ip: string;
  constructor(ip: string, holder: string) {
    super(`requested IP ${ip} is already allocated to ${holder}`);
    this.ip = ip;
  }
}

/** A requested address is reserved in the store (strand ipam reserve) without allowRequested. */
export class IpamReservedError extends Error {
  override readonly name = 'IpamReservedError';
  readonly ip: string;
  constructor(ip: string, source: string) {
    super(`requested IP ${ip} is reserved (${source})`);
    this.ip = ip;
  }
}

/** Compare-and-swap kept failing past the retry bound (heavy contention): try again later. */
export class IpamContentionError extends Error {
  override readonly name = 'IpamContentionError';
}

/** CHECK found the allocation missing or different. */
export class IpamCheckError extends Error {
  override readonly name = 'IpamCheckError';
}

/** What an ADD records about the attachment besides its addresses. */
export interface AttachmentMeta {
  netns?: string;
  pod?: PodRef;
  origin?: string;
}

export interface AllocatedIP {
  /** Index of the range set in the config. */
  set: number;
  ip: IPAddr;
  range: Range;
  block: string;
}

export interface AllocatorOptions {
  store: Store;
  config: IpamConfig;
  node: string;
  /** Bound on compare-and-swap retries per address (default 64). */
  maxRetries?: number;
  random?: () => number;
  /** Clock (ms), for GC's grace period; Date.now by default. */
  now?: () => number;
}

interface BlockGeom {
  cidr: string;
  family: Family;
  lo: bigint;
  hi: bigint;
}

interface Span {
  lo: bigint;
  hi: bigint;
  range: Range;
  /** The range's exclusions and the store's reservations inside [lo, hi], sorted by lo. */
  excl: Interval[];
}

function geom(cidr: string): BlockGeom | undefined {
  const c = tryParseCidr(cidr);
  if (!c) return undefined;
  return { cidr, family: c.family, ...bounds(c) };
}

function blockCidr(family: Family, lo: bigint, prefix: number): string {
  return `${formatIP({ family, value: lo })}/${prefix}`;
}

const byLo = (a: { lo: bigint }, b: { lo: bigint }): number => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0);

/** The parts of `rs`'s ranges that fall inside block `g`, in address order, with their exclusions. */
function spansOf(rs: RangeSet, g: BlockGeom, reserved: readonly Interval[] = []): Span[] {
  if (g.family !== rs.family) return [];
  const out: Span[] = [];
  for (const r of rs.ranges) {
    const lo = maxBig(g.lo, r.start);
    const hi = minBig(g.hi, r.end);
    if (lo > hi) continue;
    const excl = [...r.exclude, ...reserved].filter((x) => x.lo <= hi && lo <= x.hi).sort(byLo);
    out.push({ lo, hi, range: r, excl });
  }
  return out.sort(byLo);
}

/** The first usable, untaken, not excluded address of `s` in [from, to], or undefined. */
function scanSpan(s: Span, from: bigint, to: bigint, taken: ReadonlySet<bigint>): bigint | undefined {
  // Each step passes a taken or special address, or jumps over an exclusion: bounded by
  // |taken| + |excl| + 3, whatever the span's size (an excluded /64 costs one step).
  let xi = 0;
  for (let v = from; v <= to; ) {
    while (xi < s.excl.length && (s.excl[xi] as Interval).hi < v) xi++;
    const x = s.excl[xi];
    if (x && x.lo <= v) {
      v = x.hi + 1n;
      continue;
    }
    if (!taken.has(v) && usableIn(s.range, v)) return v;
    v++;
  }
  return undefined;
}

/**
 * A free usable address in `spans`, walking upward from just after `after` and wrapping
 * (host-local's round robin), or undefined when every usable address is taken.
 */
function pickFree(spans: Span[], taken: ReadonlySet<bigint>, after: bigint | undefined): { v: bigint; range: Range } | undefined {
  const from = after === undefined ? undefined : after + 1n;
  const passes: Array<[bigint | undefined, bigint | undefined]> =
    from === undefined
      ? [[undefined, undefined]]
      : [
          [from, undefined],
          [undefined, from - 1n],
        ];
  for (const [start, stop] of passes) {
    for (const s of spans) {
      const lo = start === undefined ? s.lo : maxBig(start, s.lo);
      const hi = stop === undefined ? s.hi : minBig(stop, s.hi);
      const v = lo <= hi ? scanSpan(s, lo, hi, taken) : undefined;
      if (v !== undefined) return { v, range: s.range };
    }
  }
  return undefined;
}

function sameHolder(ref: { containerId: string; ifname: string }, containerId: string, ifname: string): boolean {
  return ref.containerId === containerId && ref.ifname === ifname;
}

/** The store's reservations as intervals (per family), with their descriptions. */
export function reservationIntervals(r: Reservations | undefined): Interval[] {
  const out: Interval[] = [];
  for (const x of r?.reservations ?? []) {
    const c = tryParseCidr(x.cidr);
    if (!c) continue;
    const iv: Interval = { ...bounds(c), source: `reservation ${x.cidr}${x.note ? ` "${x.note}"` : ''}`, family: c.family };
    if (x.allowRequested) iv.allowRequested = true;
    out.push(iv);
  }
  return out;
}

/** The owner of blocks that belong to no node (ipam.blockAffinity false); never a Kubernetes node name. */
export const SHARED_BLOCK_OWNER = '*';

/** A small stable number for a node name (FNV-1a), to spread nodes over shared blocks. */
function nodeHash(node: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** One CNI GC decision about an attachment of this node that is not in the valid list. */
export interface GcKept {
  containerId: string;
  ifname: string;
  ips: string[];
  why: string;
}

export interface GcResult {
  /** Addresses released (attachments not valid, and block entries no attachment holds). */
  released: string[];
  /** Attachments not in the valid list that were kept, and why. */
  kept: GcKept[];
}

export interface GcOptions {
  /** When the GC request arrived (ms); attachments created after `startedAt - grace` are kept. */
  startedAt: number;
  /** Overrides the config's gcGracePeriod. */
  graceMs?: number;
  /** Whether the attachment's pod still uses its address (its network namespace holds it): such attachments are kept. */
  isLive?: (a: Attachment) => Promise<boolean>;
  /** Release even attachments that are young or alive (strand ipam gc --force). */
  force?: boolean;
  dryRun?: boolean;
}

/** What repair found and did in one network (blocks made to agree with attachments). */
export interface RepairReport {
  /** Block entries no attachment holds: dropped. */
  orphans: string[];
  /** Attachment addresses missing from their block: entered again. */
  restored: string[];
  /** Blocks that were missing and were rebuilt from the attachments. */
  blocksCreated: string[];
  /** Attachments whose recorded block was wrong: corrected. */
  attachmentsFixed: string[];
  /** Addresses two attachments claim, or that no block can hold: left for the operator. */
  conflicts: string[];
}

export function emptyRepairReport(): RepairReport {
  return { orphans: [], restored: [], blocksCreated: [], attachmentsFixed: [], conflicts: [] };
}

/** The truth repair works from: each address and the attachment holding it. */
interface AddressTruthEntry {
  a: Versioned<Attachment>;
  v: bigint;
  family: Family;
}
type AddressTruth = Map<string, AddressTruthEntry>;

/** Address -> the attachment holding it; an address two attachments hold is a conflict (the first keeps it). */
function addressTruth(atts: ReadonlyArray<Versioned<Attachment>>, out: RepairReport): AddressTruth {
  const truth: AddressTruth = new Map();
  for (const a of atts) {
    for (const e of a.value.ips) {
      const other = truth.get(e.ip);
      if (other) {
        out.conflicts.push(`${e.ip}: held by ${other.a.value.containerId}/${other.a.value.ifname} and ${a.value.containerId}/${a.value.ifname}`);
        continue;
      }
      const ip = parseIP(e.ip);
      truth.set(e.ip, { a, v: ip.value, family: ip.family });
    }
  }
  return truth;
}

/** A block's entry for an attachment (the node only when it is not the block's). */
function holderRef(b: Block, a: Attachment): AllocationRef {
  return a.node === b.node ? { containerId: a.containerId, ifname: a.ifname } : { containerId: a.containerId, ifname: a.ifname, node: a.node };
}

/**
 * Addresses no block holds: the blocks their attachments name, to rebuild (empty, not
 * yet owned); an address whose named block cannot be rebuilt (absent, not holding it,
 * overlapping a block that exists) is a conflict. Marks the addresses placed.
 */
function missingBlocks(
  network: string,
  truth: AddressTruth,
  placed: Map<string, string>,
  geoms: ReadonlyArray<{ g: BlockGeom }>,
  out: RepairReport,
): Map<string, Block> {
  const rebuilt = new Map<string, Block>();
  for (const [ip, t] of truth) {
    if (placed.has(ip)) continue;
    const named = t.a.value.ips.find((e) => e.ip === ip)?.block ?? '';
    const g = geom(named);
    if (!g || g.family !== t.family || t.v < g.lo || t.v > g.hi || geoms.some((x) => x.g.family === g.family && x.g.lo <= g.hi && g.lo <= x.g.hi)) {
      out.conflicts.push(`${ip}: no block holds it and its recorded block ${named || '(none)'} cannot be rebuilt`);
      continue;
    }
    const b = rebuilt.get(g.cidr) ?? { network, cidr: g.cidr, node: t.a.value.node, allocations: {} };
    rebuilt.set(g.cidr, b);
    placed.set(ip, g.cidr);
  }
  return rebuilt;
}

/** One host-local reservation to adopt: a container's addresses from host-local's files. */
export interface Adoptee {
  containerId: string;
  ifname: string;
  ips: string[];
}

export interface AdoptResult {
  /** "ip containerId/ifname" newly recorded. */
  imported: string[];
  /** Already recorded for the same container (an earlier import). */
  already: string[];
  /** Held by another attachment, or a second address of one range set: not imported. */
  conflicts: string[];
  /** Outside every configured range: not imported (no allocation can hand it out). */
  outside: string[];
}

export class Allocator {
  readonly store: Store;
  readonly config: IpamConfig;
  readonly node: string;
  private readonly maxRetries: number;
  private readonly random: () => number;
  private readonly now: () => number;
  /** Commits refused by compare-and-swap, for benchmarks. */
  conflicts = 0;
  /** Operations of this allocator (one node) run one at a time: concurrent ones would only collide on the same block. */
  private queue: Promise<unknown> = Promise.resolve();
  // What this allocator last read or wrote. Used optimistically on a first attempt
  // (compare-and-swap catches anything stale) and dropped on any conflict, so an
  // in-process allocator allocates with a single transaction when nothing moved.
  private affCache: Affinity[] | undefined;
  private readonly blockCache = new Map<string, Versioned<Block>>();
  private resCache: { rev: number; intervals: Interval[] } | undefined;

  constructor(opts: AllocatorOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.node = opts.node;
    this.maxRetries = opts.maxRetries ?? 64;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private get network(): string {
    return this.config.network;
  }

  /** The block prefix used for range `r`. */
  blockPrefix(r: Range): number {
    const bs = this.config.blockSize[r.family];
    return Math.max(bs, r.subnet.prefix);
  }

  /** Who a new block of `node` belongs to: the node, or nobody (blockAffinity false). */
  ownerFor(node: string): string {
    return this.config.blockAffinity ? node : SHARED_BLOCK_OWNER;
  }

  /** The range set an address belongs to (by config), or -1. */
  setOf(ip: IPAddr): number {
    return this.config.rangeSets.findIndex((rs) => rangeFor(rs, ip) !== undefined);
  }

  private rangeOf(set: number, ip: IPAddr): Range {
    const rs = this.config.rangeSets[set] as RangeSet;
    return rangeFor(rs, ip) ?? (rs.ranges[0] as Range);
  }

  private async affinities(fresh: boolean): Promise<Affinity[]> {
    if (fresh || !this.affCache) this.affCache = await this.store.listAffinities(this.network);
    return this.affCache;
  }

  private async reservations(fresh: boolean): Promise<{ rev: number; intervals: Interval[] }> {
    if (fresh || !this.resCache) {
      const r = await this.store.getReservations(this.network);
      this.resCache = { rev: r?.rev ?? 0, intervals: reservationIntervals(r?.value) };
    }
    return this.resCache;
  }

  private async blocks(cidrs: readonly string[], fresh: boolean): Promise<Array<Versioned<Block>>> {
    if (!fresh && cidrs.every((c) => this.blockCache.has(c))) return cidrs.map((c) => this.blockCache.get(c) as Versioned<Block>);
    const got = await this.store.getBlocks(this.network, cidrs);
    for (const c of cidrs) this.blockCache.delete(c);
    for (const b of got) this.blockCache.set(b.value.cidr, b);
    return got;
  }

  /** Commits and keeps the caches in step: updated on success, dropped on conflict. */
  private async commit(ops: WriteOp[]): Promise<number | undefined> {
    const rev = await this.store.commit(ops);
    if (rev === undefined) {
      this.affCache = undefined;
      this.resCache = undefined;
      this.blockCache.clear();
      return undefined;
    }
    for (const op of ops) {
      if (op.op === 'putBlock') {
        this.blockCache.set(op.block.cidr, { value: op.block, rev });
        if (op.prevRev === 0) this.affCache?.push({ network: this.network, cidr: op.block.cidr, node: op.block.node });
      } else if (op.op === 'delBlock') {
        this.blockCache.delete(op.cidr);
        if (this.affCache) this.affCache = this.affCache.filter((a) => a.cidr !== op.cidr);
      } else if (op.op === 'putReservations') {
        this.resCache = undefined;
      }
    }
    return rev;
  }

  private async backoff(attempt: number): Promise<void> {
    this.conflicts++;
    if (attempt >= this.maxRetries) {
      throw new IpamContentionError(`gave up after ${attempt} conflicting updates in network ${this.network}`);
    }
    if (attempt > 1) await sleep(Math.floor(this.random() * Math.min(20, attempt * 2)));
  }

  // -------------------------------------------------------------------------------
  // ADD

  /**
   * One address per range set for (containerId, ifname). A repeated call returns the
   * addresses already held. If a later range set fails, the addresses taken by this
   * call are released again (dual-stack rollback) and the error is rethrown.
   */
  async allocate(containerId: string, ifname: string, meta: AttachmentMeta = {}): Promise<AllocatedIP[]> {
    return this.serial(() =>
      this.store.exclusive(this.network, async () => {
        // With warm caches assume no attachment yet (create-if-absent catches a repeat ADD).
        const optimistic = this.affCache !== undefined;
        // Cold (a fresh plugin process): read the attachment, the block ownership and the
        // reservations in parallel (one round trip).
        let att = optimistic
          ? undefined
          : (await Promise.all([this.store.getAttachment(this.network, containerId, ifname), this.affinities(true), this.reservations(true)]))[0];
        const out: AllocatedIP[] = [];
        const undo: Array<() => Promise<void>> = [];
        try {
          for (let set = 0; set < this.config.rangeSets.length; set++) {
            const held = att?.value.ips.find((e) => this.setOf(parseIP(e.ip)) === set);
            if (held) {
              const ip = parseIP(held.ip);
              out.push({ set, ip, range: this.rangeOf(set, ip), block: held.block });
              continue;
            }
            const want = this.config.requested.find((r) => r.set === set)?.ip;
            const got = await this.allocateInSet(set, containerId, ifname, {
              meta,
              ...(want ? { want } : {}),
              ...(set === 0 || att ? { known: { att } } : {}),
            });
            att = got.att;
            out.push(got.ip);
            const ipText = formatIP(got.ip.ip);
            undo.push(async () => {
              await this.releaseOne(containerId, ifname, ipText);
            });
          }
        } catch (e) {
          for (const u of undo.reverse()) {
            try {
              await u();
            } catch {
              // keep the original error; the attachment stays for GC
            }
          }
          throw e;
        }
        return out;
      }),
    );
  }

  private async allocateInSet(
    set: number,
    containerId: string,
    ifname: string,
    opts: { meta: AttachmentMeta; want?: IPAddr; known?: { att: Versioned<Attachment> | undefined }; node?: string; ignoreReservations?: boolean },
  ): Promise<{ ip: AllocatedIP; att: Versioned<Attachment> }> {
    const rs = this.config.rangeSets[set] as RangeSet;
    const node = opts.node ?? this.node;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await this.backoff(attempt);
      const fresh = attempt > 0;
      // Re-read the attachment each round: an earlier commit whose reply was lost may
      // already have recorded an address for this set.
      const att = attempt === 0 && opts.known ? opts.known.att : await this.store.getAttachment(this.network, containerId, ifname);
      const held = att?.value.ips.find((e) => this.setOf(parseIP(e.ip)) === set);
      if (att && held) {
        const ip = parseIP(held.ip);
        return { ip: { set, ip, range: this.rangeOf(set, ip), block: held.block }, att };
      }
      const [affs, res] = await Promise.all([this.affinities(fresh), this.reservations(fresh)]);
      const affinities = affs.filter((a) => {
        const g = geom(a.cidr);
        return g !== undefined && spansOf(rs, g).length > 0;
      });
      const reserved = opts.ignoreReservations ? [] : res.intervals.filter((x) => x.family === rs.family);
      const plan = opts.want
        ? await this.planRequested(set, opts.want, affinities, reserved, containerId, ifname, node, fresh)
        : await this.planAny(set, rs, affinities, reserved, attempt, containerId, ifname, node);
      const entry = { ip: formatIP(plan.ip.ip), block: plan.ip.block };
      const attachment: Attachment = att
        ? { ...att.value, ips: [...att.value.ips, entry] }
        : { network: this.network, containerId, ifname, node, ips: [entry], created: new Date(this.now()).toISOString(), ...opts.meta };
      const rev = await this.commit([
        plan.op,
        { op: 'putAttachment', attachment, prevRev: att?.rev ?? 0, prevIps: att?.value.ips.map((e) => e.ip) ?? [] },
        { op: 'expectReservations', network: this.network, prevRev: res.rev },
      ]);
      if (rev !== undefined) return { ip: plan.ip, att: { value: attachment, rev } };
    }
  }

  /** Addresses held by attachments inside `cidr`, read only after a conflict (the commit itself refuses a held address). */
  private async holdersIn(cidr: string, fresh: boolean): Promise<Map<string, Holder>> {
    return fresh ? this.store.holders(this.network, cidr) : new Map();
  }

  /** Block entries for held addresses the block does not list (the block is rebuilt as it is written). */
  private static withHolders(block: Block, holders: ReadonlyMap<string, Holder>): Record<string, AllocationRef> {
    const allocations = { ...block.allocations };
    for (const [ip, h] of holders) {
      const cur = allocations[ip];
      if (cur && sameHolder(cur, h.containerId, h.ifname)) continue;
      allocations[ip] =
        h.node === block.node ? { containerId: h.containerId, ifname: h.ifname } : { containerId: h.containerId, ifname: h.ifname, node: h.node };
    }
    return allocations;
  }

  private static takenOf(allocations: Record<string, AllocationRef>): Set<bigint> {
    const out = new Set<bigint>();
    for (const k of Object.keys(allocations)) out.add(parseIP(k).value);
    return out;
  }

  private newBlockOp(
    set: number,
    g: BlockGeom,
    v: bigint,
    range: Range,
    containerId: string,
    ifname: string,
    node: string,
    holders: ReadonlyMap<string, Holder>,
  ): { op: WriteOp; ip: AllocatedIP } {
    const ipText = formatIP({ family: g.family, value: v });
    const owner = this.ownerFor(node);
    const base: Block = { network: this.network, cidr: g.cidr, node: owner, allocations: {} };
    const allocations = Allocator.withHolders(base, holders);
    allocations[ipText] = owner === node ? { containerId, ifname } : { containerId, ifname, node };
    const block: Block = { ...base, allocations, last: ipText };
    return { op: { op: 'putBlock', block, prevRev: 0 }, ip: { set, ip: { family: g.family, value: v }, range, block: g.cidr } };
  }

  private takeOp(
    set: number,
    b: Versioned<Block>,
    allocations: Record<string, AllocationRef>,
    v: bigint,
    range: Range,
    containerId: string,
    ifname: string,
    node: string,
  ): { op: WriteOp; ip: AllocatedIP } {
    const family = range.family;
    const ipText = formatIP({ family, value: v });
    const ref = b.value.node === node ? { containerId, ifname } : { containerId, ifname, node };
    const block: Block = { ...b.value, allocations: { ...allocations, [ipText]: ref }, last: ipText };
    return { op: { op: 'putBlock', block, prevRev: b.rev }, ip: { set, ip: { family, value: v }, range, block: b.value.cidr } };
  }

  private async planRequested(
    set: number,
    ip: IPAddr,
    affinities: Affinity[],
    reserved: readonly Interval[],
    containerId: string,
    ifname: string,
    node: string,
    fresh: boolean,
  ): Promise<{ op: WriteOp; ip: AllocatedIP }> {
    const ipText = formatIP(ip);
    const range = this.rangeOf(set, ip);
    const r = excludedBy(
      reserved.filter((x) => !x.allowRequested),
      ip.value,
    );
    if (r) throw new IpamReservedError(ipText, r.source);
    const owner = affinities.find((a) => {
      const g = geom(a.cidr);
      return g !== undefined && ip.value >= g.lo && ip.value <= g.hi;
    });
    const prefix = this.blockPrefix(range);
    const block = bounds({ family: range.family, ip: ip.value, prefix });
    const g: BlockGeom = owner ? (geom(owner.cidr) as BlockGeom) : { cidr: blockCidr(range.family, block.lo, prefix), family: range.family, ...block };
    const holders = await this.holdersIn(g.cidr, fresh);
    const h = holders.get(ipText);
    if (h && !sameHolder(h, containerId, ifname)) throw new IpamConflictError(ipText, `${h.containerId}/${h.ifname}`);
    if (owner) {
      const [b] = await this.blocks([owner.cidr], true);
      if (b) {
        const holder = b.value.allocations[ipText];
        // Conservative: a block entry is honoured even when no attachment backs it (an
        // address index from before strand recorded one may be incomplete); gc drops it.
        if (holder && !sameHolder(holder, containerId, ifname)) throw new IpamConflictError(ipText, `${holder.containerId}/${holder.ifname}`);
        const allocations = Allocator.withHolders(b.value, holders);
        return this.takeOp(set, b, allocations, ip.value, range, containerId, ifname, node);
      }
    }
    return this.newBlockOp(set, g, ip.value, range, containerId, ifname, node, holders);
  }

  /**
   * An address anywhere the node may take one: its own blocks, then a free block, then
   * another node's block. One function of three commented steps (a little over 60 lines)
   * because they fall through in order over the same request and retry state.
   */
  private async planAny(
    set: number,
    rs: RangeSet,
    affinities: Affinity[],
    reserved: readonly Interval[],
    attempt: number,
    containerId: string,
    ifname: string,
    node: string,
  ): Promise<{ op: WriteOp; ip: AllocatedIP }> {
    const fresh = attempt > 0;
    // 1. inside this node's blocks (shared blocks: all of them, from this node's own start)
    const owner = this.ownerFor(node);
    const own = affinities.filter((a) => a.node === owner).map((a) => a.cidr);
    const blocks = own.length ? await this.blocks(own, fresh) : [];
    let sorted = blocks.map((b) => ({ b, g: geom(b.value.cidr) as BlockGeom })).sort((x, y) => byLo(x.g, y.g));
    if (owner !== node && sorted.length > 1) {
      const k = nodeHash(node) % sorted.length;
      sorted = [...sorted.slice(k), ...sorted.slice(0, k)];
    }
    for (const { b, g } of sorted) {
      const spans = spansOf(rs, g, reserved);
      // After a conflict, start at a random point so concurrent requests on one node spread out.
      const after = fresh ? g.lo + BigInt(Math.floor(this.random() * Number(g.hi - g.lo + 1n))) : b.value.last ? parseIP(b.value.last).value : undefined;
      let allocations = b.value.allocations;
      let got = pickFree(spans, Allocator.takenOf(allocations), after);
      if (got && fresh) {
        // the holders only of the block with room (one read per retry), then pick again
        allocations = Allocator.withHolders(b.value, await this.holdersIn(g.cidr, true));
        got = pickFree(spans, Allocator.takenOf(allocations), after);
      }
      if (got) return this.takeOp(set, b, allocations, got.v, got.range, containerId, ifname, node);
    }
    // 2. claim a free block (after a conflict: one that really does not exist yet, rebuilt
    //    around the addresses attachments hold in it)
    const ghosts: Affinity[] = [];
    for (let tries = 0; tries < 64; tries++) {
      const claim = this.findFreeBlock(rs, [...affinities, ...ghosts]);
      if (!claim) break;
      if (fresh) {
        const [exists] = await this.store.getBlocks(this.network, [claim.cidr]);
        if (exists) {
          // a block without its affinity record (damaged bookkeeping): not free
          ghosts.push({ network: this.network, cidr: claim.cidr, node: exists.value.node });
          continue;
        }
      }
      const holders = await this.holdersIn(claim.cidr, fresh);
      const taken = new Set([...holders.keys()].map((k) => parseIP(k).value));
      const got = pickFree(spansOf(rs, claim, reserved), taken, undefined);
      if (got) return this.newBlockOp(set, claim, got.v, got.range, containerId, ifname, node, holders);
      ghosts.push({ network: this.network, cidr: claim.cidr, node: '' }); // full of held addresses: try the next
    }
    // 3. borrow from another node's block
    if (!this.config.strictAffinity) {
      const others = [...affinities.filter((a) => a.node !== owner), ...ghosts.filter((a) => a.node !== '')].map((a) => a.cidr);
      const ob = others.length ? await this.blocks(others, true) : [];
      const start = ob.length ? Math.floor(this.random() * ob.length) : 0;
      for (let i = 0; i < ob.length; i++) {
        const b = ob[(start + i) % ob.length] as Versioned<Block>;
        const g = geom(b.value.cidr) as BlockGeom;
        const allocations = Allocator.withHolders(b.value, await this.holdersIn(g.cidr, fresh));
        const got = pickFree(spansOf(rs, g, reserved), Allocator.takenOf(allocations), b.value.last ? parseIP(b.value.last).value : undefined);
        if (got) return this.takeOp(set, b, allocations, got.v, got.range, containerId, ifname, node);
      }
    }
    throw new IpamExhaustedError(rangeSetText(rs), rs.field);
  }

  /** The lowest aligned block of `rs` that overlaps no existing block and has a usable address. */
  private findFreeBlock(rs: RangeSet, affinities: Affinity[]): BlockGeom | undefined {
    const taken = affinities
      .map((a) => geom(a.cidr))
      .filter((g): g is BlockGeom => g !== undefined && g.family === rs.family)
      .sort(byLo);
    for (const r of rs.ranges) {
      const prefix = this.blockPrefix(r);
      const size = 1n << BigInt((r.family === 4 ? 32 : 128) - prefix);
      let lo = r.start & ~(size - 1n);
      while (lo <= r.end) {
        const hi = lo + size - 1n;
        const clash = taken.find((t) => t.lo <= hi && lo <= t.hi);
        if (clash) {
          // jump past the clashing block, aligned up
          lo = ((clash.hi + 1n + size - 1n) / size) * size;
          continue;
        }
        const g: BlockGeom = { cidr: blockCidr(r.family, lo, prefix), family: r.family, lo, hi };
        if (pickFree(spansOf(rs, g), new Set(), undefined)) return g;
        lo += size;
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------
  // Host-local migration

  /**
   * Records host-local's reservations as attachments (keyed by host-local's container ID
   * and ifname, on this node), each address entered in its block as if requested. An
   * address another attachment holds is a conflict (reported, not imported); one outside
   * every range is left out. `cursors`: host-local's last_reserved_ip of each range set,
   * which becomes the round-robin cursor of the block holding it (this node's).
   */
  async adopt(entries: readonly Adoptee[], cursors: readonly string[] = [], opts: { dryRun?: boolean } = {}): Promise<AdoptResult> {
    return this.serial(() =>
      this.store.exclusive(this.network, async () => {
        const out: AdoptResult = { imported: [], already: [], conflicts: [], outside: [] };
        await Promise.all([this.affinities(true), this.reservations(true)]);
        for (const e of entries) {
          for (const ipText of e.ips) {
            const ip = tryParseIP(ipText);
            const what = `${ipText} ${e.containerId}/${e.ifname}`;
            const set = ip ? this.setOf(ip) : -1;
            if (!ip || set < 0) {
              out.outside.push(what);
              continue;
            }
            const att = await this.store.getAttachment(this.network, e.containerId, e.ifname);
            const inSet = att?.value.ips.find((x) => this.setOf(parseIP(x.ip)) === set);
            if (inSet) {
              (inSet.ip === formatIP(ip) ? out.already : out.conflicts).push(
                inSet.ip === formatIP(ip) ? what : `${what}: the container already holds ${inSet.ip}`,
              );
              continue;
            }
            if (opts.dryRun) {
              const h = await this.store.holders(this.network, `${formatIP(ip)}/${ip.family === 4 ? 32 : 128}`);
              const other = h.get(formatIP(ip));
              if (other) out.conflicts.push(`${what}: held by ${other.containerId}/${other.ifname}`);
              else out.imported.push(what);
              continue;
            }
            try {
              // past reservations: the address is in use already
              await this.allocateInSet(set, e.containerId, e.ifname, { meta: { origin: 'host-local' }, want: ip, known: { att }, ignoreReservations: true });
              out.imported.push(what);
            } catch (err) {
              if (err instanceof IpamConflictError || err instanceof IpamReservedError) out.conflicts.push(`${what}: ${err.message}`);
              else throw err;
            }
          }
        }
        if (!opts.dryRun) for (const c of cursors) await this.setCursor(c);
        return out;
      }),
    );
  }

  /** Makes `ipText` the round-robin cursor of this node's block holding it (host-local's last_reserved_ip). */
  private async setCursor(ipText: string): Promise<void> {
    const ip = tryParseIP(ipText);
    if (!ip) return;
    for (let attempt = 0; attempt < 8; attempt++) {
      const owner = (await this.affinities(attempt > 0)).find((a) => {
        const g = geom(a.cidr);
        return a.node === this.node && g !== undefined && g.family === ip.family && ip.value >= g.lo && ip.value <= g.hi;
      });
      if (!owner) return;
      const [b] = await this.blocks([owner.cidr], true);
      if (!b || b.value.last === formatIP(ip)) return;
      if ((await this.commit([{ op: 'putBlock', block: { ...b.value, last: formatIP(ip) }, prevRev: b.rev }])) !== undefined) return;
    }
  }

  // -------------------------------------------------------------------------------
  // DEL, GC

  /**
   * Releases every address of (containerId, ifname); returns them. Idempotent. With
   * `opts.node`, only while the attachment is recorded on that node (a pending release
   * completed later must not touch an attachment of another node).
   */
  async release(containerId: string, ifname: string, opts: { node?: string } = {}): Promise<string[]> {
    return this.serial(() =>
      this.store.exclusive(this.network, async () => {
        const released: string[] = [];
        let att = await this.store.getAttachment(this.network, containerId, ifname);
        while (att) {
          if (opts.node !== undefined && att.value.node !== opts.node) break;
          const first = att.value.ips[0];
          if (!first) {
            const rev = await this.commit([{ op: 'delAttachment', network: this.network, containerId, ifname, prevRev: att.rev, ips: [] }]);
            if (rev !== undefined) break;
            att = await this.store.getAttachment(this.network, containerId, ifname);
            continue;
          }
          const r = await this.releaseOne(containerId, ifname, first.ip, { att });
          if (r.released) released.push(first.ip);
          att = r.att;
        }
        return released;
      }),
    );
  }

  /**
   * Releases the attachment exactly as read (`att`), all its addresses in one commit:
   * nothing when it changed since (a DEL and a new ADD for the same container, or any
   * other write). Returns what it released.
   */
  private async releaseIfUnchanged(att: Versioned<Attachment>): Promise<string[]> {
    const { containerId, ifname } = att.value;
    const ips = att.value.ips.map((e) => e.ip);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        await this.backoff(attempt);
        const now = await this.store.getAttachment(this.network, containerId, ifname);
        if (!now || now.rev !== att.rev) return [];
      }
      const ops: WriteOp[] = [{ op: 'delAttachment', network: this.network, containerId, ifname, prevRev: att.rev, ips }];
      const byBlock = new Map<string, string[]>();
      for (const e of att.value.ips) byBlock.set(e.block, [...(byBlock.get(e.block) ?? []), e.ip]);
      for (const b of await this.blocks([...byBlock.keys()], attempt > 0)) {
        const mine = (byBlock.get(b.value.cidr) ?? []).filter((ip) => {
          const h = b.value.allocations[ip];
          return h !== undefined && sameHolder(h, containerId, ifname);
        });
        if (mine.length) ops.push(await this.blockWithout(b, mine));
      }
      if ((await this.commit(ops)) !== undefined) return ips;
    }
  }

  /**
   * Removes one address from the attachment and its block in one commit (retried on
   * conflict). `released` is false when the attachment no longer held it; `att` is the
   * attachment afterwards (undefined once deleted).
   */
  private async releaseOne(
    containerId: string,
    ifname: string,
    ipText: string,
    known?: { att: Versioned<Attachment> | undefined },
  ): Promise<{ released: boolean; att: Versioned<Attachment> | undefined }> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await this.backoff(attempt);
      const att = attempt === 0 && known ? known.att : await this.store.getAttachment(this.network, containerId, ifname);
      const entry = att?.value.ips.find((e) => e.ip === ipText);
      if (!att || !entry) return { released: false, att };
      const ops: WriteOp[] = [];
      const rest = att.value.ips.filter((e) => e !== entry);
      const after: Attachment | undefined = rest.length ? { ...att.value, ips: rest } : undefined;
      ops.push(
        after
          ? { op: 'putAttachment', attachment: after, prevRev: att.rev, prevIps: att.value.ips.map((e) => e.ip) }
          : { op: 'delAttachment', network: this.network, containerId, ifname, prevRev: att.rev, ips: att.value.ips.map((e) => e.ip) },
      );
      const [b] = await this.blocks([entry.block], attempt > 0);
      const holder = b?.value.allocations[ipText];
      if (b && holder && sameHolder(holder, containerId, ifname)) {
        ops.push(await this.blockWithout(b, [ipText]));
      }
      const rev = await this.commit(ops);
      if (rev !== undefined) return { released: true, att: after && { value: after, rev } };
    }
  }

  /** The write that removes `ips` from block `b`: a delete when it ends empty and its owner has another block in the same range set. */
  private async blockWithout(b: Versioned<Block>, ips: string[]): Promise<WriteOp> {
    const allocations = { ...b.value.allocations };
    for (const ip of ips) delete allocations[ip];
    if (Object.keys(allocations).length === 0 && (await this.ownerHasAnother(b.value))) {
      return { op: 'delBlock', network: this.network, cidr: b.value.cidr, prevRev: b.rev };
    }
    return { op: 'putBlock', block: { ...b.value, allocations }, prevRev: b.rev };
  }

  private async ownerHasAnother(b: Block): Promise<boolean> {
    const g = geom(b.cidr);
    if (!g) return true;
    const sets = this.config.rangeSets.filter((rs) => spansOf(rs, g).length > 0);
    const affs = await this.affinities(false);
    return affs.some((a) => {
      if (a.node !== b.node || a.cidr === b.cidr) return false;
      const ag = geom(a.cidr);
      if (!ag) return false;
      // Outside every configured range (or no ranges known, as in the admin CLI): same family.
      return sets.length === 0 ? ag.family === g.family : sets.some((rs) => spansOf(rs, ag).length > 0);
    });
  }

  /**
   * Makes the blocks of this network agree with its attachments (the truth), whatever
   * node they belong to: block entries no attachment holds are dropped; attachment
   * addresses missing from their block are entered again; a missing block is rebuilt
   * from the attachments holding addresses in it; an attachment naming the wrong block
   * is corrected. Never drops an attachment. With `dryRun`, only reports.
   */
  async repair(opts: { dryRun?: boolean } = {}): Promise<RepairReport> {
    return this.store.exclusive(this.network, async () => {
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) await this.backoff(attempt);
        const pass = await this.repairPass(opts.dryRun === true);
        if (!pass.conflict) return pass.out;
      }
    });
  }

  /** One repair over a fresh read of the store; `conflict` when a write lost a race (repair runs it again). */
  private async repairPass(dryRun: boolean): Promise<{ out: RepairReport; conflict: boolean }> {
    const out = emptyRepairReport();
    let conflict = false;
    const apply = async (ops: WriteOp[]): Promise<void> => {
      if (dryRun || (await this.commit(ops)) !== undefined) return;
      conflict = true;
    };
    // Blocks before attachments: an allocation committed in between is then seen on both sides.
    const blocks = await this.store.listBlocks(this.network);
    const atts = await this.store.listAttachments(this.network);
    const affinities = new Set((await this.store.listAffinities(this.network)).map((a) => a.cidr));
    const truth = addressTruth(atts, out);
    const placed = new Map<string, string>(); // ip -> block cidr holding it now
    const geoms = blocks.map((b) => ({ b, g: geom(b.value.cidr) as BlockGeom }));
    for (const { b, g } of geoms) {
      const op = await this.repairBlock(b, g, truth, placed, out);
      if (op) await apply([op]);
    }
    for (const b of missingBlocks(this.network, truth, placed, geoms, out).values()) {
      if (affinities.has(b.cidr)) {
        // etcd: an affinity record whose block is gone blocks the block's creation
        out.conflicts.push(`${b.cidr}: its affinity record remains without the block; strand ipam repair removes it`);
        continue;
      }
      this.fillRebuiltBlock(b, truth, placed);
      out.blocksCreated.push(b.cidr);
      out.restored.push(...Object.keys(b.allocations));
      await apply([{ op: 'putBlock', block: b, prevRev: 0 }]);
    }
    // attachments naming a block that does not hold the address
    for (const a of atts) {
      const ips = a.value.ips.map((e) => {
        const at = placed.get(e.ip);
        return at && at !== e.block ? { ip: e.ip, block: at } : e;
      });
      if (ips.every((e, i) => e === a.value.ips[i])) continue;
      out.attachmentsFixed.push(`${a.value.containerId}/${a.value.ifname}`);
      const cur = a.value.ips.map((e) => e.ip);
      await apply([{ op: 'putAttachment', attachment: { ...a.value, ips }, prevRev: a.rev, prevIps: cur }]);
    }
    return { out, conflict };
  }

  /**
   * A block made to agree with the truth: entries no attachment holds dropped (orphans),
   * the attachments' addresses inside it entered (restored). The write that does it
   * (deleting a block left empty whose owner has another), or undefined when it agrees.
   */
  private async repairBlock(
    b: Versioned<Block>,
    g: BlockGeom,
    truth: AddressTruth,
    placed: Map<string, string>,
    out: RepairReport,
  ): Promise<WriteOp | undefined> {
    const allocations: Record<string, AllocationRef> = {};
    let changed = false;
    for (const [ip, r] of Object.entries(b.value.allocations)) {
      const t = truth.get(ip);
      if (!t || !sameHolder(r, t.a.value.containerId, t.a.value.ifname)) {
        out.orphans.push(ip);
        changed = true;
        continue;
      }
      const want = holderRef(b.value, t.a.value);
      if (r.node !== want.node) changed = true;
      allocations[ip] = want;
      placed.set(ip, b.value.cidr);
    }
    for (const [ip, t] of truth) {
      if (placed.has(ip) || t.family !== g.family || t.v < g.lo || t.v > g.hi) continue;
      allocations[ip] = holderRef(b.value, t.a.value);
      placed.set(ip, b.value.cidr);
      out.restored.push(ip);
      changed = true;
    }
    if (!changed) return undefined;
    return Object.keys(allocations).length === 0 && (await this.ownerHasAnother(b.value))
      ? { op: 'delBlock', network: this.network, cidr: b.value.cidr, prevRev: b.rev }
      : { op: 'putBlock', block: { ...b.value, allocations }, prevRev: b.rev };
  }

  /** A rebuilt block's owner (the node holding most of its addresses; shared blocks: no owner) and allocations. */
  private fillRebuiltBlock(b: Block, truth: AddressTruth, placed: ReadonlyMap<string, string>): void {
    const holders = [...placed].filter(([, c]) => c === b.cidr).map(([ip]) => [ip, (truth.get(ip) as AddressTruthEntry).a.value] as const);
    const count = new Map<string, number>();
    for (const [, a] of holders) count.set(a.node, (count.get(a.node) ?? 0) + 1);
    b.node = this.config.blockAffinity ? ([...count.entries()].sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))[0]?.[0] ?? b.node) : SHARED_BLOCK_OWNER;
    for (const [ip, a] of holders) b.allocations[ip] = holderRef(b, a);
  }

  /**
   * CNI GC: releases this node's attachments in this network that are not in `valid`,
   * except those created during the GC or less than the grace period before it started
   * (an ADD the runtime's list may predate) and those whose pod still uses its address
   * (`isLive`), unless `force`; an attachment written again since it was read is never
   * released. Then drops block entries of this node no attachment holds.
   */
  async gc(valid: ReadonlyArray<{ containerID: string; ifname: string }>, opts: GcOptions): Promise<GcResult> {
    const keep = new Set(valid.map((v) => attachmentKey(v.containerID, v.ifname)));
    const grace = opts.graceMs ?? this.config.gcGraceMs;
    const out: GcResult = { released: [], kept: [] };
    await this.store.exclusive(this.network, async () => {
      const atts = await this.store.listAttachments(this.network);
      for (const a of atts) {
        const { containerId, ifname } = a.value;
        if (a.value.node !== this.node || keep.has(attachmentKey(containerId, ifname))) continue;
        const ips = a.value.ips.map((e) => e.ip);
        if (!opts.force) {
          const created = Date.parse(a.value.created);
          if (Number.isFinite(created) && created > opts.startedAt - grace) {
            out.kept.push({ containerId, ifname, ips, why: `created ${a.value.created}, within the GC grace period of ${grace} ms` });
            continue;
          }
          if (opts.isLive && (await opts.isLive(a.value))) {
            out.kept.push({ containerId, ifname, ips, why: `its network namespace ${a.value.netns ?? ''} still holds its address` });
            continue;
          }
        }
        if (opts.dryRun) out.released.push(...ips);
        else out.released.push(...(await this.serial(() => this.releaseIfUnchanged(a))));
      }
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) await this.backoff(attempt);
        // Blocks before attachments: an allocation committed in between is then seen on both sides.
        const blocks = await this.store.listBlocks(this.network);
        const live = new Set(
          (await this.store.listAttachments(this.network)).flatMap((x) => x.value.ips.map((e) => `${e.ip} ${x.value.containerId}/${x.value.ifname}`)),
        );
        let conflict = false;
        for (const b of blocks) {
          const orphans = Object.entries(b.value.allocations)
            .filter(([ip, ref]) => (ref.node ?? b.value.node) === this.node && !live.has(`${ip} ${ref.containerId}/${ref.ifname}`))
            .map(([ip]) => ip);
          if (orphans.length === 0) continue;
          if (opts.dryRun) out.released.push(...orphans);
          else if ((await this.commit([await this.blockWithout(b, orphans)])) === undefined) conflict = true;
          else out.released.push(...orphans);
        }
        if (!conflict || opts.dryRun) return;
      }
    });
    return out;
  }

  /** CHECK: the attachment exists, one address per range set, every one listed in prevResult. */
  async check(containerId: string, ifname: string, expected?: readonly string[]): Promise<Attachment> {
    const att = await this.store.getAttachment(this.network, containerId, ifname);
    if (!att) throw new IpamCheckError(`no allocation for ${containerId}/${ifname} in network ${this.network}`);
    for (let set = 0; set < this.config.rangeSets.length; set++) {
      if (!att.value.ips.some((e) => this.setOf(parseIP(e.ip)) === set)) {
        throw new IpamCheckError(`${containerId}/${ifname} holds no address in range set ${rangeSetText(this.config.rangeSets[set] as RangeSet)}`);
      }
    }
    if (expected) {
      for (const e of att.value.ips) {
        if (!expected.includes(e.ip)) throw new IpamCheckError(`${e.ip} is allocated to ${containerId}/${ifname} but missing from prevResult`);
      }
    }
    return att.value;
  }
}
