/**
 * The listening socket and every connection it accepted: the accept loop (with admission before any
 * byte is read), the connection registry, the deadline sweeper, and graceful shutdown as Go's
 * `Server.Shutdown` does it.
 *
 * This is the only place that accepts sockets or decides when connections die for server reasons.
 */

import { errorMessage } from "../core/errors.ts";
import type { Clock } from "../core/clock.ts";
import type { ConnInfo } from "./conn_info.ts";
import { ConnSlots } from "../core/conn_slots.ts";
import { AcceptBackoff, isOutOfDescriptors } from "./accept_backoff.ts";
import {
  type AccessLogSink,
  type ConnContext,
  Connection,
  type ConnectionOptions,
  LARGE_READ_BUFFER_BYTES,
  OUT_BUFFER_BYTES,
  PARSER_POOL_KEPT,
  READ_BUFFER_BYTES,
  type RequestGate,
} from "./connection.ts";
import type { RefuseReason, Stats } from "../stats/stats.ts";
import type { Handler } from "../http/handler.ts";
import { DateLine } from "../http/date.ts";
import { textReply, WholeReplies } from "../http/response.ts";
import { BufferPool } from "../core/buffer_pool.ts";
import type { Transport, TransportListener } from "./transport.ts";
import { listenTransport } from "./node_transport.ts";

/** The gate's answer at accept: a ticket to serve with, or why to refuse. */
export type ConnGateVerdict =
  | { ok: true; ticket: number; key: string }
  | { ok: false; reason: RefuseReason; key: string; retryAfterSec: number };

/** Admission at accept (the guard implements it). */
export interface ConnGate extends RequestGate {
  /**
   * A promise when part of the decision is made elsewhere (GUARD_STORE's shared connection rate): the
   * socket is then not read until it settles, and an ok verdict is released if the server no longer wants
   * the connection. Must never reject.
   */
  admitConnection(remoteIp: string): ConnGateVerdict | Promise<ConnGateVerdict>;
  /** Housekeeping, called about once a second. */
  tick(): void;
  /**
   * Runs `f` (synchronous) under the lock that guards state shared with other worker threads (WORKERS > 1);
   * absent when the gate's state is this thread's alone.
   */
  withLock?<T>(f: () => T): T;
}

export interface ServerOptions extends ConnectionOptions {
  host: string;
  port: number;
}

/** An HTTPS listener: its port (on `ServerOptions.host`) and the PEM texts of its certificate and key. */
export interface TlsListenOptions {
  port: number;
  certPem: string;
  keyPem: string;
}

/** ALPN offer: HTTP/1.1 only, so a client that wants h2 falls back instead of speaking it to our parser. */
export const TLS_ALPN_PROTOCOLS = ["http/1.1"];

export interface ServerDeps {
  options: ServerOptions;
  clock: Clock;
  stats: Stats;
  handler: Handler;
  gate: ConnGate | null;
  accessLog: AccessLogSink | null;
  /** Where error lines go (default console.error). */
  logError?: (message: string) => void;
  /** SO_REUSEPORT on the listeners, so WORKERS accept loops share one port (Linux spreads connections). */
  reusePort?: boolean;
}

/**
 * Idle read buffers kept for new connections and for idle ones waking (churn under `Connection: close`, or
 * thousands of keep-alive clients, would otherwise allocate): at most READ_POOL_MAX between the
 * once-a-second trims, READ_POOL_KEPT after each.
 */
export const READ_POOL_MAX = 4096;
export const READ_POOL_KEPT = 256;
/** Idle large read buffers kept. */
export const LARGE_READ_POOL_KEPT = 64;
/** Idle output buffers kept. */
export const OUT_POOL_KEPT = 64;

/** How long a refused connection may take to read its short answer before we close it. */
export const REFUSAL_LINGER_MS = 200;

const encoder = new TextEncoder();

/** A whole precomputed refusal (`503`/`429`), written at accept without parsing anything. */
function refusalBytes(status: number, retryAfterSec: number): Uint8Array {
  const extra: [string, string][] = retryAfterSec > 0 ? [["Retry-After", String(retryAfterSec)]] : [];
  const reply = textReply(status, extra, true);
  const head = new TextDecoder().decode(reply.head);
  return encoder.encode(`${head}Connection: close\r\n\r\n${new TextDecoder().decode(reply.body!)}`);
}

const REFUSE_503 = refusalBytes(503, 0);

/** `::ffff:1.2.3.4` → `1.2.3.4`; anything else unchanged. */
export function unmapAddress(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

/** The sweeper's period: fine enough for the shortest deadline, never busier than every 5 ms. */
export function sweepIntervalMs(o: ConnectionOptions): number {
  const shortest = Math.min(o.headerTimeoutMs, o.idleTimeoutMs, o.bodyIdleTimeoutMs, o.sendTimeoutMs);
  return Math.max(5, Math.min(250, Math.floor(shortest / 4)));
}

/** Gives back, once a second, the pooled read buffers and parsers a burst left beyond what rest needs. */
export function trimPools(ctx: Pick<ConnContext, "readPool" | "parserPool">): void {
  ctx.readPool.trim(READ_POOL_KEPT);
  if (ctx.parserPool.length > PARSER_POOL_KEPT) ctx.parserPool.length = PARSER_POOL_KEPT;
}

export class Server {
  #deps: ServerDeps;
  #listener: TransportListener | null = null;
  /**
   * The descriptor episodes of the listeners: the runtime accepts for us and, out of descriptors, leaves
   * connections waiting in the kernel's queue without a word (and without spinning), so a once-a-second
   * probe says when that starts and ends (see `#probeDescriptors`).
   */
  #descriptors: AcceptBackoff | null = null;
  #descriptorsLabel = "";
  #tlsListener: TransportListener | null = null;
  #conns = new ConnSlots<Connection>();
  #nextId = 1;
  #shuttingDown = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastTickMs = 0;
  /** Settles once both listeners are closed (shutdown waits for it before closing idle connections). */
  #acceptDone: Promise<void> = Promise.resolve();
  /** Shared with every connection; `nowMs` and `shuttingDown` are plain fields the server updates. */
  #ctx: { -readonly [K in keyof ConnContext]: ConnContext[K] };
  #idleWaiters: (() => void)[] = [];
  /**
   * Sockets accepted whose verdict is still awaited (not read meanwhile). `closed`: shutdown closed the
   * socket as never-spoke; the verdict then only releases its ticket. Slots, not a Set: one insert and one
   * delete per connection would churn a hash table (see conn_slots.ts).
   */
  #pending = new ConnSlots<{ conn: Transport; closed: boolean }>();
  /** Refreshed by every sweep to "now + one sweep period" (see `ConnContext.nowMs`). */
  #coarseNowMs: number;
  #sweepMs: number;

  constructor(deps: ServerDeps) {
    this.#deps = deps;
    this.#sweepMs = sweepIntervalMs(deps.options);
    this.#coarseNowMs = deps.clock.nowMs() + this.#sweepMs;
    const logError = deps.logError ?? ((m: string) => console.error(m));
    this.#ctx = {
      options: deps.options,
      clock: deps.clock,
      stats: deps.stats,
      handler: deps.handler,
      gate: deps.gate,
      accessLog: deps.accessLog,
      dateLine: new DateLine(),
      wholeReplies: new WholeReplies(),
      nowMs: this.#coarseNowMs,
      wallMs: deps.clock.wallMs(),
      shuttingDown: false,
      readPool: new BufferPool(READ_BUFFER_BYTES, READ_POOL_MAX),
      parserPool: [],
      largeReadPool: new BufferPool(LARGE_READ_BUFFER_BYTES, LARGE_READ_POOL_KEPT),
      outPool: new BufferPool(OUT_BUFFER_BYTES, OUT_POOL_KEPT),
      logError,
      connectionEnded: (c) => {
        this.#conns.remove(c.slot);
        deps.stats.open--;
        if (this.#conns.size === 0) this.#wakeIdleWaiters();
      },
    };
  }

  /** Binds the listening socket (rejects on failure, e.g. `Deno.errors.AddrInUse`). Accepting starts now. */
  async listen(): Promise<Deno.NetAddr> {
    const o = this.#deps.options;
    this.#watchDescriptors("HTTP");
    this.#listener = await listenTransport(
      { host: o.host, port: o.port, reusePort: this.#deps.reusePort === true, tls: null },
      (t) => this.#accepted(t),
      (e) => this.#acceptFailed(e),
    );
    return this.#listener.addr;
  }

  /**
   * Binds the HTTPS socket (rejects on failure: address in use, or a certificate/key the runtime can't
   * use). Accepting costs no handshake: the handshake runs inside the connection's first reads, so it
   * counts against the header deadline from accept, and a failed one ends only that connection.
   */
  async listenTls(tls: TlsListenOptions): Promise<Deno.NetAddr> {
    this.#watchDescriptors("HTTPS");
    this.#tlsListener = await listenTransport(
      {
        host: this.#deps.options.host,
        port: tls.port,
        reusePort: this.#deps.reusePort === true,
        tls: { certPem: tls.certPem, keyPem: tls.keyPem, alpnProtocols: TLS_ALPN_PROTOCOLS },
      },
      (t) => this.#accepted(t),
      (e) => this.#acceptFailed(e),
    );
    return this.#tlsListener.addr;
  }

  /**
   * One descriptor episode tracker for the process, named after what it serves: the listeners are bound
   * at start, before any episode, so naming both replaces a tracker that has seen nothing.
   */
  #watchDescriptors(what: "HTTP" | "HTTPS"): void {
    const was = this.#descriptorsLabel;
    const label = was === "" || was === what ? what : "HTTP and HTTPS";
    if (label === was) return;
    this.#descriptorsLabel = label;
    this.#descriptors = new AcceptBackoff(label, this.#deps.clock, this.#ctx.logError);
  }

  /**
   * A new certificate and key (a reload): new handshakes use them from now on; open connections keep the
   * pair they shook hands with. The listener stays bound, so no connection is refused meanwhile. Throws,
   * keeping the current pair, when the new one cannot be used (e.g. a key that is not the certificate's).
   */
  replaceTls(certPem: string, keyPem: string): Promise<void> {
    const l = this.#tlsListener;
    if (l === null || this.#shuttingDown) return Promise.resolve();
    l.setTls({ certPem, keyPem, alpnProtocols: TLS_ALPN_PROTOCOLS });
    return Promise.resolve();
  }

  /** The access log new lines go to (a reload of ACCESS_LOG), or null for none. */
  setAccessLog(sink: AccessLogSink | null): void {
    this.#ctx.accessLog = sink;
  }

  /** The bound address (after `listen`; the HTTPS one when only `listenTls` was called). */
  get addr(): Deno.NetAddr {
    const l = this.#listener ?? this.#tlsListener;
    if (l === null) throw new Error("not listening");
    return l.addr;
  }

  /** The HTTPS address, or null when no TLS listener is bound. */
  get tlsAddr(): Deno.NetAddr | null {
    return this.#tlsListener?.addr ?? null;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Starts the deadline sweeper; resolves when the listeners close. */
  serve(): Promise<void> {
    this.#sweeper = setInterval(() => this.#sweep(), this.#sweepMs);
    if (this.#listener === null && this.#tlsListener === null) return this.#acceptDone;
    let done!: () => void;
    this.#acceptDone = new Promise<void>((r) => done = r);
    this.#acceptDoneResolve = done;
    return this.#acceptDone;
  }

  #acceptDoneResolve: (() => void) | null = null;

  /** A socket the listener accepted, unread: admission decides its fate before any byte is read. */
  #accepted(t: Transport): void {
    this.#descriptors?.succeeded();
    if (this.#shuttingDown) {
      t.close();
      return;
    }
    this.#admit(t);
  }

  /**
   * Accepting failed (out of descriptors, or a transient error): the listener keeps accepting (the runtime
   * retries at its next readiness, not in a loop), and the descriptor tracker says so once per episode: one
   * line when failures start, one with their count when accepts work again.
   */
  #acceptFailed(e: Error): void {
    if (this.#shuttingDown) return;
    this.#descriptors?.failed(e);
  }

  /**
   * Once a second: can this process still get a descriptor (a loopback socket, bound and closed at once)?
   * Out of descriptors (EMFILE, ENFILE), new connections wait unaccepted; the probe's failure starts the
   * episode (one line) and its first success a second later ends it (one line, with the failed probes).
   * Any other failure (a runtime without permission to bind there) says nothing about descriptors.
   */
  #probeDescriptors(): void {
    const episode = this.#descriptors;
    if (episode === null || this.#shuttingDown) return;
    try {
      Deno.listen({ hostname: "127.0.0.1", port: 0 }).close();
    } catch (e) {
      if (isOutOfDescriptors(e)) episode.failed(e);
      return;
    }
    if (episode.failing) episode.succeeded();
  }

  #admit(conn: Transport): void {
    const remote = unmapAddress(conn.remoteIp);
    const gate = this.#deps.gate;
    if (gate === null) {
      this.#start(conn, remote, -1, remote);
      return;
    }
    const v = gate.admitConnection(remote);
    if (v instanceof Promise) {
      // The accept loop goes on; this socket waits, unread, for its verdict.
      void this.#admitLater(conn, remote, v);
      return;
    }
    if (!v.ok) {
      // The guard already counted this refusal in `stats.refused` (counting here too doubled it).
      this.#refuse(conn, v.reason, v.retryAfterSec);
      return;
    }
    this.#start(conn, remote, v.ticket, v.key);
  }

  /**
   * `#admit`'s end for a verdict that arrives later. A socket shutdown closed meanwhile (never spoke),
   * or whose verdict arrives once the server is shutting down, is closed and its ticket released.
   */
  async #admitLater(
    conn: Transport,
    remote: string,
    verdict: Promise<ConnGateVerdict>,
  ): Promise<void> {
    const p = { conn, closed: false };
    const slot = this.#pending.add(p);
    let v: ConnGateVerdict | null = null;
    try {
      v = await verdict;
    } catch (e) {
      // A gate must not reject; if one does, this socket alone is dropped (the ticket is unknown).
      this.#ctx.logError(
        `conn ${remote}: admitting connection: ${errorMessage(e)}`,
      );
    }
    this.#pending.remove(slot);
    if (v !== null && !p.closed && !this.#shuttingDown) {
      if (!v.ok) this.#refuse(conn, v.reason, v.retryAfterSec);
      else this.#start(conn, remote, v.ticket, v.key);
      return;
    }
    if (v !== null && v.ok) this.#deps.gate!.release(v.ticket);
    if (!p.closed) conn.close();
  }

  /** Closes the sockets still waiting for a verdict (they never spoke). */
  #closePending(): void {
    this.#pending.forEach((p) => {
      if (p.closed) return;
      p.closed = true;
      p.conn.close();
    });
  }

  /** Counts an admitted socket and starts serving it. */
  #start(conn: Transport, remote: string, ticket: number, key: string): void {
    const stats = this.#deps.stats;
    stats.accepted++;
    stats.open++;
    const id = this.#nextId++;
    const c = new Connection(conn, id, remote, conn.remotePort, key, ticket, this.#ctx);
    c.slot = this.#conns.add(c);
    // Forgotten through `connectionEnded` (no promise reaction per connection: memory while idle).
    void c.serve();
  }

  /** Refuses at accept: banned peers get nothing; caps get a short 503, rate limits a 429. */
  #refuse(conn: Transport, reason: RefuseReason, retryAfterSec: number): void {
    if (reason === "banned") {
      conn.close();
      return;
    }
    const bytes = reason === "conn_rate" ? refusalBytes(429, Math.max(1, retryAfterSec)) : REFUSE_503;
    if (reason === "conn_rate") this.#deps.stats.countResponse(429);
    else this.#deps.stats.countResponse(503);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      conn.close();
    };
    const timer = setTimeout(close, REFUSAL_LINGER_MS);
    // Write, half-close, and read until the peer closes or the linger ends: a reset must not eat the answer.
    (async () => {
      try {
        await conn.write(bytes);
        await conn.closeWrite();
        const sink = new Uint8Array(1024);
        while ((await conn.read(sink)) !== null) { /* discard */ }
      } catch {
        // peer gone or closed by the timer
      } finally {
        clearTimeout(timer);
        close();
      }
    })();
  }

  #sweep(): void {
    const now = this.#deps.clock.nowMs();
    // A reload that shortened a timeout shortens the period too, so no deadline fires a whole old period late.
    const period = sweepIntervalMs(this.#deps.options);
    if (period !== this.#sweepMs && this.#sweeper !== undefined) {
      this.#sweepMs = period;
      clearInterval(this.#sweeper);
      this.#sweeper = setInterval(() => this.#sweep(), period);
    }
    this.#coarseNowMs = now + this.#sweepMs;
    this.#ctx.nowMs = this.#coarseNowMs;
    this.#ctx.wallMs = this.#deps.clock.wallMs();
    this.#conns.forEach((c) => c.expireIfDue(now));
    if (now - this.#lastTickMs >= 1000) {
      this.#lastTickMs = now;
      this.#deps.gate?.tick();
      trimPools(this.#ctx);
      this.#probeDescriptors();
    }
  }

  /** Every open connection, for the admin channel. */
  connections(): ConnInfo[] {
    const now = this.#deps.clock.nowMs();
    const out: ConnInfo[] = [];
    this.#conns.forEach((c) => out.push(c.info(now)));
    return out;
  }

  /**
   * Closes connection `id` now. Returns whether it was open (a connection already closed, whose loop has
   * not yet wound down, counts as gone: a second kick of it is not found).
   */
  kick(id: number): boolean {
    const c = this.#conns.find((c) => c.id === id && c.state !== "closed");
    if (c === undefined) return false;
    c.close();
    return true;
  }

  /** Closes every connection whose client key is `key` (after a ban). Returns how many. */
  kickKey(key: string): number {
    let n = 0;
    this.#conns.forEach((c) => {
      if (c.key === key) {
        c.close();
        n++;
      }
    });
    return n;
  }

  #wakeIdleWaiters(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Graceful shutdown: stop accepting; in-flight answers go out with `Connection: close`; idle and
   * never-spoke connections close now; the rest get `timeoutMs`, then are force-closed. Idempotent.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#ctx.shuttingDown = true;
      this.#closeListeners();
    }
    await this.#acceptDone;
    this.#closePending();
    this.#conns.forEach((c) => c.closeIfIdle());
    if (this.#conns.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#idleWaiters.push(r)),
        new Promise<void>((r) => timer = setTimeout(r, timeoutMs)),
      ]);
      clearTimeout(timer);
    }
    this.forceClose();
  }

  #closeListeners(): void {
    const closing: Promise<void>[] = [];
    for (const l of [this.#listener, this.#tlsListener]) if (l !== null) closing.push(l.close());
    const done = this.#acceptDoneResolve;
    this.#acceptDoneResolve = null;
    if (done !== null) void Promise.all(closing).then(() => done());
  }

  /** Closes every connection and stops the sweeper (second signal, or after the shutdown deadline). */
  forceClose(): void {
    this.#shuttingDown = true;
    this.#ctx.shuttingDown = true;
    this.#closeListeners();
    this.#closePending();
    this.#conns.forEach((c) => c.close());
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#wakeIdleWaiters();
  }

  /** Open connections now. */
  get size(): number {
    return this.#conns.size;
  }

  /** Resolves once every connection has finished (used by tests and shutdown). */
  async closed(): Promise<void> {
    while (this.#conns.size > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
  }
}
