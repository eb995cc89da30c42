/**
 * The public views of guard state, as the admin channel shows them. Produced by `src/guard/`.
 * Pure types.
 */

export interface BanInfo {
  /** Client key (IPv4 address or IPv6 prefix) or a CIDR banned by an operator. */
  key: string;
  /** Why: "flood" (automatic), or the operator's text. */
  reason: string;
  /** Wall-clock milliseconds when the ban ends. */
  expiresAtWallMs: number;
  /** Milliseconds left. */
  remainingMs: number;
  /** How many times this key has been banned (the ban doubles each time). */
  offences: number;
}

export interface ClientInfo {
  /** Client key (IPv4 address or IPv6 prefix). */
  key: string;
  /** Open connections now. */
  conns: number;
  /** Recent request rate (requests per second, smoothed). */
  requestRatePerSec: number;
  /** Requests counted in all. */
  requests: number;
  /** Rejections (429s, refused connections) in the current violation window. */
  violations: number;
  /** Currently over its request limit (next request would get 429). */
  limited: boolean;
}
