/**
 * The listening socket and every connection it accepted: the accept loop (with admission before any
 * byte is read), the connection registry, the deadline sweeper, and graceful shutdown as Go's
 * `Server.Shutdown` does it.
 *
 * This is the only place that accepts sockets or decides when connections die for server reasons.
 */

import type { Clock } from "./clock.ts";
import type { ConnInfo } from "./conn_info.ts";
import {
  type AccessLogSink,
  type ConnContext,
  Connection,
  type ConnectionOptions,
  type RequestGate,
} from "./connection.ts";
import type { RefuseReason, Stats } from "../stats/stats.ts";
import type { Handler } from "../http/handler.ts";
import { DateLine } from "../http/date.ts";
import { textReply } from "../http/response.ts";

/** Admission at accept (the guard implements it). */
export interface ConnGate extends RequestGate {
  admitConnection(remoteIp: string):
    | { ok: true; ticket: number; key: string }
    | { ok: false; reason: RefuseReason; key: string; retryAfterSec: number };
  /** Housekeeping, called about once a second. */
  tick(): void;
}

export interface ServerOptions extends ConnectionOptions {
  host: string;
  port: number;
}

export interface ServerDeps {
  options: ServerOptions;
  clock: Clock;
  stats: Stats;
  handler: Handler;
  gate: ConnGate | null;
  accessLog: AccessLogSink | null;
  /** Where error lines go (default console.error). */
  logError?: (message: string) => void;
}

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

export class Server {
  #deps: ServerDeps;
  #listener: Deno.TcpListener | null = null;
  #conns = new Map<number, Connection>();
  #nextId = 1;
  #shuttingDown = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastTickMs = 0;
  #acceptDone: Promise<void> = Promise.resolve();
  #ctx: ConnContext;
  #idleWaiters: (() => void)[] = [];

  constructor(deps: ServerDeps) {
    this.#deps = deps;
    const logError = deps.logError ?? ((m: string) => console.error(m));
    const server = this;
    this.#ctx = {
      options: deps.options,
      clock: deps.clock,
      stats: deps.stats,
      handler: deps.handler,
      gate: deps.gate,
      accessLog: deps.accessLog,
      dateLine: new DateLine(),
      get shuttingDown() {
        return server.#shuttingDown;
      },
      logError,
    };
  }

  /** Binds the listening socket (throws on failure, e.g. address in use). */
  listen(): Deno.NetAddr {
    const o = this.#deps.options;
    this.#listener = Deno.listen({ hostname: o.host, port: o.port, transport: "tcp" });
    return this.#listener.addr;
  }

  /** The bound address (after `listen`). */
  get addr(): Deno.NetAddr {
    if (this.#listener === null) throw new Error("not listening");
    return this.#listener.addr;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Starts accepting; resolves when the listener closes. */
  serve(): Promise<void> {
    const interval = sweepIntervalMs(this.#deps.options);
    this.#sweeper = setInterval(() => this.#sweep(), interval);
    this.#acceptDone = this.#acceptLoop();
    return this.#acceptDone;
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener!;
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (
          this.#shuttingDown || e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted
        ) {
          return;
        }
        // Out of descriptors or a transient error: say so once, back off briefly, keep serving.
        this.#ctx.logError(`accepting connection: ${e instanceof Error ? e.message : String(e)}`);
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const stats = this.#deps.stats;
    const addr = conn.remoteAddr;
    const remote = unmapAddress(addr.hostname);
    let ticket = -1;
    let key = remote;
    const gate = this.#deps.gate;
    if (gate !== null) {
      const v = gate.admitConnection(remote);
      if (!v.ok) {
        stats.refused[v.reason]++;
        this.#refuse(conn, v.reason, v.retryAfterSec);
        return;
      }
      ticket = v.ticket;
      key = v.key;
    }
    try {
      conn.setNoDelay(true);
    } catch {
      // the peer is already gone; the read loop will notice
    }
    stats.accepted++;
    stats.open++;
    const id = this.#nextId++;
    const c = new Connection(conn, id, remote, addr.port, key, ticket, this.#ctx);
    this.#conns.set(id, c);
    c.serve().finally(() => {
      this.#conns.delete(id);
      stats.open--;
      if (this.#conns.size === 0) this.#wakeIdleWaiters();
    });
  }

  /** Refuses at accept: banned peers get nothing; caps get a short 503, rate limits a 429. */
  #refuse(conn: Deno.TcpConn, reason: RefuseReason, retryAfterSec: number): void {
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
    for (const c of this.#conns.values()) c.expireIfDue(now);
    if (now - this.#lastTickMs >= 1000) {
      this.#lastTickMs = now;
      this.#deps.gate?.tick();
    }
  }

  /** Every open connection, for the admin channel. */
  connections(): ConnInfo[] {
    const now = this.#deps.clock.nowMs();
    const out: ConnInfo[] = [];
    for (const c of this.#conns.values()) out.push(c.info(now));
    return out;
  }

  /** Closes connection `id` now. Returns whether it existed. */
  kick(id: number): boolean {
    const c = this.#conns.get(id);
    if (c === undefined) return false;
    c.close();
    return true;
  }

  /** Closes every connection whose client key is `key` (after a ban). Returns how many. */
  kickKey(key: string): number {
    let n = 0;
    for (const c of this.#conns.values()) {
      if (c.key === key) {
        c.close();
        n++;
      }
    }
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
      try {
        this.#listener?.close();
      } catch {
        // already closed
      }
    }
    await this.#acceptDone;
    for (const c of this.#conns.values()) c.closeIfIdle();
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

  /** Closes every connection and stops the sweeper (second signal, or after the shutdown deadline). */
  forceClose(): void {
    this.#shuttingDown = true;
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    for (const c of this.#conns.values()) c.close();
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
