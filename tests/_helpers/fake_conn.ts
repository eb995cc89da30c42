/**
 * A scripted socket and a connection context for unit tests of `Connection`: the test pushes the peer's
 * bytes, waits until the connection is blocked on a read with nothing left to parse (`readBlocked`), and
 * inspects what was written by then. No network, no timers: deadlines are driven by calling
 * `expireIfDue` with a chosen time.
 */

import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import {
  type ConnContext,
  Connection,
  LARGE_READ_BUFFER_BYTES,
  OUT_BUFFER_BYTES,
  READ_BUFFER_BYTES,
} from "../../src/net/connection.ts";
import { Stats } from "../../src/stats/stats.ts";
import { DateLine } from "../../src/http/date.ts";
import { bytesReply, WholeReplies } from "../../src/http/response.ts";
import type { Handler } from "../../src/http/handler.ts";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import { latin1 } from "./raw_client.ts";
import type { ReadBufferLender, Transport } from "../../src/net/transport.ts";

/**
 * A socket whose peer is the test: the `Transport` a connection uses. Writes take at most `maxWrite` bytes
 * each (the rest is the caller's to write again, as with a kernel buffer that is nearly full).
 */
export class FakeConn implements Transport {
  readonly remoteIp = "192.0.2.7";
  readonly remotePort = 40000;
  /** Plain TCP (tests of TLS run the real server). */
  readonly secure = false;
  /** Everything the connection wrote, in order. */
  readonly written: Uint8Array[] = [];
  /** The byte count each write took. */
  readonly writeSizes: number[] = [];
  closed = false;
  writeClosed = false;
  /** `setNoDelay` was called. */
  noDelay = false;
  #maxWrite: number;
  /** While true, writes stay pending (a peer that stopped reading) until `releaseWrites` or close. */
  holdWrites = false;
  #heldWrites: { bytes: Uint8Array; resolve: (n: number) => void; reject: (e: Error) => void }[] = [];
  #inbox: Uint8Array[] = [];
  #eof = false;
  /** The pending read: into `buf`, or (`readLent`) into the buffer `lender` gives when bytes are there. */
  #pending: {
    buf: Uint8Array | null;
    lender: ReadBufferLender | null;
    resolve: (n: number | null) => void;
    reject: (e: Error) => void;
  } | null = null;
  #blockedWaiters: (() => void)[] = [];

  constructor(opts: { maxWrite?: number } = {}) {
    this.#maxWrite = opts.maxWrite ?? Infinity;
  }

  /** A read into a buffer of the connection's is pending. */
  get readPending(): boolean {
    return this.#pending !== null && this.#pending.buf !== null;
  }

  /** An idle connection's `readLent` waits (no buffer taken yet). */
  get lentReadPending(): boolean {
    return this.#pending !== null && this.#pending.lender !== null;
  }

  /** The peer sends `data` (a latin1 string or bytes). */
  push(data: string | Uint8Array): void {
    this.#inbox.push(typeof data === "string" ? latin1(data) : data);
    this.#deliver();
  }

  /** The peer half-closes: reads return end of stream once the inbox is empty. */
  end(): void {
    this.#eof = true;
    this.#deliver();
  }

  /** Resolves once a read is pending with nothing left to deliver (the connection waits for the peer). */
  readBlocked(): Promise<void> {
    if (this.#pending !== null && this.#inbox.length === 0 && !this.#eof) return Promise.resolve();
    return new Promise((r) => this.#blockedWaiters.push(r));
  }

  /** All written bytes as one latin1 string. */
  text(): string {
    let s = "";
    for (const w of this.written) for (const b of w) s += String.fromCharCode(b);
    return s;
  }

  readLent(lender: ReadBufferLender): void {
    if (this.closed) {
      queueMicrotask(() => lender.lentReadDone(null, new Deno.errors.BadResource("closed")));
      return;
    }
    this.#pending = {
      buf: null,
      lender,
      resolve: (n) => lender.lentReadDone(n, null),
      reject: (e) => lender.lentReadDone(null, e),
    };
    // As the real transport: what is here already is reported from a microtask, never from inside.
    queueMicrotask(() => this.#deliver());
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      this.#pending = { buf, lender: null, resolve, reject };
      this.#deliver();
    });
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.closed || this.writeClosed) return Promise.reject(new Deno.errors.BrokenPipe("closed"));
    if (this.holdWrites) {
      return new Promise((resolve, reject) =>
        this.#heldWrites.push({ bytes: bytes.slice(), resolve, reject })
      );
    }
    const n = Math.min(bytes.byteLength, this.#maxWrite);
    this.written.push(bytes.slice(0, n));
    this.writeSizes.push(n);
    return Promise.resolve(n);
  }

  /** Writes now pending (held). */
  get heldWrites(): number {
    return this.#heldWrites.length;
  }

  /** The peer reads again: held writes complete in order and later ones go through. */
  releaseWrites(): void {
    this.holdWrites = false;
    for (const w of this.#heldWrites.splice(0)) {
      this.written.push(w.bytes);
      w.resolve(w.bytes.byteLength);
    }
  }

  closeWrite(): Promise<void> {
    this.writeClosed = true;
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
    const p = this.#pending;
    this.#pending = null;
    const interrupted = new Deno.errors.Interrupted("operation canceled");
    // A lent read hears of the close from a microtask (as from the real transport), a read at once.
    if (p?.lender) queueMicrotask(() => p.reject(interrupted));
    else p?.reject(interrupted);
    for (const w of this.#heldWrites.splice(0)) w.reject(new Deno.errors.Interrupted("operation canceled"));
    this.#wakeBlocked();
  }

  setNoDelay(): void {
    this.noDelay = true;
  }

  #deliver(): void {
    const p = this.#pending;
    if (p === null) return;
    if (this.#inbox.length > 0) {
      const head = this.#inbox[0];
      const buf = p.buf ?? p.lender!.lendReadBuffer();
      const n = Math.min(head.byteLength, buf.byteLength);
      buf.set(head.subarray(0, n));
      if (n === head.byteLength) this.#inbox.shift();
      else this.#inbox[0] = head.subarray(n);
      this.#pending = null;
      p.resolve(n);
    } else if (this.#eof) {
      this.#pending = null;
      p.resolve(null);
    } else {
      this.#wakeBlocked();
    }
  }

  #wakeBlocked(): void {
    const waiters = this.#blockedWaiters;
    this.#blockedWaiters = [];
    for (const w of waiters) w();
  }
}

/** Routes of the test handler: `POST /echo` reads a body of up to 100 bytes; everything else takes none. */
export const TEST_HANDLER: Handler = {
  bodyLimitBytes: (head) => head.method === "POST" && head.path === "/echo" ? 100 : 0,
  handle: (ex) =>
    ex.head.path === "/echo"
      ? bytesReply(200, "application/octet-stream", ex.body.slice())
      : bytesReply(200, "text/plain", latin1(`page ${ex.head.path}\n`)),
};

export interface FakeServing {
  conn: FakeConn;
  connection: Connection;
  ctx: { -readonly [K in keyof ConnContext]: ConnContext[K] };
  /** Resolves when `serve()` ended. */
  done: Promise<void>;
  errors: string[];
}

/** Starts serving one fake connection with DEFAULT_CONFIG plus `options`, at fake time 0. */
export function serveFake(
  options: Partial<typeof DEFAULT_CONFIG> = {},
  handler: Handler = TEST_HANDLER,
): FakeServing {
  const conn = new FakeConn();
  const errors: string[] = [];
  const clock = new FakeClock(0);
  const ctx: FakeServing["ctx"] = {
    options: { ...DEFAULT_CONFIG, ...options },
    clock,
    stats: new Stats(),
    handler,
    gate: null,
    accessLog: null,
    dateLine: new DateLine(),
    wholeReplies: new WholeReplies(),
    nowMs: 0,
    wallMs: clock.wallMs(),
    shuttingDown: false,
    readPool: new BufferPool(READ_BUFFER_BYTES, 4),
    parserPool: [],
    largeReadPool: new BufferPool(LARGE_READ_BUFFER_BYTES, 4),
    outPool: new BufferPool(OUT_BUFFER_BYTES, 4),
    logError: (m) => errors.push(m),
  };
  const connection = new Connection(conn, 1, "192.0.2.1", 40000, "192.0.2.1", 0, ctx);
  return { conn, connection, ctx, done: (connection.serve(), connection.ended), errors };
}

/**
 * The responses in `text`, in order, split at their status lines (the test handler's bodies never
 * contain `HTTP/1.1 `, so bodies need not be framed, which a HEAD answer's Content-Length would confuse).
 */
export function responses(text: string): string[] {
  return text.split(/(?=HTTP\/1\.1 \d{3} )/).filter((r) => r !== "");
}

/** Status codes of the responses in `text`, in order. */
export function statuses(text: string): number[] {
  return responses(text).map((r) => Number(r.slice(9, 12)));
}

/** The `Connection` header of each response in `text`, in order ("" when absent). */
export function connectionHeaders(text: string): string[] {
  return responses(text).map((r) =>
    /\r\nConnection: ([^\r]*)\r\n/.exec(r.slice(0, r.indexOf("\r\n\r\n") + 2))?.[1] ?? ""
  );
}
