/**
 * The seam between the connection layer and whatever answers requests (static files, the echo route, an
 * app module). A handler sees a request head plus either a bounded, fully read body or, for routes that
 * stream (`Handler.streamsBody`), a pull source of body bytes, and answers a `Reply`, synchronously when it
 * can: the hot path (a cached file) must not allocate a promise.
 *
 * Pure types; no Deno APIs.
 */

import type { RequestHead } from "./head.ts";
import type { ErrorCode } from "./errors.ts";
import type { Reply } from "./response.ts";

/**
 * The request body as a pull source, handed out by the connection for a streamed route. `read` answers
 * the next bytes (a fresh copy the caller may keep), or null once the body is complete; it rejects with a
 * `BodyError` when the body breaks a limit (size, deadline, minimum rate, framing) or with the socket's
 * error when the peer goes away. One read at a time. The connection answers the error itself when the
 * handler lets the body fail, and closes the connection after any answer that left the body unread.
 */
export interface BodySource {
  read(): Promise<Uint8Array | null>;
}

/** Why a streamed body stopped: the error code the connection answers (413, 408, 400 …). */
export class BodyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode) {
    super(`request body: ${code}`);
    this.code = code;
  }
}

/**
 * How a handler hears that its connection closed (peer gone, kick, deadline, forced shutdown) before the
 * answer was complete. The connection keeps one per connection and calls `onClose` at most once per
 * exchange; the handler sets it while it works and clears it when done.
 */
export interface CloseWatch {
  onClose: (() => void) | null;
}

/** One request as a handler sees it. */
export interface Exchange {
  head: RequestHead;
  /** The whole request body (empty when none, or when it streams). Never larger than `bodyLimitBytes(head)`. */
  body: Uint8Array;
  /** The body as a stream, when the route streams it and the request has one; else null. */
  bodySource?: BodySource | null;
  /** Peer IP address (v4-mapped IPv6 already unwrapped). */
  remote: string;
  /** Peer TCP port. */
  remotePort?: number;
  /** Whether the request came over TLS (for the request URL's scheme). */
  secure?: boolean;
  /** Connection id (for logs). */
  connId: number;
  /** Close notification for a handler that works asynchronously (absent in unit tests). */
  closeWatch?: CloseWatch;
}

export interface Handler {
  /**
   * The largest body the route for this head accepts, in bytes, decided before any body byte is read.
   * 0 refuses any body. A declared Content-Length above it is answered 413 without reading the body.
   */
  bodyLimitBytes(head: RequestHead): number;
  /**
   * Whether the route for this head reads its body as a stream (`Exchange.bodySource`) rather than
   * whole. Absent: never.
   */
  streamsBody?(head: RequestHead): boolean;
  /** Answers the request. May throw: the connection then answers 500 and logs one line. */
  handle(exchange: Exchange): Reply | Promise<Reply>;
}
