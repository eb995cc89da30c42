/**
 * The client table in shared memory, so that per-client limits and bans hold across worker threads
 * (WORKERS > 1): every worker builds a `SharedClientTable` over the same `SharedGuardMemory` and the
 * policy (`policy.ts`) runs unchanged on it. Same semantics as `ClientTable`: fixed capacity, O(1)
 * operations, slots with live connections pinned (never evicted), -1 when every slot is pinned (the
 * caller fails closed).
 *
 * Everything lives in one SharedArrayBuffer: the per-slot typed arrays, the LRU list of drained slots,
 * the free-slot stack, and the key → slot index. Keys are numeric, so the index is an open-addressing
 * hash table (linear probing, backward-shift deletion, load ≤ 1/2) over typed arrays instead of a Map:
 * a key is its family, prefix length and masked address (IPv4: one 32-bit word; IPv6 /64: two).
 *
 * Concurrency: one mutex word (`lock`/`unlock`, Atomics) guards the whole table; a caller holds it for
 * one guard decision (about a microsecond), never across an `await`. The lock word holds the owner
 * (worker index + 1, or 0 for the supervisor's own lock id) so a supervisor can free the lock of a
 * worker that died holding it (`forceUnlock`). Per-worker pin counts (`pins`) let the supervisor
 * release a dead worker's connections (`releaseWorkerPins`) so its clients are not pinned forever.
 *
 * Open connections: one word per worker (`openByWorker`) plus their total in the header, so MAX_CONNS is
 * one cap over all workers rather than a share each (the kernel's SO_REUSEPORT hash spreads connections
 * unevenly). Both change under the lock (`addOpen`/`removeOpen`, by `SharedGate`); the total is written
 * with Atomics so a reader without the lock (the busy idle-timeout heuristic) sees a whole value.
 *
 * Pure: never mentions `Deno.`; allocation-free on the hot path (scratch key buffers are reused).
 */

import { formatIp, IpAddr, maskGroups, parseCidr, parseIp } from "../core/cidr.ts";
import { NO_SLOT, SlotLru } from "./lru.ts";
import { countRequestIn, type GuardTable, requestRateIn } from "./table.ts";

const NONE = NO_SLOT;

/** Most worker threads one memory block serves (WORKERS=auto is capped to it). */
export const MAX_WORKERS = 64;
/** Spins on a held lock before sleeping on it (a decision takes about a microsecond). */
const LOCK_SPINS = 200;
/** Longest single sleep on a held lock before looking again (ms); a dead holder is freed by the supervisor. */
const LOCK_WAIT_MS = 1;

// Header words (Int32).
const H_LOCK = 0;
const H_WAITERS = 1;
const H_SIZE = 2;
const H_HEAD = 3;
const H_TAIL = 4;
const H_FREE_TOP = 5;
/** Open connections of every worker (the sum of `openByWorker`). */
const H_OPEN = 6;
const HEADER_WORDS = 8;

/** Key families: 4 and 6 are addresses; OTHER is a peer that is no address (hashed text). */
const FAMILY_OTHER = 255;

/** The shared block and its shape; structured-clonable (the buffer is shared with, not copied to, a worker). */
export interface SharedGuardMemory {
  readonly capacity: number;
  /** Rows of per-worker pin counts and open counts (worker indexes 0..workers-1). */
  readonly workers: number;
  readonly buffer: SharedArrayBuffer;
}

/** Smallest power of two ≥ 2 × capacity: the hash index stays at most half full. */
function indexSize(capacity: number): number {
  let n = 2;
  while (n < capacity * 2) n *= 2;
  return n;
}

/** Byte offsets of each array in the block, 8-byte aligned. */
function layout(capacity: number, workers: number) {
  const cap = capacity;
  let at = 0;
  const take = (bytes: number) => {
    const start = at;
    at += Math.ceil(bytes / 8) * 8;
    return start;
  };
  const f64 = () => take(cap * 8);
  const i32 = () => take(cap * 4);
  const l = {
    header: take(HEADER_WORDS * 4),
    requestTatMs: f64(),
    connTatMs: f64(),
    violationStartMs: f64(),
    lastBanEndMs: f64(),
    bannedUntilMs: f64(),
    requests: f64(),
    rateWindowStartMs: f64(),
    rateCurrent: f64(),
    ratePrevious: f64(),
    conns: i32(),
    violations: i32(),
    offences: i32(),
    prev: i32(),
    next: i32(),
    free: i32(),
    index: take(indexSize(cap) * 4),
    groups: take(cap * 16),
    family: take(cap),
    prefixBits: take(cap),
    used: take(cap),
    pins: take(cap * workers * 2),
    open: take(workers * 4),
    bytes: 0,
  };
  l.bytes = at;
  return l;
}

/**
 * Allocates and initialises a block for `capacity` keys and `workers` workers (MAX_WORKERS at most).
 * Size is about 112 bytes per key plus 2 bytes per key per worker (and 4 bytes per worker).
 */
export function createSharedGuardMemory(capacity: number, workers: number): SharedGuardMemory {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`bad table capacity ${capacity}`);
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    throw new RangeError(`bad worker count ${workers} (1..${MAX_WORKERS})`);
  }
  const l = layout(capacity, workers);
  const buffer = new SharedArrayBuffer(l.bytes);
  const header = new Int32Array(buffer, l.header, HEADER_WORDS);
  new Int32Array(buffer, l.prev, capacity).fill(NONE);
  new Int32Array(buffer, l.next, capacity).fill(NONE);
  const free = new Int32Array(buffer, l.free, capacity);
  // Pop order 0, 1, 2, … as in ClientTable.
  for (let i = 0; i < capacity; i++) free[i] = capacity - 1 - i;
  header[H_FREE_TOP] = capacity;
  header[H_HEAD] = NONE;
  header[H_TAIL] = NONE;
  return { capacity, workers, buffer };
}

/** One thread's view of the shared table. Create one per thread over the same memory. */
export class SharedClientTable implements GuardTable {
  readonly capacity: number;
  readonly workers: number;
  readonly requestTatMs: Float64Array<SharedArrayBuffer>;
  readonly connTatMs: Float64Array<SharedArrayBuffer>;
  readonly conns: Int32Array<SharedArrayBuffer>;
  readonly violations: Int32Array<SharedArrayBuffer>;
  readonly violationStartMs: Float64Array<SharedArrayBuffer>;
  readonly offences: Int32Array<SharedArrayBuffer>;
  readonly lastBanEndMs: Float64Array<SharedArrayBuffer>;
  readonly bannedUntilMs: Float64Array<SharedArrayBuffer>;
  readonly requests: Float64Array<SharedArrayBuffer>;
  readonly rateWindowStartMs: Float64Array<SharedArrayBuffer>;
  readonly rateCurrent: Float64Array<SharedArrayBuffer>;
  readonly ratePrevious: Float64Array<SharedArrayBuffer>;
  /** 4 or 6, or 255 for a peer that is no address (CIDR bans skip those, as they skip 0 in ClientTable). */
  readonly family: Uint8Array<SharedArrayBuffer>;
  /** The key's masked address, 8 groups per slot (IPv4 in groups 0..1). */
  readonly groups: Uint16Array<SharedArrayBuffer>;
  /** Open connections per (worker, slot): row `worker * capacity`. Maintained by `SharedGate`. */
  readonly pins: Uint16Array<SharedArrayBuffer>;
  /** Open connections per worker (admitted, not yet released), allowlisted peers included. */
  readonly openByWorker: Int32Array<SharedArrayBuffer>;
  lastCreated = false;

  readonly #header: Int32Array<SharedArrayBuffer>;
  readonly #words: Uint32Array<SharedArrayBuffer>;
  readonly #keyFamily: Uint8Array<SharedArrayBuffer>;
  readonly #prefixBits: Uint8Array<SharedArrayBuffer>;
  readonly #used: Uint8Array<SharedArrayBuffer>;
  readonly #lru: SlotLru;
  readonly #free: Int32Array<SharedArrayBuffer>;
  readonly #index: Int32Array<SharedArrayBuffer>;
  readonly #mask: number;
  /** The probe key (family, prefix, masked address as 8 groups = 4 words), reused per call. */
  #probeFamily = 0;
  #probeBits = 0;
  readonly #probeGroups = new Uint16Array(8);
  readonly #probeWords = new Uint32Array(this.#probeGroups.buffer);
  readonly #fmt = new IpAddr();
  readonly #parsed = new IpAddr();

  constructor(memory: SharedGuardMemory) {
    const cap = memory.capacity;
    const b = memory.buffer;
    const l = layout(cap, memory.workers);
    if (b.byteLength < l.bytes) throw new RangeError("shared guard memory is smaller than its layout");
    this.capacity = cap;
    this.workers = memory.workers;
    this.#header = new Int32Array(b, l.header, HEADER_WORDS);
    this.requestTatMs = new Float64Array(b, l.requestTatMs, cap);
    this.connTatMs = new Float64Array(b, l.connTatMs, cap);
    this.violationStartMs = new Float64Array(b, l.violationStartMs, cap);
    this.lastBanEndMs = new Float64Array(b, l.lastBanEndMs, cap);
    this.bannedUntilMs = new Float64Array(b, l.bannedUntilMs, cap);
    this.requests = new Float64Array(b, l.requests, cap);
    this.rateWindowStartMs = new Float64Array(b, l.rateWindowStartMs, cap);
    this.rateCurrent = new Float64Array(b, l.rateCurrent, cap);
    this.ratePrevious = new Float64Array(b, l.ratePrevious, cap);
    this.conns = new Int32Array(b, l.conns, cap);
    this.violations = new Int32Array(b, l.violations, cap);
    this.offences = new Int32Array(b, l.offences, cap);
    this.#lru = new SlotLru(
      new Int32Array(b, l.prev, cap),
      new Int32Array(b, l.next, cap),
      this.#header,
      H_HEAD,
      H_TAIL,
    );
    this.#free = new Int32Array(b, l.free, cap);
    this.#index = new Int32Array(b, l.index, indexSize(cap));
    this.#mask = indexSize(cap) - 1;
    this.groups = new Uint16Array(b, l.groups, cap * 8);
    this.#words = new Uint32Array(b, l.groups, cap * 4);
    this.#keyFamily = new Uint8Array(b, l.family, cap);
    this.family = this.#keyFamily;
    this.#prefixBits = new Uint8Array(b, l.prefixBits, cap);
    this.#used = new Uint8Array(b, l.used, cap);
    this.pins = new Uint16Array(b, l.pins, cap * memory.workers);
    this.openByWorker = new Int32Array(b, l.open, memory.workers);
  }

  // --- open connections, all workers -------------------------------------------------------------

  /**
   * Open connections of every worker together. Exact under the lock (the MAX_CONNS decision); without
   * it, a value at most one admission or release old (good enough for the busy idle timeout).
   */
  get openConns(): number {
    return Atomics.load(this.#header, H_OPEN);
  }

  /** `worker` admitted a connection. Call with the lock held. */
  addOpen(worker: number): void {
    Atomics.add(this.openByWorker, worker, 1);
    Atomics.add(this.#header, H_OPEN, 1);
  }

  /** `worker` closed a connection it had admitted (never below zero). Call with the lock held. */
  removeOpen(worker: number): void {
    if (this.openByWorker[worker] <= 0) return;
    Atomics.sub(this.openByWorker, worker, 1);
    Atomics.sub(this.#header, H_OPEN, 1);
  }

  // --- the lock -----------------------------------------------------------------------------------

  /**
   * Takes the table's mutex for `owner` (a small positive id; see the module comment). Spins briefly,
   * then sleeps on the word. Never call it twice on one thread without `unlock` in between.
   */
  lock(owner: number): void {
    const h = this.#header;
    if (Atomics.compareExchange(h, H_LOCK, 0, owner) === 0) return;
    for (let spins = 0;; spins++) {
      const held = Atomics.load(h, H_LOCK);
      if (held === 0) {
        if (Atomics.compareExchange(h, H_LOCK, 0, owner) === 0) return;
        continue;
      }
      if (spins >= LOCK_SPINS) {
        Atomics.add(h, H_WAITERS, 1);
        Atomics.wait(h, H_LOCK, held, LOCK_WAIT_MS);
        Atomics.sub(h, H_WAITERS, 1);
      }
    }
  }

  unlock(): void {
    const h = this.#header;
    Atomics.store(h, H_LOCK, 0);
    if (Atomics.load(h, H_WAITERS) > 0) Atomics.notify(h, H_LOCK, 1);
  }

  /** Who holds the lock (0 = nobody). */
  get lockOwner(): number {
    return Atomics.load(this.#header, H_LOCK);
  }

  /** Frees the lock if `owner` (a dead worker) holds it. Returns whether it did. */
  forceUnlock(owner: number): boolean {
    if (Atomics.compareExchange(this.#header, H_LOCK, owner, 0) !== owner) return false;
    Atomics.notify(this.#header, H_LOCK);
    return true;
  }

  // --- GuardTable (call with the lock held) ---------------------------------------------------------

  get size(): number {
    return this.#header[H_SIZE];
  }

  /** Slots with live connections. */
  get pinned(): number {
    let n = 0;
    for (let s = 0; s < this.capacity; s++) if (this.#used[s] === 1 && this.conns[s] > 0) n++;
    return n;
  }

  slotOf(key: string): number {
    const a = this.#parsed;
    let addr: IpAddr | null = null;
    if (key.includes("/")) {
      const c = parseCidr(key);
      if (c !== null) {
        a.family = c.family;
        a.groups.set(c.groups);
        addr = a;
      }
    } else if (parseIp(key, 0, key.length, a)) {
      addr = a;
    }
    this.#loadProbe(key, addr);
    return this.#find();
  }

  keyAt(slot: number): string {
    if (this.#used[slot] !== 1) return "";
    const fam = this.#keyFamily[slot];
    if (fam === FAMILY_OTHER) return `other:${this.#words[slot * 4].toString(16)}`;
    const a = this.#fmt;
    a.family = fam as 4 | 6;
    a.groups.set(this.groups.subarray(slot * 8, slot * 8 + 8));
    const bits = this.#prefixBits[slot];
    return fam === 6 && bits < 128 ? `${formatIp(a)}/${bits}` : formatIp(a);
  }

  acquire(key: string, addr: IpAddr | null, nowMs: number): number {
    this.#loadProbe(key, addr);
    const found = this.#find();
    if (found !== NONE) {
      this.lastCreated = false;
      if (this.conns[found] === 0) this.#lru.moveToHead(found);
      return found;
    }
    const h = this.#header;
    let slot: number;
    if (h[H_FREE_TOP] > 0) {
      slot = this.#free[--h[H_FREE_TOP]];
    } else if (this.#lru.tail !== NONE) {
      slot = this.#lru.tail;
      this.#lru.unlink(slot);
      this.#indexRemove(slot);
      h[H_SIZE]--;
    } else {
      return NONE;
    }
    this.#reset(slot, nowMs);
    this.#keyFamily[slot] = this.#probeFamily;
    this.#prefixBits[slot] = this.#probeBits;
    this.#words.set(this.#probeWords, slot * 4);
    this.#used[slot] = 1;
    this.#indexInsert(slot);
    h[H_SIZE]++;
    this.#lru.pushHead(slot);
    this.lastCreated = true;
    return slot;
  }

  pin(slot: number): void {
    if (this.conns[slot]++ === 0) this.#lru.unlink(slot);
  }

  unpin(slot: number): void {
    if (this.conns[slot] <= 0) return;
    if (--this.conns[slot] === 0) this.#lru.pushHead(slot);
  }

  countRequest(slot: number, nowMs: number): void {
    countRequestIn(this, slot, nowMs);
  }

  requestRatePerSec(slot: number, nowMs: number): number {
    return requestRateIn(this, slot, nowMs);
  }

  /** Every held slot (admin views; O(capacity)). */
  forEachSlot(visit: (slot: number, key: string) => void): void {
    for (let s = 0; s < this.capacity; s++) if (this.#used[s] === 1) visit(s, this.keyAt(s));
  }

  /**
   * Drops every connection `worker` still held (it died without releasing them): its pins come off the
   * slots, which become evictable again, and its open count stops counting toward MAX_CONNS. Call with
   * the lock held. Returns the pinned connections released (allowlisted ones hold no pin).
   */
  releaseWorkerPins(worker: number): number {
    const open = Atomics.exchange(this.openByWorker, worker, 0);
    if (open > 0) Atomics.sub(this.#header, H_OPEN, open);
    const row = worker * this.capacity;
    let n = 0;
    for (let s = 0; s < this.capacity; s++) {
      const held = this.pins[row + s];
      if (held === 0) continue;
      this.pins[row + s] = 0;
      for (let i = 0; i < held; i++) this.unpin(s);
      n += held;
    }
    return n;
  }

  // --- internals ------------------------------------------------------------------------------------

  /** The numeric key of `key`/`addr` into the probe buffers (masked to the key's prefix). */
  #loadProbe(key: string, addr: IpAddr | null): void {
    const g = this.#probeGroups;
    if (addr === null || (addr.family !== 4 && addr.family !== 6)) {
      // Not an address (never for TCP peers): the text's FNV-1a hash is the key; a collision merges two.
      let hash = 0x811c9dc5;
      for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
      g.fill(0);
      this.#probeWords[0] = hash >>> 0;
      this.#probeFamily = FAMILY_OTHER;
      this.#probeBits = 0;
      return;
    }
    g.set(addr.groups);
    if (addr.family === 4) {
      this.#probeFamily = 4;
      this.#probeBits = 32;
      g.fill(0, 2);
      return;
    }
    // The IPv6 key is `prefix/bits` (or the bare address for /128): read the bits from its end.
    let bits = 128;
    const slash = key.lastIndexOf("/");
    if (slash >= 0) {
      bits = 0;
      for (let i = slash + 1; i < key.length; i++) bits = bits * 10 + key.charCodeAt(i) - 0x30;
      if (!(bits >= 0 && bits <= 128)) bits = 128;
    }
    maskGroups(g, bits);
    this.#probeFamily = 6;
    this.#probeBits = bits;
  }

  #hashProbe(): number {
    const w = this.#probeWords;
    return this.#hash(this.#probeFamily, this.#probeBits, w[0], w[1], w[2], w[3]);
  }

  #hashSlot(slot: number): number {
    const w = this.#words;
    const i = slot * 4;
    return this.#hash(this.#keyFamily[slot], this.#prefixBits[slot], w[i], w[i + 1], w[i + 2], w[i + 3]);
  }

  #hash(family: number, bits: number, a: number, b: number, c: number, d: number): number {
    let h = Math.imul(family * 256 + bits, 0x9e3779b1);
    h = Math.imul(h ^ a, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h ^ b, 0xc2b2ae35);
    h ^= h >>> 16;
    h = Math.imul(h ^ c, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h ^ d, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.#mask;
  }

  #matches(slot: number): boolean {
    const w = this.#words;
    const p = this.#probeWords;
    const i = slot * 4;
    return this.#keyFamily[slot] === this.#probeFamily && this.#prefixBits[slot] === this.#probeBits &&
      w[i] === p[0] && w[i + 1] === p[1] && w[i + 2] === p[2] && w[i + 3] === p[3];
  }

  /** The slot holding the probe key, or -1. */
  #find(): number {
    const index = this.#index;
    for (let i = this.#hashProbe();; i = (i + 1) & this.#mask) {
      const e = index[i];
      if (e === 0) return NONE;
      if (this.#matches(e - 1)) return e - 1;
    }
  }

  #indexInsert(slot: number): void {
    const index = this.#index;
    let i = this.#hashSlot(slot);
    while (index[i] !== 0) i = (i + 1) & this.#mask;
    index[i] = slot + 1;
  }

  /** Removes `slot` from the index, shifting later entries of its probe run back (no tombstones). */
  #indexRemove(slot: number): void {
    const index = this.#index;
    const mask = this.#mask;
    let i = this.#hashSlot(slot);
    while (index[i] !== slot + 1) {
      if (index[i] === 0) return; // not indexed: nothing to do
      i = (i + 1) & mask;
    }
    for (let j = (i + 1) & mask;; j = (j + 1) & mask) {
      const e = index[j];
      if (e === 0) break;
      const home = this.#hashSlot(e - 1);
      // Move e back into the hole at i unless its home lies cyclically in (i, j].
      if (((j - home) & mask) >= ((j - i) & mask)) {
        index[i] = e;
        i = j;
      }
    }
    index[i] = 0;
  }

  #reset(slot: number, nowMs: number): void {
    this.requestTatMs[slot] = 0;
    this.connTatMs[slot] = 0;
    this.conns[slot] = 0;
    this.violations[slot] = 0;
    this.violationStartMs[slot] = 0;
    this.offences[slot] = 0;
    this.lastBanEndMs[slot] = 0;
    this.bannedUntilMs[slot] = 0;
    this.requests[slot] = 0;
    this.rateWindowStartMs[slot] = nowMs;
    this.rateCurrent[slot] = 0;
    this.ratePrevious[slot] = 0;
  }
}
