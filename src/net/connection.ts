/**
 * One accepted connection, from accept to close: the only owner of its socket, and the read loop and
 * dispatch of its requests. Reads into one small buffer, feeds the incremental parser, lends that buffer
 * to the body readers (`body_reader.ts`: whole, discarded or streamed bodies), asks the handler, and hands
 * answers to its output buffer (`output.ts`), which writes every answer one read produced in a single
 * `write`: socket crossings dominate the cost.
 * Deadlines and minimum rates live in a small pure state machine (`deadlines.ts`) checked by the server's
 * sweeper through `expireIfDue`, so no timer is created per request; closing the socket is how a
 * deadline interrupts a pending read or write.
 *
 * States, as Go's `net/http` names them (`ConnState`), and what moves between them:
 * - new: accepted, no byte read yet (header deadline from accept). → active on its first byte; → closed
 *   at the header deadline or on shutdown (a connection that never spoke is closed as idle).
 * - active: reading a head or body, in the handler, or writing the answer. → idle when an answer is
 *   written and no byte of the next request is here; → closing after an answer that ends the connection
 *   (error, `Connection: close`, the per-connection request cap, shutdown); → closed when the peer goes,
 *   or at a deadline (header/body deadlines answer 408 first; send closes).
 * - idle: keep-alive between requests (idle deadline, shortened while the server is busy). → active on
 *   the next request's first byte (its header deadline starts then); → closed at the idle deadline or
 *   on shutdown.
 * - closing: our side is done; unread input is drained for at most LINGER_MS so a reset cannot destroy
 *   the answer before the peer reads it. → closed.
 * - closed: the socket is closed and the guard's ticket released. Final.
 *
 * Must never throw out of `serve()`: a peer can end its own connection, never the process.
 */

import type { Clock } from "../core/clock.ts";
import type { Config } from "../config/config.ts";
import type { AccessEntry } from "../stats/access_entry.ts";
import type { ConnInfo, ConnState } from "./conn_info.ts";
import type { Stats } from "../stats/stats.ts";
import { BodyError, type BodySource, type CloseWatch, type Exchange, type Handler } from "../http/handler.ts";
import { hasBody, headerValue, type RequestHead } from "../http/head.ts";
import { ERROR_STATUS, type ErrorCode } from "../http/errors.ts";
import {
  type BodySink,
  type Reply,
  textReply,
  WHOLE_REPLY_MAX_BODY_BYTES,
  type WholeReplies,
} from "../http/response.ts";
import { RequestParser } from "../http/parser.ts";
import type { DateLine } from "../http/date.ts";
import { forwardedForOf } from "../guard/client_key.ts";
import { Deadlines } from "./deadlines.ts";
import { type BodyInput, discardBody, readWholeBody, StreamedBody } from "./body_reader.ts";
import { OutputBuffer } from "./output.ts";
import type { BufferPool } from "../core/buffer_pool.ts";
import { errorMessage } from "../core/errors.ts";
import type { ReadBufferLender, Transport } from "./transport.ts";

/**
 * Bytes of the buffer every connection keeps a read pending on. Small on purpose: an idle keep-alive
 * connection holds only this (plus Deno's own socket state), and a typical request head fits.
 */
export const READ_BUFFER_BYTES = 1024;
/**
 * A read that fills the small buffer means more is waiting (a large head, a body, deep pipelining): the
 * connection then reads into a pooled buffer of this size until it goes idle again.
 */
export const LARGE_READ_BUFFER_BYTES = 16 * 1024;
/** Size of the pooled buffers responses are coalesced into (borrowed only while a batch is written). */
export const OUT_BUFFER_BYTES = 16 * 1024;
/** Coalesced output above this is written before more pipelined requests are parsed (bounds memory). */
export const OUT_FLUSH_BYTES = 256 * 1024;
/** In-memory bodies up to this size are copied next to their head (one write); larger go out on their own. */
export const INLINE_BODY_BYTES = 64 * 1024;
/** After an error answer, how long we keep reading (and discarding) so a reset can't eat the answer. */
export const LINGER_MS = 1000;
/** …and how many bytes we are willing to discard meanwhile. */
export const LINGER_MAX_BYTES = 256 * 1024;
/**
 * Idle parsers kept between the server's once-a-second trims (`trimPools`), and after each. Idle keep-alive
 * connections lend theirs here between requests; room for thousands means a burst of clients waking at
 * once finds parsers instead of allocating them (at 5,000 connections a 256 cap churned parsers through
 * the GC), and the trim gives memory back once a burst is over.
 */
export const PARSER_POOL_MAX = 4096;
export const PARSER_POOL_KEPT = 256;

/** The settings a connection reads (all from `Config`, where each is documented). */
export type ConnectionOptions = Pick<
  Config,
  | "maxRequestLineBytes"
  | "maxHeaderBytes"
  | "maxHeaderCount"
  | "maxRequestsPerConn"
  | "unreadBodyMaxBytes"
  | "headerTimeoutMs"
  | "idleTimeoutMs"
  | "bodyIdleTimeoutMs"
  | "bodyMinRateGraceMs"
  | "bodyMinRateBytesPerSec"
  | "sendTimeoutMs"
  | "sendMinRateGraceMs"
  | "sendMinRateBytesPerSec"
>;

/** Per-request admission and connection release (the guard implements it). */
export interface RequestGate {
  /**
   * 0 to serve, else the Retry-After seconds of a 429 (the connection then closes). A promise only when
   * a shared guard store (GUARD_STORE=redis) decides; the in-memory guard always answers synchronously.
   */
  admitRequest(ticket: number, forwardedFor: string | undefined): number | Promise<number>;
  release(ticket: number): void;
  /** The idle keep-alive timeout to apply now (shrinks when the server is busy). */
  idleTimeoutMs(): number;
}

/** One line per request for the access log (see `src/app/access_log.ts`). */
export interface AccessLogSink {
  log(entry: AccessEntry): void;
}

/** What every connection shares with its server. */
export interface ConnContext {
  readonly options: ConnectionOptions;
  readonly clock: Clock;
  readonly stats: Stats;
  readonly handler: Handler;
  readonly gate: RequestGate | null;
  readonly accessLog: AccessLogSink | null;
  readonly dateLine: DateLine;
  /** Whole serialised forms of reusable replies (server-wide). */
  readonly wholeReplies: WholeReplies;
  /**
   * A coarse monotonic "now" for setting deadlines, refreshed by the server's sweeper and never behind the
   * real time (so deadlines never fire early, at most one sweep late). Reading `performance.now()` is an op
   * crossing; per request that cost more than parsing.
   */
  readonly nowMs: number;
  /**
   * Wall-clock milliseconds as of the last sweep (for the `Date` header, which has second precision;
   * it may lag by one sweep period).
   */
  readonly wallMs: number;
  /** True once shutdown began: answers carry `Connection: close`. */
  readonly shuttingDown: boolean;
  /** Read buffers (READ_BUFFER_BYTES) of closed connections, reused by new ones. */
  readonly readPool: BufferPool;
  /** Parsers of closed connections, reused by new ones (churn under `Connection: close` made GC work). */
  readonly parserPool: RequestParser[];
  /** Large read buffers (LARGE_READ_BUFFER_BYTES), lent to busy connections. */
  readonly largeReadPool: BufferPool;
  /** Output buffers (OUT_BUFFER_BYTES), borrowed per written batch. */
  readonly outPool: BufferPool;
  /** Logs one line naming the action (`conn 42 203.0.113.9: reading request head: …`). */
  logError(message: string): void;
  /** Told once when a connection has ended and released everything (the server forgets it then). */
  connectionEnded?(c: Connection): void;
}

const encoder = new TextEncoder();
const CRLF = encoder.encode("\r\n");
const CLOSE_LINE = encoder.encode("Connection: close\r\n");
const KEEP_ALIVE_LINE = encoder.encode("Connection: keep-alive\r\n");
const CONTINUE_BYTES = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);

/** Peer-gone errors: normal events, counted, never logged with a stack. */
function isPeerGone(e: unknown): boolean {
  return e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.Interrupted || e instanceof Deno.errors.UnexpectedEof ||
    e instanceof Deno.errors.BadResource || e instanceof Deno.errors.NotConnected ||
    e instanceof Deno.errors.ConnectionAborted ||
    // A failed TLS handshake surfaces as InvalidData on the first read: the peer's failure, not ours.
    e instanceof Deno.errors.InvalidData;
}

/** Escapes a request line for logs and the admin view (no control bytes, no quotes). */
export function escapeForLog(s: string, max = 2000): string {
  let out = "";
  const n = Math.min(s.length, max);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) {
      out += "\\x" + c.toString(16).padStart(2, "0");
    } else out += s[i];
  }
  return n < s.length ? out + "..." : out;
}

/**
 * The parser of a connection that holds none (idle, or closed): never fed, it only answers the questions
 * asked of any connection's parser (`bytesSeen` 0: no request begun; not HEAD).
 */
const IDLE_PARSER = new RequestParser({ maxRequestLineBytes: 1, maxHeaderBytes: 1, maxHeaderCount: 1 });

/** A parser from the shared pool (set to the current limits), or a new one. */
function takeParser(ctx: ConnContext): RequestParser {
  const pooled = ctx.parserPool.pop();
  if (pooled === undefined) return new RequestParser(ctx.options);
  pooled.configure(ctx.options);
  return pooled;
}

/**
 * What the handler is asked about one request. A class, not an object literal: V8 may make every object
 * of a literal in the old generation once a burst of them outlived young collections (handlers awaiting a
 * cold cache or a database), and then each request's exchange, and the head it holds, would be old
 * garbage (see the note on per-request objects in `src/http/parser.ts`).
 */
class ConnExchange implements Exchange {
  constructor(
    readonly head: RequestHead,
    readonly body: Uint8Array,
    readonly bodySource: BodySource | null,
    readonly remote: string,
    readonly remotePort: number,
    readonly secure: boolean,
    readonly connId: number,
    readonly closeWatch: CloseWatch,
  ) {}
}

/** Thrown inside the exchange when the socket closed under us (deadline, kick, shutdown). */
class ClosedError extends Error {}

/** `Connection.#phase`: the read loop runs (or has not started). */
const PHASE_RUNNING = 0;
/** The loop is parked between requests: the transport calls `lentReadDone` when the peer sends. */
const PHASE_PARKED = 1;
/** The connection has ended and given back what it held. */
const PHASE_ENDED = 2;

/** Who waits for `Connection.ended` (tests; the server hears of the end through `connectionEnded`). */
const endWaiters = new WeakMap<Connection, { promise: Promise<void>; resolve: () => void }>();

export class Connection implements ReadBufferLender {
  readonly id: number;
  readonly remote: string;
  readonly remotePort: number;
  readonly key: string;
  /** Where the server keeps this connection (its `ConnSlots` slot; -1 outside a server). */
  slot = -1;

  #conn: Transport;
  #ctx: ConnContext;
  #ticket: number;
  #parser: RequestParser;
  /** The buffer reads go into: `#small`, or a pooled large one while the connection is busy. */
  #buf: Uint8Array;
  #small: Uint8Array;
  #growNext = false;
  #start = 0;
  #end = 0;
  #state: ConnState = "new";
  #closed = false;
  #acceptedAtMs: number;
  /** The running deadline and minimum-rate window (see deadlines.ts). */
  readonly #deadlines = new Deadlines();
  #requests = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #head: RequestHead | null = null;
  /** Answers queued since the last write (coalesced into one; see output.ts). */
  readonly #output: OutputBuffer;
  /** Where a streamed body goes; made on the first streamed answer (most connections never stream). */
  #sink: BodySink | null = null;
  /** Wall-clock ms when the current request's head was complete (read only with an access log). */
  #requestWallMs = 0;
  /** Body bytes of the current streamed answer written so far (its access-log `bytes`). */
  #streamedBytes = 0;
  /** What the connection is doing, for the log line of an unexpected error (a constant string: no cost). */
  #action = "reading request head";
  /** The last answer closed the connection on the server's initiative (error, 429): linger before closing. */
  #serverClosed = false;
  /** TCP_NODELAY is set (after the first answer that keeps the connection open). */
  #noDelay = false;
  /** Over TLS (the app's request URL says https). */
  #secure: boolean;
  /** Told when the connection closes, while a handler works (an app's `request.signal`). */
  #watch: CloseWatch = { onClose: null };
  /** A read started while a handler works, to notice the peer leaving (see `#startWatchRead`). */
  #watchRead: Promise<number | null> | null = null;
  // A body streamed to the handler (`Handler.streamsBody`), pulled through `#bodySource`.
  #bodySource: BodySource | null = null;
  /** The body being streamed to the handler, null when none (see `#exchangeStreamed`). */
  #streamed: StreamedBody | null = null;
  /** A read of the streamed body is pending. */
  #bodyReading = false;
  /** The `100 Continue` the client asked for is still owed (sent on the first read). */
  #bodyContinue = false;
  /** The read buffer as lent to the body readers; made on the first body (most connections never get one). */
  #bodyWindow: BodyInput | null = null;
  /** PHASE_RUNNING, PHASE_PARKED or PHASE_ENDED. */
  #phase = PHASE_RUNNING;

  /** The read buffer lent to the body readers (body_reader.ts): its unread window and how to refill it. */
  get #bodyInput(): BodyInput {
    // deno-lint-ignore no-this-alias
    const c = this;
    return this.#bodyWindow ??= {
      get buf() {
        return c.#buf;
      },
      get start() {
        return c.#start;
      },
      set start(v: number) {
        c.#start = v;
      },
      get end() {
        return c.#end;
      },
      refill: () => c.#readMoreBody(),
    };
  }

  constructor(
    conn: Transport,
    id: number,
    remote: string,
    remotePort: number,
    key: string,
    ticket: number,
    ctx: ConnContext,
  ) {
    this.#conn = conn;
    this.id = id;
    this.remote = remote;
    this.remotePort = remotePort;
    this.key = key;
    this.#ticket = ticket;
    this.#ctx = ctx;
    this.#parser = takeParser(ctx);
    this.#buf = this.#small = ctx.readPool.acquire();
    this.#output = new OutputBuffer(ctx.outPool, OUT_BUFFER_BYTES);
    this.#acceptedAtMs = ctx.nowMs;
    this.#secure = conn.secure;
    ctx.stats.idle++;
  }

  get state(): ConnState {
    return this.#state;
  }

  /** The admin view of this connection. */
  info(nowMs: number): ConnInfo {
    const h = this.#head;
    return {
      id: this.id,
      remote: this.remote,
      remotePort: this.remotePort,
      key: this.key,
      state: this.#state,
      ageMs: Math.max(0, Math.round(nowMs - this.#acceptedAtMs)),
      requests: this.#requests,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      request: h === null
        ? ""
        : escapeForLog(`${h.method} ${h.target} HTTP/1.${h.version === 10 ? 0 : 1}`, 200),
    };
  }

  /** Closes the socket now (kick, shutdown, deadline). Any pending read or write then fails. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#setState("closed");
    this.#output.drop();
    try {
      this.#conn.close();
    } catch {
      // already closed by the runtime
    }
    const onClose = this.#watch.onClose;
    if (onClose !== null) {
      this.#watch.onClose = null;
      try {
        onClose();
      } catch (e) {
        this.#ctx.logError(`conn ${this.id} ${this.remote}: closing: ${errorMessage(e)}`);
      }
    }
  }

  /** Closes a connection that is idle or never spoke (shutdown). Returns whether it did. */
  closeIfIdle(): boolean {
    if (this.#state === "idle" || this.#state === "new") {
      this.close();
      return true;
    }
    return false;
  }

  /**
   * Called by the server's sweeper: enforces the current deadline and minimum rates. Header and body
   * deadlines answer 408 first; idle, send and linger deadlines just close.
   */
  expireIfDue(nowMs: number): void {
    if (this.#closed) return;
    const d = this.#deadlines;
    if (this.#state === "closing") {
      // Already answered (or lingering): only the send/linger deadline is left to enforce. Checking the
      // rates again would answer a second 408.
      if (d.deadlineDue(nowMs)) this.close();
      return;
    }
    if (d.deadlineDue(nowMs)) {
      const kind = d.kind;
      this.#ctx.stats.timeouts++;
      if ((kind === "header" && this.#parser.bytesSeen > 0) || kind === "body") {
        this.#answerTimeout(kind === "header" ? "HEADER_TIMEOUT" : "BODY_TIMEOUT");
      } else {
        this.close();
      }
      return;
    }
    if (d.rateDue(nowMs, this.#ctx.options)) {
      this.#ctx.stats.timeouts++;
      if (d.rate === "body") this.#answerTimeout("BODY_TIMEOUT");
      else this.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The read loop

  /**
   * Serves the connection until it closes (`ended` says when). The read loop runs while the connection is
   * busy; between requests it is parked (see `#run`), so an idle keep-alive connection holds no suspended
   * function, promise or closure, only this object and its socket.
   */
  serve(): void {
    this.#deadlines.set("header", this.#acceptedAtMs + this.#ctx.options.headerTimeoutMs);
    void this.#run(undefined);
  }

  /** Resolves once the connection has ended and given back what it held (made only when asked for). */
  get ended(): Promise<void> {
    if (this.#phase === PHASE_ENDED) return Promise.resolve();
    let waiter = endWaiters.get(this);
    if (waiter === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      endWaiters.set(this, waiter = { promise, resolve });
    }
    return waiter.promise;
  }

  /**
   * For the transport only (`readLent`): the parked connection's read ended with `n` bytes in the lent
   * buffer, the peer's end of stream (null), or `error`. The loop goes on from there.
   */
  lentReadDone(n: number | null, error: Error | null): void {
    this.#phase = PHASE_RUNNING;
    void this.#run(error ?? n);
  }

  /**
   * The read loop. Never rejects. `resumed` is undefined at the start, else what the parked connection's
   * read brought (`lentReadDone`): the loop then goes on as after that read. Between requests the loop
   * parks instead of awaiting the next one: it asks the transport to call `lentReadDone` and returns,
   * leaving nothing suspended (an async frame, its promise and an await's closures cost ~0.5 KiB on every
   * idle connection); it runs again, from this function's start, when the peer sends.
   */
  async #run(resumed: number | null | Error | undefined): Promise<void> {
    try {
      const o = this.#ctx.options;
      // What the last read brought (null: the peer's end); undefined before the first read.
      let n: number | null | undefined;
      if (resumed !== undefined) {
        // The parked read ended: go on as after any read.
        if (resumed instanceof Error) throw resumed;
        n = resumed;
        if (this.#readDone(n, this.#buf)) await this.#discardAndClose();
      }
      for (;;) {
        if (n !== undefined) {
          if (n === null) {
            if (this.#parser.bytesSeen > 0) this.#ctx.stats.peerResets++;
            return;
          }
          this.#end = n;
          if (this.#state !== "active") {
            if (this.#state === "idle") this.#deadlines.set("header", this.#ctx.nowMs + o.headerTimeoutMs);
            this.#setState("active");
          }
        }
        // Parse everything this read delivered; sync replies pile up in the output buffer.
        while (this.#start < this.#end) {
          const r = this.#parser.feed(this.#buf, this.#start, this.#end);
          if (r.kind === "more") {
            this.#start = this.#end;
            break;
          }
          if (r.kind === "error") {
            await this.#protocolError(r.code);
            return;
          }
          this.#start += r.consumed;
          this.#head = r.head;
          // The head is complete: no deadline while the handler works (writes set their own).
          this.#deadlines.clear();
          let keep = this.#exchange(r.head);
          if (typeof keep !== "boolean") keep = await keep;
          // The answer is complete: closing the connection later aborts nothing (a handler's signal).
          this.#watch.onClose = null;
          if (!keep) {
            const flushing = this.#flush();
            if (flushing !== undefined) await flushing;
            // Unread input at close time would make the kernel send a reset that can destroy the answer.
            if (this.#start < this.#end || this.#serverClosed) await this.#lingerClose();
            return;
          }
          if (!this.#noDelay) this.#disableNagle();
          this.#parser.reset();
          this.#head = null;
          // Bytes of the next pipelined request are already here: its header deadline starts now.
          this.#deadlines.set("header", this.#ctx.nowMs + o.headerTimeoutMs);
          if (this.#output.length >= OUT_FLUSH_BYTES) {
            const flushing = this.#flush();
            if (flushing !== undefined) await flushing;
          }
        }
        // (Awaited only when the kernel did not take it all at once: an await costs even when settled.)
        const flushing = this.#flush();
        if (flushing !== undefined) await flushing;
        if (this.#parser.bytesSeen === 0 && this.#requests > 0) {
          // Between requests: keep-alive idle. The header deadline starts with the next first byte.
          this.#setState("idle");
          this.#shrinkReadBuffer();
          const idle = this.#ctx.gate?.idleTimeoutMs() ?? o.idleTimeoutMs;
          this.#deadlines.set("idle", this.#ctx.nowMs + idle);
        }
        if (this.#ctx.shuttingDown && this.#state === "idle") return;
        this.#start = 0;
        this.#end = 0;
        this.#action = "reading request head";
        // A read started while the handler worked (`#startWatchRead`) is already waiting, into the small
        // buffer: it is this wait, and that buffer must stay.
        if (this.#state === "idle" && this.#watchRead === null) {
          // Wait for the next request's first byte parked, holding no read buffer and no parser (both go
          // back to their pools meanwhile, and come back in `lendReadBuffer` once bytes arrive), so an
          // idle keep-alive connection costs its socket and this object only. Deadlines are unaffected:
          // the sweep closes the transport, which ends the read (`lentReadDone` with Interrupted).
          this.#lend();
          this.#phase = PHASE_PARKED;
          this.#conn.readLent(this);
          return;
        }
        const buf = this.#readBuffer();
        n = await (this.#takeWatchRead() ?? this.#conn.read(buf));
        if (this.#readDone(n, buf)) await this.#discardAndClose();
      }
    } catch (e) {
      if (e instanceof ClosedError || this.#closed || isPeerGone(e)) {
        if (!(e instanceof ClosedError) && !this.#closed) this.#ctx.stats.peerResets++;
      } else {
        this.#ctx.logError(
          `conn ${this.id} ${this.remote}: ${this.#action}: ${errorMessage(e)}`,
        );
      }
    } finally {
      // Parked: not over, only waiting (nothing is held that the end would give back).
      if (this.#phase !== PHASE_PARKED) this.#finish();
    }
  }

  /** The loop has ended for good: close, and give back the ticket, the buffers and the parser. */
  #finish(): void {
    this.#phase = PHASE_ENDED;
    this.close();
    this.#ctx.gate?.release(this.#ticket);
    // The loop has ended, so no read is pending into the buffers: it is safe to hand them on. Unless a
    // watch read (`#startWatchRead`) was left behind: its buffer is dropped, never reused. A connection
    // closed while idle lent both already.
    this.#shrinkReadBuffer();
    if (this.#small !== EMPTY) {
      if (this.#watchRead === null) this.#ctx.readPool.release(this.#small);
      else this.#ctx.readPool.discard(this.#small);
    }
    if (this.#parser !== IDLE_PARSER) {
      if (this.#ctx.parserPool.length < PARSER_POOL_MAX) this.#ctx.parserPool.push(this.#parser);
      this.#parser = IDLE_PARSER;
    }
    this.#ctx.connectionEnded?.(this);
    endWaiters.get(this)?.resolve();
  }

  /** Gives the read buffer and the parser back to their pools while the connection waits idle. */
  #lend(): void {
    this.#ctx.readPool.release(this.#small);
    this.#buf = this.#small = EMPTY;
    if (this.#ctx.parserPool.length < PARSER_POOL_MAX) this.#ctx.parserPool.push(this.#parser);
    this.#parser = IDLE_PARSER;
  }

  /**
   * For the transport only (`readLent`): bytes arrived for this idle connection, so it takes a read buffer
   * and a parser again after `#lend`, and the bytes go into that buffer.
   */
  lendReadBuffer(): Uint8Array {
    this.#buf = this.#small = this.#ctx.readPool.acquire();
    this.#parser = takeParser(this.#ctx);
    return this.#buf;
  }

  /**
   * One read into the connection's buffer. The read loop spells out the same three steps itself
   * (`#readBuffer`, the runtime read, `#readDone`): one async frame and promise fewer per request.
   */
  async #read(): Promise<number | null> {
    const buf = this.#readBuffer();
    const n = await this.#conn.read(buf);
    if (this.#readDone(n, buf)) await this.#discardAndClose();
    return n;
  }

  /**
   * Starts the read the loop would make next, while a handler still works: its end (EOF, reset) tells the
   * handler the peer left (`CloseWatch`); bytes it brings (a pipelined request) wait in the buffer for the
   * loop, which takes this read as its own (`#takeWatchRead`). Only with nothing buffered and no body
   * unread, into the small buffer (a pooled one must not be returned while a read may still fill it).
   */
  #startWatchRead(): void {
    this.#shrinkReadBuffer();
    this.#start = 0;
    this.#end = 0;
    const peerLeft = () => {
      const onClose = this.#watch.onClose;
      this.#watch.onClose = null;
      onClose?.();
    };
    this.#watchRead = this.#conn.read(this.#buf).then((n) => {
      if (n === null) peerLeft();
      return n;
    }, (e) => {
      // A reset, or our own close (kick, deadline, shutdown): the loop then sees the end of input.
      if (!this.#closed && isPeerGone(e)) this.#ctx.stats.peerResets++;
      peerLeft();
      return null;
    });
  }

  /** The read `#startWatchRead` began, for the loop to take as its next read (null when none). */
  #takeWatchRead(): Promise<number | null> | null {
    const pending = this.#watchRead;
    this.#watchRead = null;
    return pending;
  }

  /** The buffer the next read goes into (throws ClosedError once closed). */
  #readBuffer(): Uint8Array {
    if (this.#closed || this.#state === "closing") throw new ClosedError();
    if (this.#growNext) {
      // The last read filled the small buffer: more is waiting, take a large one while busy.
      this.#growNext = false;
      this.#buf = this.#ctx.largeReadPool.acquire();
    }
    return this.#buf;
  }

  /**
   * Accounts a finished read. Returns true when a deadline answered 408 while the read was pending: what
   * arrived is then to be discarded (`#discardAndClose`).
   */
  #readDone(n: number | null, buf: Uint8Array): boolean {
    if (n !== null) {
      this.#bytesIn += n;
      this.#ctx.stats.bytesIn += n;
      if (n === buf.byteLength && buf === this.#small) this.#growNext = true;
    }
    return this.#isClosing();
  }

  async #discardAndClose(): Promise<never> {
    await this.#drain();
    throw new ClosedError();
  }

  /**
   * Turns Nagle's algorithm off once the connection is known to stay open, as nginx's `tcp_nodelay`
   * does: an answer written while the previous one is unacknowledged must not wait for the peer's
   * delayed ACK. A connection that closes after its first answer never needs it (closing pushes the
   * tail out), which saves a system call per connection under `Connection: close`. Setting it also
   * flushes anything Nagle still holds from a streamed first answer.
   */
  #disableNagle(): void {
    this.#noDelay = true;
    this.#conn.setNoDelay();
  }

  /** Back to the small buffer (going idle, or closing). Only between reads: none may be pending. */
  #shrinkReadBuffer(): void {
    this.#growNext = false;
    if (this.#buf !== this.#small) {
      this.#ctx.largeReadPool.release(this.#buf);
      this.#buf = this.#small;
    }
  }

  async #rawRead(): Promise<number | null> {
    const n = await (this.#takeWatchRead() ?? this.#conn.read(this.#buf));
    if (n !== null) {
      this.#bytesIn += n;
      this.#ctx.stats.bytesIn += n;
    }
    return n;
  }

  /** Reads and discards until the peer closes, the linger deadline closes us, or enough was discarded. */
  async #drain(): Promise<void> {
    let discarded = 0;
    while (!this.#closed && discarded < LINGER_MAX_BYTES) {
      const n = await this.#rawRead();
      if (n === null) break;
      discarded += n;
    }
    this.close();
  }

  /**
   * Serves one request whose head was just parsed. Returns synchronously (no promise) on the fast path:
   * no body, admitted, and a synchronous in-memory reply. Returns whether to keep the connection open.
   */
  #exchange(head: RequestHead): boolean | Promise<boolean> {
    const ctx = this.#ctx;
    this.#requests++;
    ctx.stats.requests++;
    if (ctx.accessLog !== null) this.#requestWallMs = ctx.clock.wallMs();
    // A new exchange: whoever watched the last one's connection is done with it.
    this.#watch.onClose = null;
    if (ctx.gate !== null) {
      const retryAfterSec = ctx.gate.admitRequest(this.#ticket, forwardedForOf(head.headers));
      if (typeof retryAfterSec !== "number") return this.#admitLater(head, retryAfterSec);
      if (retryAfterSec > 0) {
        return this.#emit(head, textReply(429, [["Retry-After", String(retryAfterSec)]], true));
      }
    }
    return this.#dispatch(head);
  }

  /** The shared guard store's answer (bounded by its timeout), then as `#exchange`. */
  async #admitLater(head: RequestHead, pending: Promise<number>): Promise<boolean> {
    const retryAfterSec = await pending;
    if (this.#closed) throw new ClosedError();
    if (retryAfterSec > 0) {
      return this.#emit(head, textReply(429, [["Retry-After", String(retryAfterSec)]], true));
    }
    return this.#dispatch(head);
  }

  /** Serves an admitted request: synchronously when it has no body and the reply is in memory. */
  #dispatch(head: RequestHead): boolean | Promise<boolean> {
    if (hasBody(head)) return this.#exchangeWithBody(head);
    const reply = this.#callHandler(head, EMPTY);
    if (reply instanceof Promise) return this.#settle(head, reply);
    return this.#emit(head, reply);
  }

  /** Asks the handler; a synchronous throw becomes a 500 like an asynchronous one. */
  #callHandler(
    head: RequestHead,
    body: Uint8Array,
    bodySource: BodySource | null = null,
  ): Reply | Promise<Reply> {
    try {
      return this.#ctx.handler.handle(
        new ConnExchange(
          head,
          body,
          bodySource,
          this.remote,
          this.remotePort,
          this.#secure,
          this.id,
          this.#watch,
        ),
      );
    } catch (e) {
      return this.#internalError(e);
    }
  }

  /** Waits for a handler's reply and emits it (`close` forces `Connection: close`). */
  async #settle(head: RequestHead, pending: Reply | Promise<Reply>, close = false): Promise<boolean> {
    // A handler that wants to hear of the peer leaving (an app's `request.signal`) and works
    // asynchronously: read meanwhile, as the next read would anyway, so a close or reset is noticed now.
    if (
      this.#watch.onClose !== null && !hasBody(head) && this.#start === this.#end &&
      this.#watchRead === null &&
      pending instanceof Promise
    ) this.#startWatchRead();
    let reply: Reply;
    try {
      reply = await pending;
    } catch (e) {
      reply = this.#internalError(e);
    }
    if (this.#closed || this.#state === "closing") {
      // Closed (kick, deadline, shutdown) while the handler worked: release what the reply holds.
      reply.stream?.cancel();
      throw new ClosedError();
    }
    return this.#emit(head, close && !reply.close ? { ...reply, close: true } : reply);
  }

  #internalError(e: unknown): Reply {
    this.#ctx.logError(
      `conn ${this.id} ${this.remote}: handling request: ${errorMessage(e)}`,
    );
    return textReply(500, [], true);
  }

  async #exchangeWithBody(head: RequestHead): Promise<boolean> {
    const limit = this.#ctx.handler.bodyLimitBytes(head);
    if (limit === 0) return this.#exchangeIgnoringBody(head);
    if (head.contentLength > limit) {
      // Refuse before reading (and before any 100 Continue): RFC 9110 §10.1.1.
      return this.#emit(head, this.#errorReply("BODY_TOO_LARGE"));
    }
    if (this.#ctx.handler.streamsBody?.(head) === true) return this.#exchangeStreamed(head, limit);
    if (head.expectContinue && this.#start === this.#end) {
      await this.#flush();
      await this.#writeAll(CONTINUE_BYTES);
    }
    const body = await this.#readBody(head, limit);
    if (typeof body === "string") return this.#emit(head, this.#errorReply(body));
    return this.#settle(head, this.#callHandler(head, body));
  }

  /**
   * Serves a request whose route takes no body (a static path: the file for a GET, 405 for a POST), answered
   * as if no body came. As Go's server and nginx do, the body is first read and dropped, up to
   * `unreadBodyMaxBytes` under the body deadlines and minimum rate, so the connection stays open for the
   * next request; its framing is checked as strictly as a body we keep, and a malformed one is answered
   * 400 instead. A body beyond the bound, or one the client holds back until a `100 Continue` we never
   * send, is not read: the answer carries `Connection: close` and lingering drains what follows, since
   * the unread body would otherwise be parsed as the next request.
   */
  async #exchangeIgnoringBody(head: RequestHead): Promise<boolean> {
    const max = this.#ctx.options.unreadBodyMaxBytes;
    const discard = !head.expectContinue && head.contentLength <= max;
    const bad = discard ? await this.#discardBody(head, max) : "BODY_TOO_LARGE";
    if (bad === "BODY_TOO_LARGE") {
      this.#serverClosed = true;
      return this.#settle(head, this.#callHandler(head, EMPTY), true);
    }
    if (bad !== null) return this.#emit(head, this.#errorReply(bad));
    const reply = this.#callHandler(head, EMPTY);
    if (reply instanceof Promise) return this.#settle(head, reply);
    return this.#emit(head, reply);
  }

  /**
   * Reads and drops the body, leaving pipelined bytes after it in the buffer. At most `max` bytes on the
   * wire (chunk framing included) are taken: a body not complete by then is BODY_TOO_LARGE, and its rest
   * stays unread. A framing error is its code; null once the whole body is gone.
   */
  async #discardBody(head: RequestHead, max: number): Promise<ErrorCode | null> {
    this.#action = "discarding request body";
    this.#deadlines.startRate("body", this.#ctx.nowMs);
    try {
      return await discardBody(this.#bodyInput, head, max);
    } finally {
      this.#deadlines.stopRate();
    }
  }

  /** Reads the whole body (bounded by `limit`), leaving pipelined bytes after it in the buffer. */
  async #readBody(head: RequestHead, limit: number): Promise<Uint8Array | ErrorCode> {
    this.#action = "reading request body";
    this.#deadlines.startRate("body", this.#ctx.nowMs);
    try {
      return await readWholeBody(this.#bodyInput, head, limit);
    } finally {
      this.#deadlines.stopRate();
    }
  }

  /**
   * Serves a request whose handler pulls the body as a stream: the same limits, deadlines and minimum
   * rate as a whole body, applied while a read is pending (time the handler spends between reads is not
   * the client's). A limit or framing error is answered in place of the handler's reply; a reply that
   * leaves the body unread closes the connection after it (the rest cannot be parsed as a next request).
   */
  async #exchangeStreamed(head: RequestHead, limit: number): Promise<boolean> {
    const body = this.#streamed = new StreamedBody(head, limit);
    this.#bodyContinue = head.expectContinue;
    this.#deadlines.stopRate();
    const source = this.#bodySource ??= { read: () => this.#readBodyChunk() };
    let reply: Reply;
    try {
      reply = await this.#callHandler(head, EMPTY, source);
    } catch (e) {
      reply = this.#internalError(e);
    }
    if (this.#closed || this.#state === "closing") {
      reply.stream?.cancel();
      throw new ClosedError();
    }
    if (body.failed !== null) {
      reply.stream?.cancel();
      return this.#emit(head, this.#errorReply(body.failed));
    }
    // An unread body cannot be skipped cheaply, nor parsed as the next request: close after answering
    // (lingering drains it). A streamed reply may still read it while it is written (an echo).
    const unread = !body.done && reply.stream === null;
    const keep = await this.#emit(head, unread && !reply.close ? { ...reply, close: true } : reply);
    if (!body.done) {
      this.#serverClosed = true;
      if (this.#bodyReading) {
        // The handler still waits on a read that nothing will finish: end the connection now.
        this.close();
        throw new ClosedError();
      }
      return false;
    }
    return keep;
  }

  /** `BodySource.read` of the streamed body: the next bytes (a fresh copy), or null at its end. */
  async #readBodyChunk(): Promise<Uint8Array | null> {
    const body = this.#streamed;
    if (body === null || body.done) return null;
    if (body.failed !== null) throw new BodyError(body.failed);
    if (this.#bodyReading) throw new TypeError("the request body is already being read");
    this.#bodyReading = true;
    try {
      if (this.#bodyContinue) {
        this.#bodyContinue = false;
        // Asked for only now that the handler wants the body (RFC 9110 §10.1.1): an answer that never
        // reads it sends no 100.
        if (this.#start === this.#end) {
          await this.#flush();
          await this.#writeAll(CONTINUE_BYTES);
        }
      }
      this.#action = "reading request body";
      const r = await body.next(this.#bodyInput, () => this.#readMoreStreamed());
      if (typeof r === "string") throw new BodyError(r);
      return r;
    } finally {
      this.#bodyReading = false;
    }
  }

  /** `#readMoreBody` for a streamed body: the rate window runs only while the read is pending. */
  async #readMoreStreamed(): Promise<void> {
    this.#deadlines.resumeRate("body", this.#ctx.nowMs);
    try {
      await this.#readMoreBody();
    } finally {
      this.#deadlines.pauseRate(this.#ctx.nowMs);
      // No deadline while the handler works between reads.
      if (this.#deadlines.kind === "body") this.#deadlines.clear();
    }
  }

  /**
   * Refills the buffer with the next body bytes under the body idle deadline; EOF here is a peer failure.
   * Answers queued for earlier pipelined requests leave first: a body that is slow (or never completes)
   * must not hold back answers that are ready, and a body timeout then answers 408 after them.
   */
  async #readMoreBody(): Promise<void> {
    if (!this.#output.isEmpty) {
      // Our own write is not the peer's body being slow: the body rate is judged from when it ends.
      const action = this.#action;
      this.#deadlines.stopRate();
      await this.#flush();
      this.#action = action;
      this.#deadlines.startRate("body", this.#ctx.nowMs);
    }
    this.#deadlines.set("body", this.#ctx.nowMs + this.#ctx.options.bodyIdleTimeoutMs);
    this.#start = 0;
    this.#end = 0;
    const n = await this.#read();
    if (n === null) throw new Deno.errors.UnexpectedEof("body ended early");
    this.#end = n;
    this.#deadlines.progress("body", n);
  }

  // ---------------------------------------------------------------------------------------------
  // Writing

  /**
   * Queues `reply` for `head` (sync when it is all in memory and small) and accounts for it. Returns
   * whether the connection stays open.
   */
  #emit(head: RequestHead, reply: Reply): boolean | Promise<boolean> {
    const ctx = this.#ctx;
    const keep = head.keepAlive && !reply.close && !ctx.shuttingDown &&
      this.#requests < ctx.options.maxRequestsPerConn;
    if (reply.close) this.#serverClosed = true;
    const connLine = keep ? (head.version === 10 ? KEEP_ALIVE_LINE : EMPTY) : CLOSE_LINE;
    const isHead = head.method === "HEAD";
    const body = isHead ? null : reply.body;
    const stream = reply.stream;
    ctx.stats.countResponse(reply.status);
    // A streamed body is logged once sent, with the bytes that went out (it may end early).
    const logLater = stream !== null && !isHead;
    if (ctx.accessLog !== null && !logLater && reply.unlogged !== true) {
      this.#logAccess(head, reply.status, isHead ? 0 : reply.length);
    }
    if (
      reply.reusable === true && connLine === EMPTY && stream === null &&
      (body === null || body.byteLength <= WHOLE_REPLY_MAX_BODY_BYTES)
    ) {
      // The hot path: a precomputed whole response; written as is when it is the only answer of this read.
      const whole = ctx.wholeReplies.bytes(reply, ctx.dateLine.bytes(ctx.wallMs), !isHead);
      this.#output.appendWhole(whole, this.#start === this.#end);
      return keep;
    }
    this.#appendHead(reply.head, connLine);
    if (stream !== null) {
      if (isHead) stream.cancel();
      else return this.#pipeStream(stream, keep, head, reply.status);
    }
    if (body !== null && body.byteLength > 0) {
      if (body.byteLength <= INLINE_BODY_BYTES) this.#output.append(body);
      else return this.#writeLargeBody(body, keep);
    }
    return keep;
  }

  async #pipeStream(
    stream: Reply["stream"] & object,
    keep: boolean,
    head: RequestHead,
    status: number,
  ): Promise<boolean> {
    this.#streamedBytes = 0;
    try {
      try {
        await this.#flush();
      } catch (e) {
        stream.cancel();
        throw e;
      }
      this.#action = "streaming response body";
      this.#deadlines.startRate("send", this.#ctx.nowMs);
      try {
        await stream.pipe(this.#sink ??= { write: (bytes) => this.#writeStream(bytes) });
      } finally {
        this.#deadlines.stopRate();
      }
    } finally {
      if (this.#ctx.accessLog !== null) this.#logAccess(head, status, this.#streamedBytes);
    }
    return keep;
  }

  async #writeLargeBody(body: Uint8Array, keep: boolean): Promise<boolean> {
    await this.#flush();
    await this.#writeAll(body);
    return keep;
  }

  /** One access-log line; `head` is null when the request never parsed (protocol error, header timeout). */
  #logAccess(head: RequestHead | null, status: number, bytes: number): void {
    const wallMs = this.#ctx.clock.wallMs();
    const protocol = head === null ? "" : head.version === 10 ? "HTTP/1.0" : "HTTP/1.1";
    this.#ctx.accessLog!.log({
      remote: this.remote,
      wallMs,
      requestLine: head === null ? "" : `${head.method} ${head.target} ${protocol}`,
      status,
      bytes,
      referer: head === null ? "" : headerValue(head, "referer") ?? "",
      userAgent: head === null ? "" : headerValue(head, "user-agent") ?? "",
      method: head === null ? "" : head.method,
      target: head === null ? "" : head.target,
      protocol,
      host: head === null ? "" : head.host,
      // A request that never parsed has no start of its own: 0.
      durationMs: head === null ? 0 : Math.max(0, wallMs - this.#requestWallMs),
      connId: this.id,
    });
  }

  /** Queues a response head with the per-exchange lines: `Date`, the `Connection` line, the blank line. */
  #appendHead(head: Uint8Array, connLine: Uint8Array): void {
    this.#output.append(head);
    this.#output.append(this.#ctx.dateLine.bytes(this.#ctx.wallMs));
    this.#output.append(connLine);
    this.#output.append(CRLF);
  }

  /**
   * Writes everything queued, in one write when the kernel takes it. Returns undefined when everything
   * went out at once (the common case: no promise, no await), else a promise of the rest.
   */
  #flush(): Promise<void> | undefined {
    const batch = this.#output.take();
    if (batch === null) return undefined;
    this.#action = "writing response";
    const rest = this.#writeAll(batch);
    if (rest !== undefined) return rest.then(() => this.#output.written());
    this.#output.written();
    return undefined;
  }

  /**
   * Writes all of `bytes` (writes may be partial) under the send deadline. Returns undefined when the
   * kernel took them all at once: nothing ran in between, so no deadline had to be set for it. Measured at
   * 5,000 keep-alive connections, awaiting an already-settled write through two async functions cost
   * about a sixth of the runtime's CPU per request.
   */
  #writeAll(bytes: Uint8Array): Promise<void> | undefined {
    if (this.#closed) throw new ClosedError();
    const n = this.#conn.write(bytes);
    if (typeof n === "number" && n === bytes.byteLength) {
      this.#wrote(n);
      return undefined;
    }
    return this.#writeRest(bytes, n);
  }

  /** Counts `n` bytes the kernel took. */
  #wrote(n: number): void {
    this.#bytesOut += n;
    this.#ctx.stats.bytesOut += n;
    this.#deadlines.progress("send", n);
  }

  /** Goes on with a write the kernel did not take whole at once (`first` is that write's outcome). */
  async #writeRest(bytes: Uint8Array, first: number | Promise<number>): Promise<void> {
    const savedKind = this.#deadlines.kind;
    const savedAt = this.#deadlines.atMs;
    let off = 0;
    let pending: number | Promise<number> | null = first;
    while (off < bytes.byteLength) {
      if (this.#closed) throw new ClosedError();
      this.#deadlines.set("send", this.#ctx.nowMs + this.#ctx.options.sendTimeoutMs);
      const n: number = await (pending ?? this.#conn.write(bytes.subarray(off)));
      pending = null;
      off += n;
      this.#wrote(n);
    }
    this.#deadlines.set(savedKind, savedAt);
  }

  async #writeStream(bytes: Uint8Array): Promise<void> {
    const before = this.#bytesOut;
    try {
      await this.#writeAll(bytes);
    } finally {
      this.#streamedBytes += this.#bytesOut - before;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Errors, deadlines, closing

  #errorReply(code: ErrorCode): Reply {
    if (code !== "BODY_TOO_LARGE") this.#ctx.stats.protocolErrors++;
    return textReply(ERROR_STATUS[code], [], true);
  }

  /** Answers a protocol error with `Connection: close`, then lingers and closes. */
  async #protocolError(code: ErrorCode): Promise<void> {
    this.#ctx.stats.protocolErrors++;
    this.#queueErrorAnswer(code);
    await this.#flush();
    await this.#lingerClose();
  }

  /** Queues the `Connection: close` answer for `code` (a request that never reached a handler), counted and logged. */
  #queueErrorAnswer(code: ErrorCode): void {
    const reply = textReply(ERROR_STATUS[code], [], true);
    // RFC 9110 §9.3.2: an answer to HEAD has no content, an error answer included; the parser knows the
    // method once its SP arrived, even when the head never completed.
    const isHead = this.#head !== null ? this.#head.method === "HEAD" : this.#parser.methodIsHead;
    this.#appendHead(reply.head, CLOSE_LINE);
    if (!isHead) this.#output.append(reply.body!);
    this.#ctx.stats.countResponse(reply.status);
    if (this.#ctx.accessLog !== null) this.#logAccess(this.#head, reply.status, isHead ? 0 : reply.length);
  }

  /**
   * Half-closes our side and reads (discarding) until the peer closes, LINGER_MS passes or
   * LINGER_MAX_BYTES arrived: closing with unread input would send a reset that can destroy the answer
   * we just wrote before the peer reads it.
   */
  async #lingerClose(): Promise<void> {
    if (this.#closed) return;
    this.#setState("closing");
    this.#deadlines.set("linger", this.#ctx.nowMs + LINGER_MS);
    try {
      await this.#conn.closeWrite();
    } catch {
      this.close();
      return;
    }
    await this.#drain();
  }

  /** A deadline passed while reading a head or body: answer 408 (unless a write is under way), then close. */
  #answerTimeout(code: ErrorCode): void {
    if (this.#deadlines.kind === "send" || !this.#output.isEmpty) {
      this.close();
      return;
    }
    const ctx = this.#ctx;
    this.#queueErrorAnswer(code);
    // The read loop is parked on a pending read; write the answer beside it, then close: the pending read
    // fails with Interrupted and the loop ends. A short send deadline bounds the write.
    this.#setState("closing");
    this.#deadlines.set("send", ctx.nowMs + Math.min(ctx.options.sendTimeoutMs, LINGER_MS));
    (async () => {
      await this.#flush();
      await this.#conn.closeWrite();
    })().catch(() => {}).finally(() => {
      // Give the peer a moment to read the answer before the reset that closing with unread data causes.
      this.#deadlines.set("linger", ctx.nowMs + LINGER_MS);
    });
  }

  /** A method, not an inline comparison: the state changes while a read is pending. */
  #isClosing(): boolean {
    return this.#state === "closing";
  }

  #setState(next: ConnState): void {
    const prev = this.#state;
    if (prev === next) return;
    const wasIdle = prev === "new" || prev === "idle";
    const isIdle = next === "new" || next === "idle";
    if (wasIdle && !isIdle) this.#ctx.stats.idle--;
    else if (!wasIdle && isIdle) this.#ctx.stats.idle++;
    this.#state = next;
  }
}
