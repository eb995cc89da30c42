/**
 * Streams byte ranges of an open file into a `BodySink` through one pooled buffer: read a chunk into
 * the buffer, `await sink.write`, repeat. Memory per transfer is one buffer whatever the file size
 * (never `file.readable.pipeTo`, whose internal buffer grows to 16 MiB per transfer), and no chunk
 * allocates a buffer.
 *
 * Reads are synchronous while they are fast. An async `FsFile.read` runs on Deno's blocking thread
 * pool: per chunk it costs an fd dup, a thread hand-off and a wake-up (measured: 256 KiB chunks read
 * at ~3.4 GB/s async against ~5.4 GB/s sync on one core), and 8 parallel downloads kept 8 more pool
 * threads alive (6 → 14 threads, each with its stack and malloc arena). A page-cache read of one chunk takes tens
 * of microseconds, less than the write that follows it. Reads that take longer went to the disk, so
 * after `SLOW_READS_TO_SWITCH` of them that transfer reads asynchronously and a cold file stops
 * stalling the event loop (nginx without `aio` blocks its worker on every such read; this blocks at
 * most twice per transfer).
 *
 * Regular files only (the responder checks the opened handle): a synchronous read of a pipe or device
 * could wait forever.
 *
 * Buffers start small and grow only for readers that keep up ("slow start"): a transfer begins with a
 * `small` buffer and moves to a `large` one after `FAST_WRITES_TO_GROW` writes in a row each drained
 * within `FAST_WRITE_MS`, and only while fewer than `maxLargeInUse` large buffers are lent out; a write
 * that stalls longer than `SLOW_WRITE_MS` moves it back. A slow-read attacker therefore pins at most a
 * small buffer per connection, and the large ones are a bounded budget for fast clients.
 *
 * Owns the file handle it is given: closes it on every path (done, failure, cancel). Never writes
 * fewer bytes than promised without failing: a file that shrinks mid-transfer rejects, so the
 * connection closes instead of leaving the client waiting for bytes that will not come.
 */

import type { BodySink, BodyStream } from "../http/response.ts";
import type { Clock } from "../core/clock.ts";
import type { BufferPool } from "../core/buffer_pool.ts";

/** One piece of the body: optional header bytes (multipart), then file bytes `start..end` inclusive. */
export interface StreamSegment {
  header: Uint8Array | null;
  start: number;
  end: number;
}

/** What a `FileStream` needs of an open file; `Deno.FsFile` has it (tests pass a fake). */
export type StreamFile = Pick<Deno.FsFile, "read" | "readSync" | "seekSync" | "close">;

/**
 * A synchronous read slower than `SLOW_READ_BASE_MS + chunk bytes / PAGE_CACHE_BYTES_PER_MS` did not
 * come from the page cache (which copies at ≥ 4 GB/s here, so the bound leaves 4× headroom plus 1 ms
 * for preemption); above it the transfer switches to async reads for good.
 */
export const SLOW_READ_BASE_MS = 1;
/** Bytes per millisecond a page-cache read is assumed to beat (1 GB/s). */
export const PAGE_CACHE_BYTES_PER_MS = 1_000_000;
/**
 * Slow synchronous reads a transfer tolerates before it reads asynchronously. One can be a preemption
 * on a busy core (seen here: 1.3 ms for a cached 256 KiB chunk); a cold file is slow on every read, so
 * the event loop waits for the disk at most this many times per transfer.
 */
export const SLOW_READS_TO_SWITCH = 2;

/** Size of the buffer every transfer starts with. */
export const START_CHUNK_BYTES = 16 * 1024;
/** A write that completes within this many ms counts as drained at once (the reader keeps up). */
export const FAST_WRITE_MS = 5;
/** Consecutive fast writes after which a transfer may move to a large buffer. */
export const FAST_WRITES_TO_GROW = 4;
/** A write pending longer than this moves the transfer back to a small buffer. */
export const SLOW_WRITE_MS = 100;

/** The two buffer sizes a transfer moves between, and the budget for large ones. */
export interface StreamBuffers {
  small: BufferPool;
  large: BufferPool;
  /** Large buffers lent out at most (the rest of the transfers stay small). */
  maxLargeInUse: number;
}

/** Raised when the file ends before the promised bytes were read. */
export class FileShrankError extends Error {
  constructor(path: string) {
    super(`file shrank while streaming: ${path}`);
    this.name = "FileShrankError";
  }
}

/**
 * Sub-millisecond monotonic time for timing reads (`Date.now()` ticks in whole milliseconds, too coarse
 * for a 50 µs read; `performance.now()` is one cheap op per chunk, not per request).
 */
const preciseClock: Clock = { nowMs: () => performance.now(), wallMs: () => Date.now() };

/** A `BodyStream` over `segments` of `file`, followed by `trailer` bytes (multipart closing line). */
export class FileStream implements BodyStream {
  readonly #file: StreamFile;
  readonly #path: string;
  readonly #segments: readonly StreamSegment[];
  readonly #trailer: Uint8Array | null;
  readonly #buffers: StreamBuffers;
  readonly #clock: Clock;
  /** The buffer in use, and whether it came from the large pool. */
  #buf: Uint8Array | null = null;
  #large = false;
  #fastWrites = 0;
  #used = false;
  /** True until `SLOW_READS_TO_SWITCH` synchronous reads were slow (the file is not in the page cache). */
  #syncReads = true;
  /** Synchronous reads so far that were too slow to have come from the page cache. */
  #slowReads = 0;

  /** `clock` times the reads; tests pass a fake one to simulate a slow disk. */
  constructor(
    file: StreamFile,
    path: string,
    segments: readonly StreamSegment[],
    trailer: Uint8Array | null,
    buffers: StreamBuffers | BufferPool,
    clock: Clock = preciseClock,
  ) {
    this.#file = file;
    this.#path = path;
    this.#segments = segments;
    this.#trailer = trailer;
    // A single pool (tests, simple callers) means: always that buffer size, no slow start.
    this.#buffers = "large" in buffers ? buffers : { small: buffers, large: buffers, maxLargeInUse: 0 };
    this.#clock = clock;
  }

  /** Whether reads are still synchronous (false once they proved slow); for tests and diagnostics. */
  get syncReads(): boolean {
    return this.#syncReads;
  }

  async pipe(sink: BodySink): Promise<void> {
    if (this.#used) throw new Error("FileStream used twice");
    this.#used = true;
    this.#buf = this.#buffers.small.acquire();
    try {
      for (const seg of this.#segments) await this.#copy(seg, sink);
      if (this.#trailer !== null) await sink.write(this.#trailer);
    } finally {
      (this.#large ? this.#buffers.large : this.#buffers.small).release(this.#buf);
      this.#buf = null;
      this.#file.close();
    }
  }

  cancel(): void {
    if (this.#used) return;
    this.#used = true;
    this.#file.close();
  }

  /** Copies one segment; a multipart header rides in the same write as the first file bytes. */
  async #copy(seg: StreamSegment, sink: BodySink): Promise<void> {
    let buf = this.#buf!;
    let filled = 0;
    if (seg.header !== null) {
      if (seg.header.byteLength >= buf.byteLength) await sink.write(seg.header);
      else {
        buf.set(seg.header);
        filled = seg.header.byteLength;
      }
    }
    let remaining = seg.end - seg.start + 1;
    // lseek only moves the offset: it never waits for the disk, so it need not leave the event loop.
    this.#file.seekSync(seg.start, Deno.SeekMode.Start);
    while (remaining > 0) {
      const want = Math.min(buf.byteLength - filled, remaining);
      const n = await this.#read(want === buf.byteLength ? buf : buf.subarray(filled, filled + want));
      if (n === null || n === 0) throw new FileShrankError(this.#path);
      remaining -= n;
      filled += n;
      // Fill the buffer before writing: fewer, larger writes (each write is a costly op crossing).
      if (filled === buf.byteLength || remaining === 0) {
        // A full buffer goes as is: no view object per chunk on the hot path.
        await this.#timedWrite(sink, filled === buf.byteLength ? buf : buf.subarray(0, filled));
        filled = 0;
        buf = this.#buf!;
      }
    }
    if (filled > 0) await sink.write(buf.subarray(0, filled));
  }

  /** Writes one chunk and, between chunks, moves to a larger or smaller buffer (see the module doc). */
  async #timedWrite(sink: BodySink, bytes: Uint8Array): Promise<void> {
    const b = this.#buffers;
    if (b.maxLargeInUse === 0) return sink.write(bytes);
    const startMs = this.#clock.nowMs();
    await sink.write(bytes);
    const tookMs = this.#clock.nowMs() - startMs;
    if (tookMs <= FAST_WRITE_MS) {
      if (++this.#fastWrites >= FAST_WRITES_TO_GROW && !this.#large && b.large.inUse < b.maxLargeInUse) {
        b.small.release(this.#buf!);
        this.#buf = b.large.acquire();
        this.#large = true;
      }
    } else {
      this.#fastWrites = 0;
      if (this.#large && tookMs > SLOW_WRITE_MS) {
        b.large.release(this.#buf!);
        this.#buf = b.small.acquire();
        this.#large = false;
      }
    }
  }

  /** One read: synchronous while reads come from the page cache, else on Deno's blocking pool. */
  #read(into: Uint8Array): Promise<number | null> | number | null {
    if (!this.#syncReads) return this.#file.read(into);
    const startMs = this.#clock.nowMs();
    const n = this.#file.readSync(into);
    const slowMs = SLOW_READ_BASE_MS + into.byteLength / PAGE_CACHE_BYTES_PER_MS;
    if (this.#clock.nowMs() - startMs > slowMs && ++this.#slowReads >= SLOW_READS_TO_SWITCH) {
      this.#syncReads = false;
    }
    return n;
  }
}
