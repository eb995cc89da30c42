/**
 * A connection's outgoing bytes between two writes: every answer produced by one read is coalesced into
 * one pooled buffer and leaves in one `write` (socket crossings dominate the cost of an answer), in the
 * order queued. A whole precomputed answer that turns out to be the only thing to write goes out as is,
 * without a copy.
 *
 * A batch is taken out (`take`) for writing and given back (`written`) only once its write completed:
 * a pending write may still read from it, and a reused buffer must never carry one connection's bytes to
 * another peer. So a buffer goes back to the pool only after a completed write, and a connection that
 * closes mid-write discards it (`drop`).
 *
 * Pure: never mentions `Deno.`.
 */

import type { BufferPool } from "../core/buffer_pool.ts";

export class OutputBuffer {
  readonly #pool: BufferPool;
  /** The pooled buffer's size: a batch that grows past it moves to a buffer of its own. */
  readonly #pooledBytes: number;
  /** The batch being filled (null until something is queued). */
  #out: Uint8Array | null = null;
  #len = 0;
  /** A whole answer queued alone, to be written as is. */
  #direct: Uint8Array | null = null;
  /** The batch taken for writing, until its write completed (null for a direct answer). */
  #inFlight: Uint8Array | null = null;

  constructor(pool: BufferPool, pooledBytes: number) {
    this.#pool = pool;
    this.#pooledBytes = pooledBytes;
  }

  /** Whether nothing is queued. */
  get isEmpty(): boolean {
    return this.#len === 0 && this.#direct === null;
  }

  /** Bytes queued (a direct answer included). */
  get length(): number {
    return this.#len + (this.#direct === null ? 0 : this.#direct.byteLength);
  }

  /**
   * Queues a whole precomputed answer: kept by reference, to be written without a copy, when nothing is
   * queued before it and `last` says nothing will follow it in this batch; copied otherwise.
   */
  appendWhole(bytes: Uint8Array, last: boolean): void {
    if (last && this.isEmpty) this.#direct = bytes;
    else this.append(bytes);
  }

  /** Queues a copy of `bytes` after everything queued. */
  append(bytes: Uint8Array): void {
    const n = bytes.byteLength;
    if (n === 0) return;
    if (this.#direct !== null) {
      // Something follows the answer meant to go out as is: it joins the batch first (order is kept).
      const direct = this.#direct;
      this.#direct = null;
      this.append(direct);
    }
    let out = this.#out;
    if (out === null) {
      out = this.#out = n <= this.#pooledBytes ? this.#pool.acquire() : new Uint8Array(n);
    } else if (this.#len + n > out.byteLength) {
      const grown = new Uint8Array(Math.max(out.byteLength * 2, this.#len + n));
      grown.set(out.subarray(0, this.#len));
      // Not under a write (a batch being written is out of `#out`): the pooled buffer can go back now.
      if (out.byteLength === this.#pooledBytes) this.#pool.release(out);
      out = this.#out = grown;
    }
    out.set(bytes, this.#len);
    this.#len += n;
  }

  /**
   * Takes what is queued, to be written now, or null when nothing is. The caller calls `written()` once
   * that write completed (and `drop()` if the connection closes first).
   */
  take(): Uint8Array | null {
    if (this.#direct !== null) {
      const direct = this.#direct;
      this.#direct = null;
      return direct;
    }
    if (this.#len === 0) return null;
    const out = this.#out!;
    const batch = out.subarray(0, this.#len);
    this.#out = null;
    this.#len = 0;
    this.#inFlight = out;
    return batch;
  }

  /** The taken batch's write completed: its buffer may be reused. */
  written(): void {
    const done = this.#inFlight;
    if (done === null) return;
    this.#inFlight = null;
    if (done.byteLength === this.#pooledBytes) this.#pool.release(done);
  }

  /** The connection closed: forgets everything queued; a batch still being written is never reused. */
  drop(): void {
    if (this.#out !== null && this.#out.byteLength === this.#pooledBytes) this.#pool.release(this.#out);
    if (this.#inFlight !== null && this.#inFlight.byteLength === this.#pooledBytes) {
      this.#pool.discard(this.#inFlight);
    }
    this.#out = null;
    this.#len = 0;
    this.#direct = null;
    this.#inFlight = null;
  }
}
