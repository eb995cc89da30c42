/**
 * On-the-fly compression of static files: which content types are compressible (`COMPRESS_TYPES`), the
 * compressor thread (whole buffers, compressed once per file version and cached beside the file by the
 * responder, and incremental sessions), and the stream for files too large to hold (file → compressor
 * → chunked body, one step at a time).
 *
 * Uses the runtime's own zlib (`node:zlib`, brotli and gzip) on a worker thread, never on the event loop
 * that serves connections. Never holds more than one input chunk plus the compressor's own window per
 * stream; never throws to a caller on a client's input (types and sizes come from the server's own files
 * and settings). Streams own the file handle they are given and release it on every path.
 */
import { type BodySink, type BodyStream, chunkFrame } from "../http/response.ts";
import type { Encoding } from "./accept_encoding.ts";
import type { Config } from "../config/config.ts";

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

  /**
   * Whether the file at `relPath` with `contentType` is worth compressing, whatever its size: its type
   * is listed, and it is not compressed data already (`.gz`, `.br`, and `.svgz`, gzip under an SVG
   * type). One rule for on-the-fly compression and `deno task precompress` alike.
   */
  worthCompressing(relPath: string, contentType: string): boolean {
    return !/\.(?:gz|br|svgz)$/i.test(relPath) && this.matches(contentType);
  }
}

/**
 * The compressor thread's program. zlib in Deno runs on the calling thread even through the callback
 * API (measured: brotli quality 5 on 1 MiB held the event loop for 239 ms, a 64 KiB stream step for up
 * to 50 ms), so every compression runs here, off the event loop that serves connections. Plain
 * JavaScript: it is loaded from a `blob:` URL, which also works in a bundle or a compiled binary, and
 * needs no permission.
 */
const WORKER_SOURCE = `
import zlib from "node:zlib";
const C = zlib.constants;
const sessions = new Map();
function brotli(quality, sizeHint, windowBits) {
  const params = { [C.BROTLI_PARAM_QUALITY]: quality, [C.BROTLI_PARAM_MODE]: C.BROTLI_MODE_TEXT };
  if (sizeHint > 0) params[C.BROTLI_PARAM_SIZE_HINT] = Math.min(sizeHint, 2 ** 30);
  if (windowBits > 0) params[C.BROTLI_PARAM_LGWIN] = windowBits;
  return { params };
}
function take(s) {
  let n = 0;
  for (const p of s.out) n += p.length;
  const u = new Uint8Array(n);
  let o = 0;
  for (const p of s.out) { u.set(p, o); o += p.length; }
  s.out = [];
  return u;
}
self.onmessage = (e) => {
  const m = e.data;
  const reply = (bytes) => self.postMessage({ req: m.req, bytes }, [bytes.buffer]);
  const fail = (err) => self.postMessage({ req: m.req, error: String(err && err.message || err) });
  try {
    if (m.op === "whole") {
      const out = m.encoding === "br"
        ? zlib.brotliCompressSync(m.bytes, brotli(m.level, m.bytes.length, 0))
        : zlib.gzipSync(m.bytes, { level: m.level });
      reply(new Uint8Array(out));
    } else if (m.op === "open") {
      const z = m.encoding === "br"
        ? zlib.createBrotliCompress(brotli(m.level, m.sizeHint, m.windowBits))
        : zlib.createGzip({ level: m.level });
      const s = { z, out: [], error: null };
      z.on("data", (c) => s.out.push(c));
      z.on("error", (err) => { s.error = err; });
      sessions.set(m.session, s);
    } else if (m.op === "write") {
      const s = sessions.get(m.session);
      if (s === undefined) return fail("no such compression session");
      s.z.write(m.bytes, (err) => (err || s.error) ? fail(err || s.error) : reply(take(s)));
    } else if (m.op === "end") {
      const s = sessions.get(m.session);
      if (s === undefined) return fail("no such compression session");
      s.z.once("end", () => { sessions.delete(m.session); reply(take(s)); });
      s.z.once("error", (err) => { sessions.delete(m.session); fail(err); });
      s.z.end();
    } else if (m.op === "abort") {
      const s = sessions.get(m.session);
      sessions.delete(m.session);
      if (s !== undefined) s.z.destroy();
    }
  } catch (err) {
    fail(err);
  }
};
`;

/** One incremental compression on the compressor thread (a stream's). */
export interface CompressionSession {
  /** Compresses `chunk` (which is transferred: the caller must not touch it again); resolves with the output so far. */
  write(chunk: Uint8Array): Promise<Uint8Array>;
  /** Finishes; resolves with the rest of the output. */
  end(): Promise<Uint8Array>;
  /** Drops the session (the peer went away); later calls reject. */
  abort(): void;
}

type Pending = { resolve: (bytes: Uint8Array) => void; reject: (e: Error) => void };

/**
 * Compression off the event loop: one worker thread (started on first use, stopped by `close`) that
 * runs whole-buffer compressions and incremental sessions. Requests are bounded by the caller
 * (`compressMaxJobs`), so the queue is too.
 */
export class Compressor {
  #worker: Worker | null = null;
  #nextReq = 1;
  #nextSession = 1;
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  #post(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error("compressor is closed"));
    const req = this.#nextReq++;
    const done = new Promise<Uint8Array>((resolve, reject) => this.#pending.set(req, { resolve, reject }));
    this.#ensure().postMessage({ ...message, req }, transfer);
    return done;
  }

  #ensure(): Worker {
    if (this.#worker !== null) return this.#worker;
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    const w = new Worker(url, { type: "module", name: "vento-compressor" });
    URL.revokeObjectURL(url);
    w.onmessage = (e: MessageEvent<{ req: number; bytes?: Uint8Array; error?: string }>) => {
      const p = this.#pending.get(e.data.req);
      if (p === undefined) return;
      this.#pending.delete(e.data.req);
      if (e.data.bytes !== undefined) p.resolve(e.data.bytes);
      else p.reject(new Error(`compression failed: ${e.data.error}`));
    };
    w.onerror = (e) => {
      // A crashed compressor fails what it held; the next request starts a fresh one.
      e.preventDefault();
      this.#failAll(new Error(`compressor thread failed: ${e.message}`));
      w.terminate();
      if (this.#worker === w) this.#worker = null;
    };
    this.#worker = w;
    return w;
  }

  #failAll(e: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(e);
  }

  /** Compresses a whole buffer (copied, so the caller keeps `bytes`). */
  whole(bytes: Uint8Array, encoding: Encoding, level: number): Promise<Uint8Array> {
    const copy = bytes.slice();
    return this.#post({ op: "whole", encoding, level, bytes: copy }, [copy.buffer]);
  }

  /** Starts an incremental compression; `windowBits` 0 keeps the coding's default window. */
  open(encoding: Encoding, level: number, sizeHint: number, windowBits: number): CompressionSession {
    const session = this.#nextSession++;
    let open = true;
    if (!this.#closed) {
      this.#ensure().postMessage({ op: "open", session, encoding, level, sizeHint, windowBits });
    }
    return {
      write: (chunk) => {
        if (!open) return Promise.reject(new Error("compression session is closed"));
        return this.#post({ op: "write", session, bytes: chunk }, [chunk.buffer as ArrayBuffer]);
      },
      end: () => {
        if (!open) return Promise.reject(new Error("compression session is closed"));
        open = false;
        return this.#post({ op: "end", session });
      },
      abort: () => {
        if (!open) return;
        open = false;
        if (!this.#closed && this.#worker !== null) this.#worker.postMessage({ op: "abort", session });
      },
    };
  }

  /** Stops the thread; what was in flight rejects. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = null;
    this.#failAll(new Error("compressor is closed"));
  }
}

/** What a compressed stream needs of an open file (an `FsFile` has it; tests pass a fake). */
export interface CompressSource {
  /** Reads into `p`; the count read, or null at end of file. */
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}

/**
 * A file compressed while it is sent, framed with the chunked transfer coding (the compressed length
 * is not known in advance). Reads at most `length` bytes (the size its validators describe), one
 * `STREAM_INPUT_CHUNK_BYTES` step at a time, on the compressor thread; the next read waits until the
 * previous step's output went to the sink, so memory stays at one input chunk, the output of one step
 * and the compressor's window. `release` is called once, when the stream ends either way (it frees the
 * job slot).
 */
export class CompressedFileStream implements BodyStream {
  readonly #file: CompressSource;
  readonly #compressor: Compressor;
  readonly #encoding: Encoding;
  readonly #length: number;
  readonly #level: number;
  readonly #release: () => void;
  #done = false;

  constructor(
    file: CompressSource,
    compressor: Compressor,
    encoding: Encoding,
    length: number,
    level: number,
    release: () => void,
  ) {
    this.#file = file;
    this.#compressor = compressor;
    this.#encoding = encoding;
    this.#length = length;
    this.#level = level;
    this.#release = release;
  }

  async pipe(sink: BodySink): Promise<void> {
    if (this.#done) throw new Error("compressed stream used twice");
    const windowBits = this.#encoding === "br" ? STREAM_BROTLI_WINDOW_BITS : 0;
    const session = this.#compressor.open(this.#encoding, this.#level, this.#length, windowBits);
    let ended = false;
    try {
      let left = this.#length;
      while (left > 0) {
        // A fresh buffer per step: it is handed to the compressor thread, not copied.
        const buf = new Uint8Array(Math.min(STREAM_INPUT_CHUNK_BYTES, left));
        const n = await this.#file.read(buf);
        if (n === null) break; // shrank: what was read still compresses to a complete, valid body
        left -= n;
        const out = await session.write(n === buf.length ? buf : buf.slice(0, n));
        if (out.length > 0) await sink.write(chunkFrame([out], out.length, false));
      }
      ended = true;
      const rest = await session.end();
      await sink.write(chunkFrame([rest], rest.length, true));
    } finally {
      if (!ended) session.abort();
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
