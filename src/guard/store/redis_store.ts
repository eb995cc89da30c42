/**
 * GUARD_STORE=redis[s]://[[user]:password@]host:port[/db]: request-rate state and bans kept in Redis, so
 * several Vento instances behind one load balancer hold each client to one limit and one ban list.
 *
 * - Rate: one Lua script per check (EVALSHA; on NOSCRIPT, EVAL once and SCRIPT LOAD again), the same
 *   GCRA arithmetic as gcra.ts on Redis's own clock (`TIME`), so instances on machines whose clocks
 *   differ still share one "now". The TAT key expires when it would no longer matter (TAT − now), so
 *   Redis memory is bounded by the clients active in the last burst window.
 * - Bans: `SET <prefix>ban:<target> PX <ms>` plus a PUBLISH on `<prefix>bans`; every instance subscribes
 *   and mirrors them into its local ban list (the accept-time check stays local and synchronous). On
 *   (re)connect, local bans are pushed (`NX`) and the stored ones pulled, so a restarted Redis or a new
 *   instance catches up.
 * - Failure: any timeout (`timeoutMs`, default 50, for the checks a request waits on; setting up a
 *   connection — handshake, AUTH, SCRIPT LOAD, SUBSCRIBE, the ban sync — has `connectTimeoutMs`), error or
 *   disconnect (a refused AUTH or TLS handshake included) marks the store unhealthy: the guard then judges locally (fail open to the per-instance
 *   limiter), one log line per transition, the `guardStoreDegraded` gauge is 1, and a reconnect is tried
 *   with doubling backoff until it answers.
 * - Secrets: the password lives only in `StoreTarget.password`, which only the connector reads. Every
 *   line this module (or the config parser) shows uses `StoreTarget.url` / `redactGuardStore`, where it
 *   is `***`.
 *
 * Pure: sockets come from the injected `RedisConnector` (src/guard/store/redis_client.ts); never mentions `Deno.`.
 */

import type { Stats } from "../../stats/stats.ts";
import type { GcraLimit } from "../gcra.ts";
import { RespError, type RespValue } from "./resp.ts";
import type { SharedStore } from "../shared_store.ts";
import type { StoreTarget } from "../../config/guard_store_url.ts";
import type { BanInfo } from "../views.ts";
import { errorMessage } from "../../core/errors.ts";

/** One connection to Redis, as src/guard/store/redis_client.ts provides it. */
export interface RedisLink {
  /**
   * Resolves with the reply (error replies as `RespError`); rejects when the link fails or no reply came
   * within `timeoutMs` (default: the link's per-command timeout).
   */
  command(args: readonly (string | number)[], timeoutMs?: number): Promise<RespValue>;
  /** Enters subscriber mode on `channel`; resolves once confirmed (within `timeoutMs`, as `command`). */
  subscribe(
    channel: string,
    onMessage: (channel: string, payload: string) => void,
    timeoutMs?: number,
  ): Promise<void>;
  close(): void;
  /** Resolves when the link is closed, for any reason. */
  readonly closed: Promise<void>;
}

/** Opens a link (giving up after `connectTimeoutMs`) whose commands fail after `timeoutMs` without a reply. */
export type RedisConnector = (
  target: StoreTarget,
  limits: { connectTimeoutMs: number; timeoutMs: number },
) => Promise<RedisLink>;

/** What the store tells the guard (bans from other instances) and asks of it (bans to share on reconnect). */
export interface SharedBanSink {
  ban(target: string, ms: number, reason: string): void;
  unban(target: string): void;
  localBans(): readonly BanInfo[];
}

export interface RedisStoreOptions {
  target: StoreTarget;
  connect: RedisConnector;
  stats: Stats;
  /** One line per health transition. */
  log: (line: string) => void;
  /** Unique per process: messages an instance published itself are not applied twice. */
  instanceId: string;
  /** A command without a reply for this long marks the store unhealthy. */
  timeoutMs?: number;
  /** TCP connect plus the TLS handshake (AUTH, PING and SELECT after it have `timeoutMs` each). */
  connectTimeoutMs?: number;
  /** First reconnect delay; doubles per failed attempt up to `backoffMaxMs`. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Prefix of every key and of the channel (several deployments may share one Redis). */
  prefix?: string;
}

export const DEFAULT_STORE_TIMEOUT_MS = 50;
const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
const DEFAULT_BACKOFF_MIN_MS = 100;
const DEFAULT_BACKOFF_MAX_MS = 2000;
const DEFAULT_PREFIX = "vento:";
/** Commands per pipelined batch during the ban sync (each batch must answer within the timeout). */
const SYNC_BATCH = 500;
/** Most bans pulled from Redis on (re)connect. */
const MAX_SYNC_BANS = 100_000;
/** Longest reason text carried in a ban message. */
const MAX_REASON_CHARS = 200;

/**
 * GCRA on Redis's clock; the arithmetic of gcra.ts (`gcraWaitMs`, `gcraNextTat`). KEYS[1]: the TAT;
 * ARGV: interval T ms, tolerance τ ms. Returns "0" (conforms, TAT advanced, key expires at the new
 * TAT) or the wait in ms (refused, TAT untouched), as strings: Redis truncates Lua numbers to integers.
 */
export const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local wait = tat - tolerance - now
if wait > 1e-6 then return string.format('%.6f', wait) end
if tat < now then tat = now end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil(tat - now))
return '0'
`;

interface Session {
  cmd: RedisLink;
  sub: RedisLink;
  sha: string;
}

interface BanMessage {
  v: 1;
  op: "ban" | "unban";
  from: string;
  target: string;
  ms?: number;
  reason?: string;
}

/** The Redis-backed `SharedStore` (see the module comment). */
export class RedisStore implements SharedStore {
  readonly #o: Required<RedisStoreOptions>;
  readonly #channel: string;
  #sink: SharedBanSink | null = null;
  #session: Session | null = null;
  /** What the last transition log said, so each transition logs once. */
  #reported: "up" | "down" | null = null;
  #backoffMs: number;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #closing = false;
  #attempt: Promise<void> | null = null;

  constructor(options: RedisStoreOptions) {
    this.#o = {
      timeoutMs: DEFAULT_STORE_TIMEOUT_MS,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      backoffMinMs: DEFAULT_BACKOFF_MIN_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
      prefix: DEFAULT_PREFIX,
      ...options,
    };
    this.#channel = `${this.#o.prefix}bans`;
    this.#backoffMs = this.#o.backoffMinMs;
    options.stats.guardStoreDegraded = 1; // until the first connect succeeds
  }

  get healthy(): boolean {
    return this.#session !== null;
  }

  /** Connects (once; reconnects run on their own afterwards). Resolves after the first attempt either way. */
  start(sink: SharedBanSink): Promise<void> {
    this.#sink = sink;
    return this.#connect();
  }

  gcra(key: string, limit: GcraLimit): Promise<number> {
    const s = this.#session;
    if (s === null) return Promise.resolve(-1);
    return this.#gcra(s, key, limit);
  }

  publishBan(target: string, ms: number, reason: string, _offences: number): void {
    const s = this.#session;
    if (s === null) return; // shared on reconnect by the ban sync
    const px = Math.max(1, Math.ceil(ms));
    const why = reason.slice(0, MAX_REASON_CHARS);
    const msg: BanMessage = { v: 1, op: "ban", from: this.#o.instanceId, target, ms: px, reason: why };
    this.#fireAndForget(s, [
      ["SET", this.#banKey(target), why, "PX", px],
      ["PUBLISH", this.#channel, JSON.stringify(msg)],
    ]);
  }

  publishUnban(target: string): void {
    const s = this.#session;
    if (s === null) return;
    const msg: BanMessage = { v: 1, op: "unban", from: this.#o.instanceId, target };
    this.#fireAndForget(s, [
      ["DEL", this.#banKey(target)],
      ["PUBLISH", this.#channel, JSON.stringify(msg)],
    ]);
  }

  /** Stops reconnecting and closes the links. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    await this.#attempt;
    const s = this.#session;
    this.#session = null;
    if (s !== null) {
      s.cmd.close();
      s.sub.close();
      await Promise.all([s.cmd.closed, s.sub.closed]);
    }
  }

  // --- internals ---------------------------------------------------------------------------------

  async #gcra(s: Session, key: string, limit: GcraLimit): Promise<number> {
    const k = `${this.#o.prefix}gcra:${key}`;
    try {
      let r = await s.cmd.command(["EVALSHA", s.sha, 1, k, limit.intervalMs, limit.toleranceMs]);
      if (r instanceof RespError && r.code === "NOSCRIPT") {
        // Redis restarted or flushed its scripts behind a live link: run it whole once, load it again.
        r = await s.cmd.command(["EVAL", GCRA_LUA, 1, k, limit.intervalMs, limit.toleranceMs]);
        void s.cmd.command(["SCRIPT", "LOAD", GCRA_LUA]).then((sha) => {
          if (typeof sha === "string") s.sha = sha;
        }, () => {});
      }
      const wait = typeof r === "string" ? Number(r) : NaN;
      if (Number.isFinite(wait) && wait >= 0) return wait;
      this.#down(s, `GCRA script answered ${describe(r)}`);
    } catch (e) {
      this.#down(s, errorMessage(e));
    }
    return -1;
  }

  #fireAndForget(s: Session, commands: (string | number)[][]): void {
    for (const c of commands) {
      s.cmd.command(c).then(
        (r) => {
          if (r instanceof RespError) this.#down(s, `${c[0]}: ${r.message}`);
        },
        (e) => this.#down(s, errorMessage(e)),
      );
    }
  }

  #banKey(target: string): string {
    return `${this.#o.prefix}ban:${target}`;
  }

  #connect(): Promise<void> {
    this.#attempt ??= this.#tryConnect().finally(() => this.#attempt = null);
    return this.#attempt;
  }

  async #tryConnect(): Promise<void> {
    const o = this.#o;
    let cmd: RedisLink | null = null;
    let sub: RedisLink | null = null;
    try {
      const limits = { connectTimeoutMs: o.connectTimeoutMs, timeoutMs: o.timeoutMs };
      cmd = await o.connect(o.target, limits);
      sub = await o.connect(o.target, limits);
      // Setting up is off the request path (requests are judged locally meanwhile), so it gets the connect
      // deadline: the per-check timeout is for the GCRA round trips a request waits on.
      const setupMs = o.connectTimeoutMs;
      const sha = await cmd.command(["SCRIPT", "LOAD", GCRA_LUA], setupMs);
      if (typeof sha !== "string") throw new Error(`SCRIPT LOAD: ${describe(sha)}`);
      await sub.subscribe(this.#channel, (_ch, payload) => this.#onMessage(payload), setupMs);
      await this.#syncBans(cmd, setupMs);
      if (this.#closing) throw new Error("closing");
      const s: Session = { cmd, sub, sha };
      this.#session = s;
      this.#backoffMs = o.backoffMinMs;
      o.stats.guardStoreDegraded = 0;
      if (this.#reported !== "up") {
        this.#reported = "up";
        o.log(`guard store ${o.target.url}: connected; request limits and bans are shared`);
      }
      void Promise.race([cmd.closed, sub.closed]).then(() => this.#down(s, "connection lost"));
    } catch (e) {
      cmd?.close();
      sub?.close();
      await Promise.all([cmd?.closed, sub?.closed]);
      if (this.#closing) return;
      if (this.#reported !== "down") {
        this.#reported = "down";
        o.log(
          `guard store ${o.target.url}: unreachable (${
            errorMessage(e)
          }); limiting per instance until it answers`,
        );
      }
      this.#scheduleReconnect();
    }
  }

  #down(s: Session, why: string): void {
    if (this.#session !== s) return; // already handled
    this.#session = null;
    s.cmd.close();
    s.sub.close();
    const o = this.#o;
    o.stats.guardStoreDegraded = 1;
    if (this.#closing) return;
    if (this.#reported !== "down") {
      this.#reported = "down";
      o.log(`guard store ${o.target.url}: unavailable (${why}); limiting per instance until it is back`);
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closing || this.#retryTimer !== null) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#o.backoffMaxMs);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#closing && this.#session === null) void this.#connect();
    }, delay);
  }

  /**
   * Pushes local bans (NX: a longer one already stored wins) and applies the stored ones this instance
   * does not hold, in pipelined batches.
   */
  async #syncBans(cmd: RedisLink, timeoutMs: number): Promise<void> {
    const sink = this.#sink;
    if (sink === null) return;
    const pushed = new Set<string>();
    const local = sink.localBans();
    for (let i = 0; i < local.length; i += SYNC_BATCH) {
      const batch = local.slice(i, i + SYNC_BATCH);
      const replies = await Promise.all(batch.map((b) =>
        cmd.command([
          "SET",
          this.#banKey(b.key),
          b.reason.slice(0, MAX_REASON_CHARS),
          "PX",
          Math.max(1, Math.ceil(b.remainingMs)),
          "NX",
        ], timeoutMs)
      ));
      replies.forEach((r, j) => {
        if (r === "OK") pushed.add(batch[j].key);
      });
    }
    const prefix = this.#banKey("");
    let cursor = "0";
    let pulled = 0;
    do {
      const r = await cmd.command(
        ["SCAN", cursor, "MATCH", `${escapeGlob(prefix)}*`, "COUNT", SYNC_BATCH],
        timeoutMs,
      );
      if (!Array.isArray(r) || typeof r[0] !== "string" || !Array.isArray(r[1])) {
        throw new Error(`SCAN: ${describe(r)}`);
      }
      cursor = r[0];
      const keys = r[1].filter((k): k is string =>
        typeof k === "string" && !pushed.has(k.slice(prefix.length))
      );
      const [ttls, reasons] = await Promise.all([
        Promise.all(keys.map((k) => cmd.command(["PTTL", k], timeoutMs))),
        Promise.all(keys.map((k) => cmd.command(["GET", k], timeoutMs))),
      ]);
      keys.forEach((k, j) => {
        const ms = ttls[j];
        const reason = reasons[j];
        if (typeof ms === "number" && ms > 0 && typeof reason === "string" && pulled < MAX_SYNC_BANS) {
          pulled++;
          sink.ban(k.slice(prefix.length), ms, reason);
        }
      });
    } while (cursor !== "0" && pulled < MAX_SYNC_BANS);
  }

  #onMessage(payload: string): void {
    let m: Partial<BanMessage>;
    try {
      m = JSON.parse(payload);
    } catch {
      return; // not ours: another tool on the channel
    }
    if (m === null || typeof m !== "object" || m.v !== 1 || m.from === this.#o.instanceId) return;
    if (typeof m.target !== "string" || this.#sink === null) return;
    if (m.op === "ban" && typeof m.ms === "number" && m.ms > 0) {
      this.#sink.ban(m.target, m.ms, typeof m.reason === "string" ? m.reason : "shared");
    } else if (m.op === "unban") {
      this.#sink.unban(m.target);
    }
  }
}

/** Escapes Redis glob metacharacters (a prefix may contain them). */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}

function describe(v: RespValue | undefined): string {
  if (v instanceof RespError) return v.message;
  return JSON.stringify(v);
}
