/**
 * The intrusive LRU list both client tables keep of their drained slots (no live connection): links in
 * two slot-indexed `Int32Array`s, head and tail in two words of a third, so the same code runs over a
 * table's own memory and over the SharedArrayBuffer every worker thread sees (the caller holds that
 * table's lock). Head = most recently used; tail = next to evict. O(1) per operation, no allocation.
 *
 * Pure: never mentions `Deno.`.
 */

/** "No slot" in the links and ends. */
export const NO_SLOT = -1;

export class SlotLru {
  readonly #prev: Int32Array<ArrayBufferLike>;
  readonly #next: Int32Array<ArrayBufferLike>;
  readonly #ends: Int32Array<ArrayBufferLike>;
  readonly #headAt: number;
  readonly #tailAt: number;

  /** `ends[headAt]` and `ends[tailAt]` hold the head and the tail (NO_SLOT when empty). */
  constructor(
    prev: Int32Array<ArrayBufferLike>,
    next: Int32Array<ArrayBufferLike>,
    ends: Int32Array<ArrayBufferLike>,
    headAt: number,
    tailAt: number,
  ) {
    this.#prev = prev;
    this.#next = next;
    this.#ends = ends;
    this.#headAt = headAt;
    this.#tailAt = tailAt;
  }

  /** The least recently used slot (the next to evict), or NO_SLOT. */
  get tail(): number {
    return this.#ends[this.#tailAt];
  }

  /** Slots on the list (O(length): admin views only). */
  get length(): number {
    let n = 0;
    for (let s = this.#ends[this.#headAt]; s !== NO_SLOT; s = this.#next[s]) n++;
    return n;
  }

  /** Puts `slot` (not on the list) at the head. */
  pushHead(slot: number): void {
    const ends = this.#ends;
    const head = ends[this.#headAt];
    this.#prev[slot] = NO_SLOT;
    this.#next[slot] = head;
    if (head !== NO_SLOT) this.#prev[head] = slot;
    ends[this.#headAt] = slot;
    if (ends[this.#tailAt] === NO_SLOT) ends[this.#tailAt] = slot;
  }

  /** Takes `slot` (on the list) off it. */
  unlink(slot: number): void {
    const ends = this.#ends;
    const p = this.#prev[slot];
    const n = this.#next[slot];
    if (p !== NO_SLOT) this.#next[p] = n;
    else ends[this.#headAt] = n;
    if (n !== NO_SLOT) this.#prev[n] = p;
    else ends[this.#tailAt] = p;
    this.#prev[slot] = NO_SLOT;
    this.#next[slot] = NO_SLOT;
  }

  /** Marks `slot` (on the list) most recently used. */
  moveToHead(slot: number): void {
    if (this.#ends[this.#headAt] === slot) return;
    this.unlink(slot);
    this.pushHead(slot);
  }
}
