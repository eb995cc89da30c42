/**
 * On-the-fly compression of static files: which content types are compressible (`COMPRESS_TYPES`), the
 * whole-buffer compressor used once per file version (its result is cached beside the file), and the
 * streaming compressor for files too large to hold (file → zlib → chunked body, one buffer at a time).
 *
 * Uses the runtime's own zlib (`node:zlib`, brotli and gzip), off the event loop for whole buffers.
 * Never holds more than one input chunk plus the compressor's own window per stream; never throws to a
 * caller on a client's input (types and sizes come from the server's own files and settings). Streams
 * own the file handle and the compressor they are given and release both on every path.
 */

import zlib from "node:zlib";
import type { BodySink, BodyStream } from "../http/response.ts";
import type { Encoding } from "./accept_encoding.ts";
import type { Config } from "../config.ts";

/** The settings compression reads (each documented in `Config`). */
export type CompressOptions = Pick<
  Config,
  | "compress"
  | "compressMinBytes"
  | "compressTypes"
  | "compressBrotliLevel"
  | "compressGzipLevel"
  | "compressCacheMaxFileBytes"
  | "compressMaxJobs"
>;

/**
 * Brotli window for streamed compression (2^18 = 256 KiB). Measured at quality 5, 8 streams fed 8 MiB
 * each: +38 MiB RSS with this window, +102 MiB with 1 MiB, +236 MiB with the default 4 MiB; text loses
 * only a few percent of ratio to the smaller window.
 */
export const STREAM_BROTLI_WINDOW_BITS = 18;
/** Bytes read from the file per step of a compressed stream. */
export const STREAM_INPUT_CHUNK_BYTES = 64 * 1024;

/** A compiled `COMPRESS_TYPES` list: exact types, `type/*` majors and `+suffix` suffixes. */
export class CompressibleTypes {
  readonly #exact = new Set<string>();
  readonly #majors = new Set<string>();
  readonly #suffixes: string[] = [];
  /** Answers per full Content-Type value (the responder has a few dozen distinct ones). */
  readonly #memo = new Map<string, boolean>();

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const t = p.trim().toLowerCase();
      if (t.startsWith("+")) this.#suffixes.push(t);
      else if (t.endsWith("/*")) this.#majors.add(t.slice(0, -2));
      else if (t !== "") this.#exact.add(t);
    }
  }

  /** Whether a `Content-Type` value (parameters allowed) is compressible. */
  matches(contentType: string): boolean {
    const known = this.#memo.get(contentType);
    if (known !== undefined) return known;
    const semi = contentType.indexOf(";");
    const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
    const slash = type.indexOf("/");
    let ok = false;
    if (slash > 0) {
      ok = this.#exact.has(type) || this.#majors.has(type.slice(0, slash)) ||
        this.#suffixes.some((s) => type.endsWith(s));
    }
    // Content types come from the MIME table, so the memo is bounded by it; the guard is for safety.
    if (this.#memo.size >= 1024) this.#memo.clear();
    this.#memo.set(contentType, ok);
    return ok;
  }
}

function brotliParams(quality: number, sizeHint: number, windowBits: number | null): zlib.BrotliOptions {
  const params: Record<number, number> = {
    [zlib.constants.BROTLI_PARAM_QUALITY]: quality,
    [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
  };
  if (sizeHint > 0) params[zlib.constants.BROTLI_PARAM_SIZE_HINT] = Math.min(sizeHint, 2 ** 30);
  if (windowBits !== null) params[zlib.constants.BROTLI_PARAM_LGWIN] = windowBits;
  return { params };
}

/** Compresses a whole buffer on zlib's thread pool (the event loop keeps serving meanwhile). */
export function compressBytes(
  bytes: Uint8Array,
  encoding: Encoding,
  levels: { brotli: number; gzip: number },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Uint8Array) =>
      err === null ? resolve(new Uint8Array(out)) : reject(err);
    if (encoding === "br") zlib.brotliCompress(bytes, brotliParams(levels.brotli, bytes.length, null), done);
    else zlib.gzip(bytes, { level: levels.gzip }, done);
  });
}

/** The same compression, synchronously (the offline `--precompress` tool; never on the serving path). */
export function compressBytesSync(
  bytes: Uint8Array,
  encoding: Encoding,
  levels: { brotli: number; gzip: number },
): Uint8Array {
  const out = encoding === "br"
    ? zlib.brotliCompressSync(bytes, brotliParams(levels.brotli, bytes.length, null))
    : zlib.gzipSync(bytes, { level: levels.gzip });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** What a compressed stream needs of an open file (an `FsFile` has it; tests pass a fake). */
export interface CompressSource {
  /** Reads into `p`; the count read, or null at end of file. */
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}

const encoder = new TextEncoder();
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/** One chunk of the chunked transfer coding (RFC 9112 §7.1) holding `parts`, optionally ending the body. */
function chunkFrame(parts: Uint8Array[], size: number, last: boolean): Uint8Array {
  const sizeLine = size > 0 ? encoder.encode(size.toString(16) + "\r\n") : new Uint8Array(0);
  const out = new Uint8Array(sizeLine.length + size + (size > 0 ? 2 : 0) + (last ? LAST_CHUNK.length : 0));
  out.set(sizeLine);
  let at = sizeLine.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (size > 0) {
    out[at++] = 0x0d;
    out[at++] = 0x0a;
  }
  if (last) out.set(LAST_CHUNK, at);
  return out;
}

/**
 * A file compressed while it is sent, framed with the chunked transfer coding (the compressed length
 * is not known in advance). Reads at most `length` bytes (the size its validators describe) through one
 * buffer; the next read waits until zlib has taken the previous chunk and its output went to the sink,
 * so memory stays at one input chunk, the output of one step and the compressor's window.
 * `release` is called once, when the stream ends either way (it frees the job slot).
 */
export class CompressedFileStream implements BodyStream {
  readonly #file: CompressSource;
  readonly #encoding: Encoding;
  readonly #length: number;
  readonly #levels: { brotli: number; gzip: number };
  readonly #release: () => void;
  #done = false;

  constructor(
    file: CompressSource,
    encoding: Encoding,
    length: number,
    levels: { brotli: number; gzip: number },
    release: () => void,
  ) {
    this.#file = file;
    this.#encoding = encoding;
    this.#length = length;
    this.#levels = levels;
    this.#release = release;
  }

  async pipe(sink: BodySink): Promise<void> {
    if (this.#done) throw new Error("compressed stream used twice");
    const z = this.#encoding === "br"
      ? zlib.createBrotliCompress(brotliParams(this.#levels.brotli, this.#length, STREAM_BROTLI_WINDOW_BITS))
      : zlib.createGzip({ level: this.#levels.gzip });
    let out: Uint8Array[] = [];
    let outBytes = 0;
    let failure: Error | null = null;
    z.on("data", (c: Uint8Array) => {
      out.push(c);
      outBytes += c.length;
    });
    z.on("error", (e: Error) => failure ??= e);
    const ended = new Promise<void>((resolve) => z.once("end", resolve));
    const take = (): [Uint8Array[], number] => {
      const r: [Uint8Array[], number] = [out, outBytes];
      out = [];
      outBytes = 0;
      return r;
    };
    const buf = new Uint8Array(Math.min(STREAM_INPUT_CHUNK_BYTES, Math.max(1, this.#length)));
    try {
      let left = this.#length;
      while (left > 0) {
        const n = await this.#file.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) break; // shrank: what was read still compresses to a complete, valid body
        left -= n;
        // zlib keeps a reference to the chunk until its callback: the buffer is reused only after it.
        await new Promise<void>((resolve, reject) =>
          z.write(buf.subarray(0, n), (e) => e ? reject(e) : resolve())
        );
        if (failure !== null) throw failure;
        if (outBytes > 0) {
          const [parts, size] = take();
          await sink.write(chunkFrame(parts, size, false));
        }
      }
      z.end();
      await Promise.race([ended, new Promise<void>((_, reject) => z.once("error", reject))]);
      if (failure !== null) throw failure;
      const [parts, size] = take();
      await sink.write(chunkFrame(parts, size, true));
    } finally {
      z.destroy();
      this.#finish();
    }
  }

  cancel(): void {
    this.#finish();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#file.close();
    } catch {
      // already closed
    }
    this.#release();
  }
}
