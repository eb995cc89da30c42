/**
 * The listening socket and every connection it accepted: the accept loop (with admission before any
 * byte is read), the connection registry, the deadline sweeper, and graceful shutdown as Go's
 * `Server.Shutdown` does it.
 *
 * This is the only place that accepts sockets or decides when connections die for server reasons.
 */

import type { Clock } from "../core/clock.ts";
import type { ConnInfo } from "./conn_info.ts";
import { ConnSlots } from "../core/conn_slots.ts";
import { AcceptBackoff } from "./accept_backoff.ts";
import {
  type AccessLogSink,
  type ConnContext,
  Connection,
  type ConnectionOptions,
  LARGE_READ_BUFFER_BYTES,
  OUT_BUFFER_BYTES,
  READ_BUFFER_BYTES,
  type RequestGate,
} from "./connection.ts";
import type { RefuseReason, Stats } from "../stats/stats.ts";
import type { Handler } from "../http/handler.ts";
import { DateLine } from "../http/date.ts";
import { textReply, WholeReplies } from "../http/response.ts";
import { BufferPool } from "../core/buffer_pool.ts";
import { errorMessage } from "../core/errors.ts";

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

/** Idle read buffers kept for new connections (churn under `Connection: close` would otherwise allocate). */
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

/** Closes a socket that may already be closed (by the peer, a timer or shutdown). */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // gone already
  }
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; anything else unchanged. */
export function unmapAddress(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

/** The sweeper's period: fine enough for the shortest deadline, never busier than every 5 ms. */
export function sweepIntervalMs(o: ConnectionOptions): number {
  const shortest = Math.min(o.headerTimeoutMs, o.idleTimeoutMs, o.bodyIdleTimeoutMs, o.sendTimeoutMs);
  return Math.max(5, Math.min(250, Math.floor(shortest / 4)));
}

export class Server {
  #deps: ServerDeps;
  #listener: Deno.TcpListener | null = null;
  #tlsListener: Deno.TlsListener | null = null;
  #conns = new ConnSlots<Connection>();
  #nextId = 1;
  #shuttingDown = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastTickMs = 0;
  #acceptDone: Promise<void> = Promise.resolve();
  /** The HTTPS accept loop (its end tells `replaceTls` the old listener is gone). */
  #tlsLoop: Promise<void> = Promise.resolve();
  /** The HTTPS listener is bound with SO_REUSEPORT (false when the runtime runs without --unstable-net). */
  #tlsReusePort = true;
  /** The pair the HTTPS listener uses (to rebind it should a swap without SO_REUSEPORT fail). */
  #tlsPems: { certPem: string; keyPem: string } | null = null;
  /** Shared with every connection; `nowMs` and `shuttingDown` are plain fields the server updates. */
  #ctx: { -readonly [K in keyof ConnContext]: ConnContext[K] };
  #idleWaiters: (() => void)[] = [];
  /** Ends the accept loops' back-off pauses in progress (see `#acceptFailed`). */
  #acceptPauses = new Set<() => void>();
  /**
   * Sockets accepted whose verdict is still awaited (not read meanwhile). `closed`: shutdown closed the
   * socket as never-spoke; the verdict then only releases its ticket. Slots, not a Set: one insert and one
   * delete per connection would churn a hash table (see conn_slots.ts).
   */
  #pending = new ConnSlots<{ conn: Deno.TcpConn | Deno.TlsConn; closed: boolean }>();
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
      readPool: new BufferPool(READ_BUFFER_BYTES, READ_POOL_KEPT),
      parserPool: [],
      largeReadPool: new BufferPool(LARGE_READ_BUFFER_BYTES, LARGE_READ_POOL_KEPT),
      outPool: new BufferPool(OUT_BUFFER_BYTES, OUT_POOL_KEPT),
      logError,
    };
  }

  /** Binds the listening socket (throws on failure, e.g. address in use). */
  listen(): Deno.NetAddr {
    const o = this.#deps.options;
    this.#listener = Deno.listen({
      hostname: o.host,
      port: o.port,
      transport: "tcp",
      reusePort: this.#deps.reusePort === true,
    });
    return this.#listener.addr;
  }

  /**
   * Binds the HTTPS socket (throws on failure: address in use, or a certificate/key Deno can't use).
   * Accepting costs no handshake: the handshake runs inside the connection's first read, so it counts
   * against the header deadline from accept, and a failed one ends only that connection.
   */
  listenTls(tls: TlsListenOptions): Deno.NetAddr {
    const hostname = this.#deps.options.host;
    let port = tls.port;
    if (this.#deps.reusePort !== true) {
      // The HTTPS listener is always bound with SO_REUSEPORT, so a reload can bind its successor (a new
      // certificate) before closing it. That option would also let a second server share the port
      // silently: a plain bind first keeps a clash an AddrInUse error (and fixes port 0 to one number).
      const probe = Deno.listen({ hostname, port, transport: "tcp" });
      port = probe.addr.port;
      probe.close();
    }
    this.#tlsListener = this.#bindTls(hostname, port, tls.certPem, tls.keyPem);
    this.#tlsPems = { certPem: tls.certPem, keyPem: tls.keyPem };
    return this.#tlsListener.addr;
  }

  #bindTls(hostname: string, port: number, cert: string, key: string): Deno.TlsListener {
    const options = {
      hostname,
      port,
      transport: "tcp" as const,
      cert,
      key,
      alpnProtocols: TLS_ALPN_PROTOCOLS,
    };
    // Without --unstable-net, Deno exits the process on `reusePort` (it does not throw): bind plainly then,
    // and swap a renewed pair by rebinding. `listenDatagram` exists exactly when that flag is on.
    if (typeof (Deno as unknown as Record<string, unknown>).listenDatagram !== "function") {
      this.#tlsReusePort = false;
    }
    return this.#tlsReusePort ? Deno.listenTls({ ...options, reusePort: true }) : Deno.listenTls(options);
  }

  /**
   * A new certificate and key (a reload): binds a second HTTPS listener on the same port (SO_REUSEPORT),
   * accepts on it, then closes the old one. New handshakes use the new pair; open connections keep the
   * one they shook hands with. Deno's TLS listener has no way to change its key in place (its SNI
   * resolver caches per name for the listener's life), hence the swap. Throws, keeping the old listener,
   * when the new one cannot be bound (e.g. the runtime refuses the pair).
   */
  async replaceTls(certPem: string, keyPem: string): Promise<void> {
    const old = this.#tlsListener;
    if (old === null || this.#shuttingDown) return;
    const oldLoop = this.#tlsLoop;
    const { hostname, port } = old.addr;
    let next: Deno.TlsListener;
    if (this.#tlsReusePort) {
      next = this.#bindTls(this.#deps.options.host, port, certPem, keyPem);
    } else {
      // Without SO_REUSEPORT the port must be free first: new connections are refused for the moment
      // between the close and the bind (milliseconds). A bind that fails then is retried with the old pair.
      try {
        old.close();
      } catch {
        // already closed
      }
      await oldLoop;
      try {
        next = this.#bindTls(this.#deps.options.host, port, certPem, keyPem);
      } catch (e) {
        const current = this.#tlsPems;
        if (current !== null) {
          this.#tlsListener = this.#bindTls(this.#deps.options.host, port, current.certPem, current.keyPem);
          if (this.#sweeper !== undefined) {
            this.#tlsLoop = this.#acceptLoop(this.#tlsListener);
            this.#acceptDone = Promise.all([this.#acceptDone, this.#tlsLoop]).then(() => {});
          }
        }
        throw new Error(
          `binding ${hostname}:${port} with the new certificate: ${errorMessage(e)}`,
        );
      }
    }
    this.#tlsPems = { certPem, keyPem };
    this.#tlsListener = next;
    if (this.#sweeper !== undefined) {
      this.#tlsLoop = this.#acceptLoop(next);
      this.#acceptDone = Promise.all([this.#acceptDone, this.#tlsLoop]).then(() => {});
    }
    try {
      old.close();
    } catch {
      // already closed
    }
    // The old socket leaves the port's SO_REUSEPORT group only once its pending accept is cancelled and
    // the runtime drops it; until then the kernel may still queue new connections on it (reset at its
    // close). Resolving after that point means every handshake from now on reaches the new listener.
    await oldLoop;
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

  /** Starts accepting; resolves when the listener closes. */
  serve(): Promise<void> {
    this.#sweeper = setInterval(() => this.#sweep(), this.#sweepMs);
    const loops: Promise<void>[] = [];
    if (this.#listener !== null) loops.push(this.#acceptLoop(this.#listener));
    if (this.#tlsListener !== null) {
      this.#tlsLoop = this.#acceptLoop(this.#tlsListener);
      loops.push(this.#tlsLoop);
    }
    this.#acceptDone = Promise.all(loops).then(() => {});
    return this.#acceptDone;
  }

  async #acceptLoop(listener: Deno.Listener<Deno.TcpConn | Deno.TlsConn, Deno.NetAddr>): Promise<void> {
    const backoff = new AcceptBackoff(
      listener === this.#tlsListener ? "HTTPS" : "HTTP",
      this.#deps.clock,
      this.#ctx.logError,
    );
    for (;;) {
      let conn: Deno.TcpConn | Deno.TlsConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (await this.#acceptFailed(backoff, e)) return;
        continue;
      }
      if (backoff.failing) backoff.succeeded();
      this.#admit(conn);
    }
  }

  /**
   * An accept loop's error path: true when the listener is closing (the loop ends); otherwise waits as
   * long as `backoff` says (0 for one peer's failure; a pause that grows while out of descriptors, so the
   * loop never spins) and returns false.
   */
  async #acceptFailed(backoff: AcceptBackoff, e: unknown): Promise<boolean> {
    if (this.#shuttingDown || e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) {
      return true;
    }
    const waitMs = backoff.failed(e);
    if (waitMs > 0) {
      // Shutdown cuts the pause short (it waits for the accept loops to end).
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#acceptPauses.delete(done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        this.#acceptPauses.add(done);
      });
    }
    return this.#shuttingDown;
  }

  #admit(conn: Deno.TcpConn | Deno.TlsConn): void {
    const remote = unmapAddress(conn.remoteAddr.hostname);
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
    conn: Deno.TcpConn | Deno.TlsConn,
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
    if (!p.closed) closeQuietly(conn);
  }

  /** Closes the sockets still waiting for a verdict (they never spoke). */
  #closePending(): void {
    this.#pending.forEach((p) => {
      if (p.closed) return;
      p.closed = true;
      closeQuietly(p.conn);
    });
  }

  /** Counts an admitted socket and starts serving it. */
  #start(conn: Deno.TcpConn | Deno.TlsConn, remote: string, ticket: number, key: string): void {
    const stats = this.#deps.stats;
    const addr = conn.remoteAddr;
    stats.accepted++;
    stats.open++;
    const id = this.#nextId++;
    const c = new Connection(conn, id, remote, addr.port, key, ticket, this.#ctx);
    const slot = this.#conns.add(c);
    c.serve().finally(() => {
      this.#conns.remove(slot);
      stats.open--;
      if (this.#conns.size === 0) this.#wakeIdleWaiters();
    });
  }

  /** Refuses at accept: banned peers get nothing; caps get a short 503, rate limits a 429. */
  #refuse(conn: Deno.TcpConn | Deno.TlsConn, reason: RefuseReason, retryAfterSec: number): void {
    if (reason === "banned") {
      try {
        conn.close();
      } catch {
        // gone already
      }
      return;
    }
    const bytes = reason === "conn_rate" ? refusalBytes(429, Math.max(1, retryAfterSec)) : REFUSE_503;
    if (reason === "conn_rate") this.#deps.stats.countResponse(429);
    else this.#deps.stats.countResponse(503);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // gone already
      }
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
    this.#coarseNowMs = now + this.#sweepMs;
    this.#ctx.nowMs = this.#coarseNowMs;
    this.#ctx.wallMs = this.#deps.clock.wallMs();
    this.#conns.forEach((c) => c.expireIfDue(now));
    if (now - this.#lastTickMs >= 1000) {
      this.#lastTickMs = now;
      this.#deps.gate?.tick();
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
    for (const wake of [...this.#acceptPauses]) wake();
    for (const l of [this.#listener, this.#tlsListener]) {
      try {
        l?.close();
      } catch {
        // already closed
      }
    }
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
}
