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
}
