/**
 * The admin channel: a Unix socket (mode 0600) speaking the protocol of `protocol.ts` to `vento-admin`
 * and scripts. Owns the socket file's lifecycle (stale file replaced at start, removed at close), the
 * admin clients, their subscriptions and the rate baseline for `stats`.
 *
 * It must never hurt the data path: every admin client is bounded (line size, pending writes, client
 * count), work per request is one backend call, and no peer input can throw out of a client task.
 * The server itself knows nothing of sockets or guards: `main.ts` adapts them as an `AdminBackend`.
 */

import type { Clock } from "../core/clock.ts";
import { AcceptBackoff } from "../net/accept_backoff.ts";
import type { ConnInfo } from "../net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../guard/views.ts";
import type { StatsSnapshot } from "../stats/stats.ts";
import { formatMetrics } from "./metrics.ts";
import {
  type AdminError,
  decodeRequest,
  deriveRates,
  encodeError,
  encodeEvent,
  encodeOk,
  type HelloData,
  MAX_LINE_BYTES,
  PROTOCOL_VERSION,
  type Rates,
  type Request,
  type SnapshotEvent,
  type StatsReport,
  ZERO_RATES,
} from "./protocol.ts";
import { errorMessage } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";
import { concatBytes } from "../core/bytes.ts";

/** What the admin server needs from the rest of Vento; `main.ts` implements it. */
export interface AdminBackend {
  /** Version, pid, uptime, listen addresses, config path. */
  hello(): HelloData;
  stats(): StatsSnapshot;
  /** Every open connection; a promise when other threads hold them (WORKERS > 1: each is asked). */
  conns(): ConnInfo[] | Promise<ConnInfo[]>;
  /** The busiest `limit` clients. */
  clients(limit: number): ClientInfo[];
  /** Bans in force; a promise when other threads hold some (WORKERS > 1: each is asked). */
  bans(): BanInfo[] | Promise<BanInfo[]>;
  ban(target: string, ms: number, reason: string): { ok: true } | { ok: false; error: string };
  unban(target: string): boolean;
  /**
   * Closes connection `id`; answers whether it existed. A promise when the answer comes from another
   * thread (WORKERS > 1: the worker holding the connection says).
   */
  kick(id: number): boolean | Promise<boolean>;
  reload(): Promise<{ applied: string[]; needsRestart: string[] } | { errors: string[] }>;
  /** Graceful shutdown (same as SIGTERM). */
  drain(): void;
  /** For the dashboard header. */
  limits(): { maxConns: number };
}

/** Thrown by `AdminServer.start` when another live server already answers on the socket path. */
export class AdminSocketInUse extends Error {
  constructor(readonly path: string) {
    super(`another Vento is already listening on the admin socket ${path}`);
    this.name = "AdminSocketInUse";
  }
}

/**
 * Admin clients served at once. When all are taken, a new client evicts the one that has been idle the
 * longest (no request in progress, nothing read or written for the longest time), so an operator can
 * always get in, however many clients hold a slot without using it.
 */
export const MAX_ADMIN_CLIENTS = 32;

/** Deadlines and logging of the admin server (`ADMIN_IDLE_TIMEOUT_MS`, `ADMIN_SEND_TIMEOUT_MS`). */
export interface AdminServerOptions {
  /** A client with no request in progress and no subscription, silent this long, is closed. */
  idleTimeoutMs: number;
  /** A reply or snapshot write pending this long (a client that stopped reading) closes the client. */
  sendTimeoutMs: number;
  /** Error lines (accept failures); default console.error. */
  logError?: (message: string) => void;
}

export const DEFAULT_ADMIN_OPTIONS: Readonly<AdminServerOptions> = {
  idleTimeoutMs: 60_000,
  sendTimeoutMs: 10_000,
};
/** Socket read size per client (bytes). */
const READ_CHUNK_BYTES = 16 * 1024;
/** Rates for `stats` are derived over at least this window, refreshed by a background sample. */
export const RATE_SAMPLE_MS = 1_000;
/** Writes a client may have queued; above this it is not reading and is dropped. */
const MAX_PENDING_WRITES = 4;
/** File mode of the socket: owner only (the admin channel can ban and drain). */
const SOCKET_MODE = 0o600;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One connected admin client: its read loop, its write queue and its subscription. */
class AdminClient {
  #conn: Deno.Conn;
  #server: AdminServer;
  #closed = false;
  #pendingWrites = 0;
  #writeChain: Promise<void> = Promise.resolve();
  #subTimer: ReturnType<typeof setInterval> | null = null;
  #subId = -1;
  /** `clock.nowMs()` of the last byte read or write completed (for the idle timeout and eviction). */
  lastActiveMs: number;
  /** When the write in progress started, -1 when none is (for the send timeout). */
  writingSinceMs = -1;
  /** Requests read and not yet answered. */
  #answering = 0;
  readonly done: Promise<void>;

  constructor(conn: Deno.Conn, server: AdminServer) {
    this.#conn = conn;
    this.#server = server;
    this.lastActiveMs = server.nowMs();
    this.done = this.#serve();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Idle: no request being answered, no subscription, nothing queued to write. */
  get idle(): boolean {
    return this.#answering === 0 && this.#subTimer === null && this.#pendingWrites === 0;
  }

  async #serve(): Promise<void> {
    const buf = new Uint8Array(READ_CHUNK_BYTES);
    // Bytes of the current, not yet terminated line; bounded by MAX_LINE_BYTES.
    let partial: Uint8Array = new Uint8Array(0);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.lastActiveMs = this.#server.nowMs();
        let start = 0;
        const chunk = buf.subarray(0, n);
        // Only the bytes that just arrived are scanned; a pending partial line is never rescanned.
        for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, start)) {
          const piece = buf.subarray(start, i);
          let line: Uint8Array;
          if (partial.length > 0) {
            line = concatBytes([partial, piece]);
            partial = new Uint8Array(0);
          } else line = piece;
          start = i + 1;
          if (line.length > MAX_LINE_BYTES) return await this.#tooLong();
          await this.#handleLine(decoder.decode(line).replace(/\r$/, ""));
          if (this.#closed) return;
        }
        if (start < n) {
          if (partial.length + (n - start) > MAX_LINE_BYTES) return await this.#tooLong();
          partial = concatBytes([partial, buf.subarray(start, n)]);
        }
      }
    } catch {
      // A vanished or misbehaving admin peer is a normal event: close it, nothing more.
    } finally {
      this.close();
    }
  }

  async #tooLong(): Promise<void> {
    await this.send(
      encodeError(null, { code: "LINE_TOO_LONG", message: `line longer than ${MAX_LINE_BYTES} bytes` }),
    );
    await this.#writeChain.catch(() => {});
    this.close();
  }

  async #handleLine(line: string): Promise<void> {
    if (line.trim() === "") return;
    const decoded = decodeRequest(line);
    if (!decoded.ok) {
      await this.send(encodeError(decoded.failure.id, decoded.failure.error));
      return;
    }
    const req = decoded.request;
    if (req.op === "subscribe") {
      this.#subscribe(req.id, req.args);
      return;
    }
    if (req.op === "unsubscribe") {
      const had = this.#subTimer !== null;
      this.#unsubscribe();
      await this.send(encodeOk(req.id, { unsubscribed: had }));
      return;
    }
    let reply: string;
    this.#answering++;
    try {
      reply = await this.#server.answer(req);
    } catch (e) {
      const error: AdminError = { code: "INTERNAL", message: `${req.op} failed: ${errorMessage(e)}` };
      reply = encodeError(req.id, error);
    } finally {
      this.#answering--;
    }
    await this.send(reply);
  }

  #subscribe(id: number, args: { intervalMs: number; conns: boolean; bans: boolean; clients: number }): void {
    this.#unsubscribe();
    this.#subId = id;
    // A snapshot may wait for worker threads (WORKERS > 1): one at a time, and none after unsubscribe.
    let taking = false;
    const tick = async () => {
      if (this.#closed || taking) return;
      // A subscriber whose previous snapshot has not drained is not reading: drop it rather than
      // buffer snapshots without bound.
      if (this.#pendingWrites > 0) {
        this.close();
        return;
      }
      taking = true;
      let line: string;
      try {
        line = encodeEvent(id, await this.#server.snapshotEvent(args));
      } catch (e) {
        line = encodeError(id, { code: "INTERNAL", message: `snapshot failed: ${errorMessage(e)}` });
      } finally {
        taking = false;
      }
      if (this.#subId === id && this.#subTimer !== null) this.send(line);
    };
    this.#subTimer = setInterval(tick, args.intervalMs);
    void tick();
  }

  #unsubscribe(): void {
    if (this.#subTimer !== null) clearInterval(this.#subTimer);
    this.#subTimer = null;
  }

  /** Queues one line; resolves when written. Never rejects: a failed write closes the client. */
  send(text: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#pendingWrites >= MAX_PENDING_WRITES) {
      this.close();
      return Promise.resolve();
    }
    this.#pendingWrites++;
    const bytes = encoder.encode(text);
    this.#writeChain = this.#writeChain.then(async () => {
      try {
        let off = 0;
        this.writingSinceMs = this.#server.nowMs();
        while (off < bytes.length && !this.#closed) off += await this.#conn.write(bytes.subarray(off));
        this.lastActiveMs = this.#server.nowMs();
      } catch {
        this.close();
      } finally {
        this.writingSinceMs = -1;
        this.#pendingWrites--;
      }
    });
    return this.#writeChain;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    this.#server.forget(this);
  }
}

/**
 * The `hello` answer of a server started at `startedWallMs` (wall clock) listening on `listen` (the plain
 * HTTP address first, then the HTTPS one), shown as `host:port` with IPv6 hosts bracketed.
 */
export function helloData(
  startedWallMs: number,
  nowWallMs: number,
  listen: readonly Deno.NetAddr[],
  configPath: string | null,
): HelloData {
  return {
    version: VERSION,
    protocol: PROTOCOL_VERSION,
    pid: Deno.pid,
    uptimeMs: nowWallMs - startedWallMs,
    listen: listen.map((a) => `${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`),
    configPath: configPath ?? "",
  };
}

/** Serves the admin protocol on a Unix socket until `close()`. */
export class AdminServer {
  #path: string;
  #listener: Deno.Listener;
  #backend: AdminBackend;
  #clock: Clock;
  #clients = new Set<AdminClient>();
  #acceptLoop: Promise<void>;
  #closing = false;
  #closed: Promise<void> | null = null;
  #rateBase: StatsSnapshot | null = null;
  /** `clock.nowMs()` when `#rateBase` was taken. */
  #rateBaseMs = 0;
  #rates: Rates = { ...ZERO_RATES };
  #sampleTimer: ReturnType<typeof setInterval>;
  #socketIno: number | null;
  #options: AdminServerOptions;
  #logError: (message: string) => void;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweepMs = 0;
  #backoff: AcceptBackoff;
  /** Clients closed by their idle or send timeout, or evicted to make room, since start. */
  #timedOut = 0;
  #evicted = 0;
  /** Ends the accept loop's back-off pause in progress, if any. */
  #acceptPause: (() => void) | null = null;

  private constructor(
    path: string,
    listener: Deno.Listener,
    backend: AdminBackend,
    clock: Clock,
    ino: number | null,
    options: AdminServerOptions,
  ) {
    this.#path = path;
    this.#listener = listener;
    this.#backend = backend;
    this.#clock = clock;
    this.#socketIno = ino;
    this.#options = { ...options };
    this.#logError = options.logError ?? ((m: string) => console.error(m));
    this.#backoff = new AcceptBackoff("admin", clock, this.#logError);
    this.#sample();
    this.#sampleTimer = setInterval(() => this.#sample(), RATE_SAMPLE_MS);
    this.#armSweeper();
    this.#acceptLoop = this.#accept();
  }

  /**
   * Listens on `path` (mode 0600). A stale socket left by a crash (connect refused) is replaced; a live
   * one throws `AdminSocketInUse`; a path that exists but is not a socket is never deleted (throws).
   */
  static async start(
    path: string,
    backend: AdminBackend,
    clock: Clock,
    options: AdminServerOptions = DEFAULT_ADMIN_OPTIONS,
  ): Promise<AdminServer> {
    await removeStaleSocket(path);
    const listener = Deno.listen({ transport: "unix", path });
    let ino: number | null = null;
    try {
      // Before the first accept, so no client is served through a wider mode.
      await Deno.chmod(path, SOCKET_MODE);
      ino = (await Deno.lstat(path)).ino;
    } catch (e) {
      listener.close();
      await Deno.remove(path).catch(() => {});
      throw e;
    }
    return new AdminServer(path, listener, backend, clock, ino, options);
  }

  /** The socket path. */
  get path(): string {
    return this.#path;
  }

  /** Admin clients connected now. */
  get clientCount(): number {
    return this.#clients.size;
  }

  #wakeAccept(): void {
    const wake = this.#acceptPause;
    this.#acceptPause = null;
    wake?.();
  }

  /** Clients closed by the idle or send timeout since start. */
  get timedOut(): number {
    return this.#timedOut;
  }

  /** Clients closed to make room for a newer one since start. */
  get evicted(): number {
    return this.#evicted;
  }

  /** The clock's now, for the clients' deadlines. */
  nowMs(): number {
    return this.#clock.nowMs();
  }

  /** New deadlines (a reload); they apply to the clients already connected too. */
  setOptions(options: Pick<AdminServerOptions, "idleTimeoutMs" | "sendTimeoutMs">): void {
    this.#options.idleTimeoutMs = options.idleTimeoutMs;
    this.#options.sendTimeoutMs = options.sendTimeoutMs;
    this.#armSweeper();
  }

  /** The deadline sweep runs at a quarter of the shorter timeout, between 10 ms and 1 s. */
  #armSweeper(): void {
    const ms = Math.max(
      10,
      Math.min(
        1_000,
        Math.floor(
          Math.min(
            this.#options.idleTimeoutMs,
            this.#options.sendTimeoutMs,
          ) / 4,
        ),
      ),
    );
    if (ms === this.#sweepMs && this.#sweepTimer !== undefined) return;
    clearInterval(this.#sweepTimer);
    this.#sweepMs = ms;
    this.#sweepTimer = setInterval(() => this.#sweep(), ms);
  }

  /** Closes clients past their send or idle deadline. */
  #sweep(): void {
    const now = this.#clock.nowMs();
    for (const c of [...this.#clients]) {
      const stalled = c.writingSinceMs >= 0 && now - c.writingSinceMs >= this.#options.sendTimeoutMs;
      const idle = c.idle && now - c.lastActiveMs >= this.#options.idleTimeoutMs;
      if (stalled || idle) {
        this.#timedOut++;
        c.close();
      }
    }
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        if (this.#closing || e instanceof Deno.errors.BadResource) return;
        // Out of descriptors: without a pause this loop would spin (the connection stays queued).
        const waitMs = this.#backoff.failed(e);
        if (waitMs > 0) {
          // `close()` cuts the pause short.
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => this.#wakeAccept(), waitMs);
            this.#acceptPause = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        continue;
      }
      if (this.#backoff.failing) this.#backoff.succeeded();
      if (this.#clients.size >= MAX_ADMIN_CLIENTS) this.#evictOne();
      this.#clients.add(new AdminClient(conn, this));
    }
  }

  /**
   * Makes room for a new client: closes the one idle the longest, preferring clients with nothing in
   * progress over subscribers and clients waiting for an answer.
   */
  #evictOne(): void {
    let victim: AdminClient | null = null;
    for (const c of this.#clients) {
      if (victim === null) victim = c;
      else if (c.idle !== victim.idle) {
        if (c.idle) victim = c;
      } else if (c.lastActiveMs < victim.lastActiveMs) victim = c;
    }
    if (victim === null) return;
    this.#evicted++;
    victim.close();
  }

  /** Called by a client when it closes. */
  forget(client: AdminClient): void {
    this.#clients.delete(client);
  }

  /** Takes a background sample for the `stats` rates: one snapshot per `RATE_SAMPLE_MS`. */
  #sample(): void {
    try {
      const now = this.#clock.nowMs();
      // Half a period of slack: timers fire late, and a window shorter than that would be too noisy.
      if (this.#rateBase !== null && now - this.#rateBaseMs < RATE_SAMPLE_MS / 2) return;
      const cur = this.#backend.stats();
      if (this.#rateBase !== null) this.#rates = deriveRates(this.#rateBase, cur);
      this.#rateBase = cur;
      this.#rateBaseMs = now;
    } catch {
      // A failing backend must not kill the timer; `stats` will report the error itself.
    }
  }

  #statsReport(): StatsReport {
    return {
      snapshot: this.#backend.stats(),
      rates: { ...this.#rates },
      maxConns: this.#backend.limits().maxConns,
    };
  }

  /** One subscription event. */
  async snapshotEvent(args: { conns: boolean; bans: boolean; clients: number }): Promise<SnapshotEvent> {
    const ev: SnapshotEvent = { stats: this.#statsReport() };
    if (args.conns) ev.conns = await this.#backend.conns();
    if (args.bans) ev.bans = await this.#backend.bans();
    if (args.clients > 0) ev.clients = this.#backend.clients(args.clients);
    return ev;
  }

  /** Answers one request (all ops but subscribe/unsubscribe, which the client handles). */
  async answer(req: Request): Promise<string> {
    const b = this.#backend;
    switch (req.op) {
      case "hello":
        return encodeOk(req.id, b.hello());
      case "stats":
        return encodeOk(req.id, this.#statsReport());
      case "conns":
        return encodeOk(req.id, await b.conns());
      case "clients":
        return encodeOk(req.id, b.clients(req.args.limit));
      case "bans":
        return encodeOk(req.id, await b.bans());
      case "ban": {
        const r = b.ban(req.args.target, req.args.ms, req.args.reason);
        if (!r.ok) return encodeError(req.id, { code: "REFUSED", message: r.error });
        return encodeOk(req.id, { target: req.args.target, ms: req.args.ms });
      }
      case "unban":
        if (!b.unban(req.args.target)) {
          return encodeError(req.id, { code: "NOT_FOUND", message: `no ban on ${req.args.target}` });
        }
        return encodeOk(req.id, { target: req.args.target });
      case "kick":
        if (!(await b.kick(req.args.id))) {
          return encodeError(req.id, { code: "NOT_FOUND", message: `no connection ${req.args.id}` });
        }
        return encodeOk(req.id, { id: req.args.id });
      case "reload": {
        const r = await b.reload();
        if ("errors" in r) {
          return encodeError(req.id, { code: "REFUSED", message: "config not reloaded", details: r.errors });
        }
        return encodeOk(req.id, r);
      }
      case "drain":
        b.drain();
        return encodeOk(req.id, { draining: true });
      case "metrics":
        return encodeOk(req.id, formatMetrics(b.stats(), b.limits().maxConns, b.hello().uptimeMs));
      default:
        return encodeError(req.id, { code: "INTERNAL", message: `${req.op} is not answered here` });
    }
  }

  /**
   * Removes the socket file now if it is still ours, synchronously: for the process's exit paths (a
   * forced stop, a fatal error), where `close()` may not get to run. Idempotent; never throws.
   */
  removeSocketFileSync(): void {
    try {
      const st = Deno.lstatSync(this.#path);
      if (st.isSocket && (this.#socketIno === null || st.ino === this.#socketIno)) {
        Deno.removeSync(this.#path);
      }
    } catch {
      // already gone
    }
  }

  /** Stops listening, closes every admin client and removes the socket file (if it is still ours). */
  close(): Promise<void> {
    // Every caller (a graceful shutdown and a forced stop racing) waits for the same, whole close.
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sampleTimer);
    clearInterval(this.#sweepTimer);
    this.#wakeAccept();
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    await this.#acceptLoop;
    const clients = [...this.#clients];
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.done));
    try {
      // Only our own socket: a successor may already have replaced the file.
      const st = await Deno.lstat(this.#path);
      if (st.isSocket && (this.#socketIno === null || st.ino === this.#socketIno)) {
        await Deno.remove(this.#path);
      }
    } catch {
      // already gone
    }
  }
}

/** Removes a socket file left behind by a crashed server; throws if a live server answers on it. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!st.isSocket) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.NotFound) {
      await Deno.remove(path).catch(() => {});
      return;
    }
    throw e;
  }
  throw new AdminSocketInUse(path);
}
