/**
 * The transport seam: the few socket operations a connection needs (read into the caller's buffer, write,
 * half-close, close, no-delay) and the listener that hands accepted sockets to the server. The HTTP state
 * machine, the guard and the static side see only these types, so the socket implementation behind them
 * (`node_transport.ts`) can change without touching them.
 *
 * Types only: no I/O here.
 */

/** An accepted socket (plain TCP or TLS), owned by exactly one connection. */
export interface Transport {
  /** The peer's address as the kernel reports it (a v4-mapped IPv6 form is possible). */
  readonly remoteIp: string;
  readonly remotePort: number;
  /** Served over TLS (an app's request URL then says https). */
  readonly secure: boolean;
  /**
   * Reads into `buf`: the byte count (at least 1), or null at the peer's end of stream. Rejects with
   * `Deno.errors.Interrupted` when `close()` is called while the read is pending (deadlines rely on that),
   * `Deno.errors.BadResource` once closed, and a peer-gone error (`ConnectionReset`, `InvalidData` for a
   * failed TLS handshake, …) when the peer fails. At most one read may be pending.
   */
  read(buf: Uint8Array): Promise<number | null>;
  /**
   * A read for a connection that waits holding no buffer and no promise (an idle keep-alive connection):
   * once bytes are there, `lender.lendReadBuffer()` gives the buffer they go into and
   * `lender.lentReadDone(n, null)` follows; at the end of stream `lentReadDone(null, null)`, at a failure,
   * `close()` or a read already pending `lentReadDone(null, error)` with the errors `read` rejects with.
   * Exactly one `lentReadDone` per call, never from inside `readLent` or `close()` (then from a microtask),
   * possibly from inside the socket's own callback. At most one read pending.
   */
  readLent(lender: ReadBufferLender): void;
  /**
   * Writes `bytes`: the count the kernel took, as a number when it took all of them at once (the common
   * case, no promise to wait for), else a promise that resolves with the count once the kernel took them
   * (possibly fewer than given; callers loop), so a caller that awaits each write never has more than one
   * buffer in flight. Rejects with `Interrupted` when `close()` is called meanwhile, or a peer-gone error.
   * `bytes` must not be changed until the promise settles (it may be read from until then).
   */
  write(bytes: Uint8Array): number | Promise<number>;
  /** Half-closes after every write so far is sent (FIN / TLS close_notify); reads continue. */
  closeWrite(): Promise<void>;
  /** Turns Nagle's algorithm off. Never throws (a socket already gone is no error here). */
  setNoDelay(): void;
  /** Closes now, ending any pending read or write (see above). Idempotent, never throws. */
  close(): void;
}

/** Who gives a `readLent` read its buffer at the moment bytes arrive, and hears how the read ended. */
export interface ReadBufferLender {
  /** The buffer the arrived bytes go into (at least 1 byte long). Never throws. */
  lendReadBuffer(): Uint8Array;
  /** The read ended: `n` bytes are in the lent buffer, or null with `error` null at the end of stream. */
  lentReadDone(n: number | null, error: Error | null): void;
}

/** Where a listener hands its sockets. Called synchronously for every accepted socket, before any read. */
export type AcceptHandler = (transport: Transport) => void;

/** A bound listening socket. */
export interface TransportListener {
  readonly addr: Deno.NetAddr;
  /** Stops accepting (idempotent); resolves once the socket is closed. Accepted sockets stay open. */
  close(): Promise<void>;
  /**
   * A TLS listener's new certificate and key: handshakes from now on use them, connections already
   * accepted keep theirs. Throws, changing nothing, for a pair that cannot be used (or a plain listener).
   */
  setTls(tls: TransportTlsOptions): void;
}

/** TLS for a listener: the PEM texts of its certificate chain and key, and the ALPN protocols offered. */
export interface TransportTlsOptions {
  certPem: string;
  keyPem: string;
  alpnProtocols: string[];
}

/** What to bind. */
export interface TransportListenOptions {
  host: string;
  port: number;
  /** SO_REUSEPORT, so several threads' listeners share one port (Linux spreads connections). */
  reusePort: boolean;
  /** Serve TLS on this listener; the handshake happens inside the first reads, never at accept. */
  tls: TransportTlsOptions | null;
}
