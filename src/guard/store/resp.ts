/**
 * RESP2, the Redis serialisation protocol (https://redis.io/docs/latest/develop/reference/protocol-spec/):
 * the command encoder and an incremental reply decoder for the guard's shared store.
 *
 * The decoder is fed whatever the socket delivered and hands out complete replies; the result never
 * depends on how the bytes were split. A reply that is not yet complete is parsed again from its first
 * byte when more arrives (replies here are a few bytes, so that costs less than keeping a resumable
 * stack); one larger than `maxReplyBytes` or malformed sets `error` and the decoder stops (the caller
 * closes the connection: a desynchronised reply stream cannot be trusted again).
 *
 * Pure: bytes in, values out; never throws on input; never mentions `Deno.`.
 */

import { concatBytes } from "../../core/bytes.ts";

/** An error reply (`-ERR …`, `-NOSCRIPT …`): a value, not an exception, so pipelined replies stay aligned. */
export class RespError {
  constructor(readonly message: string) {}
  /** The first word, e.g. `NOSCRIPT`, `ERR`, `WRONGTYPE`. */
  get code(): string {
    const sp = this.message.indexOf(" ");
    return sp < 0 ? this.message : this.message.slice(0, sp);
  }
}

/** One decoded reply. Bulk and simple strings decode as UTF-8 strings; a nil as null. */
export type RespValue = string | number | null | RespError | RespValue[];

/** Largest reply accepted by default; above it the decoder reports an error (bounded memory). */
export const DEFAULT_MAX_REPLY_BYTES = 8 * 1024 * 1024;
/** Most elements in one array reply. */
const MAX_ARRAY_LENGTH = 1_000_000;

const CR = 13;
const LF = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One command as a RESP array of bulk strings (the only form Redis accepts from clients besides inline). */
export function encodeCommand(args: readonly (string | number)[]): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
  for (const a of args) {
    const bytes = encoder.encode(typeof a === "number" ? numberArg(a) : a);
    parts.push(encoder.encode(`$${bytes.length}\r\n`), bytes, CRLF);
  }
  return concatBytes(parts);
}

const CRLF = new Uint8Array([CR, LF]);

/** Numbers as Redis reads them: integers plainly, others with full precision and no exponent surprises. */
function numberArg(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toPrecision(17).replace(/\.?0+$/, "");
}

/** Marker returned by `#parse` when the buffered bytes end inside a reply. */
const INCOMPLETE = Symbol("incomplete");

/** Incremental decoder of a stream of replies. */
export class RespDecoder {
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #pos = 0;
  readonly #maxReplyBytes: number;
  /** Set once the stream is malformed or a reply exceeds the bound; nothing more is decoded after it. */
  error: string | null = null;

  constructor(maxReplyBytes = DEFAULT_MAX_REPLY_BYTES) {
    this.#maxReplyBytes = maxReplyBytes;
  }

  /** Bytes received and not yet consumed by a complete reply. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Appends bytes from the socket (copied; the caller may reuse its buffer). */
  feed(bytes: Uint8Array): void {
    if (this.error !== null || bytes.length === 0) return;
    const need = this.#end - this.#start + bytes.length;
    if (need > this.#maxReplyBytes + 64) {
      this.error = `reply larger than ${this.#maxReplyBytes} bytes`;
      return;
    }
    if (this.#end + bytes.length > this.#buf.length) {
      // Move the unconsumed bytes to the front; grow (geometrically) only when that is not enough.
      const next = need > this.#buf.length
        ? new Uint8Array(Math.max(need, this.#buf.length * 2, 4096))
        : this.#buf;
      next.set(this.#buf.subarray(this.#start, this.#end), 0); // `set` copes with overlap in one buffer
      this.#buf = next;
      this.#end -= this.#start;
      this.#start = 0;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** The next complete reply, or undefined when more bytes are needed (or `error` is set). */
  next(): RespValue | undefined {
    if (this.error !== null || this.#start === this.#end) return undefined;
    this.#pos = this.#start;
    const v = this.#parse(0);
    if (v === INCOMPLETE) return undefined;
    this.#start = this.#pos;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return v;
  }

  #parse(depth: number): RespValue | typeof INCOMPLETE {
    if (this.error !== null) return INCOMPLETE;
    if (depth > 8) return this.#fail("arrays nested too deep");
    if (this.#pos >= this.#end) return INCOMPLETE;
    const type = this.#buf[this.#pos++];
    const line = this.#line();
    if (line === null) return INCOMPLETE;
    switch (type) {
      case 0x2b: // + simple string
        return line;
      case 0x2d: // - error
        return new RespError(line);
      case 0x3a: { // : integer
        if (!/^-?\d{1,19}$/.test(line)) return this.#fail(`bad integer "${line}"`);
        return Number(line);
      }
      case 0x24: { // $ bulk string
        const n = this.#length(line, this.#maxReplyBytes);
        if (n === null) return INCOMPLETE;
        if (n < 0) return null;
        if (this.#end - this.#pos < n + 2) return INCOMPLETE;
        const end = this.#pos + n;
        if (this.#buf[end] !== CR || this.#buf[end + 1] !== LF) {
          return this.#fail("bulk string not ended by CRLF");
        }
        const s = decoder.decode(this.#buf.subarray(this.#pos, end));
        this.#pos = end + 2;
        return s;
      }
      case 0x2a: { // * array
        const n = this.#length(line, MAX_ARRAY_LENGTH);
        if (n === null) return INCOMPLETE;
        if (n < 0) return null;
        const items: RespValue[] = [];
        for (let i = 0; i < n; i++) {
          const v = this.#parse(depth + 1);
          if (v === INCOMPLETE) return INCOMPLETE;
          items.push(v);
        }
        return items;
      }
      default:
        return this.#fail(`unknown reply type byte ${type}`);
    }
  }

  /** The text up to the next CRLF (consumed), or null when the CRLF has not arrived. */
  #line(): string | null {
    const buf = this.#buf;
    for (let i = this.#pos; i + 1 < this.#end; i++) {
      if (buf[i] === CR) {
        if (buf[i + 1] !== LF) {
          this.#fail("CR without LF");
          return null;
        }
        const s = decoder.decode(buf.subarray(this.#pos, i));
        this.#pos = i + 2;
        return s;
      }
    }
    if (this.#end - this.#pos > 1024) this.#fail("header line longer than 1024 bytes");
    return null;
  }

  /** A `$`/`*` length: -1 (nil) or 0..max; null after reporting a bad one. */
  #length(line: string, max: number): number | null {
    if (line === "-1") return -1;
    if (!/^\d{1,10}$/.test(line) || Number(line) > max) {
      this.#fail(`bad length "${line}"`);
      return null;
    }
    return Number(line);
  }

  #fail(why: string): typeof INCOMPLETE {
    this.error ??= why;
    return INCOMPLETE;
  }
}
