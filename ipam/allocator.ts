// The IPAM allocator: all allocation policy, over the Store interface (no I/O of its own).
//
// Model: each configured subnet is cut into aligned blocks (default /26 and /122, never
// larger than the subnet). A node claims a free block (create-if-absent), then allocates
// inside its own blocks with compare-and-swap on the block record, so nodes never
// contend with each other on the hot path. When its blocks are full it claims another;
// when no block is free it borrows an address from another node's block (unless
// strictAffinity). An empty block is released unless it is its owner's last block in
// that range set. Every write to a block also writes the attachment record
// (network, containerID, ifname) in the same commit, so after a crash at any point the
// two agree and an interrupted ADD is either invisible or a normal (GC-able) attachment.
import { formatIP, parseIP, tryParseCidr, type Family, type IPAddr } from '../lib/addr/cidr.ts';
import { rangeFor, rangeSetText, usableIn, type IpamConfig, type Range, type RangeSet } from './config.ts';
import type { Affinity, Attachment, Block, Store, Versioned, WriteOp } from './store/types.ts';

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

/** Compare-and-swap kept failing past the retry bound (heavy contention): try again later. */
export class IpamContentionError extends Error {
  override readonly name = 'IpamContentionError';
}

/** CHECK found the allocation missing or different. */
export class IpamCheckError extends Error {
  override readonly name = 'IpamCheckError';
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
}

function geom(cidr: string): BlockGeom | undefined {
  const c = tryParseCidr(cidr);
  if (!c) return undefined;
  const bits = c.family === 4 ? 32 : 128;
  const size = 1n << BigInt(bits - c.prefix);
  const lo = c.ip & ~(size - 1n);
  return { cidr, family: c.family, lo, hi: lo + size - 1n };
}

function blockCidr(family: Family, lo: bigint, prefix: number): string {
  return `${formatIP({ family, value: lo })}/${prefix}`;
}

/** The parts of `rs`'s ranges that fall inside block `g`, in address order. */
function spansOf(rs: RangeSet, g: BlockGeom): Span[] {
  if (g.family !== rs.family) return [];
  const out: Span[] = [];
  for (const r of rs.ranges) {
    const lo = g.lo > r.start ? g.lo : r.start;
    const hi = g.hi < r.end ? g.hi : r.end;
    if (lo <= hi) out.push({ lo, hi, range: r });
  }
  return out.sort((a, b) => (a.lo < b.lo ? -1 : 1));
}

function excludedCount(s: Span): bigint {
  let n = 0n;
  for (const v of new Set([s.range.subnet.ip, s.range.gateway, ...(s.range.family === 4 ? [broadcastOf(s.range)] : [])])) {
    if (v >= s.lo && v <= s.hi) n++;
  }
  return n;
}

function broadcastOf(r: Range): bigint {
  return r.subnet.ip + (1n << BigInt(32 - r.subnet.prefix)) - 1n;
}

function allocatedValues(b: Block): Set<bigint> {
  const out = new Set<bigint>();
  for (const k of Object.keys(b.allocations)) out.add(parseIP(k).value);
  return out;
}

/**
 * A free usable address in `spans`, walking upward from just after `after` and wrapping
 * (host-local's round robin), or undefined when every usable address is taken.
 */
function pickFree(spans: Span[], taken: Set<bigint>, after: bigint | undefined): { v: bigint; range: Range } | undefined {
  let usable = 0n;
  let used = 0n;
  for (const s of spans) {
    usable += s.hi - s.lo + 1n - excludedCount(s);
    for (const v of taken) if (v >= s.lo && v <= s.hi && usableIn(s.range, v)) used++;
  }
  if (used >= usable) return undefined;
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
      let v = start !== undefined && start > s.lo ? start : s.lo;
      const hi = stop !== undefined && stop < s.hi ? stop : s.hi;
      for (; v <= hi; v++) {
        if (!taken.has(v) && usableIn(s.range, v)) return { v, range: s.range };
      }
    }
  }
  return undefined;
}

function sameHolder(ref: { containerId: string; ifname: string }, containerId: string, ifname: string): boolean {
  return ref.containerId === containerId && ref.ifname === ifname;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Allocator {
  readonly store: Store;
  readonly config: IpamConfig;
  readonly node: string;
  private readonly maxRetries: number;
  private readonly random: () => number;
  /** Commits refused by compare-and-swap, for benchmarks. */
  conflicts = 0;
  /** Operations of this allocator (one node) run one at a time: concurrent ones would only collide on the same block. */
  private queue: Promise<unknown> = Promise.resolve();
  // What this allocator last read or wrote. Used optimistically on a first attempt
  // (compare-and-swap catches anything stale) and dropped on any conflict, so an
  // in-process allocator allocates with a single transaction when nothing moved.
  private affCache: Affinity[] | undefined;
  private readonly blockCache = new Map<string, Versioned<Block>>();

  constructor(opts: AllocatorOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.node = opts.node;
    this.maxRetries = opts.maxRetries ?? 64;
    this.random = opts.random ?? Math.random;
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
    return bs > r.subnet.prefix ? bs : r.subnet.prefix;
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
  async allocate(containerId: string, ifname: string): Promise<AllocatedIP[]> {
    return this.serial(() =>
      this.store.exclusive(this.network, async () => {
        // With warm caches assume no attachment yet (create-if-absent catches a repeat ADD).
        const optimistic = this.affCache !== undefined;
        // Cold (a fresh plugin process): read the attachment and the block ownership in parallel (one round trip).
        let att = optimistic ? undefined : (await Promise.all([this.store.getAttachment(this.network, containerId, ifname), this.affinities(true)]))[0];
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
            const got = await this.allocateInSet(set, containerId, ifname, set === 0 || att ? { att } : undefined);
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
    known?: { att: Versioned<Attachment> | undefined },
  ): Promise<{ ip: AllocatedIP; att: Versioned<Attachment> }> {
    const rs = this.config.rangeSets[set] as RangeSet;
    const req = this.config.requested.find((r) => r.set === set);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await this.backoff(attempt);
      // Re-read the attachment each round: an earlier commit whose reply was lost may
      // already have recorded an address for this set.
      const att = attempt === 0 && known ? known.att : await this.store.getAttachment(this.network, containerId, ifname);
      const held = att?.value.ips.find((e) => this.setOf(parseIP(e.ip)) === set);
      if (att && held) {
        const ip = parseIP(held.ip);
        return { ip: { set, ip, range: this.rangeOf(set, ip), block: held.block }, att };
      }
      const affinities = (await this.affinities(attempt > 0)).filter((a) => {
        const g = geom(a.cidr);
        return g !== undefined && spansOf(rs, g).length > 0;
      });
      const plan = req
        ? await this.planRequested(set, req.ip, affinities, containerId, ifname)
        : await this.planAny(set, rs, affinities, attempt, containerId, ifname);
      const attachment: Attachment = att
        ? { ...att.value, ips: [...att.value.ips, { ip: formatIP(plan.ip.ip), block: plan.ip.block }] }
        : {
            network: this.network,
            containerId,
            ifname,
            node: this.node,
            ips: [{ ip: formatIP(plan.ip.ip), block: plan.ip.block }],
            created: new Date().toISOString(),
          };
      const rev = await this.commit([plan.op, { op: 'putAttachment', attachment, prevRev: att?.rev ?? 0 }]);
      if (rev !== undefined) return { ip: plan.ip, att: { value: attachment, rev } };
    }
  }

  private newBlockOp(set: number, g: BlockGeom, v: bigint, range: Range, containerId: string, ifname: string): { op: WriteOp; ip: AllocatedIP } {
    const ipText = formatIP({ family: g.family, value: v });
    const block: Block = { network: this.network, cidr: g.cidr, node: this.node, allocations: { [ipText]: { containerId, ifname } }, last: ipText };
    return { op: { op: 'putBlock', block, prevRev: 0 }, ip: { set, ip: { family: g.family, value: v }, range, block: g.cidr } };
  }

  private takeOp(set: number, b: Versioned<Block>, v: bigint, range: Range, containerId: string, ifname: string): { op: WriteOp; ip: AllocatedIP } {
    const family = range.family;
    const ipText = formatIP({ family, value: v });
    const ref = b.value.node === this.node ? { containerId, ifname } : { containerId, ifname, node: this.node };
    const block: Block = { ...b.value, allocations: { ...b.value.allocations, [ipText]: ref }, last: ipText };
    return { op: { op: 'putBlock', block, prevRev: b.rev }, ip: { set, ip: { family, value: v }, range, block: b.value.cidr } };
  }

  private async planRequested(set: number, ip: IPAddr, affinities: Affinity[], containerId: string, ifname: string): Promise<{ op: WriteOp; ip: AllocatedIP }> {
    const ipText = formatIP(ip);
    const range = this.rangeOf(set, ip);
    const owner = affinities.find((a) => {
      const g = geom(a.cidr);
      return g !== undefined && ip.value >= g.lo && ip.value <= g.hi;
    });
    if (owner) {
      const [b] = await this.blocks([owner.cidr], true);
      if (b) {
        const holder = b.value.allocations[ipText];
        if (holder && !sameHolder(holder, containerId, ifname)) {
          throw new IpamConflictError(ipText, `${holder.containerId}/${holder.ifname}`);
        }
        return this.takeOp(set, b, ip.value, range, containerId, ifname);
      }
    }
    const prefix = this.blockPrefix(range);
    const size = 1n << BigInt((range.family === 4 ? 32 : 128) - prefix);
    const lo = ip.value & ~(size - 1n);
    const g: BlockGeom = { cidr: blockCidr(range.family, lo, prefix), family: range.family, lo, hi: lo + size - 1n };
    return this.newBlockOp(set, g, ip.value, range, containerId, ifname);
  }

  private async planAny(
    set: number,
    rs: RangeSet,
    affinities: Affinity[],
    attempt: number,
    containerId: string,
    ifname: string,
  ): Promise<{ op: WriteOp; ip: AllocatedIP }> {
    // 1. inside this node's blocks
    const own = affinities.filter((a) => a.node === this.node).map((a) => a.cidr);
    const blocks = own.length ? await this.blocks(own, attempt > 0) : [];
    const sorted = blocks.map((b) => ({ b, g: geom(b.value.cidr) as BlockGeom })).sort((x, y) => (x.g.lo < y.g.lo ? -1 : 1));
    for (const { b, g } of sorted) {
      const spans = spansOf(rs, g);
      // After a conflict, start at a random point so concurrent requests on one node spread out.
      const after = attempt > 0 ? g.lo + BigInt(Math.floor(this.random() * Number(g.hi - g.lo + 1n))) : b.value.last ? parseIP(b.value.last).value : undefined;
      const got = pickFree(spans, allocatedValues(b.value), after);
      if (got) return this.takeOp(set, b, got.v, got.range, containerId, ifname);
    }
    // 2. claim a free block
    const claim = this.findFreeBlock(rs, affinities);
    if (claim) {
      const got = pickFree(spansOf(rs, claim), new Set(), undefined);
      if (got) return this.newBlockOp(set, claim, got.v, got.range, containerId, ifname);
    }
    // 3. borrow from another node's block
    if (!this.config.strictAffinity) {
      const others = affinities.filter((a) => a.node !== this.node).map((a) => a.cidr);
      const ob = others.length ? await this.blocks(others, true) : [];
      const start = ob.length ? Math.floor(this.random() * ob.length) : 0;
      for (let i = 0; i < ob.length; i++) {
        const b = ob[(start + i) % ob.length] as Versioned<Block>;
        const g = geom(b.value.cidr) as BlockGeom;
        const got = pickFree(spansOf(rs, g), allocatedValues(b.value), b.value.last ? parseIP(b.value.last).value : undefined);
        if (got) return this.takeOp(set, b, got.v, got.range, containerId, ifname);
      }
    }
    throw new IpamExhaustedError(rangeSetText(rs), rs.field);
  }

  /** The lowest aligned block of `rs` that overlaps no existing block and has a usable address. */
  private findFreeBlock(rs: RangeSet, affinities: Affinity[]): BlockGeom | undefined {
    const taken = affinities
      .map((a) => geom(a.cidr))
      .filter((g): g is BlockGeom => g !== undefined && g.family === rs.family)
      .sort((a, b) => (a.lo < b.lo ? -1 : 1));
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
  // DEL, GC

  /** Releases every address of (containerId, ifname); returns them. Idempotent. */
  async release(containerId: string, ifname: string): Promise<string[]> {
    return this.serial(() =>
      this.store.exclusive(this.network, async () => {
        const released: string[] = [];
        let att = await this.store.getAttachment(this.network, containerId, ifname);
        while (att) {
          const first = att.value.ips[0];
          if (!first) {
            const rev = await this.commit([{ op: 'delAttachment', network: this.network, containerId, ifname, prevRev: att.rev }]);
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
          ? { op: 'putAttachment', attachment: after, prevRev: att.rev }
          : { op: 'delAttachment', network: this.network, containerId, ifname, prevRev: att.rev },
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
   * Makes blocks and attachments of this network agree, whatever node they belong to:
   * drops block entries without a matching attachment and attachment addresses missing
   * from their block. Commits are atomic, so this only finds damage from outside
   * (hand edits, a store restored from backup). Returns what it removed.
   */
  async repair(): Promise<{ allocations: string[]; attachmentIPs: string[] }> {
    const out = { allocations: [] as string[], attachmentIPs: [] as string[] };
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await this.backoff(attempt);
      let conflict = false;
      // Blocks before attachments (see gc); attachment damage is re-checked on a fresh block read.
      const blocks = await this.store.listBlocks(this.network);
      const atts = await this.store.listAttachments(this.network);
      const holds = new Set(atts.flatMap((a) => a.value.ips.map((e) => `${e.ip} ${a.value.containerId}/${a.value.ifname}`)));
      for (const b of blocks) {
        const orphans = Object.entries(b.value.allocations)
          .filter(([ip, ref]) => !holds.has(`${ip} ${ref.containerId}/${ref.ifname}`))
          .map(([ip]) => ip);
        if (orphans.length === 0) continue;
        if ((await this.commit([await this.blockWithout(b, orphans)])) === undefined) conflict = true;
        else out.allocations.push(...orphans);
      }
      for (const a of atts) {
        const { containerId, ifname } = a.value;
        const fresh = new Map((await this.store.getBlocks(this.network, [...new Set(a.value.ips.map((e) => e.block))])).map((b) => [b.value.cidr, b]));
        const missing = a.value.ips.filter((e) => {
          const ref = fresh.get(e.block)?.value.allocations[e.ip];
          return !ref || !sameHolder(ref, containerId, ifname);
        });
        if (missing.length === 0) continue;
        const rest = a.value.ips.filter((e) => !missing.includes(e));
        const op: WriteOp = rest.length
          ? { op: 'putAttachment', attachment: { ...a.value, ips: rest }, prevRev: a.rev }
          : { op: 'delAttachment', network: this.network, containerId, ifname, prevRev: a.rev };
        if ((await this.commit([op])) === undefined) conflict = true;
        else out.attachmentIPs.push(...missing.map((e) => e.ip));
      }
      if (!conflict) return out;
    }
  }

  /**
   * CNI GC: releases this node's attachments in this network that are not in `valid`,
   * and any allocation of this node left in a block without a matching attachment.
   */
  async gc(valid: ReadonlyArray<{ containerID: string; ifname: string }>): Promise<string[]> {
    const keep = new Set(valid.map((v) => `${v.containerID}/${v.ifname}`));
    const released: string[] = [];
    const atts = await this.store.listAttachments(this.network);
    for (const a of atts) {
      if (a.value.node !== this.node || keep.has(`${a.value.containerId}/${a.value.ifname}`)) continue;
      released.push(...(await this.release(a.value.containerId, a.value.ifname)));
    }
    await this.store.exclusive(this.network, async () => {
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) await this.backoff(attempt);
        // Blocks before attachments: an allocation committed in between is then seen on both sides.
        const blocks = await this.store.listBlocks(this.network);
        const live = new Set((await this.store.listAttachments(this.network)).map((a) => `${a.value.containerId}/${a.value.ifname}`));
        let conflict = false;
        for (const b of blocks) {
          const orphans = Object.entries(b.value.allocations)
            .filter(([, ref]) => (ref.node ?? b.value.node) === this.node && !live.has(`${ref.containerId}/${ref.ifname}`))
            .map(([ip]) => ip);
          if (orphans.length === 0) continue;
          if ((await this.commit([await this.blockWithout(b, orphans)])) === undefined) conflict = true;
          else released.push(...orphans);
        }
        if (!conflict) return;
      }
    });
    return released;
  }

  /** CHECK: the attachment exists, every block agrees, one address per range set. */
  async check(containerId: string, ifname: string, expected?: readonly string[]): Promise<Attachment> {
    const att = await this.store.getAttachment(this.network, containerId, ifname);
    if (!att) throw new IpamCheckError(`no allocation for ${containerId}/${ifname} in network ${this.network}`);
    for (const e of att.value.ips) {
      const [b] = await this.store.getBlocks(this.network, [e.block]);
      const holder = b?.value.allocations[e.ip];
      if (!holder || !sameHolder(holder, containerId, ifname)) {
        throw new IpamCheckError(`${e.ip} of ${containerId}/${ifname} is not recorded in block ${e.block}`);
      }
    }
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
