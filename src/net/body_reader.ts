/**
 * Reading a request body out of the connection's read buffer, in the three ways a route can want it: whole
 * (bounded by the route's limit), discarded (a route that takes none, bounded by what we are willing to read
 * to keep the connection), or streamed to a handler chunk by chunk. Fixed-length and chunked bodies alike;
 * the chunk framing is checked as strictly in every case. Pipelined bytes after the body stay in the buffer
 * for the next request.
 *
 * The connection owns the buffer and the socket: it lends them as a `BodyInput` (the unread window and a
 * way to refill it under the body deadlines), so this file holds no socket, timer or deadline of its own.
 * Never throws for a body the peer got wrong: limits and framing errors are answered as error codes.
 */

import type { ErrorCode } from "../http/errors.ts";
import type { RequestHead } from "../http/head.ts";
import { ChunkedDecoder } from "../http/body.ts";
import { concatBytes } from "../core/bytes.ts";

/** Trailer section limit for chunked bodies. */
export const MAX_TRAILER_BYTES = 4096;

/** The connection's read buffer as a body reader sees it. */
export interface BodyInput {
  /** The buffer the bytes are in; `[start, end)` is the unread part. */
  readonly buf: Uint8Array;
  start: number;
  readonly end: number;
  /**
   * Replaces the window with the next bytes from the peer (at least one), under the body deadlines; rejects
   * when the peer ends the stream before the body does.
   */
  refill(): Promise<void>;
}

/** The body-data callback of a chunked body being discarded. */
function ignoreData(): void {}

/** The whole body, at most `limit` bytes of content (BODY_TOO_LARGE beyond), or its framing error. */
export async function readWholeBody(
  input: BodyInput,
  head: RequestHead,
  limit: number,
): Promise<Uint8Array | ErrorCode> {
  if (!head.chunked) {
    // The caller refused a Content-Length above `limit` before reading anything.
    const body = new Uint8Array(head.contentLength);
    let got = 0;
    for (;;) {
      const take = Math.min(body.length - got, input.end - input.start);
      body.set(input.buf.subarray(input.start, input.start + take), got);
      got += take;
      input.start += take;
      if (got === body.length) return body;
      await input.refill();
    }
  }
  const decoder = new ChunkedDecoder({ maxTrailerBytes: MAX_TRAILER_BYTES });
  let body = new Uint8Array(Math.min(limit, 4096));
  let len = 0;
  let tooLarge = false;
  const onData = (buf: Uint8Array, start: number, end: number) => {
    const n = end - start;
    if (tooLarge || len + n > limit) {
      tooLarge = true;
      return;
    }
    if (len + n > body.length) {
      const grown = new Uint8Array(Math.min(limit, Math.max(body.length * 2, len + n)));
      grown.set(body.subarray(0, len));
      body = grown;
    }
    body.set(buf.subarray(start, end), len);
    len += n;
  };
  for (;;) {
    const r = decoder.feed(input.buf, input.start, input.end, onData);
    if (tooLarge) return "BODY_TOO_LARGE";
    if (r.kind === "error") return r.code;
    if (r.kind === "done") {
      input.start += r.consumed;
      return body.subarray(0, len);
    }
    input.start = input.end;
    await input.refill();
  }
}

/**
 * Reads and drops the body. At most `max` bytes on the wire (chunk framing included) are taken: a body not
 * complete by then is BODY_TOO_LARGE and its rest stays unread. A framing error is its code; null once the
 * whole body is gone. A fixed length must already be known to fit in `max`.
 */
export async function discardBody(
  input: BodyInput,
  head: RequestHead,
  max: number,
): Promise<ErrorCode | null> {
  if (!head.chunked) {
    let left = head.contentLength;
    for (;;) {
      const take = Math.min(left, input.end - input.start);
      input.start += take;
      left -= take;
      if (left === 0) return null;
      await input.refill();
    }
  }
  const decoder = new ChunkedDecoder({ maxTrailerBytes: MAX_TRAILER_BYTES });
  let budget = max;
  for (;;) {
    const end = Math.min(input.end, input.start + budget);
    const r = decoder.feed(input.buf, input.start, end, ignoreData);
    if (r.kind === "error") return r.code;
    if (r.kind === "done") {
      input.start += r.consumed;
      return null;
    }
    budget -= end - input.start;
    input.start = end;
    if (budget === 0) return "BODY_TOO_LARGE";
    await input.refill();
  }
}

/**
 * A body handed to a handler chunk by chunk (`next`), each chunk a fresh copy: at most `limit` bytes of
 * content, framing checked as it comes. After a limit or framing error `failed` holds its code and every
 * later `next` answers the same; `done` once the whole body was read.
 */
export class StreamedBody {
  readonly #limit: number;
  /** Content-Length bytes still to come (fixed-length bodies). */
  #left: number;
  /** The chunked decoder of a chunked body (null for a fixed length). */
  readonly #decoder: ChunkedDecoder | null;
  #got = 0;
  #done = false;
  #failed: ErrorCode | null = null;

  constructor(head: RequestHead, limit: number) {
    this.#limit = limit;
    this.#left = head.chunked ? 0 : head.contentLength;
    this.#decoder = head.chunked ? new ChunkedDecoder({ maxTrailerBytes: MAX_TRAILER_BYTES }) : null;
    if (!head.chunked && head.contentLength === 0) this.#done = true;
  }

  /** Every byte of the body was read. */
  get done(): boolean {
    return this.#done;
  }

  /** The limit or framing error that stopped the body, or null. */
  get failed(): ErrorCode | null {
    return this.#failed;
  }

  /**
   * The next bytes of the body, or null at its end; a limit or framing error as its code (then `failed`).
   * `refill` brings more bytes when the window holds none of the body.
   */
  async next(input: BodyInput, refill: () => Promise<void>): Promise<Uint8Array | null | ErrorCode> {
    if (this.#failed !== null) return this.#failed;
    if (this.#done) return null;
    const decoder = this.#decoder;
    if (decoder === null) {
      for (;;) {
        const take = Math.min(this.#left, input.end - input.start);
        if (take > 0) {
          const out = input.buf.slice(input.start, input.start + take);
          input.start += take;
          this.#left -= take;
          if (this.#left === 0) this.#done = true;
          return out;
        }
        if (this.#left === 0) {
          this.#done = true;
          return null;
        }
        await refill();
      }
    }
    for (;;) {
      let parts: Uint8Array[] | null = null;
      let tooLarge = false;
      const r = decoder.feed(input.buf, input.start, input.end, (buf, start, end) => {
        if (tooLarge || this.#got + end - start > this.#limit) {
          tooLarge = true;
          return;
        }
        this.#got += end - start;
        (parts ??= []).push(buf.slice(start, end));
      });
      if (tooLarge) return this.#failed = "BODY_TOO_LARGE";
      if (r.kind === "error") return this.#failed = r.code;
      if (r.kind === "done") {
        input.start += r.consumed;
        this.#done = true;
      } else {
        input.start = input.end;
      }
      if (parts !== null) return concatBytes(parts);
      if (this.#done) return null;
      await refill();
    }
  }
}
