/**
 * One accepted TCP connection, from accept to close: the only owner of its socket. Reads into one small
 * buffer, feeds the incremental parser, reads bounded bodies, asks the handler, and writes every response
 * produced by one read in a single `write` (socket crossings dominate the cost; see GUIDE §7).
 *
 * States follow Go's `net/http`: new (accepted, no byte yet) → active (reading a request or writing its
 * answer) → idle (keep-alive, waiting) → … → closing → closed. Deadlines are plain numbers checked by the
 * server's sweeper (`expireIfDue`), so no timer is created per request; closing the socket is how a
 * deadline interrupts a pending read or write.
 *
 * Must never throw out of `serve()`: a peer can end its own connection, never the process.
 */

import type { Clock } from "./clock.ts";
import type { Config } from "../config.ts";
import type { AccessEntry } from "../access_log.ts";
import type { ConnInfo, ConnState } from "./conn_info.ts";
import type { Stats } from "../stats/stats.ts";
import type { Handler } from "../http/handler.ts";
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
import { ChunkedDecoder } from "../http/body.ts";
import type { DateLine } from "../http/date.ts";
import { forwardedForOf } from "../guard/client_key.ts";
import type { BufferPool } from "../static/buffer_pool.ts";
import type { Transport } from "./transport.ts";

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
/** Idle parsers kept for new connections. */
export const PARSER_POOL_KEPT = 256;
/** Trailer section limit for chunked bodies. */
export const MAX_TRAILER_BYTES = 4096;

/** The settings a connection reads (all from `Config`, where each is documented). */
export type ConnectionOptions = Pick<
  Config,
  | "maxRequestLineBytes"
  | "maxHeaderBytes"
  | "maxHeaderCount"
  | "maxRequestsPerConn"
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

/** One line per request for the access log (see `src/access_log.ts`). */
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
}

type DeadlineKind = "none" | "header" | "idle" | "body" | "send" | "linger";

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

/** Thrown inside the exchange when the socket closed under us (deadline, kick, shutdown). */
class ClosedError extends Error {}

export class Connection {
  readonly id: number;
  readonly remote: string;
  readonly remotePort: number;
  readonly key: string;

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
  #deadlineMs = Infinity;
  #deadlineKind: DeadlineKind = "none";
  /** Rate window for the body / send minimum-rate checks (0 when none is running). */
  #rateStartMs = 0;
  #rateBytes = 0;
  #rateKind: "none" | "body" | "send" = "none";
  #requests = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #head: RequestHead | null = null;
  #out: Uint8Array | null = null;
  /** A whole precomputed response to write as is (zero copy), when it is the only thing to write. */
  #direct: Uint8Array | null = null;
  #outLen = 0;
  /** Where a streamed body goes; made on the first streamed answer (most connections never stream). */
  #sink: BodySink | null = null;
  /** What the connection is doing, for the log line of an unexpected error (a constant string: no cost). */
  #action = "reading request head";
  /** The last answer closed the connection on the server's initiative (error, 429): linger before closing. */
  #serverClosed = false;
  /** TCP_NODELAY is set (after the first answer that keeps the connection open). */
  #noDelay = false;

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
    const pooled = ctx.parserPool.pop();
    if (pooled !== undefined) pooled.configure(ctx.options);
    this.#parser = pooled ?? new RequestParser(ctx.options);
    this.#buf = this.#small = ctx.readPool.acquire();
    this.#acceptedAtMs = ctx.nowMs;
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

  /** Serves the connection until it closes. Never rejects. */
  async serve(): Promise<void> {
    try {
      this.#setDeadline("header", this.#acceptedAtMs + this.#ctx.options.headerTimeoutMs);
      await this.#loop();
    } catch (e) {
      if (e instanceof ClosedError || this.#closed || isPeerGone(e)) {
        if (!(e instanceof ClosedError) && !this.#closed) this.#ctx.stats.peerResets++;
      } else {
        this.#ctx.logError(
          `conn ${this.id} ${this.remote}: ${this.#action}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    } finally {
      this.close();
      this.#ctx.gate?.release(this.#ticket);
      // The loop has ended, so no read is pending into the buffers: it is safe to hand them on.
      this.#shrinkReadBuffer();
      this.#ctx.readPool.release(this.#small);
      if (this.#ctx.parserPool.length < PARSER_POOL_KEPT) this.#ctx.parserPool.push(this.#parser);
    }
  }

  /** Closes the socket now (kick, shutdown, deadline). Any pending read or write then fails. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#setState("closed");
    this.#releaseOut();
    this.#conn.close();
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
    if (this.#state === "closing") {
      // Already answered (or lingering): only the send/linger deadline is left to enforce. Checking the
      // rates again would answer a second 408.
      if (nowMs >= this.#deadlineMs) this.close();
      return;
    }
    if (nowMs >= this.#deadlineMs) {
      const kind = this.#deadlineKind;
      this.#ctx.stats.timeouts++;
      if ((kind === "header" && this.#parser.bytesSeen > 0) || kind === "body") {
        this.#answerTimeout(kind === "header" ? "HEADER_TIMEOUT" : "BODY_TIMEOUT");
      } else {
        this.close();
      }
      return;
    }
    if (this.#rateKind !== "none") {
      const o = this.#ctx.options;
      const elapsed = nowMs - this.#rateStartMs;
      const [grace, minRate] = this.#rateKind === "body"
        ? [o.bodyMinRateGraceMs, o.bodyMinRateBytesPerSec]
        : [o.sendMinRateGraceMs, o.sendMinRateBytesPerSec];
      if (minRate > 0 && elapsed > grace) {
        if (this.#rateBytes * 1000 < minRate * elapsed) {
          this.#ctx.stats.timeouts++;
          if (this.#rateKind === "body") this.#answerTimeout("BODY_TIMEOUT");
          else this.close();
        } else {
          // Judge each later stretch of `grace` ms on its own: the megabytes a socket buffer takes at
          // first must not buy a reader (or sender) that then stalls time for ever.
          this.#rateStartMs = nowMs;
          this.#rateBytes = 0;
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The read loop

  async #loop(): Promise<void> {
    const o = this.#ctx.options;
    for (;;) {
      // Parse everything this read delivered; sync replies pile up in #out.
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
        this.#setDeadline("none", 0);
        let keep = this.#exchange(r.head);
        if (typeof keep !== "boolean") keep = await keep;
        if (!keep) {
          await this.#flush();
          // Unread input at close time would make the kernel send a reset that can destroy the answer.
          if (this.#start < this.#end || this.#serverClosed) await this.#lingerClose();
          return;
        }
        if (!this.#noDelay) this.#disableNagle();
        this.#parser.reset();
        this.#head = null;
        // Bytes of the next pipelined request are already here: its header deadline starts now.
        this.#setDeadline("header", this.#ctx.nowMs + o.headerTimeoutMs);
        if (this.#outLen >= OUT_FLUSH_BYTES) await this.#flush();
      }
      await this.#flush();
      if (this.#parser.bytesSeen === 0 && this.#requests > 0) {
        // Between requests: keep-alive idle. The header deadline starts with the next first byte.
        this.#setState("idle");
        this.#shrinkReadBuffer();
        const idle = this.#ctx.gate?.idleTimeoutMs() ?? o.idleTimeoutMs;
        this.#setDeadline("idle", this.#ctx.nowMs + idle);
      }
      if (this.#ctx.shuttingDown && this.#state === "idle") return;
      this.#start = 0;
      this.#end = 0;
      this.#action = "reading request head";
      if (this.#state === "idle") await this.#awaitNextRequest();
      const buf = this.#readBuffer();
      const n = await this.#conn.read(buf);
      if (this.#readDone(n, buf)) await this.#discardAndClose();
      if (n === null) {
        if (this.#parser.bytesSeen > 0) this.#ctx.stats.peerResets++;
        return;
      }
      this.#end = n;
      if (this.#state !== "active") {
        if (this.#state === "idle") this.#setDeadline("header", this.#ctx.nowMs + o.headerTimeoutMs);
        this.#setState("active");
      }
    }
  }

  /**
   * Waits for the next request's first byte holding no read buffer (it goes back to the pool meanwhile),
   * so an idle keep-alive connection costs its socket and this object only. Deadlines are unaffected: the
   * sweep closes the transport, which ends the wait.
   */
  async #awaitNextRequest(): Promise<void> {
    const pool = this.#ctx.readPool;
    pool.release(this.#small);
    this.#buf = this.#small = EMPTY;
    try {
      await this.#conn.readable();
    } finally {
      this.#buf = this.#small = pool.acquire();
    }
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
    const n = await this.#conn.read(this.#buf);
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
  #callHandler(head: RequestHead, body: Uint8Array): Reply | Promise<Reply> {
    try {
      return this.#ctx.handler.handle({ head, body, remote: this.remote, connId: this.id });
    } catch (e) {
      return this.#internalError(e);
    }
  }

  /** Waits for a handler's reply and emits it (`close` forces `Connection: close`). */
  async #settle(head: RequestHead, pending: Reply | Promise<Reply>, close = false): Promise<boolean> {
    let reply: Reply;
    try {
      reply = await pending;
    } catch (e) {
      reply = this.#internalError(e);
    }
    if (this.#closed) {
      // Closed (kick, deadline, shutdown) while the handler worked: release what the reply holds.
      reply.stream?.cancel();
      throw new ClosedError();
    }
    return this.#emit(head, close && !reply.close ? { ...reply, close: true } : reply);
  }

  #internalError(e: unknown): Reply {
    this.#ctx.logError(
      `conn ${this.id} ${this.remote}: handling request: ${e instanceof Error ? e.message : String(e)}`,
    );
    return textReply(500, [], true);
  }

  async #exchangeWithBody(head: RequestHead): Promise<boolean> {
    const limit = this.#ctx.handler.bodyLimitBytes(head);
    if (limit === 0) {
      // The route takes no body (a static path): answer as if none came (405 for POST, the file for a GET),
      // then close, since the unread body would otherwise be parsed as the next request. Lingering drains it.
      this.#serverClosed = true;
      return this.#settle(head, this.#callHandler(head, EMPTY), true);
    }
    if (head.contentLength > limit) {
      // Refuse before reading (and before any 100 Continue): RFC 9110 §10.1.1.
      return this.#emit(head, this.#errorReply("BODY_TOO_LARGE"));
    }
    if (head.expectContinue && this.#start === this.#end) {
      await this.#flush();
      await this.#writeAll(CONTINUE_BYTES);
    }
    const body = await this.#readBody(head, limit);
    if (typeof body === "string") return this.#emit(head, this.#errorReply(body));
    return this.#settle(head, this.#callHandler(head, body));
  }

  /** Reads the whole body (bounded by `limit`), leaving pipelined bytes after it in the buffer. */
  async #readBody(head: RequestHead, limit: number): Promise<Uint8Array | ErrorCode> {
    this.#action = "reading request body";
    this.#rateKind = "body";
    this.#rateStartMs = this.#ctx.nowMs;
    this.#rateBytes = 0;
    try {
      if (!head.chunked) {
        const body = new Uint8Array(head.contentLength);
        let got = 0;
        for (;;) {
          const take = Math.min(body.length - got, this.#end - this.#start);
          body.set(this.#buf.subarray(this.#start, this.#start + take), got);
          got += take;
          this.#start += take;
          if (got === body.length) return body;
          await this.#readMoreBody();
        }
      }
      const decoder = new ChunkedDecoder({ maxTrailerBytes: MAX_TRAILER_BYTES });
      let body = new Uint8Array(Math.min(limit, 4096));
      let len = 0;
      let tooLarge = false;
      const onData = (buf: Uint8Array, start: number, end: number) => {
        const n = end - start;
        if (tooLarge || len + n > limit) {
          tooLarge = true;
          return;
        }
        if (len + n > body.length) {
          const grown = new Uint8Array(Math.min(limit, Math.max(body.length * 2, len + n)));
          grown.set(body.subarray(0, len));
          body = grown;
        }
        body.set(buf.subarray(start, end), len);
        len += n;
      };
      for (;;) {
        const r = decoder.feed(this.#buf, this.#start, this.#end, onData);
        if (tooLarge) return "BODY_TOO_LARGE";
        if (r.kind === "error") return r.code;
        if (r.kind === "done") {
          this.#start += r.consumed;
          return body.subarray(0, len);
        }
        await this.#readMoreBody();
      }
    } finally {
      this.#rateKind = "none";
    }
  }

  /** Refills the buffer with the next body bytes under the body idle deadline; EOF here is a peer failure. */
  async #readMoreBody(): Promise<void> {
    this.#setDeadline("body", this.#ctx.nowMs + this.#ctx.options.bodyIdleTimeoutMs);
    this.#start = 0;
    this.#end = 0;
    const n = await this.#read();
    if (n === null) throw new Deno.errors.UnexpectedEof("body ended early");
    this.#end = n;
    this.#rateBytes += n;
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
    if (ctx.accessLog !== null) this.#logAccess(head, reply.status, isHead ? 0 : reply.length);
    if (
      reply.reusable === true && connLine === EMPTY && stream === null &&
      (body === null || body.byteLength <= WHOLE_REPLY_MAX_BODY_BYTES)
    ) {
      // The hot path: a precomputed whole response; written as is when it is the only answer of this read.
      const whole = ctx.wholeReplies.bytes(reply, ctx.dateLine.bytes(ctx.wallMs), !isHead);
      if (this.#outLen === 0 && this.#direct === null && this.#start === this.#end) this.#direct = whole;
      else this.#append(whole);
      return keep;
    }
    this.#appendHead(reply.head, connLine);
    if (stream !== null) {
      if (isHead) stream.cancel();
      else return this.#pipeStream(stream, keep);
    }
    if (body !== null && body.byteLength > 0) {
      if (body.byteLength <= INLINE_BODY_BYTES) this.#append(body);
      else return this.#writeLargeBody(body, keep);
    }
    return keep;
  }

  async #pipeStream(stream: Reply["stream"] & object, keep: boolean): Promise<boolean> {
    try {
      await this.#flush();
    } catch (e) {
      stream.cancel();
      throw e;
    }
    this.#action = "streaming response body";
    this.#rateKind = "send";
    this.#rateStartMs = this.#ctx.nowMs;
    this.#rateBytes = 0;
    try {
      await stream.pipe(this.#sink ??= { write: (bytes) => this.#writeStream(bytes) });
    } finally {
      this.#rateKind = "none";
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
    this.#ctx.accessLog!.log({
      remote: this.remote,
      wallMs: this.#ctx.clock.wallMs(),
      requestLine: head === null ? "" : `${head.method} ${head.target} HTTP/1.${head.version === 10 ? 0 : 1}`,
      status,
      bytes,
      referer: head === null ? "" : headerValue(head, "referer") ?? "",
      userAgent: head === null ? "" : headerValue(head, "user-agent") ?? "",
    });
  }

  /** Queues a response head with the per-exchange lines: `Date`, the `Connection` line, the blank line. */
  #appendHead(head: Uint8Array, connLine: Uint8Array): void {
    this.#append(head);
    this.#append(this.#ctx.dateLine.bytes(this.#ctx.wallMs));
    this.#append(connLine);
    this.#append(CRLF);
  }

  /** Appends bytes to the coalesced output, growing it as needed (bounded by OUT_FLUSH_BYTES per batch). */
  #append(bytes: Uint8Array): void {
    const n = bytes.byteLength;
    if (n === 0) return;
    if (this.#direct !== null) {
      // Something follows the answer we meant to write as is: it joins the batch first (order is kept).
      const direct = this.#direct;
      this.#direct = null;
      this.#append(direct);
    }
    let out = this.#out;
    if (out === null) {
      out = this.#out = n <= OUT_BUFFER_BYTES ? this.#ctx.outPool.acquire() : new Uint8Array(n);
    } else if (this.#outLen + n > out.byteLength) {
      const grown = new Uint8Array(Math.max(out.byteLength * 2, this.#outLen + n));
      grown.set(out.subarray(0, this.#outLen));
      out = this.#out = grown;
    }
    out.set(bytes, this.#outLen);
    this.#outLen += n;
  }

  /** Writes everything queued, in one write when the kernel takes it. */
  async #flush(): Promise<void> {
    if (this.#direct !== null) {
      const direct = this.#direct;
      this.#direct = null;
      this.#action = "writing response";
      return this.#writeAll(direct);
    }
    if (this.#outLen === 0) return;
    this.#action = "writing response";
    const out = this.#out!;
    const len = this.#outLen;
    this.#outLen = 0;
    await this.#writeAll(out.subarray(0, len));
    // Only a completed write returns the buffer: a pending one may still be reading from it, and a reused
    // buffer must never carry another connection's bytes to this peer. Grown buffers go to the GC.
    this.#out = null;
    this.#ctx.outPool.release(out);
  }

  /** Drops (never pools) the output buffer: a write may still be reading from it. */
  #releaseOut(): void {
    this.#out = null;
    this.#outLen = 0;
    this.#direct = null;
  }

  /** Writes all of `bytes` (writes may be partial) under the send deadline. */
  async #writeAll(bytes: Uint8Array): Promise<void> {
    const savedKind = this.#deadlineKind;
    const savedAt = this.#deadlineMs;
    let off = 0;
    while (off < bytes.byteLength) {
      if (this.#closed) throw new ClosedError();
      this.#setDeadline("send", this.#ctx.nowMs + this.#ctx.options.sendTimeoutMs);
      const n = await this.#conn.write(off === 0 ? bytes : bytes.subarray(off));
      off += n;
      this.#bytesOut += n;
      this.#ctx.stats.bytesOut += n;
      if (this.#rateKind === "send") this.#rateBytes += n;
    }
    this.#setDeadline(savedKind, savedAt);
  }

  #writeStream(bytes: Uint8Array): Promise<void> {
    return this.#writeAll(bytes);
  }

  // ---------------------------------------------------------------------------------------------
  // Errors, deadlines, closing

  #errorReply(code: ErrorCode): Reply {
    if (code !== "BODY_TOO_LARGE") this.#ctx.stats.protocolErrors++;
    return textReply(ERROR_STATUS[code], [], true);
  }

  /** Answers a protocol error with `Connection: close`, then lingers and closes (GUIDE §6). */
  async #protocolError(code: ErrorCode): Promise<void> {
    this.#ctx.stats.protocolErrors++;
    this.#queueErrorAnswer(code);
    await this.#flush();
    await this.#lingerClose();
  }

  /** Queues the `Connection: close` answer for `code` (a request that never reached a handler), counted and logged. */
  #queueErrorAnswer(code: ErrorCode): void {
    const reply = textReply(ERROR_STATUS[code], [], true);
    this.#appendHead(reply.head, CLOSE_LINE);
    this.#append(reply.body!);
    this.#ctx.stats.countResponse(reply.status);
    if (this.#ctx.accessLog !== null) this.#logAccess(this.#head, reply.status, reply.length);
  }

  /**
   * Half-closes our side and reads (discarding) until the peer closes, LINGER_MS passes or
   * LINGER_MAX_BYTES arrived: closing with unread input would send a reset that can destroy the answer
   * we just wrote before the peer reads it.
   */
  async #lingerClose(): Promise<void> {
    if (this.#closed) return;
    this.#setState("closing");
    this.#setDeadline("linger", this.#ctx.nowMs + LINGER_MS);
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
    if (this.#deadlineKind === "send" || this.#outLen > 0 || this.#direct !== null) {
      this.close();
      return;
    }
    const ctx = this.#ctx;
    this.#queueErrorAnswer(code);
    // The read loop is parked on a pending read; write the answer beside it, then close: the pending read
    // fails with Interrupted and the loop ends. A short send deadline bounds the write.
    this.#setState("closing");
    this.#setDeadline("send", ctx.nowMs + Math.min(ctx.options.sendTimeoutMs, LINGER_MS));
    this.#flush().then(() => this.#conn.closeWrite()).catch(() => {}).finally(() => {
      // Give the peer a moment to read the answer before the reset that closing with unread data causes.
      this.#setDeadline("linger", ctx.nowMs + LINGER_MS);
    });
  }

  /** A method, not an inline comparison: the state changes while a read is pending. */
  #isClosing(): boolean {
    return this.#state === "closing";
  }

  #setDeadline(kind: DeadlineKind, atMs: number): void {
    this.#deadlineKind = kind;
    this.#deadlineMs = kind === "none" ? Infinity : atMs;
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
