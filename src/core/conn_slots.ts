/**
 * The server's set of open connections, as reusable slots in one array.
 *
 * Why not a `Map<id, Connection>`: under `Connection: close` load the map sees an insert and a delete
 * per connection with ever-growing ids, so V8 keeps rehashing it into fresh tables. The obsolete
 * tables still point at the connections they held; once promoted they keep every young connection
 * they name alive through the next scavenges (GC "nepotism"), so about a quarter of everything a
 * connection allocated got copied to the old generation: scavenges of 12–25 ms and ~8 % of the
 * CPU. A slot array is allocated once, and a freed slot is cleared at once, so nothing dead points
 * at a live connection (measured in bench/README.md, "where the time goes").
 */

/** Slots of live values; a freed index is reused first, so the array stays as dense as the peak. */
export class ConnSlots<T> {
  #slots: (T | null)[] = [];
  #free: number[] = [];
  #size = 0;

  /** Stores `value` and returns its slot, to give back to `remove`. */
  add(value: T): number {
    const slot = this.#free.pop();
    this.#size++;
    if (slot === undefined) {
      this.#slots.push(value);
      return this.#slots.length - 1;
    }
    this.#slots[slot] = value;
    return slot;
  }

  /** Frees `slot` (from `add`). Removing a free slot is a no-op. */
  remove(slot: number): void {
    if (slot < 0 || slot >= this.#slots.length || this.#slots[slot] === null) return;
    this.#slots[slot] = null;
    this.#free.push(slot);
    this.#size--;
  }

  /** How many values are held. */
  get size(): number {
    return this.#size;
  }

  /** Calls `fn` for each value held when the walk reaches its slot (values added meanwhile may be seen). */
  forEach(fn: (value: T) => void): void {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const v = slots[i];
      if (v !== null) fn(v);
    }
  }

  /** The first value held that satisfies `test`, or undefined. */
  find(test: (value: T) => boolean): T | undefined {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const v = slots[i];
      if (v !== null && test(v)) return v;
    }
    return undefined;
  }
}
