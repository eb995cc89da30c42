/**
 * The transport behind `transport.ts`, built on the runtime's `node:net` and `node:tls`: accepted sockets
 * are read through readiness callbacks (read until the kernel has nothing more), which serves every ready
 * connection in turn at any concurrency, where `Deno.Conn.read` lets some sockets wait for seconds once
 * more than ~128 are ready at once (measured, and explained, in docs/scaling.md).
 *
 * Owns: binding (with SO_REUSEPORT when asked), accepting paused (so the guard decides before any byte is
 * read, and a TLS handshake starts only for an admitted socket), turning the socket's data events into
 * reads into the caller's buffer with backpressure (the socket is paused whenever a chunk arrives that no
 * read is waiting for, so at most one chunk per connection is ever held), writes that settle once the
 * kernel took the bytes, and the mapping of socket errors to the `Deno.errors` classes callers test for.
 *
 * Must never: hold more than one unread chunk per connection, leave a read or write pending after
 * `close()`, or throw out of an event handler.
 */

import net from "node:net";
import tls from "node:tls";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { AcceptHandler, Transport, TransportListener, TransportListenOptions } from "./transport.ts";

/**
 * Connections the kernel queues for us before we accept them (capped by `net.core.somaxconn`). Above it the
 * kernel drops new SYNs and clients retry after a second, so a burst of thousands of clients connecting at
 * once (a page of assets behind a proxy restart) needs room here.
 */
export const LISTEN_BACKLOG = 4096;

/**
 * How often the listener asks the runtime to look at its accept queue again. Deno 2.9's socket layer can
 * leave connections in the kernel's accept queue while thousands of accepted sockets keep it busy (in one
 * run 536 waited through a whole 5 s load; in another 1,419): the listening handle is polled in the same
 * pass as every ready socket, after them, and by then tokio's per-pass budget of 128 readiness polls is
 * spent. Re-arming schedules one more poll of the listener; it drained the queue in some runs and not in
 * others, so it is a mitigation, not a cure (docs/scaling.md). Each re-arm costs one accept(2) that finds
 * nothing when the queue is empty.
 */
export const ACCEPT_REARM_MS = 20;

/** A socket error as the `Deno.errors` class the connection layer treats as "the peer is gone". */
export function mapSocketError(e: unknown): Error {
  if (!(e instanceof Error)) return new Deno.errors.ConnectionReset(String(e));
  const code = (e as { code?: unknown }).code;
  switch (code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(e.message);
    case "EPIPE":
    case "ERR_STREAM_DESTROYED":
    case "ERR_STREAM_WRITE_AFTER_END":
      return new Deno.errors.BrokenPipe(e.message);
    case "ECONNABORTED":
      return new Deno.errors.ConnectionAborted(e.message);
    case "ENOTCONN":
      return new Deno.errors.NotConnected(e.message);
    case "ETIMEDOUT":
      return new Deno.errors.TimedOut(e.message);
  }
  // A failed TLS handshake or a corrupt record: the peer's failure, as Deno.Conn reports it.
  if (typeof code === "string" && (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS"))) {
    return new Deno.errors.InvalidData(e.message);
  }
  return e;
}

/** Node's `Buffer` is a `Uint8Array`; the socket hands us those. */
type Chunk = Uint8Array;

/** One accepted socket (a `net.Socket`, or a `tls.TLSSocket` over one) as a `Transport`. */
export class NodeTransport implements Transport {
  readonly remoteIp: string;
  readonly remotePort: number;
  #socket: net.Socket;
  /** The unread rest of the last chunk (the socket is paused while it is held). */
  #held: Chunk | null = null;
  #heldOff = 0;
  #paused: boolean;
  #eof = false;
  #failure: Error | null = null;
  #closed = false;
  #readBuf: Uint8Array | null = null;
  #readResolve: ((n: number | null) => void) | null = null;
  #readReject: ((e: Error) => void) | null = null;
  #writeResolve: ((n: number) => void) | null = null;
  #writeReject: ((e: Error) => void) | null = null;
  #writeLen = 0;
  #waitResolve: (() => void) | null = null;
  #waitReject: ((e: Error) => void) | null = null;

  /** `socket` must be paused (accepted with `pauseOnConnect`). */
  constructor(socket: net.Socket, remoteIp: string, remotePort: number) {
    this.#socket = socket;
    this.remoteIp = remoteIp;
    this.remotePort = remotePort;
    this.#paused = true;
    socket.on("data", (chunk: Chunk) => this.#onData(chunk));
    socket.on("end", () => this.#onEnd());
    socket.on("error", (e: unknown) => this.#onError(mapSocketError(e)));
    socket.on("close", () => this.#onClose());
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    const held = this.#held;
    if (held !== null) return Promise.resolve(this.#takeHeld(held, buf));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#eof) return Promise.resolve(null);
    if (this.#readResolve !== null) return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    this.#readBuf = buf;
    const p = new Promise<number | null>((resolve, reject) => {
      this.#readResolve = resolve;
      this.#readReject = reject;
    });
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
    return p;
  }

  readable(): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#held !== null || this.#eof || this.#failure !== null) return Promise.resolve();
    if (this.#waitResolve !== null || this.#readResolve !== null) {
      return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    }
    const p = new Promise<void>((resolve, reject) => {
      this.#waitResolve = resolve;
      this.#waitReject = reject;
    });
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
    return p;
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#writeResolve !== null) {
      return Promise.reject(new Deno.errors.Busy("a write is already pending"));
    }
    if (bytes.byteLength === 0) return Promise.resolve(0);
    const p = new Promise<number>((resolve, reject) => {
      this.#writeResolve = resolve;
      this.#writeReject = reject;
    });
    this.#writeLen = bytes.byteLength;
    try {
      this.#socket.write(bytes, (e?: Error | null) => this.#onWritten(e));
    } catch (e) {
      this.#settleWrite(mapSocketError(e));
    }
    return p;
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    // Queued behind the writes already made, as shutdown(2) after them would be.
    this.#socket.end();
    return Promise.resolve();
  }

  setNoDelay(): void {
    if (this.#closed) return;
    try {
      this.#socket.setNoDelay(true);
    } catch {
      // the socket is already gone; the next read or write says so
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = null;
    // Made only when something is pending: an Error captures a stack, which cost ~5 % of the CPU of a
    // `Connection: close` request when it was made for every close.
    if (this.#readResolve !== null || this.#writeResolve !== null || this.#waitResolve !== null) {
      const interrupted = new Deno.errors.Interrupted("the connection was closed");
      this.#settleRead(null, interrupted);
      this.#settleWrite(interrupted);
      this.#settleWait(interrupted);
    }
    try {
      this.#socket.destroy();
    } catch {
      // already destroyed
    }
  }

  #takeHeld(held: Chunk, buf: Uint8Array): number {
    const off = this.#heldOff;
    const n = Math.min(held.byteLength - off, buf.byteLength);
    buf.set(n === held.byteLength && off === 0 ? held : held.subarray(off, off + n));
    if (off + n === held.byteLength) {
      this.#held = null;
      this.#heldOff = 0;
    } else {
      this.#heldOff = off + n;
    }
    return n;
  }

  #onData(chunk: Chunk): void {
    if (this.#closed) return;
    const buf = this.#readBuf;
    if (buf !== null) {
      if (chunk.byteLength <= buf.byteLength) {
        buf.set(chunk);
        this.#settleRead(chunk.byteLength, null);
        return;
      }
      buf.set(chunk.subarray(0, buf.byteLength));
      this.#hold(chunk, buf.byteLength, true);
      this.#settleRead(buf.byteLength, null);
      return;
    }
    if (this.#waitResolve !== null) {
      // An idle connection waiting for its next request reads this at once: no pause (and resume) per
      // request; if more arrives before that read, the next `#hold` pauses.
      this.#hold(chunk, 0, false);
      this.#settleWait(null);
      return;
    }
    this.#hold(chunk, 0, true);
  }

  /** Keeps the unread part of `chunk` and (with `pause`) stops reading the socket until it is consumed. */
  #hold(chunk: Chunk, off: number, pause: boolean): void {
    if (this.#held !== null) {
      // A chunk delivered in the same tick as the pause (the pause takes effect between reads): join them.
      const rest = this.#held.subarray(this.#heldOff);
      const joined = new Uint8Array(rest.byteLength + chunk.byteLength - off);
      joined.set(rest);
      joined.set(chunk.subarray(off), rest.byteLength);
      this.#held = joined;
      this.#heldOff = 0;
    } else {
      this.#held = chunk;
      this.#heldOff = off;
    }
    if (pause && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #onEnd(): void {
    this.#eof = true;
    if (this.#held === null) this.#settleRead(null, null);
    this.#settleWait(null);
  }

  #onError(e: Error): void {
    if (this.#closed) return;
    if (this.#failure === null) this.#failure = e;
    this.#settleRead(null, e);
    this.#settleWrite(e);
    // The next read reports the failure.
    this.#settleWait(null);
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#settleWait(null);
    // Closed by the runtime without an error event (e.g. destroyed after both ends finished).
    if (this.#readResolve === null && this.#writeResolve === null) return;
    const e = this.#failure ?? new Deno.errors.ConnectionReset("the connection was closed by the peer");
    if (this.#eof) this.#settleRead(null, null);
    else this.#settleRead(null, e);
    this.#settleWrite(e);
  }

  #onWritten(e: Error | null | undefined): void {
    if (e !== null && e !== undefined) this.#settleWrite(mapSocketError(e));
    else this.#settleWrite(null);
  }

  #settleRead(n: number | null, e: Error | null): void {
    const resolve = this.#readResolve;
    const reject = this.#readReject;
    if (resolve === null) return;
    this.#readResolve = null;
    this.#readReject = null;
    this.#readBuf = null;
    if (e !== null) reject!(e);
    else resolve(n);
  }

  #settleWait(e: Error | null): void {
    const resolve = this.#waitResolve;
    const reject = this.#waitReject;
    if (resolve === null) return;
    this.#waitResolve = null;
    this.#waitReject = null;
    if (e !== null) reject!(e);
    else resolve();
  }

  #settleWrite(e: Error | null): void {
    const resolve = this.#writeResolve;
    const reject = this.#writeReject;
    if (resolve === null) return;
    this.#writeResolve = null;
    this.#writeReject = null;
    if (e !== null) reject!(e);
    else resolve(this.#writeLen);
  }
}

/**
 * The TLS context for a certificate chain and its key, refusing a key that is not the certificate's (the
 * TLS library would only fail each handshake later, so the mistake would surface as clients' errors).
 */
function secureContextOf(certPem: string, keyPem: string): tls.SecureContext {
  const leaf = new X509Certificate(certPem);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new Error("the TLS key is not the key of the TLS certificate (the first one in its file)");
  }
  return tls.createSecureContext({ cert: certPem, key: keyPem });
}

/**
 * Re-arms accepting on `server`: `listen` on a handle that already listens only re-registers it and has
 * the runtime poll it once more, which accepts whatever waits in the kernel's queue. A runtime without
 * that handle method is left alone.
 */
export function rearmAccept(server: net.Server): void {
  const handle = (server as unknown as { _handle?: { listen?: (backlog: number) => number } | null })._handle;
  if (handle === null || handle === undefined || typeof handle.listen !== "function") return;
  try {
    handle.listen(LISTEN_BACKLOG);
  } catch {
    // closing meanwhile
  }
}

/**
 * Binds `options` and hands every accepted socket, paused and unread, to `onAccept`. `onError` hears
 * accept failures (out of descriptors and the like; the listener keeps accepting). Rejects when binding
 * fails (`Deno.errors.AddrInUse` for a port in use).
 */
export function listenTransport(
  options: TransportListenOptions,
  onAccept: AcceptHandler,
  onError: (e: Error) => void,
): Promise<TransportListener> {
  let secureContext: tls.SecureContext | null = null;
  try {
    secureContext = options.tls === null ? null : secureContextOf(options.tls.certPem, options.tls.keyPem);
  } catch (e) {
    return Promise.reject(e);
  }
  let alpn = options.tls?.alpnProtocols ?? [];
  // allowHalfOpen: a peer that half-closes after its request still gets the answer.
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket: net.Socket) => {
    const ip = socket.remoteAddress;
    const port = socket.remotePort;
    if (ip === undefined || port === undefined) {
      // Reset before we saw it: nothing to serve.
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    if (secureContext === null) {
      onAccept(new NodeTransport(socket, ip, port));
      return;
    }
    // The handshake runs as the connection's first reads (under its header deadline), never here.
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: alpn });
    onAccept(new NodeTransport(secure, ip, port));
  });
  return new Promise((resolve, reject) => {
    const onListenError = (e: Error) => {
      const code = (e as { code?: unknown }).code;
      // As Deno.listen reports them, so start-up errors name the setting and the fix the same way.
      reject(
        code === "EADDRINUSE"
          ? new Deno.errors.AddrInUse(e.message)
          : code === "EACCES"
          ? new Deno.errors.PermissionDenied(e.message)
          : code === "EADDRNOTAVAIL"
          ? new Deno.errors.AddrNotAvailable(e.message)
          : e,
      );
    };
    server.once("error", onListenError);
    server.listen(
      { host: options.host, port: options.port, reusePort: options.reusePort, backlog: LISTEN_BACKLOG },
      () => {
        server.off("error", onListenError);
        server.on("error", (e: Error) => onError(e));
        const a = server.address() as net.AddressInfo;
        let closed = false;
        const rearm = setInterval(() => rearmAccept(server), ACCEPT_REARM_MS);
        Deno.unrefTimer(rearm);
        resolve({
          addr: { transport: "tcp", hostname: a.address, port: a.port },
          setTls: (next) => {
            if (secureContext === null) throw new Error("this listener does not serve TLS");
            // Each accepted socket reads these when it is wrapped: the swap reaches new handshakes only.
            secureContext = secureContextOf(next.certPem, next.keyPem);
            alpn = next.alpnProtocols;
          },
          close: () => {
            // The listening socket closes now; `server.close`'s own callback would also wait for every
            // accepted socket to end, which is the server's business (shutdown), not the listener's.
            if (!closed) {
              closed = true;
              clearInterval(rearm);
              server.close();
            }
            return Promise.resolve();
          },
        });
      },
    );
  });
}
