/**
 * What a handler answers: a `Reply`, with its head serialised up front so the connection only appends
 * the per-exchange lines (`Date`, `Connection`) and copies bytes. Also the head builder every
 * responder uses, so `Server` and `X-Content-Type-Options` are never forgotten.
 *
 * Pure; no Deno APIs. Never writes to a socket: `src/net/connection.ts` does that.
 */

import { statusText } from "./status.ts";

const encoder = new TextEncoder();

/** Headers every response carries (fixed bytes; see the brief). */
export const COMMON_HEADERS = "Server: Vento\r\nX-Content-Type-Options: nosniff\r\n";

/**
 * Where a streamed body goes. The connection implements it: `write` resolves once the bytes are handed
 * to the kernel (backpressure) and rejects when the peer is gone or the send deadline passes; after a
 * rejection the stream must stop and release what it holds.
 */
export interface BodySink {
  write(bytes: Uint8Array): Promise<void>;
}

/**
 * A body too large to hold in memory (a big file, a range of it). Exactly `Reply.length` bytes must
 * be written to the sink by `pipe`. Exactly one of `pipe` or `cancel` is called, once.
 */
export interface BodyStream {
  /** Writes the whole body to `sink`, then releases resources (also on failure). */
  pipe(sink: BodySink): Promise<void>;
  /** Releases resources without writing (HEAD, or the connection died first). */
  cancel(): void;
}

/** A complete answer to one request. */
export interface Reply {
  /** Status code (for the access log and counters; the status line is already in `head`). */
  status: number;
  /**
   * Status line and header lines, each ending in CRLF, without the blank line and without `Date` and
   * `Connection`, which the connection appends. Must include `Content-Length` (or be a 1xx/204/304).
   */
  head: Uint8Array;
  /** In-memory body, or null. */
  body: Uint8Array | null;
  /** Streamed body, or null. Never set together with `body`. */
  stream: BodyStream | null;
  /** Body length in bytes as declared by Content-Length (0 for none); for logs and HEAD. */
  length: number;
  /** Close the connection after this reply (errors, `Retry-After` refusals). */
  close: boolean;
  /**
   * The same (frozen) object answers every hit, as the static cache's replies do: the connection may then
   * keep its whole serialised form (see `WholeReplies`).
   */
  reusable?: boolean;
  /** Operational traffic (health and metrics probes): counted, but kept out of the access log. */
  unlogged?: boolean;
}

/** In-memory bodies up to this size get a whole precomputed response (head, Date, body) per reply. */
export const WHOLE_REPLY_MAX_BODY_BYTES = 16 * 1024;

/**
 * Whole responses (head + `Date` + blank line + body) of reusable replies, rebuilt when the `Date` line
 * changes (once a second): the hot path then costs one copy — or none, when it is the only answer of a
 * read — instead of assembling five pieces per request. Held weakly: an evicted cache entry takes its
 * whole form with it.
 */
export class WholeReplies {
  #map = new WeakMap<Reply, { date: Uint8Array; bytes: Uint8Array }>();

  /** The whole response for `reply` (with its body unless `withBody` is false) under `dateLine`. */
  bytes(reply: Reply, dateLine: Uint8Array, withBody: boolean): Uint8Array {
    const hit = this.#map.get(reply);
    if (hit !== undefined && hit.date === dateLine && (withBody || reply.body === null)) return hit.bytes;
    const body = withBody ? reply.body : null;
    const head = reply.head;
    const out = new Uint8Array(head.byteLength + dateLine.byteLength + 2 + (body?.byteLength ?? 0));
    out.set(head);
    out.set(dateLine, head.byteLength);
    out[head.byteLength + dateLine.byteLength] = 0x0d;
    out[head.byteLength + dateLine.byteLength + 1] = 0x0a;
    if (body !== null) out.set(body, head.byteLength + dateLine.byteLength + 2);
    // Only the form with the body is kept (a HEAD of a reply with a body is rare and built each time).
    if (withBody || reply.body === null) this.#map.set(reply, { date: dateLine, bytes: out });
    return out;
  }
}

/**
 * Serialises a status line plus the common headers plus `headers` (name, value pairs) into reply-head
 * bytes. Values must already be safe (no CR/LF): callers pass server-made values only.
 */
export function buildHead(status: number, headers: ReadonlyArray<readonly [string, string]>): Uint8Array {
  let s = `HTTP/1.1 ${status} ${statusText(status)}\r\n${COMMON_HEADERS}`;
  for (const [name, value] of headers) s += `${name}: ${value}\r\n`;
  return encoder.encode(s);
}

/** A reply with an in-memory body and the given content type (`Content-Length` is added). */
export function bytesReply(
  status: number,
  contentType: string,
  body: Uint8Array,
  extraHeaders: ReadonlyArray<readonly [string, string]> = [],
  close = false,
): Reply {
  const head = buildHead(status, [
    ["Content-Type", contentType],
    ["Content-Length", String(body.byteLength)],
    ...extraHeaders,
  ]);
  return { status, head, body, stream: null, length: body.byteLength, close };
}

/** A short plain-text reply (`404 Not Found\n`), used for errors and refusals. */
export function textReply(
  status: number,
  extraHeaders: ReadonlyArray<readonly [string, string]> = [],
  close = false,
): Reply {
  const body = encoder.encode(`${status} ${statusText(status)}\n`);
  return bytesReply(status, "text/plain; charset=utf-8", body, extraHeaders, close);
}

/** The last chunk of a chunked body (RFC 9112 §7.1), with no trailer. */
export const LAST_CHUNK: Uint8Array = encoder.encode("0\r\n\r\n");

/**
 * One chunk of the chunked transfer coding (RFC 9112 §7.1) holding `parts` (`size` bytes in all), in one
 * buffer so it goes out in one write; `last` appends the last chunk. Used by every chunked body.
 */
export function chunkFrame(parts: readonly Uint8Array[], size: number, last: boolean): Uint8Array {
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
