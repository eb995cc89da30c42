/**
 * A small pool of equally sized byte buffers for streaming files, so a transfer never allocates per
 * chunk and memory stays flat whatever the file size: one buffer per transfer in flight, at most
 * `maxKept` buffers idle.
 *
 * Pure; no Deno APIs. Never hands the same buffer to two borrowers (a released buffer must not be
 * used again by its former owner).
 */

export class BufferPool {
  readonly #bufferBytes: number;
  readonly #maxKept: number;
  readonly #free: Uint8Array[] = [];
  #inUse = 0;

  /** `bufferBytes`: size of each buffer; `maxKept`: idle buffers retained, the rest go to the GC. */
  constructor(bufferBytes: number, maxKept: number) {
    this.#bufferBytes = bufferBytes;
    this.#maxKept = maxKept;
  }

  /** A buffer of `bufferBytes`, reused when one is idle, else freshly allocated. */
  acquire(): Uint8Array {
    this.#inUse++;
    return this.#free.pop() ?? new Uint8Array(this.#bufferBytes);
  }

  /** Gives a buffer back; kept for reuse while fewer than `maxKept` are idle. */
  release(buf: Uint8Array): void {
    this.#inUse--;
    if (buf.byteLength === this.#bufferBytes && this.#free.length < this.#maxKept) this.#free.push(buf);
  }

  /**
   * Gives up a borrowed buffer without keeping it: one that must never be handed out again (a write that
   * may still read from it, when its connection closed under it). Counted as returned.
   */
  discard(_buf: Uint8Array): void {
    this.#inUse--;
  }

  /** Buffers currently borrowed (a leak shows up here). */
  get inUse(): number {
    return this.#inUse;
  }

  /** Buffers idle in the pool. */
  get idle(): number {
    return this.#free.length;
  }

  /** Drops idle buffers beyond `keep` (a periodic trim after a burst left more than needed at rest). */
  trim(keep: number): void {
    if (this.#free.length > keep) this.#free.length = keep;
  }

  /** Drops idle buffers (shutdown). */
  clear(): void {
    this.#free.length = 0;
  }
}
