/**
 * The transport behind `transport.ts`, built on the runtime's libuv-style socket handles: the `tcp_wrap`
 * binding that `node:net` itself is made of (reached through `process.binding`, as in Node), driven
 * directly for plain TCP, and `node:tls` over a `net.Socket` on the same handle for TLS. An accepted
 * handle is read through a readiness callback (read until the kernel has nothing more), which serves every
 * ready connection in turn at any concurrency, where `Deno.Conn.read` lets some sockets wait for seconds
 * once more than ~128 are ready at once (measured, and explained, in docs/scaling.md). Driving the handle
 * instead of a `net.Socket` skips the stream machinery a socket builds per connection (two stream states,
 * event emitters, listeners): measured in one run, a `Connection: close` request cost 72 µs of CPU on
 * `net.Socket` and 56 on the handle, an idle connection 15.6 KiB and 11.2 (docs/scaling.md).
 *
 * Owns: binding (with SO_REUSEPORT when asked), accepting (every connection handed over unread, so the
 * guard decides before any byte is read, and a TLS handshake starts only for an admitted socket), turning
 * the handle's read callbacks into reads into the caller's buffer with backpressure (reading stops
 * whenever a chunk arrives that no read or wait asked for, so at most one chunk per connection is held),
 * writes that settle once the kernel took the bytes (at once when it took them all), and the mapping of
 * socket errors to the `Deno.errors` classes callers test for.
 *
 * Must never: hold more than one unread chunk per connection, leave a read or write pending after
 * `close()`, or throw out of a runtime callback.
 */

import net from "node:net";
import process from "node:process";
import tls from "node:tls";
import { getSystemErrorName } from "node:util";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type {
  AcceptHandler,
  ReadBufferLender,
  Transport,
  TransportListener,
  TransportListenOptions,
} from "./transport.ts";
import { errorMessage } from "../core/errors.ts";

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

/** The size of the runtime's read slabs: a chunk this long may have more behind it in the kernel. */
const READ_SLAB_BYTES = 65536;

/**
 * The one buffer every plain-TCP handle reads into (the runtime's `useUserBuffer`, Node's `onread.buffer`).
 * A read callback runs before the next read of any handle, and what it delivers is copied out before it
 * returns (`delivered`), so one buffer serves them all. Without it the runtime copies each read into a new
 * backing store and wraps it in a new ArrayBuffer for the garbage collector to free: measured at 5,000
 * keep-alive connections, the shared buffer cut the runtime's CPU per request by about a tenth.
 */
const READ_SLAB = new Uint8Array(READ_SLAB_BYTES);

/** The runtime's end-of-stream status in a read callback (libuv's UV_EOF). */
const UV_EOF = -4095;

/** What the address getters fill in. */
interface SockAddr {
  address?: string;
  port?: number;
  family?: string;
}

/** The operations of the runtime's TCP handle (`tcp_wrap`'s `TCP`) this module uses. */
interface TcpHandle {
  /** Called with each chunk read (status in `streamBaseState[kReadBytesOrError]`); looked up at `readStart`. */
  onread: ((this: TcpHandle, chunk: ArrayBuffer | undefined) => void) | null;
  onconnection: ((this: TcpHandle, status: number) => void) | null;
  bindWithFlags(host: string, port: number, flags: number): number;
  bind6(host: string, port: number, flags: number): number;
  listen(backlog: number): number;
  accept(client: TcpHandle): number;
  getpeername(out: SockAddr): number;
  getsockname(out: SockAddr): number;
  readStart(): number;
  readStop(): number;
  /** Reads from now on go into `buffer` and the read callback gets no chunk (absent on older runtimes). */
  useUserBuffer?(buffer: Uint8Array): void;
  /** 0 or a negative errno; `streamBaseState[kLastWriteWasAsync]` says whether `req.oncomplete` will follow. */
  writeBuffer(req: object, bytes: Uint8Array): number;
  shutdown(req: object): number;
  setNoDelay(on: boolean): number;
  close(): void;
  /** The transport reading this handle (set by this module). */
  [OWNER]?: HandleTransport;
}

/** The runtime's socket handle classes and the state array their callbacks report through. */
interface SocketBindings {
  TCP: new (type: number) => TcpHandle;
  socketType: number;
  serverType: number;
  reusePortFlag: number;
  state: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

const OWNER: unique symbol = Symbol("vento.transport");

let bindings: SocketBindings | null = null;

/** Why this runtime cannot serve (its socket handles are missing), or null when it can. */
export function transportProblem(): string | null {
  try {
    socketBindings();
    return null;
  } catch (e) {
    return errorMessage(e);
  }
}

/**
 * The runtime's `tcp_wrap` and `stream_wrap` bindings (Deno 2.9 exposes them through `process.binding`, as
 * Node does). Throws, naming the runtime, when they are missing, so a server that cannot serve says why at
 * start instead of failing per connection.
 */
function socketBindings(): SocketBindings {
  if (bindings !== null) return bindings;
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const tcp = binding("tcp_wrap") as {
      TCP: SocketBindings["TCP"];
      constants: { SOCKET: number; SERVER: number; UV_TCP_REUSEPORT?: number };
    };
    const stream = binding("stream_wrap") as {
      streamBaseState: Int32Array;
      kReadBytesOrError: number;
      kLastWriteWasAsync: number;
    };
    const proto = tcp.TCP?.prototype as Partial<TcpHandle> | undefined;
    if (
      typeof tcp.TCP !== "function" || !(stream.streamBaseState instanceof Int32Array) ||
      typeof proto?.writeBuffer !== "function" || typeof proto.readStart !== "function"
    ) {
      throw new Error("tcp_wrap/stream_wrap lack TCP, writeBuffer, readStart or streamBaseState");
    }
    bindings = {
      TCP: tcp.TCP,
      socketType: tcp.constants.SOCKET,
      serverType: tcp.constants.SERVER,
      reusePortFlag: tcp.constants.UV_TCP_REUSEPORT ?? 4,
      state: stream.streamBaseState,
      kReadBytesOrError: stream.kReadBytesOrError,
      kLastWriteWasAsync: stream.kLastWriteWasAsync,
    };
    return bindings;
  } catch (e) {
    throw new Error(
      `this runtime (Deno ${Deno.version.deno}) does not offer the socket handles Vento serves through ` +
        `(process.binding("tcp_wrap")): run Vento with Deno 2.9.6 (${errorMessage(e)})`,
    );
  }
}

/** A socket error as the `Deno.errors` class the connection layer treats as "the peer is gone". */
export function mapSocketError(e: unknown): Error {
  if (!(e instanceof Error)) return new Deno.errors.ConnectionReset(String(e));
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? peerGoneError(code, e.message) ?? e : e;
}

/**
 * The `Deno.errors` class a socket error code stands for, made with `message`; null for a code that
 * is not the peer going away (the caller keeps its own error, `code` and all).
 */
function peerGoneError(code: string, message: string): Error | null {
  switch (code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(message);
    case "EPIPE":
    case "ERR_STREAM_DESTROYED":
    case "ERR_STREAM_WRITE_AFTER_END":
      return new Deno.errors.BrokenPipe(message);
    case "ECONNABORTED":
      return new Deno.errors.ConnectionAborted(message);
    case "ENOTCONN":
      return new Deno.errors.NotConnected(message);
    case "ETIMEDOUT":
      return new Deno.errors.TimedOut(message);
    case "ECANCELED":
      return new Deno.errors.Interrupted(message);
    case "EBADF":
      return new Deno.errors.BadResource(message);
  }
  // A failed TLS handshake or a corrupt record: the peer's failure, as Deno.Conn reports it.
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS")) return new Deno.errors.InvalidData(message);
  return null;
}

/**
 * A libuv-style status (a negative errno) of `action` as the error callers test for: the `Deno.errors`
 * class of a peer-gone code, else an `Error` with the errno's name as its `code` (EMFILE and the like).
 * One error object either way: a reset is a normal event.
 */
export function uvError(status: number, action: string): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  const message = `${action}: ${code}`;
  return peerGoneError(code, message) ?? Object.assign(new Error(message), { code, errno: status });
}

/**
 * What both transports share: the closed, failed and ended state, the one pending read (into a buffer or a
 * lender's) and the one pending write, the one chunk that may be held, and the checks every call starts with.
 * A subclass says how its socket starts and stops reading, writes, half-closes and closes, and reports what
 * the socket does through `delivered`, `ended`, `failed` and `closedUnder`.
 */
abstract class SocketTransport implements Transport {
  readonly remoteIp: string;
  readonly remotePort: number;
  abstract readonly secure: boolean;
  /** The unread rest of a chunk that arrived before a read asked for it (reading stopped meanwhile). */
  #held: Uint8Array | null = null;
  #heldOff = 0;
  #reading = false;
  /** No chunk has been delivered yet (see `delivered`). */
  #firstChunk = true;
  #eof = false;
  #failure: Error | null = null;
  #closed = false;
  /** The pending read's buffer; null while a `readLent` read waits (then `#lender` gives it). */
  #readBuf: Uint8Array | null = null;
  #lender: ReadBufferLender | null = null;
  #resolve: ((n: number | null) => void) | null = null;
  #reject: ((e: Error) => void) | null = null;
  #writeResolve: ((n: number) => void) | null = null;
  #writeReject: ((e: Error) => void) | null = null;

  constructor(remoteIp: string, remotePort: number) {
    this.remoteIp = remoteIp;
    this.remotePort = remotePort;
  }

  /** Starts delivering chunks (`delivered`); throws nothing (a failure is reported through `failed`). */
  protected abstract resumeSocket(): void;
  /** Stops delivering chunks until `resumeSocket`. */
  protected abstract pauseSocket(): void;
  /** Queues a half-close behind the writes made so far: 0, or a negative errno. */
  protected abstract endSocket(): number;
  /** Closes the socket now (pending reads and writes are already settled). Never throws. */
  protected abstract destroySocket(): void;
  abstract write(bytes: Uint8Array): number | Promise<number>;
  abstract setNoDelay(): void;

  read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#held !== null) return Promise.resolve(this.#takeHeld(buf));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#eof) return Promise.resolve(null);
    if (this.#readPending) return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    const p = new Promise<number | null>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#readBuf = buf;
    this.#startReading();
    return p;
  }

  readLent(lender: ReadBufferLender): void {
    if (
      this.#closed || this.#held !== null || this.#failure !== null || this.#eof || this.#readPending
    ) {
      // The answer is known now: given from a microtask, never from inside this call.
      queueMicrotask(() => this.#lentNow(lender));
      return;
    }
    this.#lender = lender;
    this.#startReading();
  }

  /** A read (of either kind) is pending. */
  get #readPending(): boolean {
    return this.#resolve !== null || this.#lender !== null;
  }

  /** Ends a `readLent` whose answer was there when it was asked (see there). */
  #lentNow(lender: ReadBufferLender): void {
    if (this.#closed) lender.lentReadDone(null, new Deno.errors.BadResource("the connection is closed"));
    else if (this.#held !== null) lender.lentReadDone(this.#takeHeld(lender.lendReadBuffer()), null);
    else if (this.#failure !== null) lender.lentReadDone(null, this.#failure);
    else if (this.#eof) lender.lentReadDone(null, null);
    else lender.lentReadDone(null, new Deno.errors.Busy("a read is already pending"));
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const status = this.endSocket();
    if (status !== 0) return Promise.reject(uvError(status, "shutdown"));
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = null;
    // Made only when something is pending: an Error captures a stack, which cost ~5 % of the CPU of a
    // `Connection: close` request when it was made for every close.
    if (this.#readPending || this.#writeResolve !== null) {
      const interrupted = new Deno.errors.Interrupted("the connection was closed");
      this.#settleWrite(0, interrupted);
      this.#settleRead(null, interrupted, true);
    }
    this.destroySocket();
  }

  /** Closed by `close()`: socket events are ignored from then on. */
  protected get closed(): boolean {
    return this.#closed;
  }

  /** Why a write cannot start (a rejection to return), or null. */
  protected writeRefusal(): Promise<never> | null {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#writeResolve !== null) {
      return Promise.reject(new Deno.errors.Busy("a write is already pending"));
    }
    return null;
  }

  /** A write that completes later, settled by `writeDone`. */
  protected writePending(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#writeResolve = resolve;
      this.#writeReject = reject;
    });
  }

  /** The pending write is done: `n` bytes taken, or `e`. */
  protected writeDone(n: number, e: Error | null): void {
    if (e !== null && this.#failure === null) this.#failure = e;
    this.#settleWrite(n, e);
  }

  /**
   * The socket read `chunk`. A chunk in `READ_SLAB`, which the runtime reuses for the next read of any
   * socket, is copied before this returns, into the reader's buffer or the held one.
   */
  protected delivered(chunk: Uint8Array): void {
    if (this.#closed) return;
    // A `readLent` read (an idle connection) takes its buffer now that there is something for it. Reading
    // goes on afterwards as after any read but a first: stopping and restarting for every request would
    // put every busy handle through one more runtime pass (at 5,000 connections the listener then waited
    // seconds for its turn to accept).
    const buf = this.#lender !== null ? this.#lender.lendReadBuffer() : this.#readBuf;
    if (buf !== null) {
      if (chunk.byteLength <= buf.byteLength) {
        buf.set(chunk);
        // A connection's first chunk, short (the kernel had no more): stop reading now, before the
        // runtime tries once more only to hear "would block": one syscall saved on every connection that
        // asks one question and closes. Only the first: restarting costs the runtime a pass over the
        // handle, and a keep-alive connection restarting after every request put so many handles in
        // each pass that, at 5,000 connections, the listener waited seconds for its turn to accept.
        if (this.#firstChunk) {
          this.#firstChunk = false;
          if (chunk.byteLength < READ_SLAB_BYTES) this.#stopReading();
        }
        this.#settleRead(chunk.byteLength, null);
        return;
      }
      buf.set(chunk.subarray(0, buf.byteLength));
      this.#hold(chunk, buf.byteLength);
      this.#settleRead(buf.byteLength, null);
      return;
    }
    this.#hold(chunk, 0);
  }

  /** The peer ended its side (FIN). */
  protected ended(): void {
    if (this.#closed) return;
    this.#eof = true;
    this.#stopReading();
    // Nothing is held while a read waits: a pending read gets the end of stream, a wait resolves.
    this.#settleRead(null, null);
  }

  /** The socket failed with `e` (already mapped): reads and writes from now on report it. */
  protected failed(e: Error): void {
    if (this.#closed) return;
    if (this.#failure === null) this.#failure = e;
    this.#stopReading();
    this.#settleWrite(0, e);
    this.#settleRead(null, e);
  }

  /** The socket was closed under us (after its end, or destroyed by the runtime) without a failure. */
  protected closedUnder(): void {
    if (this.#closed) return;
    if (!this.#readPending && this.#writeResolve === null) return;
    const e = this.#failure ?? new Deno.errors.ConnectionReset("the connection was closed by the peer");
    this.#settleWrite(0, e);
    this.#settleRead(null, this.#eof ? null : e);
  }

  /**
   * Keeps the unread part of `chunk` from `off` (after what is held already; a copy when it is in
   * `READ_SLAB`) and stops reading until it is taken.
   */
  #hold(chunk: Uint8Array, off: number): void {
    if (this.#held === null) {
      const borrowed = chunk.buffer === READ_SLAB.buffer;
      this.#held = borrowed ? chunk.slice(off) : chunk;
      this.#heldOff = borrowed ? 0 : off;
    } else {
      // A chunk delivered before reading stopped (it stops between the socket's reads): join them.
      const rest = this.#held.subarray(this.#heldOff);
      const joined = new Uint8Array(rest.byteLength + chunk.byteLength - off);
      joined.set(rest);
      joined.set(chunk.subarray(off), rest.byteLength);
      this.#held = joined;
      this.#heldOff = 0;
    }
    this.#stopReading();
  }

  #takeHeld(buf: Uint8Array): number {
    const held = this.#held!;
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

  #startReading(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.resumeSocket();
  }

  #stopReading(): void {
    if (!this.#reading) return;
    this.#reading = false;
    this.pauseSocket();
  }

  /**
   * Ends the pending read with `n` or `e`. A `readLent` read hears it at once (the caller's last step: the
   * connection may run, and call back into this transport, before this returns), or from a microtask when
   * `later` (inside `close()`).
   */
  #settleRead(n: number | null, e: Error | null, later = false): void {
    const lender = this.#lender;
    if (lender !== null) {
      this.#lender = null;
      if (later) queueMicrotask(() => lender.lentReadDone(n, e));
      else lender.lentReadDone(n, e);
      return;
    }
    const resolve = this.#resolve;
    const reject = this.#reject;
    if (resolve === null) return;
    this.#resolve = null;
    this.#reject = null;
    this.#readBuf = null;
    if (e !== null) reject!(e);
    else resolve(n);
  }

  #settleWrite(n: number, e: Error | null): void {
    const resolve = this.#writeResolve;
    const reject = this.#writeReject;
    if (resolve === null) return;
    this.#writeResolve = null;
    this.#writeReject = null;
    if (e !== null) reject!(e);
    else resolve(n);
  }
}

/** Completion of a write the kernel did not take at once (one object for every handle: at most one each). */
const WRITE_REQ = {
  oncomplete(status: number, handle: TcpHandle): void {
    handle[OWNER]?.writeCompleted(status);
  },
};
/** Completion of a half-close: nothing waits for it (reads go on; a failure shows in the next read). */
const SHUTDOWN_REQ = { oncomplete(): void {} };

/** Read callback shared by every handle (a closure per connection would cost memory per idle socket). */
function onHandleRead(this: TcpHandle, chunk: ArrayBuffer | undefined): void {
  const b = bindings!;
  this[OWNER]?.readCompleted(chunk, b.state[b.kReadBytesOrError]);
}

/**
 * One accepted plain-TCP socket as a `Transport`, driving the runtime's handle directly. Reading runs only
 * while a read waits, or until the first chunk nobody asked for arrives (kept, reading
 * stopped until it is taken).
 */
export class HandleTransport extends SocketTransport {
  readonly secure = false;
  #handle: TcpHandle;
  /** The bytes of the write in flight: the runtime reads them until it completes. */
  #writing: Uint8Array | null = null;

  constructor(handle: TcpHandle, remoteIp: string, remotePort: number) {
    super(remoteIp, remotePort);
    this.#handle = handle;
    handle[OWNER] = this;
    handle.onread = onHandleRead;
    handle.useUserBuffer?.(READ_SLAB);
  }

  write(bytes: Uint8Array): number | Promise<number> {
    const refused = this.writeRefusal();
    if (refused !== null) return refused;
    const n = bytes.byteLength;
    if (n === 0) return 0;
    const b = bindings!;
    const status = this.#handle.writeBuffer(WRITE_REQ, bytes);
    if (status !== 0) return Promise.reject(uvError(status, "write"));
    // Taken whole by the kernel at once: the common case, no completion follows and nothing to wait for.
    if (b.state[b.kLastWriteWasAsync] === 0) return n;
    this.#writing = bytes;
    return this.writePending();
  }

  setNoDelay(): void {
    if (!this.closed) this.#handle.setNoDelay(true);
  }

  /** For the runtime's read callback only (see `onHandleRead`): `status` bytes in `chunk`, or the end. */
  readCompleted(chunk: ArrayBuffer | undefined, status: number): void {
    if (status > 0) {
      this.delivered(chunk === undefined ? READ_SLAB.subarray(0, status) : new Uint8Array(chunk, 0, status));
    } else if (status === UV_EOF) this.ended();
    else if (status < 0) this.failed(uvError(status, "read"));
  }

  /** For the runtime's write completion only (see `WRITE_REQ`): a write the kernel did not take at once. */
  writeCompleted(status: number): void {
    const bytes = this.#writing;
    if (this.closed || bytes === null) return;
    this.#writing = null;
    if (status < 0) this.writeDone(0, uvError(status, "write"));
    else this.writeDone(bytes.byteLength, null);
  }

  protected resumeSocket(): void {
    const status = this.#handle.readStart();
    if (status !== 0) this.failed(uvError(status, "read"));
  }

  protected pauseSocket(): void {
    this.#handle.readStop();
  }

  protected endSocket(): number {
    return this.#handle.shutdown(SHUTDOWN_REQ);
  }

  protected destroySocket(): void {
    this.#writing = null;
    // The handle keeps `onread` and its owner: closing it stops its reads, a completion that still comes
    // finds this transport closed, and storing into the runtime's handle object per close measured ~1 % of
    // a `Connection: close` request.
    try {
      this.#handle.close();
    } catch {
      // already closed by the runtime
    }
  }
}

/** One accepted TLS socket (a `tls.TLSSocket` over a `net.Socket` on the accepted handle) as a `Transport`. */
export class NodeTransport extends SocketTransport {
  readonly secure = true;
  #socket: net.Socket;

  /** `socket` must be paused (made with `pauseOnCreate`). */
  constructor(socket: net.Socket, remoteIp: string, remotePort: number) {
    super(remoteIp, remotePort);
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.delivered(chunk));
    socket.on("end", () => this.ended());
    socket.on("error", (e: unknown) => this.failed(mapSocketError(e)));
    socket.on("close", () => this.closedUnder());
  }

  write(bytes: Uint8Array): Promise<number> {
    const refused = this.writeRefusal();
    if (refused !== null) return refused;
    const n = bytes.byteLength;
    if (n === 0) return Promise.resolve(0);
    const p = this.writePending();
    try {
      this.#socket.write(bytes, (e?: Error | null) => {
        if (e !== null && e !== undefined) this.writeDone(0, mapSocketError(e));
        else this.writeDone(n, null);
      });
    } catch (e) {
      this.writeDone(0, mapSocketError(e));
    }
    return p;
  }

  setNoDelay(): void {
    if (this.closed) return;
    try {
      this.#socket.setNoDelay(true);
    } catch {
      // the socket is already gone; the next read or write says so
    }
  }

  protected resumeSocket(): void {
    this.#socket.resume();
  }

  protected pauseSocket(): void {
    this.#socket.pause();
  }

  protected endSocket(): number {
    // Queued behind the writes already made, as shutdown(2) after them would be.
    this.#socket.end();
    return 0;
  }

  protected destroySocket(): void {
    try {
      this.#socket.destroy();
    } catch {
      // already destroyed
    }
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
 * Re-arms accepting on a listening handle: `listen` on a handle that already listens only re-registers it
 * and has the runtime poll it once more, which accepts whatever waits in the kernel's queue.
 */
export function rearmAccept(server: { listen(backlog: number): number }): void {
  try {
    server.listen(LISTEN_BACKLOG);
  } catch {
    // closing meanwhile
  }
}

/** A bind or listen failure as `Deno.listen` reports it, so start-up errors name the setting and fix alike. */
function listenError(status: number, host: string, port: number): Error {
  const e = uvError(status, `listen ${host}:${port}`);
  switch ((e as { code?: string }).code) {
    case "EADDRINUSE":
      return new Deno.errors.AddrInUse(e.message);
    case "EACCES":
      return new Deno.errors.PermissionDenied(e.message);
    case "EADDRNOTAVAIL":
      return new Deno.errors.AddrNotAvailable(e.message);
  }
  return e;
}

/**
 * Binds `options` and hands every accepted socket, unread, to `onAccept`. `onError` hears accept failures
 * (out of descriptors and the like; the listener keeps accepting). Rejects when binding fails
 * (`Deno.errors.AddrInUse` for a port in use).
 */
export function listenTransport(
  options: TransportListenOptions,
  onAccept: AcceptHandler,
  onError: (e: Error) => void,
): Promise<TransportListener> {
  let b: SocketBindings;
  let secureContext: tls.SecureContext | null = null;
  try {
    b = socketBindings();
    secureContext = options.tls === null ? null : secureContextOf(options.tls.certPem, options.tls.keyPem);
  } catch (e) {
    return Promise.reject(e);
  }
  let alpn = options.tls?.alpnProtocols ?? [];
  const { host, port } = options;
  const server = new b.TCP(b.serverType);
  const flags = options.reusePort ? b.reusePortFlag : 0;
  let status: number;
  try {
    status = host.includes(":") ? server.bind6(host, port, flags) : server.bindWithFlags(host, port, flags);
    if (status === 0) status = server.listen(LISTEN_BACKLOG);
  } catch (e) {
    // The runtime's permission check throws (no --allow-net for this address).
    server.close();
    return Promise.reject(e);
  }
  if (status !== 0) {
    server.close();
    return Promise.reject(listenError(status, host, port));
  }
  const bound: SockAddr = {};
  server.getsockname(bound);
  const peer: SockAddr = {};
  server.onconnection = (status: number) => {
    if (status !== 0) {
      onError(uvError(status, "accept"));
      return;
    }
    const client = new b.TCP(b.socketType);
    const accepted = server.accept(client);
    peer.address = undefined;
    peer.port = undefined;
    if (accepted !== 0 || client.getpeername(peer) !== 0 || peer.address === undefined) {
      // Gone (reset) before we saw it, or the accept itself failed: nothing to serve.
      client.close();
      if (accepted !== 0) onError(uvError(accepted, "accept"));
      return;
    }
    const ip = peer.address;
    const remotePort = peer.port ?? 0;
    if (secureContext === null) {
      onAccept(new HandleTransport(client, ip, remotePort));
      return;
    }
    // The handshake runs as the connection's first reads (under its header deadline), never here.
    const socket = new net.Socket({
      handle: client,
      allowHalfOpen: true,
      pauseOnCreate: true,
      readable: true,
      writable: true,
    } as net.SocketConstructorOpts);
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: alpn });
    onAccept(new NodeTransport(secure, ip, remotePort));
  };
  let closed = false;
  const rearm = setInterval(() => rearmAccept(server), ACCEPT_REARM_MS);
  Deno.unrefTimer(rearm);
  return Promise.resolve({
    addr: { transport: "tcp", hostname: bound.address ?? host, port: bound.port ?? port },
    setTls: (next) => {
      if (secureContext === null) throw new Error("this listener does not serve TLS");
      // Each accepted socket reads these when it is wrapped: the swap reaches new handshakes only.
      secureContext = secureContextOf(next.certPem, next.keyPem);
      alpn = next.alpnProtocols;
    },
    close: () => {
      // The listening socket closes now; accepted sockets stay open (shutdown is the server's business).
      if (!closed) {
        closed = true;
        clearInterval(rearm);
        server.onconnection = null;
        server.close();
      }
      return Promise.resolve();
    },
  });
}
