/**
 * The incremental decoder of chunked transfer coding (RFC 9112 §7.1): framing bytes in, body bytes out
 * through a callback, and "done" with the exact number of bytes consumed so pipelined bytes after the
 * body stay with the connection.
 *
 * Strict: chunk-size is 1–16 hex digits (and at most 2^53−1); no whitespace (BWS) around the size or
 * inside extensions, although the §7.1.1 grammar allows it, because parsers disagree on it and that
 * disagreement is a smuggling vector; extensions are parsed and bounded, then ignored; CRLF after
 * every chunk's data is required; trailer fields are checked like header fields, bounded by
 * `maxTrailerBytes`, and discarded (we never merge trailers into the head, RFC 9110 §6.5.1).
 * Total body size is NOT limited here: the caller counts what `onData` delivers.
 *
 * Pure: no Deno APIs, never throws on input, no allocation per feed beyond the result object.
 */

import { C_QDTEXT, C_TOKEN, C_VALUE, CLASS, COLON, CR, DQUOTE, HEX_VALUE, HTAB, LF, SP } from "./chars.ts";
import type { ErrorCode } from "./errors.ts";

/** What one `feed` produced. */
export type ChunkedResult =
  | { kind: "more" }
  /** The last chunk and trailer section ended; `consumed` = bytes of THIS chunk used, from `start`. */
  | { kind: "done"; consumed: number }
  | { kind: "error"; code: ErrorCode };

/** The decoder's limits. */
export interface ChunkedLimits {
  /** Bytes of trailer field lines (not counting the final CRLF); the byte past it is TRAILER_TOO_LARGE. */
  maxTrailerBytes: number;
  /** Bytes of one chunk line's extensions (from the first `;` to its CR); past it INVALID_CHUNK_EXTENSION. */
  maxChunkExtBytes?: number;
}

/** Default bound of one chunk line's extensions: real clients send none. */
export const DEFAULT_MAX_CHUNK_EXT_BYTES = 1024;

/** Hex digits of a chunk-size; more (even leading zeros) is CHUNK_SIZE_TOO_LONG. */
export const MAX_CHUNK_SIZE_DIGITS = 16;

const D_SIZE_START = 0;
const D_SIZE = 1;
const D_EXT_NAME_START = 2;
const D_EXT_NAME = 3;
const D_EXT_VALUE_START = 4;
const D_EXT_TOKEN = 5;
const D_EXT_QUOTED = 6;
const D_EXT_QUOTED_ESCAPE = 7;
const D_EXT_QUOTED_END = 8;
const D_SIZE_LF = 9;
const D_DATA = 10;
const D_DATA_CR = 11;
const D_DATA_LF = 12;
const D_TRAILER_START = 13;
const D_TRAILER_NAME = 14;
const D_TRAILER_OWS = 15;
const D_TRAILER_VALUE = 16;
const D_TRAILER_LF = 17;
const D_END_LF = 18;

const MORE: ChunkedResult = Object.freeze({ kind: "more" });

/**
 * Decodes one chunked body; `reset()` before the next. `onData(buf, start, end)` receives each run of
 * body bytes as a range of the caller's own chunk (no copy, no subarray): copy it before returning if
 * you keep it. It is never called with an empty range and must not throw. After an error or "done"
 * every `feed` returns the same error, or done with `consumed: 0`, until `reset()`.
 */
export class ChunkedDecoder {
  readonly #maxTrailerBytes: number;
  readonly #maxExtBytes: number;
  #state = D_SIZE_START;
  #result: ChunkedResult | null = null;
  #size = 0;
  #digits = 0;
  #extBytes = 0;
  #trailerBytes = 0;

  constructor(limits: ChunkedLimits) {
    this.#maxTrailerBytes = limits.maxTrailerBytes;
    this.#maxExtBytes = limits.maxChunkExtBytes ?? DEFAULT_MAX_CHUNK_EXT_BYTES;
  }

  reset(): void {
    this.#state = D_SIZE_START;
    this.#result = null;
    this.#size = 0;
    this.#digits = 0;
    this.#extBytes = 0;
    this.#trailerBytes = 0;
  }

  feed(
    chunk: Uint8Array,
    start: number,
    end: number,
    onData: (buf: Uint8Array, start: number, end: number) => void,
  ): ChunkedResult {
    const done = this.#result;
    if (done !== null) return done.kind === "done" ? { kind: "done", consumed: 0 } : done;
    if (start < 0) start = 0;
    if (end > chunk.length) end = chunk.length;
    let state = this.#state;
    let i = start;
    while (i < end) {
      const b = chunk[i];
      switch (state) {
        case D_SIZE_START: {
          const d = HEX_VALUE[b];
          if (d < 0) return this.#fail(b === LF ? "BARE_LF" : "INVALID_CHUNK_SIZE");
          this.#size = d;
          this.#digits = 1;
          state = D_SIZE;
          i++;
          break;
        }
        case D_SIZE: {
          const d = HEX_VALUE[b];
          if (d >= 0) {
            if (++this.#digits > MAX_CHUNK_SIZE_DIGITS) return this.#fail("CHUNK_SIZE_TOO_LONG");
            const size = this.#size * 16 + d;
            // Past 2^53 the count would silently lose bytes; no real body is that large.
            if (size > Number.MAX_SAFE_INTEGER) return this.#fail("CHUNK_SIZE_TOO_LONG");
            this.#size = size;
            i++;
            break;
          }
          if (b === CR) state = D_SIZE_LF;
          else if (b === 0x3b) {
            this.#extBytes = 1;
            state = D_EXT_NAME_START;
          } else return this.#fail(b === LF ? "BARE_LF" : "INVALID_CHUNK_SIZE");
          i++;
          break;
        }
        case D_EXT_NAME_START:
        case D_EXT_NAME:
        case D_EXT_VALUE_START:
        case D_EXT_TOKEN:
        case D_EXT_QUOTED:
        case D_EXT_QUOTED_ESCAPE:
        case D_EXT_QUOTED_END: {
          if (++this.#extBytes > this.#maxExtBytes) return this.#fail("INVALID_CHUNK_EXTENSION");
          const next = extStep(state, b);
          if (next < 0) return this.#fail(b === LF ? "BARE_LF" : "INVALID_CHUNK_EXTENSION");
          state = next;
          i++;
          break;
        }
        case D_SIZE_LF: {
          if (b !== LF) return this.#fail("BARE_CR");
          // The last-chunk (size 0) is followed by the trailer section (RFC 9112 §7.1.2).
          if (this.#size === 0) {
            this.#trailerBytes = 0;
            state = D_TRAILER_START;
          } else state = D_DATA;
          i++;
          break;
        }
        case D_DATA: {
          const n = Math.min(this.#size, end - i);
          onData(chunk, i, i + n);
          i += n;
          this.#size -= n;
          if (this.#size === 0) state = D_DATA_CR;
          break;
        }
        case D_DATA_CR: {
          if (b !== CR) return this.#fail("INVALID_CHUNK_DATA_END");
          state = D_DATA_LF;
          i++;
          break;
        }
        case D_DATA_LF: {
          if (b !== LF) return this.#fail("INVALID_CHUNK_DATA_END");
          state = D_SIZE_START;
          i++;
          break;
        }
        case D_END_LF: {
          if (b !== LF) return this.#fail("BARE_CR");
          i++;
          const r: ChunkedResult = { kind: "done", consumed: i - start };
          this.#result = r;
          return r;
        }
        default: {
          // Trailer section: field lines like the head's, then an empty line.
          if (state === D_TRAILER_START && b === CR) {
            state = D_END_LF;
            i++;
            break;
          }
          if (++this.#trailerBytes > this.#maxTrailerBytes) return this.#fail("TRAILER_TOO_LARGE");
          const next = trailerStep(state, b);
          if (next < 0) {
            if (state === D_TRAILER_LF) return this.#fail("BARE_CR");
            return this.#fail(b === LF ? "BARE_LF" : "INVALID_TRAILER");
          }
          state = next;
          i++;
          break;
        }
      }
    }
    this.#state = state;
    return MORE;
  }

  #fail(code: ErrorCode): ChunkedResult {
    const r: ChunkedResult = { kind: "error", code };
    this.#result = r;
    return r;
  }
}

/** One byte of `chunk-ext = *( ";" token [ "=" ( token / quoted-string ) ] )`; -1 when refused. */
function extStep(state: number, b: number): number {
  switch (state) {
    case D_EXT_NAME_START:
      return (CLASS[b] & C_TOKEN) !== 0 ? D_EXT_NAME : -1;
    case D_EXT_NAME:
      if ((CLASS[b] & C_TOKEN) !== 0) return D_EXT_NAME;
      if (b === 0x3d) return D_EXT_VALUE_START;
      return extEnd(b);
    case D_EXT_VALUE_START:
      if ((CLASS[b] & C_TOKEN) !== 0) return D_EXT_TOKEN;
      return b === DQUOTE ? D_EXT_QUOTED : -1;
    case D_EXT_TOKEN:
      return (CLASS[b] & C_TOKEN) !== 0 ? D_EXT_TOKEN : extEnd(b);
    case D_EXT_QUOTED:
      if ((CLASS[b] & C_QDTEXT) !== 0) return D_EXT_QUOTED;
      if (b === 0x5c) return D_EXT_QUOTED_ESCAPE;
      return b === DQUOTE ? D_EXT_QUOTED_END : -1;
    case D_EXT_QUOTED_ESCAPE:
      // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
      return b === HTAB || b === SP || (b >= 0x21 && b !== 0x7f) ? D_EXT_QUOTED : -1;
    default: // D_EXT_QUOTED_END
      return extEnd(b);
  }
}

/** After a complete extension: another one, or the end of the chunk line. */
function extEnd(b: number): number {
  if (b === 0x3b) return D_EXT_NAME_START;
  return b === CR ? D_SIZE_LF : -1;
}

/** One byte of a trailer field line (RFC 9112 §7.1.2, same rules as §5); -1 when refused. */
function trailerStep(state: number, b: number): number {
  switch (state) {
    case D_TRAILER_START:
      // No obs-fold, no leading whitespace.
      return (CLASS[b] & C_TOKEN) !== 0 ? D_TRAILER_NAME : -1;
    case D_TRAILER_NAME:
      if ((CLASS[b] & C_TOKEN) !== 0) return D_TRAILER_NAME;
      return b === COLON ? D_TRAILER_OWS : -1;
    case D_TRAILER_OWS:
    case D_TRAILER_VALUE:
      if ((CLASS[b] & C_VALUE) !== 0) return D_TRAILER_VALUE;
      return b === CR ? D_TRAILER_LF : -1;
    default: // D_TRAILER_LF
      return b === LF ? D_TRAILER_START : -1;
  }
}
