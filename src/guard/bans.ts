/**
 * The ban list: timed bans keyed by client key (automatic and operator), plus a few operator bans of
 * whole CIDR blocks.
 *
 * Key bans live in a Map bounded by `capacity` and in a binary min-heap ordered by expiry, so expiring
 * (in `expire`) and evicting the soonest-to-expire ban when full are O(log n). Bans live here and not in
 * the client table, so evicting a drained table entry never forgets a ban. CIDR bans are few
 * (`MAX_CIDR_BANS`) and matched by a linear numeric scan.
 *
 * Pure: never mentions `Deno.`; times are monotonic milliseconds from the caller's `Clock`.
 */

import { type Cidr, cidrContains, type IpAddr, parseCidr } from "../core/cidr.ts";

/** Operator CIDR bans held at once; an attacker cannot add these, so a small fixed bound is enough. */
export const MAX_CIDR_BANS = 256;

/** One ban. `heapIndex` is the record's position in the expiry heap (-1 for CIDR bans). */
export interface BanRecord {
  /** Client key, or canonical CIDR text. */
  readonly key: string;
  reason: string;
  /** Monotonic milliseconds when the ban ends. */
  expiresAtMs: number;
  /** Automatic bans this key had earned when banned (0 for a first or operator ban). */
  offences: number;
  heapIndex: number;
  /** The block, for CIDR bans. */
  readonly cidr: Cidr | null;
}

/** Timed bans; `expired` counts bans that ran out (lazily at lookup or in `expire`). */
export class BanList {
  #capacity: number;
  readonly #byKey = new Map<string, BanRecord>();
  readonly #heap: BanRecord[] = [];
  readonly #cidrs: BanRecord[] = [];
  /** Bans that ran out, in all. */
  expired = 0;
  /** Bans dropped early because the list was full, in all. */
  evicted = 0;

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** Key bans plus CIDR bans held now. */
  get size(): number {
    return this.#byKey.size + this.#cidrs.length;
  }

  /** Changes the bound; returns the keys of bans evicted to fit (soonest-to-expire first). */
  setCapacity(capacity: number): string[] {
    this.#capacity = Math.max(1, capacity);
    const dropped: string[] = [];
    while (this.#byKey.size > this.#capacity) dropped.push(this.#evictSoonest());
    return dropped;
  }

  /** The live ban of `key`, or undefined (an expired one is removed and counted). No allocation. */
  get(key: string, nowMs: number): BanRecord | undefined {
    const rec = this.#byKey.get(key);
    if (rec === undefined) return undefined;
    if (rec.expiresAtMs > nowMs) return rec;
    this.#removeKey(rec);
    this.expired++;
    return undefined;
  }

  /** The live CIDR ban containing `addr` with the latest expiry, or undefined. No allocation. */
  matchCidr(addr: IpAddr, nowMs: number): BanRecord | undefined {
    let best: BanRecord | undefined;
    const list = this.#cidrs;
    for (let i = 0; i < list.length; i++) {
      const rec = list[i];
      if (rec.expiresAtMs <= nowMs || !cidrContains(rec.cidr!, addr)) continue;
      if (best === undefined || rec.expiresAtMs > best.expiresAtMs) best = rec;
    }
    return best;
  }

  /**
   * Bans `key` until `expiresAtMs` (a longer existing ban is kept). Returns the key of a ban evicted
   * to make room, or null.
   */
  add(key: string, expiresAtMs: number, reason: string, offences: number): string | null {
    const existing = this.#byKey.get(key);
    if (existing !== undefined) {
      existing.reason = reason;
      existing.offences = Math.max(existing.offences, offences);
      if (expiresAtMs > existing.expiresAtMs) {
        existing.expiresAtMs = expiresAtMs;
        this.#siftDown(existing.heapIndex);
      }
      return null;
    }
    let dropped: string | null = null;
    if (this.#byKey.size >= this.#capacity) dropped = this.#evictSoonest();
    const rec: BanRecord = { key, reason, expiresAtMs, offences, heapIndex: this.#heap.length, cidr: null };
    this.#byKey.set(key, rec);
    this.#heap.push(rec);
    this.#siftUp(rec.heapIndex);
    return dropped;
  }

  /** Bans a CIDR block (canonical text). Fails when `MAX_CIDR_BANS` are held or the text is no CIDR. */
  addCidr(text: string, expiresAtMs: number, reason: string): BanRecord | null {
    const cidr = parseCidr(text);
    if (cidr === null) return null;
    const existing = this.#cidrs.find((r) => r.key === cidr.text);
    if (existing !== undefined) {
      existing.reason = reason;
      existing.expiresAtMs = Math.max(existing.expiresAtMs, expiresAtMs);
      return existing;
    }
    if (this.#cidrs.length >= MAX_CIDR_BANS) return null;
    const rec: BanRecord = { key: cidr.text, reason, expiresAtMs, offences: 0, heapIndex: -1, cidr };
    this.#cidrs.push(rec);
    return rec;
  }

  /** Lifts the ban of a key or (canonical) CIDR text; whether one was held. */
  remove(keyOrCidr: string): boolean {
    const rec = this.#byKey.get(keyOrCidr);
    if (rec !== undefined) {
      this.#removeKey(rec);
      return true;
    }
    const i = this.#cidrs.findIndex((r) => r.key === keyOrCidr);
    if (i < 0) return false;
    this.#cidrs.splice(i, 1);
    return true;
  }

  /** Removes every ban that ended at or before `nowMs`; returns the keys removed. */
  expire(nowMs: number): string[] {
    const gone: string[] = [];
    while (this.#heap.length > 0 && this.#heap[0].expiresAtMs <= nowMs) {
      const rec = this.#heap[0];
      this.#removeKey(rec);
      gone.push(rec.key);
    }
    for (let i = this.#cidrs.length - 1; i >= 0; i--) {
      if (this.#cidrs[i].expiresAtMs <= nowMs) gone.push(this.#cidrs.splice(i, 1)[0].key);
    }
    this.expired += gone.length;
    return gone;
  }

  /** Every ban held (CIDR bans first), expired ones included until the next `expire`. */
  list(): BanRecord[] {
    return [...this.#cidrs, ...this.#heap];
  }

  #evictSoonest(): string {
    const rec = this.#heap[0];
    this.#removeKey(rec);
    this.evicted++;
    return rec.key;
  }

  #removeKey(rec: BanRecord): void {
    this.#byKey.delete(rec.key);
    const heap = this.#heap;
    const i = rec.heapIndex;
    const last = heap.pop()!;
    rec.heapIndex = -1;
    if (last === rec) return;
    heap[i] = last;
    last.heapIndex = i;
    this.#siftUp(i);
    this.#siftDown(last.heapIndex);
  }

  #siftUp(i: number): void {
    const heap = this.#heap;
    const rec = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].expiresAtMs <= rec.expiresAtMs) break;
      heap[i] = heap[parent];
      heap[i].heapIndex = i;
      i = parent;
    }
    heap[i] = rec;
    rec.heapIndex = i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const rec = heap[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && heap[r].expiresAtMs < heap[l].expiresAtMs ? r : l;
      if (heap[child].expiresAtMs >= rec.expiresAtMs) break;
      heap[i] = heap[child];
      heap[i].heapIndex = i;
      i = child;
    }
    heap[i] = rec;
    rec.heapIndex = i;
  }
}
