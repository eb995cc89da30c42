/**
 * The record of one answered request that the connection layer hands to the access log: a plain value,
 * so the socket layer and the log writer depend on it rather than on each other.
 *
 * Pure: never mentions `Deno.`.
 */

/** What one log line records. The connection fills it from the exchange; strings may hold any bytes. */
export interface AccessEntry {
  /** Client address as keyed by the guard (`203.0.113.9`, `2001:db8::1`). */
  remote: string;
  /** Wall-clock time of the request, milliseconds since the epoch. */
  wallMs: number;
  /** The request line as received (`GET /a HTTP/1.1`), without CRLF. */
  requestLine: string;
  status: number;
  /** Body bytes sent. */
  bytes: number;
  /** `Referer` header value, "" when absent. */
  referer: string;
  /** `User-Agent` header value, "" when absent. */
  userAgent: string;
  /** Request method, target and protocol (`HTTP/1.1`); "" when the request never parsed. */
  method: string;
  target: string;
  protocol: string;
  /** `Host` header value, "" when absent. */
  host: string;
  /** Milliseconds from the complete request head to the last byte of the answer handed to the kernel. */
  durationMs: number;
  /** The connection's id on this worker (as its log lines and the admin `conns` list name it). */
  connId: number;
}
