/**
 * Streams byte ranges of an open file into a `BodySink` through one pooled buffer: `seek`, `read`
 * into the buffer, `await sink.write`, repeat. Memory per transfer is one buffer whatever the file
 * size (never `file.readable.pipeTo`, whose internal buffer grows to 16 MiB per transfer).
 *
 * Owns the file handle it is given: closes it on every path (done, failure, cancel). Never writes
 * fewer bytes than promised without failing: a file that shrinks mid-transfer rejects, so the
 * connection closes instead of leaving the client waiting for bytes that will not come.
 */

import type { BodySink, BodyStream } from "../http/response.ts";
import type { BufferPool } from "./buffer_pool.ts";

/** One piece of the body: optional header bytes (multipart), then file bytes `start..end` inclusive. */
export interface StreamSegment {
  header: Uint8Array | null;
  start: number;
  end: number;
}

/** Raised when the file ends before the promised bytes were read. */
export class FileShrankError extends Error {
  constructor(path: string) {
    super(`file shrank while streaming: ${path}`);
    this.name = "FileShrankError";
  }
}

/** A `BodyStream` over `segments` of `file`, followed by `trailer` bytes (multipart closing line). */
export class FileStream implements BodyStream {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  readonly #segments: readonly StreamSegment[];
  readonly #trailer: Uint8Array | null;
  readonly #pool: BufferPool;
  #used = false;

  constructor(
    file: Deno.FsFile,
    path: string,
    segments: readonly StreamSegment[],
    trailer: Uint8Array | null,
    pool: BufferPool,
  ) {
    this.#file = file;
    this.#path = path;
    this.#segments = segments;
    this.#trailer = trailer;
    this.#pool = pool;
  }

  async pipe(sink: BodySink): Promise<void> {
    if (this.#used) throw new Error("FileStream used twice");
    this.#used = true;
    const buf = this.#pool.acquire();
    try {
      for (const seg of this.#segments) await this.#copy(seg, buf, sink);
      if (this.#trailer !== null) await sink.write(this.#trailer);
    } finally {
      this.#pool.release(buf);
      this.#file.close();
    }
  }

  cancel(): void {
    if (this.#used) return;
    this.#used = true;
    this.#file.close();
  }

  /** Copies one segment; a multipart header rides in the same write as the first file bytes. */
  async #copy(seg: StreamSegment, buf: Uint8Array, sink: BodySink): Promise<void> {
    let filled = 0;
    if (seg.header !== null) {
      if (seg.header.byteLength >= buf.byteLength) await sink.write(seg.header);
      else {
        buf.set(seg.header);
        filled = seg.header.byteLength;
      }
    }
    let remaining = seg.end - seg.start + 1;
    await this.#file.seek(seg.start, Deno.SeekMode.Start);
    while (remaining > 0) {
      const want = Math.min(buf.byteLength - filled, remaining);
      const n = await this.#file.read(buf.subarray(filled, filled + want));
      if (n === null || n === 0) throw new FileShrankError(this.#path);
      remaining -= n;
      filled += n;
      // Fill the buffer before writing: fewer, larger writes (each write is a costly op crossing).
      if (filled === buf.byteLength || remaining === 0) {
        await sink.write(buf.subarray(0, filled));
        filled = 0;
      }
    }
    if (filled > 0) await sink.write(buf.subarray(0, filled));
  }
}
