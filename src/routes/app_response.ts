/**
 * Turns an app's Web `Response` into a `Reply` the connection writes: the status line and the app's
 * headers serialised once (hop-by-hop and framing headers refused, since the connection owns framing and
 * persistence), and the body as it comes: in memory when the body is one chunk (string, bytes, a small
 * Blob: one write with the head), else streamed with backpressure through the connection's `BodySink`,
 * chunked when its length is unknown (close-delimited for HTTP/1.0), with exactly the declared length when
 * the app set a valid Content-Length.
 *
 * Never trusts the app's values beyond what `Headers` already guarantees (no CR, LF or NUL).
 */

import {
  type BodySink,
  type BodyStream,
  chunkFrame,
  COMMON_HEADERS,
  LAST_CHUNK,
  type Reply,
} from "../http/response.ts";
import { statusText } from "../http/status.ts";

const encoder = new TextEncoder();

/**
 * Header fields an app may not set: the connection decides persistence and framing (RFC 9110 §7.6.1
 * connection options, RFC 9112 §6 framing), and writes `Date` itself. Dropped; `content-length` is
 * instead checked against the body (kept when it agrees, used as the length of a stream).
 */
const REFUSED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
]);

/** Scratch buffer of a converter: a head with an ASCII body up to this size is encoded in it at once. */
const SCRATCH_BYTES = 16 * 1024;
/** A character outside ASCII (UTF-8 then takes more than one byte for it). */
const NON_ASCII = /[\u0080-\uffff]/;
const EMPTY = new Uint8Array(0);
/** No refused headers (shared: never written to, as a lazy Response has only its Content-Type). */
const NONE: string[] = [];

/** What converting a response produced: the reply, and the header names it refused (for one log line; usually empty). */
export interface Converted {
  reply: Reply;
  refused: string[];
}

/** A response the connection cannot send as it stands (a network error, a non-byte chunk …). */
export class BadResponse extends Error {}

/** How the request shapes the answer. */
export interface ResponseContext {
  /** HTTP/1.0 clients get no chunked coding: a body of unknown length is delimited by closing. */
  http10: boolean;
  /** HEAD: the body is not sent (its length still is, when known). */
  isHead: boolean;
}

/**
 * Converts `res`. Resolves with the reply, or rejects with `BadResponse` (or the body stream's error)
 * when it cannot be sent.
 */
/** The status line and the app's headers, serialised once. */
interface HeadParts {
  status: number;
  /** Status line, common lines and the app's header lines (no framing line yet). */
  head: string;
  /** The app's Content-Length, when it gave one plain number (and the status has content), else -1. */
  declared: number;
  noContent: boolean;
  refused: string[];
}

/**
 * Collects the app's header lines (called per header by `Headers.forEach`, which costs a quarter of
 * iterating: no iterator objects). One per response.
 */
class HeadCollector {
  noContent = false;
  refused: string[] = [];
  declared = -1;
  lines = "";
  hasServer = false;
  hasNosniff = false;
  readonly add = (value: string, name: string): void => {
    if (REFUSED.has(name) || name === "date") {
      if (name !== "date") this.refused.push(name);
      return;
    }
    if (name === "content-length") {
      // Headers joins repeats with ", ": only one plain number is a length.
      if (this.noContent) return;
      if (/^\d{1,15}$/.test(value)) this.declared = Number(value);
      else this.refused.push(name);
      return;
    }
    if (name === "server") this.hasServer = true;
    else if (name === "x-content-type-options") this.hasNosniff = true;
    this.lines += `${name}: ${value}\r\n`;
  };
}

/**
 * Turns responses into replies. Holds a scratch buffer the head and an ASCII body are encoded into
 * together (`encodeInto` avoids the allocation `encode` makes per string), then copied out once; one
 * converter per app route, never shared between threads.
 */
export class ResponseConverter {
  #scratch = new Uint8Array(SCRATCH_BYTES);
  /** The last ASCII answer converted, reused while the app keeps giving the same one. */
  #last: { status: number; head: string; body: string; reply: Reply } | null = null;
  /** Head text of lazy Responses by content type (a handful of types per app). */
  #lazyHeads = new Map<string, string>();

  /** The status line and the app's headers (`Headers` already refused CR, LF and NUL in values). */
  headParts(res: Response): HeadParts {
    const status = res.status;
    if (status < 200 || status > 599) {
      // Response.error() has status 0; 1xx cannot be a final answer (and `new Response` refuses them).
      throw new BadResponse(`status ${status} cannot answer a request`);
    }
    const c = new HeadCollector();
    // RFC 9110 §6.4.1: 204 and 304 have no content; HEAD sends none.
    c.noContent = status === 204 || status === 304;
    res.headers.forEach(c.add);
    let head = `HTTP/1.1 ${status} ${statusText(status)}\r\n`;
    if (!c.hasServer && !c.hasNosniff) head += COMMON_HEADERS;
    else {
      if (!c.hasServer) head += "Server: Vento\r\n";
      if (!c.hasNosniff) head += "X-Content-Type-Options: nosniff\r\n";
    }
    return { status, head: head + c.lines, declared: c.declared, noContent: c.noContent, refused: c.refused };
  }

  /**
   * Converts a response whose body is in memory (or absent) without waiting: the common JSON or text
   * answer becomes a reply the connection writes with its head in one write. Null when the body may
   * stream (then `convert`).
   */
  convertStatic(res: Response): Converted | null {
    if (LAZY_HEAD_HOLDS) {
      const slots = res as unknown as Record<symbol, unknown>;
      const lazy = slots[LAZY_BODY_SLOT!];
      if (typeof lazy === "string" && !NON_ASCII.test(lazy)) {
        const type = slots[LAZY_TYPE_SLOT!] ?? TEXT_TYPE;
        if (typeof type === "string") {
          let head = this.#lazyHeads.get(type);
          if (head === undefined) {
            head = `${LAZY_HEAD_START}${type}\r\n`;
            if (this.#lazyHeads.size < LAZY_HEADS_KEPT) this.#lazyHeads.set(type, head);
          }
          const done = this.#ascii(200, head, lazy, NONE);
          if (done !== null) return done;
        }
      }
    }
    const source = staticBody(res);
    if (source === undefined) return null;
    const p = this.headParts(res);
    if (source === null || p.noContent) {
      const head = p.noContent ? p.head : p.head + "content-length: 0\r\n";
      return { reply: inMemory(p.status, headBytes(head), EMPTY), refused: p.refused };
    }
    if (typeof source === "string" && !NON_ASCII.test(source) && !NON_ASCII.test(p.head)) {
      if (p.declared >= 0 && p.declared !== source.length) p.refused.push("content-length");
      const done = this.#ascii(p.status, p.head, source, p.refused);
      if (done !== null) return done;
    }
    const bytes = typeof source === "string" ? encoder.encode(source) : source;
    return { reply: withLength(p.status, p.head, bytes, p.declared, p.refused), refused: p.refused };
  }

  /**
   * The common JSON or text answer, an ASCII body: head, length line and body as one string, one
   * `encodeInto`, one copy out. Null when it does not fit the scratch buffer.
   */
  #ascii(status: number, head: string, body: string, refused: string[]): Converted | null {
    const last = this.#last;
    if (last !== null && last.body === body && last.head === head && last.status === status) {
      return { reply: last.reply, refused };
    }
    const whole = `${head}content-length: ${body.length}\r\n${body}`;
    const scratch = this.#scratch;
    if (whole.length > scratch.byteLength) return null;
    const n = encoder.encodeInto(whole, scratch).written;
    const out = scratch.slice(0, n);
    const h = n - body.length;
    // The same answer again (a hello, a health check, an unchanged list) gets the same frozen reply, which
    // the connection may then keep whole and write as is, as it does for cached files.
    const reply: Reply = Object.freeze({
      ...inMemory(status, out.subarray(0, h), out.subarray(h)),
      reusable: true,
    });
    this.#last = { status, head, body, reply };
    return { reply, refused };
  }

  /**
   * Converts `res`. Resolves with the reply, or rejects with `BadResponse` (or the body stream's error)
   * when it cannot be sent.
   */
  convert(res: Response, ctx: ResponseContext): Promise<Converted> {
    const fast = this.convertStatic(res);
    if (fast !== null) return Promise.resolve(fast);
    return convertStreamed(res, this.headParts(res), ctx);
  }
}

/**
 * The internal slots of Deno's Response that say whether its body is a string or bytes held in memory
 * (`new Response("…")`, `Response.json(…)`, a Uint8Array): found by name on a probe, so a Deno without
 * them simply takes the stream path. Used only to recognise such a body and take it as it is, instead of
 * reading it through a stream (which costs more than the rest of a small exchange).
 */
const RESPONSE_SLOT = slotOf(new Response(""), "response");
const LAZY_BODY_SLOT = slotOf(Response.json(null), "lazy static body");
const LAZY_TYPE_SLOT = slotOf(Response.json(null), "lazy static content type");
/** The Content-Type the Fetch standard gives a string body. */
const TEXT_TYPE = "text/plain;charset=UTF-8";

/**
 * A Response made by `Response.json(data)` or `new Response(string)` with no init, and untouched since
 * (reading its headers or body materialises it), keeps its body and type lazily: its head is then known
 * without building its `Headers` (status 200, `content-type` alone). Checked once on probes, so a Deno
 * that keeps them otherwise gets the ordinary path.
 */
const LAZY_HEAD_HOLDS = (() => {
  if (LAZY_BODY_SLOT === null || LAZY_TYPE_SLOT === null) return false;
  const probes: [Response, string][] = [[Response.json({ probe: 1 }), "application/json"], [
    new Response("probe"),
    TEXT_TYPE,
  ]];
  for (const [res, type] of probes) {
    const slots = res as unknown as Record<symbol, unknown>;
    if (typeof slots[LAZY_BODY_SLOT] !== "string" || (slots[LAZY_TYPE_SLOT] ?? TEXT_TYPE) !== type) {
      return false;
    }
    const headers: string[] = [];
    res.headers.forEach((value, name) => headers.push(name, value));
    if (res.status !== 200 || headers.join("\n") !== `content-type\n${type}`) return false;
  }
  return true;
})();
/** Distinct content types whose lazy head text a converter keeps. */
const LAZY_HEADS_KEPT = 64;
/** The status line and common lines of a lazy Response's head. */
const LAZY_HEAD_START = `HTTP/1.1 200 OK\r\n${COMMON_HEADERS}content-type: `;

function slotOf(probe: Response, description: string): symbol | null {
  return Object.getOwnPropertySymbols(probe).find((s) => s.description === description) ?? null;
}

/** The body of `res` when it is a string or bytes in memory (null: no body); undefined when it may stream. */
function staticBody(res: Response): string | Uint8Array | null | undefined {
  const slots = res as unknown as Record<symbol, unknown>;
  if (LAZY_BODY_SLOT !== null) {
    // Still lazy, so never read (reading materialises it): asking `bodyUsed` would materialise it too.
    const lazy = slots[LAZY_BODY_SLOT];
    if (typeof lazy === "string" || lazy instanceof Uint8Array) return lazy;
  }
  if (res.bodyUsed) throw new BadResponse("the response body was already used");
  if (RESPONSE_SLOT === null) return undefined;
  const inner = slots[RESPONSE_SLOT] as { body?: unknown } | undefined;
  if (typeof inner !== "object" || inner === null || !("body" in inner)) return undefined;
  const body = inner.body as { source?: unknown } | null;
  if (body === null) return res.body === null ? null : undefined;
  if (typeof body !== "object" || !("source" in body)) return undefined;
  const source = body.source;
  return typeof source === "string" || source instanceof Uint8Array ? source : undefined;
}

/** `convert` for a body that may stream: its first chunk(s) decide the framing. */
async function convertStreamed(res: Response, parts: HeadParts, ctx: ResponseContext): Promise<Converted> {
  const { status, declared, noContent, refused } = parts;
  let head = parts.head;
  const body = res.body;
  if (body === null || noContent) {
    if (body !== null) void body.cancel().catch(() => {});
    if (!noContent) head += "content-length: 0\r\n";
    return { reply: inMemory(status, headBytes(head), EMPTY), refused };
  }
  const reader = body.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    first = await reader.read();
  } catch (e) {
    reader.releaseLock();
    throw e;
  }
  if (first.done) return { reply: withLength(status, head, EMPTY, declared, refused), refused };
  const chunk = asBytes(first.value, reader);
  if (ctx.isHead && declared >= 0) {
    // The app said how long the body is; HEAD needs no more of it.
    void reader.cancel().catch(() => {});
    return { reply: headOnly(status, head + `content-length: ${declared}\r\n`, declared), refused };
  }
  // A string, bytes or a Blob arrives in one chunk: look for the end before choosing the framing.
  let second: ReadableStreamReadResult<Uint8Array> | null = null;
  if (declared < 0 || declared === chunk.byteLength) {
    try {
      second = await reader.read();
    } catch (e) {
      reader.releaseLock();
      throw e;
    }
    if (second.done) return { reply: withLength(status, head, chunk, declared, refused), refused };
  }
  const pending = second === null ? null : asBytes(second.value, reader);
  if (declared >= 0) {
    head += `content-length: ${declared}\r\n`;
    const stream = new ResponseStream(reader, [chunk, pending], declared, false);
    return { reply: streamed(status, head, stream, declared, false), refused };
  }
  if (ctx.http10) {
    // No chunked coding for HTTP/1.0 (RFC 9112 §7): the end of the body is the end of the connection.
    const stream = new ResponseStream(reader, [chunk, pending], -1, false);
    return { reply: streamed(status, head, stream, 0, true), refused };
  }
  head += "transfer-encoding: chunked\r\n";
  const stream = new ResponseStream(reader, [chunk, pending], -1, true);
  return { reply: streamed(status, head, stream, 0, false), refused };
}

/**
 * A head as bytes. Header values are byte strings (`Headers` holds one char per byte, 0x00-0xFF): a value
 * with bytes above 0x7F (obs-text) goes out as those bytes, as `deno serve` sends it, not as UTF-8.
 */
function headBytes(head: string): Uint8Array {
  if (!NON_ASCII.test(head)) return encoder.encode(head);
  const out = new Uint8Array(head.length);
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
  return out;
}

/** A body of one chunk: Content-Length is its size (an app's disagreeing value is refused). */
function withLength(
  status: number,
  head: string,
  body: Uint8Array,
  declared: number,
  refused: string[],
): Reply {
  if (declared >= 0 && declared !== body.byteLength) refused.push("content-length");
  return inMemory(status, headBytes(head + `content-length: ${body.byteLength}\r\n`), body);
}

function inMemory(status: number, head: Uint8Array, body: Uint8Array): Reply {
  return {
    status,
    head,
    body,
    stream: null,
    length: body.byteLength,
    close: false,
  };
}

function headOnly(status: number, head: string, length: number): Reply {
  return { status, head: headBytes(head), body: null, stream: null, length, close: false };
}

function streamed(status: number, head: string, stream: BodyStream, length: number, close: boolean): Reply {
  return { status, head: headBytes(head), body: null, stream, length, close };
}

/** A chunk of a response body as bytes; anything else is the app's mistake (Deno.serve refuses it too). */
function asBytes(value: unknown, reader: ReadableStreamDefaultReader<Uint8Array>): Uint8Array {
  if (value instanceof Uint8Array) return value;
  void reader.cancel().catch(() => {});
  throw new BadResponse(`the response body stream gave a ${typeOf(value)}, not a Uint8Array`);
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}

/**
 * A response body read from the app's stream and written to the connection one chunk at a time: each
 * write resolves only when the kernel took the bytes, so a slow client slows the app's stream (its
 * queue stays at the stream's high-water mark), never Vento's memory.
 */
class ResponseStream implements BodyStream {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffered: (Uint8Array | null)[];
  /** Exact length the app declared, or -1. */
  #length: number;
  #chunked: boolean;

  constructor(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    buffered: (Uint8Array | null)[],
    length: number,
    chunked: boolean,
  ) {
    this.#reader = reader;
    this.#buffered = buffered;
    this.#length = length;
    this.#chunked = chunked;
  }

  async pipe(sink: BodySink): Promise<void> {
    let sent = 0;
    try {
      for (const chunk of this.#buffered) {
        if (chunk !== null) sent = await this.#write(sink, chunk, sent);
      }
      this.#buffered = [];
      for (;;) {
        const r = await this.#reader.read();
        if (r.done) break;
        sent = await this.#write(sink, asBytes(r.value, this.#reader), sent);
      }
      if (this.#length >= 0 && sent !== this.#length) {
        throw new BadResponse(`the response body had ${sent} bytes, its content-length said ${this.#length}`);
      }
      if (this.#chunked) await sink.write(LAST_CHUNK);
    } catch (e) {
      // The client went away, a deadline passed, or the app's stream failed: stop the app's stream.
      void this.#reader.cancel(e).catch(() => {});
      throw e;
    }
  }

  async #write(sink: BodySink, chunk: Uint8Array, sent: number): Promise<number> {
    const n = chunk.byteLength;
    if (n === 0) return sent;
    if (this.#length >= 0 && sent + n > this.#length) {
      throw new BadResponse(`the response body exceeds its content-length of ${this.#length} bytes`);
    }
    if (!this.#chunked) {
      await sink.write(chunk);
      return sent + n;
    }
    // One write per chunk: size line, data and CRLF together.
    await sink.write(chunkFrame([chunk], n, false));
    return sent + n;
  }

  cancel(): void {
    this.#buffered = [];
    void this.#reader.cancel().catch(() => {});
  }
}
