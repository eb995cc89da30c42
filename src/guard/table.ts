/**
 * The fixed-capacity client table: per client key, the GCRA state for requests and for connections,
 * live connection count, violation window, offence count, ban mirror and request-rate window.
 *
 * Everything is preallocated at construction in typed arrays indexed by slot; the only Map is the
 * key → slot index, never larger than `capacity`. Free slots sit on a stack. Drained slots (no live
 * connection) sit on an intrusive LRU list (prev/next Int32Arrays); when the table is full the least
 * recently used drained slot is evicted in O(1). A slot with live connections is pinned: it is off the
 * LRU list and can never be evicted, or an attacker could flush its own limits by spraying addresses.
 * When every slot is pinned `acquire` answers -1 and the caller refuses (fails closed).
 *
 * Pure: never mentions `Deno.`; O(1) per operation; allocates only the key string it is given.
 */

import type { IpAddr } from "../core/cidr.ts";
import { NO_SLOT, SlotLru } from "./lru.ts";

/** Width of the request-rate window used for `ClientInfo.requestRatePerSec`. */
const RATE_WINDOW_MS = 1000;

const NONE = NO_SLOT;

/**
 * What the policy needs of a client table: `ClientTable` (one thread) and `SharedClientTable` (every
 * worker thread over one SharedArrayBuffer, see `shared_table.ts`) both provide it.
 */
export interface GuardTable {
  readonly capacity: number;
  readonly requestTatMs: Float64Array;
  readonly connTatMs: Float64Array;
  readonly conns: Int32Array;
  readonly violations: Int32Array;
  readonly violationStartMs: Float64Array;
  readonly offences: Int32Array;
  readonly lastBanEndMs: Float64Array;
  readonly bannedUntilMs: Float64Array;
  readonly requests: Float64Array;
  readonly family: Uint8Array;
  readonly groups: Uint16Array;
  readonly lastCreated: boolean;
  readonly size: number;
  slotOf(key: string): number;
  keyAt(slot: number): string;
  acquire(key: string, addr: IpAddr | null, nowMs: number): number;
  pin(slot: number): void;
  unpin(slot: number): void;
  countRequest(slot: number, nowMs: number): void;
  requestRatePerSec(slot: number, nowMs: number): number;
  forEachSlot(visit: (slot: number, key: string) => void): void;
}

/** Slot-indexed state; fields are public typed arrays so the policy reads and writes them in place. */
export class ClientTable implements GuardTable {
  /** Slots in all; fixed for the table's life (a change needs a new table, i.e. a restart). */
  readonly capacity: number;
  /** GCRA theoretical arrival time for requests, monotonic ms (0 = fresh). */
  readonly requestTatMs: Float64Array;
  /** GCRA theoretical arrival time for new connections. */
  readonly connTatMs: Float64Array;
  /** Live connections (pins). */
  readonly conns: Int32Array;
  /** Violations (429s, connections refused for rate) in the current window. */
  readonly violations: Int32Array;
  /** When the current violation window began. */
  readonly violationStartMs: Float64Array;
  /** Automatic bans earned so far (each doubles the next). */
  readonly offences: Int32Array;
  /** When the latest automatic ban ends; offences are forgotten a while after it. */
  readonly lastBanEndMs: Float64Array;
  /** Mirror of the ban list for this key, so a request checks a ban without a Map lookup (0 = none). */
  readonly bannedUntilMs: Float64Array;
  /** Requests seen in all (admitted or not). */
  readonly requests: Float64Array;
  /** Start of the current rate window, and requests in it and in the one before. */
  readonly rateWindowStartMs: Float64Array;
  readonly rateCurrent: Float64Array;
  readonly ratePrevious: Float64Array;
  /** Address family (4/6) and the address (or IPv6 prefix) of the key, for CIDR bans; 0 = not an IP. */
  readonly family: Uint8Array;
  readonly groups: Uint16Array;
  /** Whether the latest `acquire` created the slot (the caller then restores ban state). */
  lastCreated = false;

  readonly #keys: string[];
  readonly #index = new Map<string, number>();
  /** LRU list of drained slots: head = most recently used, tail = next to evict. */
  readonly #lru: SlotLru;
  /** Slots below this have been used; above it, never (so their memory pages were never touched). */
  #highWater = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`bad table capacity ${capacity}`);
    this.capacity = capacity;
    this.requestTatMs = new Float64Array(capacity);
    this.connTatMs = new Float64Array(capacity);
    this.conns = new Int32Array(capacity);
    this.violations = new Int32Array(capacity);
    this.violationStartMs = new Float64Array(capacity);
    this.offences = new Int32Array(capacity);
    this.lastBanEndMs = new Float64Array(capacity);
    this.bannedUntilMs = new Float64Array(capacity);
    this.requests = new Float64Array(capacity);
    this.rateWindowStartMs = new Float64Array(capacity);
    this.rateCurrent = new Float64Array(capacity);
    this.ratePrevious = new Float64Array(capacity);
    this.family = new Uint8Array(capacity);
    this.groups = new Uint16Array(capacity * 8);
    // Nothing here is filled or pre-linked: typed arrays are zero pages until written, and slots are handed
    // out in order 0, 1, 2, … below a high-water mark, so an idle server with a 100,000-key table costs
    // only the pages its clients touched (filling them up front cost ~8 MiB of RSS at start-up).
    this.#keys = [];
    this.#lru = new SlotLru(
      new Int32Array(capacity),
      new Int32Array(capacity),
      new Int32Array([NONE, NONE]),
      0,
      1,
    );
  }

  /** Keys held now (≤ capacity). */
  get size(): number {
    return this.#index.size;
  }

  /** Slots with live connections. */
  get pinned(): number {
    return this.size - this.#lru.length;
  }

  /** The slot of `key`, or -1. */
  slotOf(key: string): number {
    return this.#index.get(key) ?? NONE;
  }

  /** The key held in `slot` ("" when free). */
  keyAt(slot: number): string {
    return this.#keys[slot] ?? "";
  }

  /**
   * The slot of `key`, creating it (evicting the least recently used drained slot if full), or -1 when
   * every slot is pinned. Marks the slot used now. `addr` (the key's address, if it is one) is kept
   * for CIDR ban matching.
   */
  acquire(key: string, addr: IpAddr | null, nowMs: number): number {
    const found = this.#index.get(key);
    if (found !== undefined) {
      this.lastCreated = false;
      if (this.conns[found] === 0) this.#lru.moveToHead(found);
      return found;
    }
    let slot: number;
    if (this.#highWater < this.capacity) {
      slot = this.#highWater++;
    } else if (this.#lru.tail !== NONE) {
      slot = this.#lru.tail;
      this.#lru.unlink(slot);
      this.#index.delete(this.#keys[slot]);
    } else {
      return NONE;
    }
    this.#reset(slot, nowMs);
    this.#keys[slot] = key;
    this.#index.set(key, slot);
    if (addr !== null) {
      this.family[slot] = addr.family;
      this.groups.set(addr.groups, slot * 8);
    }
    this.#lru.pushHead(slot);
    this.lastCreated = true;
    return slot;
  }

  /** Adds a live connection; the slot leaves the LRU list (cannot be evicted) while any is open. */
  pin(slot: number): void {
    if (this.conns[slot]++ === 0) this.#lru.unlink(slot);
  }

  /** Removes a live connection; at zero the slot becomes evictable (most recently used). */
  unpin(slot: number): void {
    if (this.conns[slot] <= 0) return; // defensive: a double release must not corrupt the list
    if (--this.conns[slot] === 0) this.#lru.pushHead(slot);
  }

  /** Counts one request in the totals and the rate window. */
  countRequest(slot: number, nowMs: number): void {
    countRequestIn(this, slot, nowMs);
  }

  /** Requests per second over the last second (see `requestRateIn`). */
  requestRatePerSec(slot: number, nowMs: number): number {
    return requestRateIn(this, slot, nowMs);
  }

  /** Calls `visit` for every held slot (admin views; O(size)). */
  forEachSlot(visit: (slot: number, key: string) => void): void {
    for (const [key, slot] of this.#index) visit(slot, key);
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
    this.family[slot] = 0;
    this.groups.fill(0, slot * 8, slot * 8 + 8);
  }
}

/** The per-slot request counters both table layouts (in-process and shared memory) keep. */
export interface RateColumns {
  readonly requests: Float64Array;
  readonly rateWindowStartMs: Float64Array;
  readonly rateCurrent: Float64Array;
  readonly ratePrevious: Float64Array;
}

/** Counts one request of `slot` in the totals and the current rate window. */
export function countRequestIn(t: RateColumns, slot: number, nowMs: number): void {
  t.requests[slot]++;
  const elapsed = nowMs - t.rateWindowStartMs[slot];
  if (elapsed >= RATE_WINDOW_MS) {
    t.ratePrevious[slot] = elapsed < 2 * RATE_WINDOW_MS ? t.rateCurrent[slot] : 0;
    t.rateCurrent[slot] = 0;
    t.rateWindowStartMs[slot] = nowMs - (elapsed % RATE_WINDOW_MS);
  }
  t.rateCurrent[slot]++;
}

/**
 * Requests per second of `slot` over the last second, estimated as a sliding window (the previous window
 * weighted by how much of it still overlaps, plus the current one).
 */
export function requestRateIn(t: RateColumns, slot: number, nowMs: number): number {
  const elapsed = nowMs - t.rateWindowStartMs[slot];
  if (elapsed >= 2 * RATE_WINDOW_MS) return 0;
  if (elapsed >= RATE_WINDOW_MS) {
    return t.rateCurrent[slot] * (1 - (elapsed - RATE_WINDOW_MS) / RATE_WINDOW_MS);
  }
  return t.ratePrevious[slot] * (1 - elapsed / RATE_WINDOW_MS) + t.rateCurrent[slot];
}
