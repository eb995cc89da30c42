/**
 * The incremental HTTP/1.1 request-head parser (RFC 9112 §2–§6, RFC 9110 §5, §7.2, §8.6, §10.1.1):
 * bytes in, `RequestHead` or a stable `ErrorCode` out.
 *
 * A resumable byte-level state machine in the style of picohttpparser/llhttp: every byte is examined
 * by the state machine exactly once; state survives between `feed` calls, so a head split over many
 * reads costs the same as one read. Token boundaries are recorded as offsets while scanning; strings
 * are made once the head is complete, by one native decode of the head's bytes and `slice`s of it
 * (measured on Deno 2.9: ~1 µs for a 300-byte browser head, against ~9 µs for one
 * `String.fromCharCode` or `TextDecoder` call per token). A head that arrives in one feed is decoded
 * straight from the caller's buffer; a head split over feeds has each feed's part copied once into a
 * buffer bounded by `maxHeaderBytes` (the caller may reuse its read buffer between feeds).
 *
 * Strict, no lenient modes: bare CR or LF, obs-fold, whitespace before a colon, CTLs, conflicting or
 * malformed framing headers are errors. Limits are checked on the byte that passes them, never after
 * waiting for a line end.
 *
 * Pure: no Deno APIs, never throws on input, no per-byte allocation, never reads outside
 * `chunk[start,end)` and never keeps a reference to the caller's buffer after `feed` returns.
 */

import {
  C_DIGIT,
  C_TARGET,
  C_TOKEN,
  C_VALUE,
  C_WS,
  CLASS,
  COLON,
  CR,
  HTAB,
  isToken,
  isValidHost,
  latin1,
  LF,
  NATIVE_LATIN1,
  QUERY_BYTES,
  QUESTION,
  SP,
} from "./chars.ts";
import type { ErrorCode } from "./errors.ts";
import type { RequestHead, TargetForm, Version } from "./head.ts";

/** The parser's resource limits (a subset of `Config`; a whole `Config` fits). */
export interface ParserLimits {
  /**
   * Request-line bytes (method SP target SP version, without the CRLF). The byte that passes it is
   * answered URI_TOO_LONG (414) at once.
   */
  maxRequestLineBytes: number;
  /**
   * Whole-head bytes: leading empty lines, request line, fields and the final CRLF. The byte that
   * passes it is answered HEADER_TOO_LARGE (431).
   */
  maxHeaderBytes: number;
  /** Header fields; the field after the last allowed one is answered TOO_MANY_HEADERS (431). */
  maxHeaderCount: number;
}

/** What one `feed` produced. */
export type ParseResult =
  /** Every byte in [start,end) was consumed; feed more. */
  | { kind: "more" }
  /** The head is complete; `consumed` = bytes of THIS chunk used, counted from `start`. */
  | { kind: "head"; head: RequestHead; consumed: number }
  /** Refused; `offset` = position of the offending byte in this head's byte stream (from 0). */
  | { kind: "error"; code: ErrorCode; offset: number };

/*
 * What a parse makes per request (the head, its result and its header list) comes from a class or a copy,
 * never from an object or array literal. V8 remembers, per literal, whether the objects it made outlived a
 * young-generation collection, and once enough did (5,000 requests waiting together on a cold file cache
 * are enough) it makes every later one directly in the old generation, together with the strings stored
 * into it. Each request's head was then old garbage: measured at 5,000 keep-alive connections, young
 * collections took 30–45 ms instead of 1 (copying what dead old heads kept alive) and the old generation
 * grew by megabytes a second. Objects made by `new` and by `slice` carry no such memory.
 */

const EMPTY_BYTES = new Uint8Array(0);

/** The empty header list every head's own list is copied from (see above). */
const NO_FIELDS: readonly string[] = [];

/** A parsed head (see the note above on why a class). */
class ParsedHead implements RequestHead {
  constructor(
    readonly method: string,
    readonly target: string,
    readonly targetForm: TargetForm,
    readonly path: string,
    readonly version: Version,
    readonly headers: string[],
    readonly host: string,
    readonly contentLength: number,
    readonly chunked: boolean,
    readonly keepAlive: boolean,
    readonly expectContinue: boolean,
  ) {}
}

/** `feed`'s answer for a complete head (see the note above on why a class). */
class HeadResult {
  readonly kind = "head";
  constructor(readonly head: RequestHead, readonly consumed: number) {}
}

/**
 * Empty lines (CRLF) tolerated before a request line (RFC 9112 §2.2 lets a server ignore "at least one";
 * clients sometimes send an extra CRLF after a body). One more is answered INVALID_REQUEST_LINE.
 */
export const MAX_LEADING_EMPTY_LINES = 4;

/** First capacity of the buffer holding a head split over feeds; it grows up to `maxHeaderBytes`. */
const INITIAL_HEAD_BUF_BYTES = 512;
/** A head buffer larger than this is dropped at `reset()` so idle keep-alive connections stay small. */
const KEEP_HEAD_BUF_BYTES = 4096;
/**
 * Heads up to this size are kept (as the strings of their parsed form) for the next head the parser reads to
 * reuse (see `#piece`); a larger one is not, so a pooled parser holds at most this much of an old request.
 */
const PREV_HEAD_MAX_BYTES = 2048;
/** Offsets recorded per field: name start, name end, value start, trimmed value end, CR of the line. */
const MARKS_PER_FIELD = 5;
/** Fields whose offsets fit before the marks array first grows (it grows up to `maxHeaderCount`). */
const INITIAL_MARKED_FIELDS = 24;

/**
 * Decodes a head with no byte above 0x7F, where UTF-8 and latin1 agree, when `latin1` is not native.
 * Stateless between calls (no `stream` option), so sharing it is safe.
 */
const ASCII_DECODER = new TextDecoder("utf-8", { ignoreBOM: true });

/** Content-Length digits accepted: 15 digits always stay below Number.MAX_SAFE_INTEGER. */
const MAX_CONTENT_LENGTH_DIGITS = 15;

// Parser states.
const S_START = 0; // before the request line: a method byte, or CR of a leading empty line
const S_START_LF = 1; // CR of a leading empty line seen
const S_METHOD = 2;
const S_TARGET_START = 3;
const S_TARGET = 4;
const S_VERSION = 5; // matching "HTTP/d.d"; #versionIdx says where
const S_RL_LF = 6; // request line's CR seen
const S_FIELD_START = 7; // start of a field line, or CR of the final empty line
const S_NAME = 8;
const S_OWS = 9; // after the colon, before the value
const S_VALUE = 10;
const S_FIELD_LF = 11; // field line's CR seen
const S_END_LF = 12; // final CR seen
const S_CR_MISPLACED = 13; // CR where a line cannot end: LF next → #misplacedCode, else BARE_CR
const S_QUERY = 14; // in the target, after its first "?": QUERY_BYTES allowed

const MORE: ParseResult = Object.freeze({ kind: "more" });
const VERSION_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f]; // "HTTP/"
const HEAD_BYTES = [0x48, 0x45, 0x41, 0x44]; // "HEAD"

/**
 * An incremental request-head parser, one per connection, reused via `reset()` between requests.
 * After an error it stays in that error (every `feed` returns it again) until `reset()`. After a head
 * it returns that head with `consumed: 0` until `reset()`.
 */
export class RequestParser {
  #maxRequestLineBytes: number;
  #maxHeaderBytes: number;
  #maxHeaderCount: number;

  #state = S_START;
  #result: ParseResult | null = null;
  /** Bytes of this head consumed so far (updated at the end of each feed). */
  #seen = 0;
  #emptyLines = 0;
  /** Stream offset where the request line becomes too long. */
  #rlLimitOffset = 0;
  #versionIdx = 0;
  #major = 0;
  #minor = 0;
  #misplacedCode: ErrorCode = "INVALID_REQUEST_LINE";
  /** The method token, once complete, is `HEAD` (see `methodIsHead`). */
  #methodIsHead = false;

  /**
   * Head offsets of tokens: [0] method start, [1] method end, [2] target start, [3] target end, then
   * `MARKS_PER_FIELD` per field.
   */
  #marks: Int32Array;
  /** Whether a field value held a byte above 0x7F (obs-text): then the head is decoded as latin1. */
  #highBytes = false;
  /** The bytes of a head that spans feeds, copied at the end of each feed (see the module comment). */
  #headBuf: Uint8Array = new Uint8Array(0);
  #headLen = 0;

  // What the head has said so far.
  #method = "";
  #target = "";
  #form: TargetForm = "origin";
  #path = "";
  #authority = "";
  #version: Version = 11;
  #headers: string[] = NO_FIELDS.slice();
  #fieldCount = 0;
  #host: string | null = null;
  /** The last Host value that passed validation on this connection (survives `reset`). */
  #validHost: string | null = null;
  /**
   * The strings of the last head this parser completed: method, target, then each
   * field's name and value (none when that head was larger than PREV_HEAD_MAX_BYTES). A piece of the next
   * head with the same bytes is the same string (see `#piece`). Kept across `reset`, in an array of the
   * parser's own (a head's header list belongs to whoever handles it).
   */
  readonly #prev: string[] = [];
  /** That head's bytes from its first one (a copy), and where each of `#prev`'s strings starts in them. */
  #prevBytes: Uint8Array = EMPTY_BYTES;
  #prevStarts: Int32Array = new Int32Array(0);
  /** While `#finish` runs: where the head's bytes are (`#finishAt` is the index of head offset 0) … */
  #finishSrc: Uint8Array = EMPTY_BYTES;
  #finishAt = 0;
  /** … and the head decoded whole, once a piece is not the previous head's (else null). */
  #finishText: string | null = null;
  /** Every piece so far was the previous head's string (see `#piece`). */
  #allPrev = true;
  #contentLength = -1;
  #teSeen = false;
  #teChunked = 0;
  #teLastChunked = false;
  #teOther = false;
  #connClose = false;
  #connKeepAlive = false;
  #expectContinue = false;

  constructor(limits: ParserLimits) {
    this.#maxRequestLineBytes = limits.maxRequestLineBytes;
    this.#maxHeaderBytes = limits.maxHeaderBytes;
    this.#maxHeaderCount = limits.maxHeaderCount;
    this.#marks = new Int32Array(
      4 + MARKS_PER_FIELD * Math.min(INITIAL_MARKED_FIELDS, limits.maxHeaderCount),
    );
  }

  /**
   * Makes a used parser as good as new under `limits` (a reloaded config may have changed them), so a
   * server can keep parsers of closed connections for new ones instead of allocating per connection.
   */
  configure(limits: ParserLimits): void {
    this.#maxRequestLineBytes = limits.maxRequestLineBytes;
    this.#maxHeaderBytes = limits.maxHeaderBytes;
    this.#maxHeaderCount = limits.maxHeaderCount;
    // A keep-alive connection lends its parser already reset: resetting it again would only allocate.
    // (Fed since the last reset: bytes were seen, or the first one ended it.)
    if (this.#seen !== 0 || this.#result !== null) this.reset();
  }

  /** Bytes of the current head consumed so far (0 = nothing of a next request has arrived yet). */
  get bytesSeen(): number {
    return this.#seen;
  }

  /**
   * Whether the method of the current request is `HEAD`, known as soon as the SP after the method arrived
   * and kept after an error until `reset()`: every answer to HEAD, an error answer to a head that never
   * completed included, carries no content (RFC 9110 §9.3.2).
   */
  get methodIsHead(): boolean {
    return this.#methodIsHead;
  }

  /** Makes the parser ready for the next request on the same connection. */
  reset(): void {
    this.#state = S_START;
    this.#methodIsHead = false;
    this.#result = null;
    this.#seen = 0;
    this.#emptyLines = 0;
    this.#highBytes = false;
    this.#headLen = 0;
    if (this.#headBuf.length > KEEP_HEAD_BUF_BYTES) this.#headBuf = new Uint8Array(0);
    this.#method = "";
    this.#target = "";
    this.#form = "origin";
    this.#path = "";
    this.#authority = "";
    this.#version = 11;
    // A new array: the previous head owns the old one.
    this.#headers = NO_FIELDS.slice();
    this.#fieldCount = 0;
    this.#host = null;
    this.#contentLength = -1;
    this.#teSeen = false;
    this.#teChunked = 0;
    this.#teLastChunked = false;
    this.#teOther = false;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#expectContinue = false;
  }

  /** Parses `chunk[start,end)`, continuing where the previous feed stopped. */
  feed(chunk: Uint8Array, start: number, end: number): ParseResult {
    const done = this.#result;
    if (done !== null) return done.kind === "head" ? new HeadResult(done.head, 0) : done;
    if (start < 0) start = 0;
    if (end > chunk.length) end = chunk.length;
    if (start >= end) return MORE;
    // Stream offset of chunk[i] is base + i.
    const base = this.#seen - start;
    // chunk[lim] would be byte number maxHeaderBytes + 1 of the head: never examined.
    const lim = Math.min(end, this.#maxHeaderBytes - base);
    let state = this.#state;
    let i = start;
    while (i < lim) {
      const b = chunk[i];
      switch (state) {
        case S_START: {
          if ((CLASS[b] & C_TOKEN) !== 0) {
            this.#rlLimitOffset = base + i + this.#maxRequestLineBytes;
            this.#marks[0] = base + i;
            state = S_METHOD;
            break;
          }
          if (b === CR) {
            state = S_START_LF;
            i++;
            break;
          }
          return this.#fail(b === LF ? "BARE_LF" : "INVALID_METHOD", base + i);
        }
        case S_START_LF: {
          if (b !== LF) return this.#fail("BARE_CR", base + i - 1);
          if (++this.#emptyLines > MAX_LEADING_EMPTY_LINES) {
            return this.#fail("INVALID_REQUEST_LINE", base + i);
          }
          state = S_START;
          i++;
          break;
        }
        case S_METHOD: {
          const stop = Math.min(lim, this.#rlLimitOffset - base);
          while (i < stop && (CLASS[chunk[i]] & C_TOKEN) !== 0) i++;
          if (i === lim) break;
          const c = chunk[i];
          if (c === SP) {
            if (i === stop) return this.#fail("URI_TOO_LONG", base + i);
            this.#marks[1] = base + i;
            this.#methodIsHead = base + i - this.#marks[0] === 4 &&
              this.#isHeadAt(chunk, base, this.#marks[0]);
            state = S_TARGET_START;
            i++;
            break;
          }
          if (c === CR) {
            this.#misplacedCode = "INVALID_REQUEST_LINE";
            state = S_CR_MISPLACED;
            i++;
            break;
          }
          if (i === stop) return this.#fail("URI_TOO_LONG", base + i);
          return this.#fail(c === LF ? "BARE_LF" : "INVALID_METHOD", base + i);
        }
        case S_TARGET_START: {
          if (b === CR) {
            this.#misplacedCode = "INVALID_REQUEST_LINE";
            state = S_CR_MISPLACED;
            i++;
            break;
          }
          if (base + i >= this.#rlLimitOffset) return this.#fail("URI_TOO_LONG", base + i);
          if ((CLASS[b] & C_TARGET) !== 0) {
            this.#marks[2] = base + i;
            state = S_TARGET;
            break;
          }
          if (b === LF) return this.#fail("BARE_LF", base + i);
          // A second SP: RFC 9112 §3 allows exactly one; lenient splitting is a smuggling vector.
          return this.#fail(b === SP ? "INVALID_REQUEST_LINE" : "INVALID_TARGET", base + i);
        }
        case S_TARGET:
        case S_QUERY: {
          const stop = Math.min(lim, this.#rlLimitOffset - base);
          if (state === S_TARGET) {
            while (i < stop && (CLASS[chunk[i]] & C_TARGET) !== 0 && chunk[i] !== QUESTION) i++;
            if (i < stop && chunk[i] === QUESTION) {
              state = S_QUERY;
              i++;
              break;
            }
          } else {
            while (i < stop && QUERY_BYTES[chunk[i]] !== 0) i++;
          }
          if (i === lim) break;
          const c = chunk[i];
          if (c === CR) {
            // "GET /\r\n": HTTP/0.9 or a truncated line; either way not a request we parse.
            this.#misplacedCode = "INVALID_REQUEST_LINE";
            state = S_CR_MISPLACED;
            i++;
            break;
          }
          if (i === stop) return this.#fail("URI_TOO_LONG", base + i);
          if (c === SP) {
            this.#marks[3] = base + i;
            this.#versionIdx = 0;
            state = S_VERSION;
            i++;
            break;
          }
          return this.#fail(c === LF ? "BARE_LF" : "INVALID_TARGET", base + i);
        }
        case S_VERSION: {
          const k = this.#versionIdx;
          // The common case whole: "HTTP/1.1" or "HTTP/1.0", CR LF, within the line limit, in this chunk.
          if (
            k === 0 && i + 10 <= lim && base + i + 8 <= this.#rlLimitOffset && b === 0x48 &&
            chunk[i + 1] === 0x54 && chunk[i + 2] === 0x54 && chunk[i + 3] === 0x50 &&
            chunk[i + 4] === 0x2f && chunk[i + 5] === 0x31 && chunk[i + 6] === 0x2e &&
            (chunk[i + 7] === 0x31 || chunk[i + 7] === 0x30) && chunk[i + 8] === CR && chunk[i + 9] === LF
          ) {
            this.#major = 1;
            this.#minor = chunk[i + 7] - 0x30;
            this.#version = this.#minor === 0 ? 10 : 11;
            this.#versionIdx = 8;
            state = S_FIELD_START;
            i += 10;
            break;
          }
          if (b === CR) {
            if (k !== 8) {
              this.#misplacedCode = "INVALID_VERSION";
              state = S_CR_MISPLACED;
              i++;
              break;
            }
            // RFC 9112 §2.3: the version is case-sensitive "HTTP/" DIGIT "." DIGIT. RFC 9110 §2.5: a
            // higher minor of a major we speak is handled as the highest minor we speak (1.1); only
            // another major (0.x, 2.x, …) is unsupported.
            if (this.#major === 1) this.#version = this.#minor === 0 ? 10 : 11;
            else return this.#fail("UNSUPPORTED_VERSION", base + i);
            state = S_RL_LF;
            i++;
            break;
          }
          if (base + i >= this.#rlLimitOffset) return this.#fail("URI_TOO_LONG", base + i);
          if (b === LF) return this.#fail("BARE_LF", base + i);
          if (k < 5) {
            if (b !== VERSION_PREFIX[k]) return this.#fail("INVALID_VERSION", base + i);
          } else if (k === 5 || k === 7) {
            if ((CLASS[b] & C_DIGIT) === 0) return this.#fail("INVALID_VERSION", base + i);
            if (k === 5) this.#major = b - 0x30;
            else this.#minor = b - 0x30;
          } else if (k !== 6 || b !== 0x2e) {
            return this.#fail("INVALID_VERSION", base + i);
          }
          this.#versionIdx = k + 1;
          i++;
          break;
        }
        case S_RL_LF:
        case S_FIELD_LF: {
          if (b !== LF) return this.#fail("BARE_CR", base + i - 1);
          state = S_FIELD_START;
          i++;
          break;
        }
        case S_FIELD_START: {
          if ((CLASS[b] & C_TOKEN) !== 0) {
            if (++this.#fieldCount > this.#maxHeaderCount) return this.#fail("TOO_MANY_HEADERS", base + i);
            const m = 4 + MARKS_PER_FIELD * (this.#fieldCount - 1);
            if (m + MARKS_PER_FIELD > this.#marks.length) this.#growMarks();
            this.#marks[m] = base + i;
            state = S_NAME;
            break;
          }
          if (b === CR) {
            state = S_END_LF;
            i++;
            break;
          }
          if (b === LF) return this.#fail("BARE_LF", base + i);
          // RFC 9112 §5.2: obs-fold is refused; a whitespace-led first line is refused too (§2.2).
          if (b === SP || b === HTAB) return this.#fail("OBS_FOLD", base + i);
          return this.#fail("INVALID_HEADER_NAME", base + i);
        }
        case S_NAME: {
          while (i < lim && (CLASS[chunk[i]] & C_TOKEN) !== 0) i++;
          if (i === lim) break;
          const c = chunk[i];
          if (c === COLON) {
            this.#marks[4 + MARKS_PER_FIELD * (this.#fieldCount - 1) + 1] = base + i;
            state = S_OWS;
            i++;
            break;
          }
          if (c === CR) {
            this.#misplacedCode = "INVALID_HEADER_NAME";
            state = S_CR_MISPLACED;
            i++;
            break;
          }
          // RFC 9112 §5.1: whitespace between name and colon MUST be rejected with 400.
          if (c === SP || c === HTAB) return this.#fail("WHITESPACE_BEFORE_COLON", base + i);
          return this.#fail(c === LF ? "BARE_LF" : "INVALID_HEADER_NAME", base + i);
        }
        case S_OWS: {
          while (i < lim && (CLASS[chunk[i]] & C_WS) !== 0) i++;
          if (i === lim) break;
          const c = chunk[i];
          if (c === CR) {
            const m = 4 + MARKS_PER_FIELD * (this.#fieldCount - 1);
            this.#marks[m + 2] = this.#marks[m + 3] = this.#marks[m + 4] = base + i;
            state = S_FIELD_LF;
            i++;
            break;
          }
          if ((CLASS[c] & C_VALUE) !== 0) {
            const m = 4 + MARKS_PER_FIELD * (this.#fieldCount - 1);
            // The value starts with a non-OWS byte, so its trimmed end is at least one byte later.
            this.#marks[m + 2] = base + i;
            this.#marks[m + 3] = base + i + 1;
            state = S_VALUE;
            break;
          }
          return this.#fail(c === LF ? "BARE_LF" : "INVALID_HEADER_VALUE", base + i);
        }
        case S_VALUE: {
          let last = -1;
          let high = 0;
          for (; i < lim; i++) {
            const c = chunk[i];
            const cls = CLASS[c];
            if ((cls & C_VALUE) === 0) break;
            if ((cls & C_WS) === 0) last = i;
            high |= c;
          }
          const m = 4 + MARKS_PER_FIELD * (this.#fieldCount - 1);
          // Trailing OWS is not part of the value (RFC 9112 §5).
          if (last >= 0) this.#marks[m + 3] = base + last + 1;
          if (high >= 0x80) this.#highBytes = true;
          if (i === lim) break;
          const c = chunk[i];
          if (c === CR) {
            this.#marks[m + 4] = base + i;
            // CR LF together (the common case): straight on to the next field.
            if (i + 1 < lim && chunk[i + 1] === LF) {
              state = S_FIELD_START;
              i += 2;
            } else {
              state = S_FIELD_LF;
              i++;
            }
            break;
          }
          return this.#fail(c === LF ? "BARE_LF" : "INVALID_HEADER_VALUE", base + i);
        }
        case S_END_LF: {
          if (b !== LF) return this.#fail("BARE_CR", base + i - 1);
          i++;
          this.#seen = base + i;
          this.#state = S_START;
          return this.#finish(chunk, start, i);
        }
        case S_CR_MISPLACED: {
          return this.#fail(b === LF ? this.#misplacedCode : "BARE_CR", base + i - 1);
        }
      }
    }
    // Out of bytes (or at the size limit) in the middle of the head.
    this.#state = state;
    this.#seen = base + i;
    if (i < end) return this.#fail("HEADER_TOO_LARGE", base + i);
    this.#keep(chunk, start, i);
    return MORE;
  }

  #fail(code: ErrorCode, offset: number): ParseResult {
    const r: ParseResult = { kind: "error", code, offset };
    this.#result = r;
    return r;
  }

  /** Copies this feed's part of an unfinished head: the caller may overwrite its buffer next. */
  #keep(chunk: Uint8Array, from: number, to: number): void {
    const need = this.#headLen + to - from;
    if (need > this.#headBuf.length) {
      // Bounded: `feed` never accepts more than maxHeaderBytes of one head.
      const grown = new Uint8Array(
        Math.min(Math.max(need, this.#headBuf.length * 2, INITIAL_HEAD_BUF_BYTES), this.#maxHeaderBytes),
      );
      grown.set(this.#headBuf.subarray(0, this.#headLen));
      this.#headBuf = grown;
    }
    this.#headBuf.set(chunk.subarray(from, to), this.#headLen);
    this.#headLen = need;
  }

  /**
   * Whether the 4 head bytes from stream offset `at` spell `HEAD`. Bytes of earlier feeds are in the head
   * buffer (which holds stream offsets [0, #headLen)), the rest in this feed's `chunk` (offset = index + base).
   */
  #isHeadAt(chunk: Uint8Array, base: number, at: number): boolean {
    for (let k = 0; k < 4; k++) {
      const off = at + k;
      const b = off < this.#headLen ? this.#headBuf[off] : chunk[off - base];
      if (b !== HEAD_BYTES[k]) return false;
    }
    return true;
  }

  #growMarks(): void {
    const max = 4 + MARKS_PER_FIELD * this.#maxHeaderCount;
    const grown = new Int32Array(Math.min(max, this.#marks.length * 2));
    grown.set(this.#marks);
    this.#marks = grown;
  }

  /** Sorts the request-target into its RFC 9112 §3.2 form; null when acceptable. */
  #classifyTarget(t: string): ErrorCode | null {
    if (t.charCodeAt(0) === 0x2f) {
      this.#form = "origin";
      this.#path = t;
      return null;
    }
    if (t === "*") {
      // §3.2.4: asterisk-form is only for a server-wide OPTIONS.
      if (this.#method !== "OPTIONS") return "INVALID_TARGET";
      this.#form = "asterisk";
      this.#path = "*";
      return null;
    }
    // §3.2.2 absolute-form; schemes are case-insensitive. Anything else (authority-form for CONNECT,
    // other schemes, relative references) is refused: we are an origin server, not a proxy.
    const lower = t.slice(0, 8).toLowerCase();
    const skip = lower.startsWith("http://") ? 7 : lower === "https://" ? 8 : 0;
    if (skip === 0) return "INVALID_TARGET";
    let k = skip;
    while (k < t.length) {
      const c = t.charCodeAt(k);
      if (c === 0x2f || c === 0x3f) break;
      k++;
    }
    const authority = t.slice(skip, k);
    if (!isValidHost(authority)) return "INVALID_TARGET";
    const rest = t.slice(k);
    this.#form = "absolute";
    this.#authority = authority;
    this.#path = rest === "" ? "/" : rest.charCodeAt(0) === 0x3f ? "/" + rest : rest;
    return null;
  }

  /** Records one field and applies the per-field rules; an error code when the field is refused. */
  #field(name: string, value: string): ErrorCode | null {
    switch (name) {
      case "host":
        if (this.#host !== null) return "DUPLICATE_HOST";
        // An empty Host is legal only for a URI without authority (RFC 9110 §7.2); ours always has one.
        // Keep-alive clients repeat their Host: validate a value once per connection, not per request.
        if (value !== this.#validHost) {
          if (!isValidHost(value)) return "INVALID_HOST";
          this.#validHost = value;
        }
        this.#host = value;
        return null;
      case "content-length": {
        if (this.#teSeen) return "CL_WITH_TE";
        const n = parseContentLength(value);
        if (n === CL_INVALID) return "INVALID_CONTENT_LENGTH";
        // RFC 9110 §8.6: a list of identical values may be folded; anything else is unrecoverable.
        if (n === CL_DIFFERING || (this.#contentLength >= 0 && this.#contentLength !== n)) {
          return "DUPLICATE_CONTENT_LENGTH";
        }
        this.#contentLength = n;
        return null;
      }
      case "transfer-encoding":
        // RFC 9112 §6.1: a 1.0 recipient cannot know chunked; §6.3: CL with TE is a smuggling shape.
        if (this.#version === 10) return "TE_IN_HTTP10";
        if (this.#contentLength >= 0) return "CL_WITH_TE";
        this.#teSeen = true;
        return this.#codings(value);
      case "connection":
        return this.#connectionOptions(value);
      case "expect":
        // RFC 9110 §10.1.1: 100-continue is the only expectation defined; others get 417.
        if (value.length !== 12 || value.toLowerCase() !== "100-continue") return "UNSUPPORTED_EXPECT";
        // A 1.0 client cannot take a 100 response; the expectation is ignored for it.
        this.#expectContinue = this.#version === 11;
        return null;
      default:
        return null;
    }
  }

  /** Adds one Transfer-Encoding field's codings (RFC 9112 §6.1) to what earlier TE fields said. */
  #codings(value: string): ErrorCode | null {
    let from = 0;
    for (;;) {
      const comma = value.indexOf(",", from);
      const el = trimOws(value, from, comma < 0 ? value.length : comma);
      // Empty elements are legal list syntax, but in a framing header they only serve to confuse.
      if (el === "") return "INVALID_HEADER_VALUE";
      if (el.length === 7 && el.toLowerCase() === "chunked") {
        this.#teChunked++;
        this.#teLastChunked = true;
      } else {
        this.#teOther = true;
        this.#teLastChunked = false;
      }
      if (comma < 0) return null;
      from = comma + 1;
    }
  }

  /** Reads Connection options (RFC 9110 §7.6.1): comma-separated tokens, case-insensitive. */
  #connectionOptions(value: string): ErrorCode | null {
    let from = 0;
    for (;;) {
      const comma = value.indexOf(",", from);
      const el = trimOws(value, from, comma < 0 ? value.length : comma);
      // RFC 9110 §5.6.1.2: empty list elements are ignored.
      if (el !== "") {
        if (!isToken(el)) return "INVALID_HEADER_VALUE";
        const lower = el.toLowerCase();
        if (lower === "close") this.#connClose = true;
        else if (lower === "keep-alive") this.#connKeepAlive = true;
      }
      if (comma < 0) return null;
      from = comma + 1;
    }
  }

  /**
   * The head is complete and ends at chunk index `end`: make its strings, apply the per-field and
   * whole-head rules, and answer. Field errors are reported at the CR ending the field; whole-head
   * errors at the final LF.
   */
  #finish(chunk: Uint8Array, start: number, end: number): ParseResult {
    let src = chunk;
    let at = end - this.#seen; // index of head offset 0 in `src`
    if (this.#headLen > 0) {
      this.#keep(chunk, start, end);
      src = this.#headBuf;
      at = 0;
    }
    const marks = this.#marks;
    this.#finishSrc = src;
    this.#finishAt = at;
    this.#finishText = null;
    this.#allPrev = true;
    this.#method = this.#piece(marks[0], marks[1], 0, false);
    this.#target = this.#piece(marks[2], marks[3], 1, false);
    const badTarget = this.#classifyTarget(this.#target);
    if (badTarget !== null) return this.#finishFailed(badTarget, marks[2]);
    const headers = this.#headers;
    for (let f = 0, m = 4; f < this.#fieldCount; f++, m += MARKS_PER_FIELD) {
      const name = this.#piece(marks[m], marks[m + 1], 2 + 2 * f, true);
      const value = this.#piece(marks[m + 2], marks[m + 3], 3 + 2 * f, false);
      headers.push(name, value);
      const bad = this.#field(name, value);
      if (bad !== null) return this.#finishFailed(bad, marks[m + 4]);
    }
    // Every piece the previous head's: what is remembered of it already describes this one.
    if (!this.#allPrev) this.#remember(headers);
    this.#releaseHead();
    const offset = this.#seen - 1;
    const consumed = end - start;
    const v11 = this.#version === 11;
    // RFC 9112 §3.2: a 1.1 request without Host gets 400, even in absolute-form.
    if (v11 && this.#host === null) return this.#fail("MISSING_HOST", offset);
    let chunked = false;
    if (this.#teSeen) {
      // RFC 9112 §6.3: chunked must be the final coding, applied once; others we cannot decode (501).
      if (this.#teChunked > 1 || (this.#teChunked === 1 && !this.#teLastChunked)) {
        return this.#fail("TE_NOT_CHUNKED_LAST", offset);
      }
      if (this.#teOther) return this.#fail("UNKNOWN_TRANSFER_CODING", offset);
      chunked = true;
    }
    const head = new ParsedHead(
      this.#method,
      this.#target,
      this.#form,
      this.#path,
      this.#version,
      this.#headers,
      // RFC 9112 §3.2.2: an absolute-form authority overrides the Host field.
      this.#form === "absolute" ? this.#authority : this.#host ?? "",
      this.#contentLength,
      chunked,
      !this.#connClose && (v11 || this.#connKeepAlive),
      this.#expectContinue,
    );
    const r: ParseResult = new HeadResult(head, consumed);
    this.#result = r;
    return r;
  }

  /**
   * Keeps the strings of the head just read, with its bytes, for the next head (see `#prev`). Called while
   * `#finishSrc` still holds the bytes.
   */
  #remember(headers: string[]): void {
    const prev = this.#prev;
    const marks = this.#marks;
    const first = marks[0];
    const len = this.#seen - first;
    const count = 2 + headers.length;
    if (len > PREV_HEAD_MAX_BYTES) {
      prev.length = 0;
      return;
    }
    if (this.#prevBytes.length < len) {
      this.#prevBytes = new Uint8Array(
        Math.min(PREV_HEAD_MAX_BYTES, Math.max(len, 2 * this.#prevBytes.length, 256)),
      );
    }
    const at = this.#finishAt + first;
    this.#prevBytes.set(this.#finishSrc.subarray(at, at + len));
    if (this.#prevStarts.length < count) {
      this.#prevStarts = new Int32Array(Math.max(count, 2 * this.#prevStarts.length));
    }
    const starts = this.#prevStarts;
    prev[0] = this.#method;
    starts[0] = 0;
    prev[1] = this.#target;
    starts[1] = marks[2] - first;
    for (let i = 0, m = 4; i < headers.length; i += 2, m += MARKS_PER_FIELD) {
      prev[2 + i] = headers[i];
      starts[2 + i] = marks[m] - first;
      prev[3 + i] = headers[i + 1];
      starts[3 + i] = marks[m + 2] - first;
    }
    // Entries past the count belong to an older head: let them go.
    if (prev.length > count) prev.length = count;
  }

  /** A refusal found while `#finish` ran (it lets go of the head's bytes first). */
  #finishFailed(code: ErrorCode, offset: number): ParseResult {
    this.#releaseHead();
    return this.#fail(code, offset);
  }

  /** `#finish` is done with the head's bytes and its decoded text: the parser keeps neither. */
  #releaseHead(): void {
    this.#finishSrc = EMPTY_BYTES;
    this.#finishText = null;
  }

  /**
   * The head's bytes [a, b) (head offsets) as a string, lower-cased when `lower` (field names). When the
   * same piece `k` of the previous head (0 method, 1 target, then each field's name and value) had the same
   * bytes, it is that string: a client, or clients of the same kind, send the same method, Host,
   * User-Agent, Accept… again and again, and reusing the strings spares the decode (a native call per head),
   * the slices and their garbage, and lets maps keyed by them (paths) reuse a computed hash. Otherwise a
   * slice of the head decoded whole, once.
   */
  #piece(a: number, b: number, k: number, lower: boolean): string {
    if (k < this.#prev.length) {
      const earlier = this.#prev[k];
      if (earlier.length === b - a && this.#sameAsPrev(this.#prevStarts[k], a, b - a)) return earlier;
    }
    this.#allPrev = false;
    const text = this.#finishText ??= this.#decodeHead();
    const shift = this.#marks[0];
    const piece = text.slice(a - shift, b - shift);
    // V8's toLowerCase returns the same string when there is nothing to change (cheaper than mapping bytes).
    return lower ? piece.toLowerCase() : piece;
  }

  /** Whether the `n` bytes of the previous head from `from` equal this head's from offset `a`. */
  #sameAsPrev(from: number, a: number, n: number): boolean {
    const src = this.#finishSrc;
    const prev = this.#prevBytes;
    let i = this.#finishAt + a;
    for (let j = from, end = from + n; j < end; j++, i++) if (prev[j] !== src[i]) return false;
    return true;
  }

  /** The whole head, from its first byte, as one string (one char per byte). */
  #decodeHead(): string {
    const src = this.#finishSrc;
    const from = this.#finishAt + this.#marks[0];
    const to = this.#finishAt + this.#seen;
    return this.#highBytes || NATIVE_LATIN1
      ? latin1(src, from, to)
      : ASCII_DECODER.decode(src.subarray(from, to));
  }
}

const CL_INVALID = -1;
const CL_DIFFERING = -2;

/**
 * Content-Length (RFC 9110 §8.6): 1*DIGIT, at most 15 digits, or a comma list of identical such
 * values. Returns the value, CL_INVALID or CL_DIFFERING. No signs, no hex, no inner spaces.
 */
export function parseContentLength(v: string): number {
  const n = v.length;
  let value = -1;
  let differing = false;
  let i = 0;
  for (;;) {
    while (i < n && (v.charCodeAt(i) === SP || v.charCodeAt(i) === HTAB)) i++;
    const from = i;
    let x = 0;
    while (i < n) {
      const c = v.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      x = x * 10 + (c - 0x30);
      i++;
    }
    const digits = i - from;
    if (digits === 0 || digits > MAX_CONTENT_LENGTH_DIGITS) return CL_INVALID;
    while (i < n && (v.charCodeAt(i) === SP || v.charCodeAt(i) === HTAB)) i++;
    if (value >= 0 && x !== value) differing = true;
    value = x;
    if (i === n) return differing ? CL_DIFFERING : value;
    if (v.charCodeAt(i) !== 0x2c) return CL_INVALID;
    i++;
  }
}

function trimOws(s: string, from: number, to: number): string {
  while (from < to && (s.charCodeAt(from) === SP || s.charCodeAt(from) === HTAB)) from++;
  while (to > from && (s.charCodeAt(to - 1) === SP || s.charCodeAt(to - 1) === HTAB)) to--;
  return s.slice(from, to);
}
