/**
 * The transport behind `transport.ts`, built on the runtime's libuv-style socket handles: the `tcp_wrap`
 * binding that `node:net` itself is made of (reached through `process.binding`, as in Node), driven
 * directly for plain TCP, and `node:tls` over a `net.Socket` on the same handle for TLS. An accepted
 * handle is read through a readiness callback (read until the kernel has nothing more), which serves every
 * ready connection in turn at any concurrency, where `Deno.Conn.read` lets some sockets wait for seconds
 * once more than ~128 are ready at once (measured, and explained, in docs/scaling.md). Driving the handle
 * instead of a `net.Socket` skips the stream machinery a socket builds per connection (two stream states,
 * event emitters, listeners): that machinery cost about a third of the CPU of a `Connection: close`
 * request and half the memory of an idle connection (docs/scaling.md).
 *
 * Owns: binding (with SO_REUSEPORT when asked), accepting (every connection handed over unread, so the
 * guard decides before any byte is read, and a TLS handshake starts only for an admitted socket), turning
 * the handle's read callbacks into reads into the caller's buffer with backpressure (reading stops
 * whenever a chunk arrives that no read is waiting for, so at most one chunk per connection is ever held),
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

/** The size of the runtime's read slabs: a chunk this long may have more behind it in the kernel. */
const READ_SLAB_BYTES = 65536;

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
    return e instanceof Error ? e.message : String(e);
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
        `(process.binding("tcp_wrap")): run Vento with Deno 2.9.6 (${e instanceof Error ? e.message : e})`,
    );
  }
}

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
    case "ECANCELED":
      return new Deno.errors.Interrupted(e.message);
    case "EBADF":
      return new Deno.errors.BadResource(e.message);
  }
  // A failed TLS handshake or a corrupt record: the peer's failure, as Deno.Conn reports it.
  if (typeof code === "string" && (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS"))) {
    return new Deno.errors.InvalidData(e.message);
  }
  return e;
}

/** A libuv-style status (a negative errno) as an `Error` with the errno's name as its `code`. */
export function uvError(status: number, action: string): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  return Object.assign(new Error(`${action}: ${code}`), { code, errno: status });
}

/**
 * The unread rest of the one chunk a transport may hold (bytes that arrived before a read asked for
 * them), shared by both transports: reads take from it; a chunk arriving before it is taken is joined.
 */
abstract class ChunkHolder {
  #held: Uint8Array | null = null;
  #heldOff = 0;

  /** Whether bytes are held for the next read. */
  protected get holding(): boolean {
    return this.#held !== null;
  }

  /** Keeps `chunk` from `off` on, after whatever is held already. */
  protected keep(chunk: Uint8Array, off: number): void {
    if (this.#held === null) {
      this.#held = chunk;
      this.#heldOff = off;
      return;
    }
    // A chunk delivered before reading stopped (it stops between the runtime's reads): join them.
    const rest = this.#held.subarray(this.#heldOff);
    const joined = new Uint8Array(rest.byteLength + chunk.byteLength - off);
    joined.set(rest);
    joined.set(chunk.subarray(off), rest.byteLength);
    this.#held = joined;
    this.#heldOff = 0;
  }

  /** Copies held bytes into `buf` (only while `holding`): the count. */
  protected takeHeld(buf: Uint8Array): number {
    const held = this.#held!;
    const off = this.#heldOff;
    const n = Math.min(held.byteLength - off, buf.byteLength);
    buf.set(n === held.byteLength && off === 0 ? held : held.subarray(off, off + n));
    if (off + n === held.byteLength) this.dropHeld();
    else this.#heldOff = off + n;
    return n;
  }

  /** Forgets what is held (the transport closed). */
  protected dropHeld(): void {
    this.#held = null;
    this.#heldOff = 0;
  }
}

/** Completion of a write the kernel did not take at once (one object for every handle: at most one each). */
const WRITE_REQ = {
  oncomplete(status: number, handle: TcpHandle): void {
    handle[OWNER]?.writeDone(status);
  },
};
/** Completion of a half-close: nothing waits for it (reads go on; a failure shows in the next read). */
const SHUTDOWN_REQ = { oncomplete(): void {} };

/** Read callback shared by every handle (a closure per connection would cost memory per idle socket). */
function onHandleRead(this: TcpHandle, chunk: ArrayBuffer | undefined): void {
  const b = bindings!;
  this[OWNER]?.readDone(chunk, b.state[b.kReadBytesOrError]);
}

/**
 * One accepted plain-TCP socket as a `Transport`, driving the runtime's handle directly. Reading runs only
 * while a read or `readable()` waits, or until the first chunk nobody asked for arrives (kept, reading
 * stopped until it is taken).
 */
export class HandleTransport extends ChunkHolder implements Transport {
  readonly remoteIp: string;
  readonly remotePort: number;
  #handle: TcpHandle;
  #reading = false;
  /** No chunk has been delivered yet (see `#onBytes`). */
  #firstChunk = true;
  #eof = false;
  #failure: Error | null = null;
  #closed = false;
  /** The pending read's buffer, or null while `readable()` waits (then `#resolve` is the wait's). */
  #readBuf: Uint8Array | null = null;
  // deno-lint-ignore no-explicit-any
  #resolve: ((v: any) => void) | null = null;
  #reject: ((e: Error) => void) | null = null;
  #writeResolve: ((n: number) => void) | null = null;
  #writeReject: ((e: Error) => void) | null = null;
  /** The bytes of the write in flight: the runtime reads them until it completes. */
  #writing: Uint8Array | null = null;

  constructor(handle: TcpHandle, remoteIp: string, remotePort: number) {
    super();
    this.#handle = handle;
    this.remoteIp = remoteIp;
    this.remotePort = remotePort;
    handle[OWNER] = this;
    handle.onread = onHandleRead;
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.holding) return Promise.resolve(this.takeHeld(buf));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#eof) return Promise.resolve(null);
    if (this.#resolve !== null) return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    const p = new Promise<number | null>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#readBuf = buf;
    this.#startReading();
    return p;
  }

  readable(): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.holding || this.#eof || this.#failure !== null) return Promise.resolve();
    if (this.#resolve !== null) return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    const p = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#startReading();
    return p;
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#writeResolve !== null) {
      return Promise.reject(new Deno.errors.Busy("a write is already pending"));
    }
    const n = bytes.byteLength;
    if (n === 0) return Promise.resolve(0);
    const b = bindings!;
    const status = this.#handle.writeBuffer(WRITE_REQ, bytes);
    if (status !== 0) return Promise.reject(mapSocketError(uvError(status, "write")));
    // Taken whole by the kernel at once: the common case, no completion follows.
    if (b.state[b.kLastWriteWasAsync] === 0) return Promise.resolve(n);
    this.#writing = bytes;
    return new Promise<number>((resolve, reject) => {
      this.#writeResolve = resolve;
      this.#writeReject = reject;
    });
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    // Queued behind the writes already made, as shutdown(2) after them.
    const status = this.#handle.shutdown(SHUTDOWN_REQ);
    if (status !== 0) return Promise.reject(mapSocketError(uvError(status, "shutdown")));
    return Promise.resolve();
  }

  setNoDelay(): void {
    if (!this.#closed) this.#handle.setNoDelay(true);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.dropHeld();
    this.#writing = null;
    // Made only when something is pending: an Error captures a stack, which cost ~5 % of the CPU of a
    // `Connection: close` request when it was made for every close.
    if (this.#resolve !== null || this.#writeResolve !== null) {
      const interrupted = new Deno.errors.Interrupted("the connection was closed");
      this.#settleRead(null, interrupted);
      this.#settleWrite(0, interrupted);
    }
    this.#handle.onread = null;
    this.#handle[OWNER] = undefined;
    try {
      this.#handle.close();
    } catch {
      // already closed by the runtime
    }
  }

  /** For the runtime's read callback only (see `onHandleRead`): `status` bytes in `chunk`, or end of stream or an error. */
  readDone(chunk: ArrayBuffer | undefined, status: number): void {
    if (this.#closed) return;
    if (status > 0 && chunk !== undefined) {
      this.#onBytes(new Uint8Array(chunk, 0, status));
      return;
    }
    if (status === 0) return;
    this.#stopReading();
    if (status === UV_EOF) {
      this.#eof = true;
      // Nothing is held while a read waits: a pending read gets the end of stream, a wait resolves.
      this.#settleRead(null, null);
      return;
    }
    const e = mapSocketError(uvError(status, "read"));
    if (this.#failure === null) this.#failure = e;
    // A pending read reports the failure; a `readable()` wait resolves and its read then does.
    if (this.#readBuf !== null) this.#settleRead(null, e);
    else this.#settleRead(null, null);
    this.#settleWrite(0, e);
  }

  /** For the runtime's write completion only (see `WRITE_REQ`): a write the kernel did not take at once. */
  writeDone(status: number): void {
    const bytes = this.#writing;
    if (this.#closed || bytes === null) return;
    this.#writing = null;
    if (status < 0) {
      const e = mapSocketError(uvError(status, "write"));
      if (this.#failure === null) this.#failure = e;
      this.#settleWrite(0, e);
    } else {
      this.#settleWrite(bytes.byteLength, null);
    }
  }

  #onBytes(chunk: Uint8Array): void {
    const buf = this.#readBuf;
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
    if (this.#resolve !== null && !this.holding) {
      // A `readable()` wait (an idle connection): its read follows at once, so reading goes on: stopping
      // and restarting for every request would put every busy handle through one more runtime pass
      // (at 5,000 connections the listener then waited seconds for its turn). If more arrives before
      // that read, it is joined and reading stops.
      this.keep(chunk, 0);
      this.#settleRead(null, null);
      return;
    }
    this.#hold(chunk, 0);
  }

  /** Keeps the unread part of `chunk` and stops reading until it is taken. */
  #hold(chunk: Uint8Array, off: number): void {
    this.keep(chunk, off);
    this.#stopReading();
  }

  #startReading(): void {
    if (this.#reading) return;
    this.#reading = true;
    const status = this.#handle.readStart();
    if (status !== 0) {
      this.#reading = false;
      this.readDone(undefined, status);
    }
  }

  #stopReading(): void {
    if (!this.#reading) return;
    this.#reading = false;
    this.#handle.readStop();
  }

  #settleRead(n: number | null, e: Error | null): void {
    const resolve = this.#resolve;
    const reject = this.#reject;
    if (resolve === null) return;
    this.#resolve = null;
    this.#reject = null;
    const wasRead = this.#readBuf !== null;
    this.#readBuf = null;
    if (e !== null) reject!(e);
    else resolve(wasRead ? n : undefined);
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

/** Node's `Buffer` is a `Uint8Array`; the socket hands us those. */
type Chunk = Uint8Array;

/** One accepted TLS socket (a `tls.TLSSocket` over a `net.Socket` on the accepted handle) as a `Transport`. */
export class NodeTransport extends ChunkHolder implements Transport {
  readonly remoteIp: string;
  readonly remotePort: number;
  #socket: net.Socket;
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

  /** `socket` must be paused (made with `pauseOnCreate`). */
  constructor(socket: net.Socket, remoteIp: string, remotePort: number) {
    super();
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
    if (this.holding) return Promise.resolve(this.takeHeld(buf));
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
    if (this.holding || this.#eof || this.#failure !== null) return Promise.resolve();
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
    this.dropHeld();
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
    this.keep(chunk, off);
    if (pause && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #onEnd(): void {
    this.#eof = true;
    if (!this.holding) this.#settleRead(null, null);
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
      onError(mapSocketError(uvError(status, "accept")));
      return;
    }
    const client = new b.TCP(b.socketType);
    const accepted = server.accept(client);
    peer.address = undefined;
    peer.port = undefined;
    if (accepted !== 0 || client.getpeername(peer) !== 0 || peer.address === undefined) {
      // Gone (reset) before we saw it, or the accept itself failed: nothing to serve.
      client.close();
      if (accepted !== 0) onError(mapSocketError(uvError(accepted, "accept")));
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
