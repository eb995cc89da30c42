/**
 * The seam between the connection layer and whatever answers requests (static files, the echo route).
 * A handler sees a complete request (head plus a bounded, fully read body) and answers a `Reply`,
 * synchronously when it can: the hot path (a cached file) must not allocate a promise.
 *
 * Pure types; no Deno APIs.
 */

import type { RequestHead } from "./head.ts";
import type { Reply } from "./response.ts";

/** One request as a handler sees it. */
export interface Exchange {
  head: RequestHead;
  /** The whole request body (empty when none). Never larger than `bodyLimitBytes(head)`. */
  body: Uint8Array;
  /** Peer IP address (v4-mapped IPv6 already unwrapped). */
  remote: string;
  /** Connection id (for logs). */
  connId: number;
}

export interface Handler {
  /**
   * The largest body the route for this head accepts, in bytes, decided before any body byte is read.
   * 0 refuses any body. A declared Content-Length above it is answered 413 without reading the body.
   */
  bodyLimitBytes(head: RequestHead): number;
  /** Answers the request. May throw: the connection then answers 500 and logs one line. */
  handle(exchange: Exchange): Reply | Promise<Reply>;
}
