/**
 * The public view of one connection, as the admin channel shows it. Produced by `src/net/server.ts`.
 * Pure types.
 */

/** Connection states, named as Go's `net/http` names them. */
export type ConnState = "new" | "active" | "idle" | "closing" | "closed";

export interface ConnInfo {
  /** Server-unique, increasing id (what `kick` takes). */
  id: number;
  /** Peer address as text (IPv4 dotted, or IPv6), v4-mapped IPv6 already unwrapped. */
  remote: string;
  /** Peer port. */
  remotePort: number;
  /** The guard's client key (IPv4 address, or IPv6 /64 prefix). */
  key: string;
  state: ConnState;
  /** Milliseconds since accept. */
  ageMs: number;
  /** Requests started on this connection. */
  requests: number;
  bytesIn: number;
  bytesOut: number;
  /** The request line being served now (escaped, truncated to 200 chars), or "" between requests. */
  request: string;
}
