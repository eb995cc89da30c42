/**
 * One TCP (or TLS, for `rediss://`) connection to Redis: pipelined commands (every command issued in the same turn of the event
 * loop leaves in one `write`, replies are matched in order), a deadline on the oldest unanswered
 * command, and subscriber mode for PUBLISH/SUBSCRIBE. It implements `RedisLink` for the guard's shared
 * store (src/guard/store/redis_store.ts), which owns reconnecting, backoff and the fallback decision.
 *
 * Failure is terminal and loud: a timeout, a malformed reply, EOF or a socket error closes the
 * connection, rejects every pending command with `RedisLinkError` and resolves `closed`. Never retries
 * on its own (the store decides when to come back). Owns its socket and its one sweep timer; nothing else.
 */

import { encodeCommand, RespDecoder, RespError, type RespValue } from "./resp.ts";
import type { RedisConnector, RedisLink } from "./redis_store.ts";
import type { StoreTarget } from "../../config/guard_store_url.ts";
import { errorMessage } from "../../core/errors.ts";

/** Why a link failed (the store logs it once per transition). */
export class RedisLinkError extends Error {}

/** Read buffer per connection (replies here are tens of bytes; a ban list sync may need several reads). */
const READ_BUFFER_BYTES = 16 * 1024;
/** How often the oldest pending command is checked against its deadline, as a share of the timeout. */
const SWEEPS_PER_TIMEOUT = 4;
/** Fastest sweep, whatever the timeout. */
const MIN_SWEEP_MS = 5;

interface Pending {
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  sentAtMs: number;
  /** How long this command may wait for its reply. */
  timeoutMs: number;
}

/**
 * Opens a link: TCP connect (and, for `rediss://`, the TLS handshake) within `connectTimeoutMs`, then
 * AUTH when a password is set, PING and SELECT, each within `timeoutMs`.
 */
export const connectRedis: RedisConnector = async (
  target: StoreTarget,
  { connectTimeoutMs, timeoutMs }: { connectTimeoutMs: number; timeoutMs: number },
) => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = open(target);
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RedisLinkError(`connect timed out after ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
  });
  let conn: Deno.Conn;
  try {
    conn = await Promise.race([connecting, timeout]);
  } catch (e) {
    // A connect that completes after the deadline must not leak its socket.
    connecting.then((c) => c.close(), () => {});
    throw e instanceof RedisLinkError ? e : new RedisLinkError(errorMessage(e));
  } finally {
    clearTimeout(timer);
  }
  const link = new RedisConnection(conn, timeoutMs);
  // The handshake gets the connect deadline, not the per-check one: it is off the request path, and a new
  // (TLS) connection's first replies may be slow while the process is busy.
  try {
    if (target.password !== null) await authenticate(link, target.user, target.password, connectTimeoutMs);
    const pong = await link.command(["PING"], connectTimeoutMs);
    if (pong instanceof RespError && pong.code === "NOAUTH") {
      throw new RedisLinkError(
        `AUTH failed: Redis requires a password and none is configured (${describe(pong)})`,
      );
    }
    if (pong !== "PONG") throw new RedisLinkError(`PING: ${describe(pong)}`);
    if (target.db !== 0) {
      const r = await link.command(["SELECT", target.db], connectTimeoutMs);
      if (r !== "OK") throw new RedisLinkError(`SELECT ${target.db}: ${describe(r)}`);
    }
  } catch (e) {
    link.close();
    throw e instanceof RedisLinkError ? e : new RedisLinkError(errorMessage(e));
  }
  return link;
};

/** TCP, or TLS with its handshake done (so a bad certificate fails here, under the connect deadline). */
async function open(target: StoreTarget): Promise<Deno.Conn> {
  if (!target.tls) {
    const tcp = await Deno.connect({ hostname: target.host, port: target.port, transport: "tcp" });
    tcp.setNoDelay(true);
    return tcp;
  }
  let tls: Deno.TlsConn;
  try {
    tls = await Deno.connectTls({
      hostname: target.host,
      port: target.port,
      ...(target.caCerts.length > 0 ? { caCerts: target.caCerts } : {}),
    });
  } catch (e) {
    throw new RedisLinkError(`TLS connect to ${target.host}:${target.port}: ${errorMessage(e)}`);
  }
  try {
    await tls.handshake();
  } catch (e) {
    tls.close();
    throw new RedisLinkError(`TLS handshake with ${target.host}:${target.port} failed: ${errorMessage(e)}`);
  }
  return tls;
}

/**
 * `AUTH [user] password`. Redis's refusal (WRONGPASS, or ERR when it has no password set) is reported
 * by its code and text, with the password scrubbed in case a server ever echoes it.
 */
async function authenticate(
  link: RedisConnection,
  user: string | null,
  password: string,
  timeoutMs: number,
): Promise<void> {
  const r = await link.command(user === null ? ["AUTH", password] : ["AUTH", user, password], timeoutMs);
  if (r === "OK") return;
  const as = user === null ? "" : ` as user "${user}"`;
  const why = password === "" ? describe(r) : describe(r).split(password).join("***");
  throw new RedisLinkError(`AUTH failed${as}: ${why}`);
}

/** A live connection (see the module comment). */
export class RedisConnection implements RedisLink {
  readonly #conn: Deno.Conn;
  readonly #timeoutMs: number;
  readonly #decoder = new RespDecoder();
  readonly #pending: Pending[] = [];
  /** Index of the oldest pending command in `#pending` (shifted lazily: O(1) per reply). */
  #head = 0;
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #onMessage: ((channel: string, payload: string) => void) | null = null;
  #sweep: ReturnType<typeof setInterval>;
  #lastSweepMs: number;
  #closedWith: Error | null = null;
  #resolveClosed!: () => void;
  /** Resolves once the connection is closed, for whatever reason. */
  readonly closed: Promise<void> = new Promise((r) => this.#resolveClosed = r);

  constructor(conn: Deno.Conn, timeoutMs: number) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
    this.#lastSweepMs = Date.now();
    const every = Math.max(MIN_SWEEP_MS, Math.floor(timeoutMs / SWEEPS_PER_TIMEOUT));
    this.#sweep = setInterval(() => this.#checkDeadline(every), every);
    void this.#readLoop();
  }

  /**
   * Sends one command; resolves with its reply (an error reply resolves as a `RespError` value). It fails
   * the link when no reply came within `timeoutMs` (default: the link's per-command timeout).
   */
  command(args: readonly (string | number)[], timeoutMs = this.#timeoutMs): Promise<RespValue> {
    if (this.#closedWith !== null) return Promise.reject(this.#closedWith);
    return new Promise<RespValue>((resolve, reject) => {
      this.#pending.push({ resolve, reject, sentAtMs: Date.now(), timeoutMs });
      this.#out.push(encodeCommand(args));
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(() => this.#flush());
      }
    });
  }

  /**
   * Enters subscriber mode on `channel` (the connection then carries only that): each published
   * message is handed to `onMessage`. Resolves once Redis confirmed the subscription.
   */
  async subscribe(
    channel: string,
    onMessage: (channel: string, payload: string) => void,
    timeoutMs = this.#timeoutMs,
  ): Promise<void> {
    this.#onMessage = onMessage;
    const r = await this.command(["SUBSCRIBE", channel], timeoutMs);
    if (!Array.isArray(r) || r[0] !== "subscribe") {
      throw new RedisLinkError(`SUBSCRIBE ${channel}: ${describe(r)}`);
    }
  }

  /** Closes the socket and fails whatever is pending. Idempotent. */
  close(): void {
    this.#fail(new RedisLinkError("closed"));
  }

  async #flush(): Promise<void> {
    this.#flushQueued = false;
    const parts = this.#out;
    if (parts.length === 0 || this.#closedWith !== null) return;
    this.#out = [];
    let bytes: Uint8Array;
    if (parts.length === 1) bytes = parts[0];
    else {
      let total = 0;
      for (const p of parts) total += p.length;
      bytes = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        bytes.set(p, at);
        at += p.length;
      }
    }
    try {
      for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    } catch (e) {
      this.#fail(new RedisLinkError(`write: ${errorMessage(e)}`));
    }
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#fail(new RedisLinkError("connection closed by Redis"));
          return;
        }
        this.#decoder.feed(buf.subarray(0, n));
        for (let v = this.#decoder.next(); v !== undefined; v = this.#decoder.next()) this.#deliver(v);
        if (this.#decoder.error !== null) {
          this.#fail(new RedisLinkError(`malformed reply: ${this.#decoder.error}`));
          return;
        }
        if (this.#closedWith !== null) return;
      }
    } catch (e) {
      this.#fail(new RedisLinkError(`read: ${errorMessage(e)}`));
    }
  }

  #deliver(v: RespValue): void {
    if (this.#onMessage !== null && Array.isArray(v) && v[0] === "message" && v.length === 3) {
      this.#onMessage(String(v[1]), String(v[2]));
      return;
    }
    if (this.#head >= this.#pending.length) {
      this.#fail(new RedisLinkError(`unexpected reply ${describe(v)}`));
      return;
    }
    const p = this.#pending[this.#head++];
    if (this.#head === this.#pending.length) {
      this.#pending.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024) {
      this.#pending.splice(0, this.#head);
      this.#head = 0;
    }
    p.resolve(v);
  }

  /**
   * Fails the link when its oldest command waited longer than the timeout. A sweep that itself ran
   * late means our own event loop was stalled (the reply may be sitting unread): wait one more sweep.
   */
  #checkDeadline(everyMs: number): void {
    const now = Date.now();
    const late = now - this.#lastSweepMs > everyMs * 2;
    this.#lastSweepMs = now;
    if (late || this.#head >= this.#pending.length) return;
    const oldest = this.#pending[this.#head];
    if (now - oldest.sentAtMs > oldest.timeoutMs) {
      this.#fail(new RedisLinkError(`no reply within ${oldest.timeoutMs} ms`));
    }
  }

  #fail(e: Error): void {
    if (this.#closedWith !== null) return;
    this.#closedWith = e;
    clearInterval(this.#sweep);
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer: nothing to release.
    }
    const pending = this.#pending.splice(this.#head);
    this.#pending.length = 0;
    this.#head = 0;
    for (const p of pending) p.reject(e);
    this.#resolveClosed();
  }
}

function describe(v: RespValue | undefined): string {
  if (v instanceof RespError) return v.message;
  return JSON.stringify(v);
}
