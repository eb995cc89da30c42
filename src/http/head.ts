/**
 * The parsed request head: the one vocabulary every layer (net, static, guard, admin) shares.
 *
 * Pure data; no Deno APIs. Produced by `RequestParser` in `parser.ts`.
 */

/**
 * HTTP versions we speak: 1.0, and 1.1 (which also stands for any higher 1.x, RFC 9110 §2.5). Another
 * major version is answered 505 (well-formed) or 400 (malformed).
 */
export type Version = 10 | 11;

/** Which RFC 9112 §3.2 request-target form the request used. */
export type TargetForm = "origin" | "absolute" | "asterisk";

export interface RequestHead {
  /** Method token exactly as sent (methods are case-sensitive, RFC 9110 §9.1). */
  method: string;
  /** The raw request-target as sent (for logs and the admin `conns` view). */
  target: string;
  /** How the target was written. */
  targetForm: TargetForm;
  /**
   * Path plus query in origin form (`/a/b?x=1`), still percent-encoded. For absolute-form the
   * scheme and authority are stripped; for asterisk-form it is `*`.
   */
  path: string;
  /** 10 for HTTP/1.0, 11 for HTTP/1.1 or any higher HTTP/1.x. */
  version: Version;
  /**
   * Header fields in arrival order as a flat list: `[name0, value0, name1, value1, …]`.
   * Names are lower-cased; values have surrounding whitespace trimmed.
   */
  headers: string[];
  /** The single Host value (`""` for HTTP/1.0 without Host); for absolute-form the target's authority. */
  host: string;
  /** Declared Content-Length, or -1 when absent. Never set together with `chunked`. */
  contentLength: number;
  /** True when Transfer-Encoding ends with `chunked` (the only coding we accept). */
  chunked: boolean;
  /**
   * Whether the client wants the connection kept open after this exchange: HTTP/1.1 unless
   * `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (RFC 9112 §9.3).
   */
  keepAlive: boolean;
  /** `Expect: 100-continue` was sent (RFC 9110 §10.1.1). */
  expectContinue: boolean;
}

/** The first value of header `name` (lower-case), or `undefined`. Linear; heads are short. */
export function headerValue(head: RequestHead, name: string): string | undefined {
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) return h[i + 1];
  }
  return undefined;
}

/** Whether the request carries a body at all (RFC 9112 §6.3). */
export function hasBody(head: RequestHead): boolean {
  return head.chunked || head.contentLength > 0;
}
