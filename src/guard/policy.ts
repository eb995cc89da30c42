/**
 * The guard's policy: who may connect and who may send a request, composed from the client key, the
 * client table, GCRA limits and the ban list. The connection layer calls `admitConnection` at accept
 * (before reading a byte), `admitRequest` per request and `release` at close.
 *
 * Decisions, in order of cost (tenet: refusing is cheaper than serving):
 * - ALLOWLIST skips bans, rates and the per-client cap; only the global cap still applies to it (file
 *   descriptors are finite for everyone). Tickets of allowlisted peers are negative and hold no slot.
 * - At accept: ban (key Map + CIDR scan) → global cap → table slot (all pinned: `table_full`, fail
 *   closed) → per-client cap → connection rate (GCRA).
 * - Per request: the key is the peer's, or, when the peer is in TRUSTED_PROXIES, the first address of
 *   `X-Forwarded-For` (walked right to left) that is not a trusted proxy. Then ban mirror → request
 *   rate. Connection caps and connection rate always stay with the peer.
 * - The guard is the server's gate (`admitConnection`, `admitRequest`, `release`). With a healthy
 *   shared store (GUARD_STORE) those hand the request rate and the connection rate to it (one promise
 *   each); every other check stays local. `decideConnection` and `decideRequest` are the same decisions
 *   taken here and now, synchronously (the shared table's gate calls them under its lock).
 * - Each check returns what to do as a value (a verdict, a slot still to judge, an answer);
 *   `#settleRate` is the one place a GCRA result becomes a violation, a Retry-After and a refusal or a
 *   dry-run log line.
 * - Each 429 and each connection refused for rate is a violation; `banAfterViolations` of them within
 *   `violationWindowMs` ban the key for banMs × 2^offences (capped at banMaxMs). Offences are forgotten
 *   after a clean stretch of `banMaxMs` past the latest ban (or when the table evicts the entry).
 * - `limitMode = "dry-run"`: bans and rate limits are decided, counted (violations, bans, the would-be
 *   refusals in `dryRunRefusals`) and logged, but nothing is refused for them. The caps (`global_cap`,
 *   `client_cap`, `table_full`) stay enforced: they protect our own resources, not policy.
 *   `stats.refused` counts only real refusals.
 *
 * Pure: never mentions `Deno.`; O(1) per call; `admitRequest` allocates nothing on the allowed path
 * unless the peer is a trusted proxy sending `X-Forwarded-For` (one key string then).
 */

import type { Config } from "../config/config.ts";
import type { Clock } from "../core/clock.ts";
import type { RefuseReason, Stats } from "../stats/stats.ts";
import { BanList } from "./bans.ts";
import { cidrContains, CidrSet, IpAddr } from "../core/cidr.ts";
import { banTarget, forwardedClient, keyOf, parsePeerIp } from "./client_key.ts";
import { type GcraLimit, gcraLimit, gcraNextTat, gcraWaitMs, retryAfterSec } from "./gcra.ts";
import { ClientTable, type GuardTable } from "./table.ts";
import type { SharedStore } from "./shared_store.ts";
import type { BanInfo, ClientInfo } from "./views.ts";

export type GuardOptions = Pick<
  Config,
  | "clientIpv6PrefixBits"
  | "trustedProxies"
  | "allowlist"
  | "guardTableCapacity"
  | "requestRatePerSec"
  | "requestBurst"
  | "connRatePerSec"
  | "connBurst"
  | "banAfterViolations"
  | "violationWindowMs"
  | "banMs"
  | "banMaxMs"
  | "banListCapacity"
  | "limitMode"
  | "maxConnsPerClient"
  | "maxConns"
  | "busyThresholdPercent"
  | "idleTimeoutMs"
  | "idleTimeoutBusyMs"
>;

export type ConnVerdict =
  | { ok: true; ticket: number; key: string }
  | { ok: false; reason: RefuseReason; key: string; retryAfterSec: number };

/** Ticket of an allowlisted peer (no table slot). */
const TICKET_ALLOWED = -1;
/** Ticket of an allowlisted peer that is also a trusted proxy (its XFF clients are still judged). */
const TICKET_ALLOWED_PROXY = -2;
/**
 * Whether a request is served without any judgement: an allowlisted peer speaking for itself (no
 * `X-Forwarded-For` naming a client behind it). Checked first, so such a request reads no clock and takes no
 * lock (a same-host proxy, allowlisted by default, sends every request of a site).
 */
export function needsNoJudgement(ticket: number, forwardedFor: string | undefined): boolean {
  return ticket < 0 && forwardedFor === undefined;
}

/** Retry-After for refusals that are about capacity, not about the client's behaviour. */
const CAPACITY_RETRY_SEC = 1;
/** Longest interval between two log lines the guard writes (an attack must not flood the log). */
const LOG_INTERVAL_MS = 1000;
/** Most rows `clients()` returns, whatever is asked. */
const MAX_CLIENT_ROWS = 10_000;
/** Prefix of the connection rate's keys in a shared store (the request rate uses the bare client key). */
export const CONN_RATE_KEY_PREFIX = "conn:";
/** Which rate `#settleRate` judges (its TAT, limit and log wording). */
const REQUEST_RATE = 0;
const CONNECTION_RATE = 1;
type RateKind = typeof REQUEST_RATE | typeof CONNECTION_RATE;
/** Reason recorded on automatic bans. */
const FLOOD = "flood";

/** Admission control for connections and requests. One per server. */
export class Guard {
  #o: GuardOptions;
  readonly #clock: Clock;
  readonly #stats: Stats;
  readonly #warn: (line: string) => void;
  readonly #table: GuardTable;
  readonly #bans: BanList;
  #trusted: CidrSet;
  #allow: CidrSet;
  #requestLimit: GcraLimit;
  #connLimit: GcraLimit;
  #enforce: boolean;
  /** Connections admitted here and not yet released (the cap and busy state count these, see below). */
  #open = 0;
  /**
   * Open connections of the whole server when several guards share MAX_CONNS (WORKERS > 1, attached by
   * `SharedGate`); null: this guard's own `#open` is the whole server.
   */
  #openSource: (() => number) | null = null;
  #expiredSeen = 0;
  #dryRunRefusals = 0;
  #lastLogMs = -Infinity;
  #suppressedLogs = 0;
  /** The untrusted X-Forwarded-For warning was given (see `#warnUntrusted`). */
  #warnedUntrustedForward = false;
  /** GUARD_STORE shared by several instances (null: the embedded table alone). */
  #store: SharedStore | null = null;
  /** Set while applying a ban or unban another instance published (so it is not published back). */
  #applyingShared = false;
  /** Scratch addresses, reused so the request path allocates nothing. */
  readonly #peer = new IpAddr();
  /** The last address `admitConnection` saw and what it parsed to (cleared when the options change). */
  readonly #lastPeer = {
    remote: "",
    addr: new IpAddr(),
    isIp: false,
    key: "",
    trusted: false,
    allowed: false,
  };
  readonly #forwarded = new IpAddr();
  readonly #scratch = new IpAddr();

  /**
   * `warn` receives the guard's log lines (bans, dry-run decisions, config notes), at most one per
   * second with a count of the ones suppressed.
   */
  constructor(
    options: GuardOptions,
    clock: Clock,
    stats: Stats,
    warn: (line: string) => void = console.warn,
    /** The client table; a `SharedClientTable` makes limits global across worker threads. */
    table: GuardTable = new ClientTable(options.guardTableCapacity),
  ) {
    this.#o = options;
    this.#clock = clock;
    this.#stats = stats;
    this.#warn = warn;
    this.#table = table;
    this.#bans = new BanList(options.banListCapacity);
    this.#trusted = this.#cidrSet("TRUSTED_PROXIES", options.trustedProxies);
    this.#allow = this.#cidrSet("ALLOWLIST", options.allowlist);
    this.#requestLimit = gcraLimit(options.requestRatePerSec, options.requestBurst);
    this.#connLimit = gcraLimit(options.connRatePerSec, options.connBurst);
    this.#enforce = options.limitMode === "enforce";
  }

  /** Connections admitted and not yet released. */
  get openConns(): number {
    return this.#open;
  }

  /**
   * Makes the MAX_CONNS cap and the busy idle timeout judge `source()` (the open connections of every
   * guard sharing the cap) instead of this guard's own count; null restores the own count. `source` is
   * called once per admission and per `idleTimeoutMs`: it must be O(1) and allocate nothing.
   */
  useOpenCount(source: (() => number) | null): void {
    this.#openSource = source;
  }

  /** Refusals that dry-run mode let through (bans and rate limits that would have applied). */
  get dryRunRefusals(): number {
    return this.#dryRunRefusals;
  }

  /**
   * The gate's decision at accept, before any byte is read. `remoteIp` as the runtime reports it (may be
   * `::ffff:1.2.3.4`). With a healthy shared store (GUARD_STORE) the connection rate is judged there
   * (then a promise; every other check stays local and synchronous, and the caps count this instance's
   * live sockets); otherwise exactly `decideConnection`, synchronously. A refusal after the await
   * releases what the synchronous part took (pin and open count).
   */
  admitConnection(remoteIp: string): ConnVerdict | Promise<ConnVerdict> {
    const store = this.#store;
    if (store === null || !store.healthy) return this.decideConnection(remoteIp);
    const now = this.#clock.nowMs();
    const local = this.#admitLocal(remoteIp, now);
    if (typeof local !== "number") return local;
    // Admitted provisionally: the slot stays pinned (holding its key) while the store decides.
    return this.#judgeConnShared(this.#admitted(local), local, now);
  }

  /** The whole connection decision taken here and now (no shared store): what WORKERS > 1 calls under its lock. */
  decideConnection(remoteIp: string): ConnVerdict {
    const now = this.#clock.nowMs();
    const local = this.#admitLocal(remoteIp, now);
    if (typeof local !== "number") return local;
    const waitMs = gcraWaitMs(this.#table.connTatMs[local], now, this.#connLimit);
    const retrySec = this.#settleRate(local, now, waitMs, CONNECTION_RATE);
    if (retrySec > 0) return this.#refuse("conn_rate", this.#lastPeer.key, retrySec);
    return this.#admitted(local);
  }

  /**
   * The gate's decision per request: 0 to serve, or the Retry-After seconds of a 429 (the connection then
   * closes). `forwardedFor` is the `X-Forwarded-For` value (see `forwardedForOf` for several field lines)
   * or undefined; it is read only when the peer is a trusted proxy. With a healthy shared store the
   * request rate is judged there (then a promise; the ban check stays local and synchronous); otherwise
   * exactly `decideRequest`, synchronously.
   */
  admitRequest(ticket: number, forwardedFor: string | undefined): number | Promise<number> {
    if (needsNoJudgement(ticket, forwardedFor)) return 0;
    const store = this.#store;
    if (store === null || !store.healthy) return this.decideRequest(ticket, forwardedFor);
    const now = this.#clock.nowMs();
    const slot = this.#requestSlot(ticket, forwardedFor, now);
    if (slot < 0) return -1 - slot;
    const banned = this.#countAndCheckBan(slot, now);
    if (banned >= 0) return banned;
    return this.#judgeShared(slot, now);
  }

  /** The whole request decision taken here and now (no shared store); allocates nothing when allowed. */
  decideRequest(ticket: number, forwardedFor: string | undefined): number {
    if (needsNoJudgement(ticket, forwardedFor)) return 0;
    const now = this.#clock.nowMs();
    const slot = this.#requestSlot(ticket, forwardedFor, now);
    if (slot < 0) return -1 - slot;
    const banned = this.#countAndCheckBan(slot, now);
    if (banned >= 0) return banned;
    const waitMs = gcraWaitMs(this.#table.requestTatMs[slot], now, this.#requestLimit);
    return this.#settleRate(slot, now, waitMs, REQUEST_RATE);
  }

  /** Attaches the store shared with other instances (GUARD_STORE); bans made here are published to it. */
  attachStore(store: SharedStore | null): void {
    this.#store = store;
  }

  /**
   * Applies a ban another instance published (the same forms as `ban`), without publishing it back;
   * `quiet` when another copy of this process (worker 0) logs it.
   */
  applySharedBan(target: string, ms: number, reason: string, quiet = false): void {
    this.#applyingShared = true;
    try {
      this.ban(target, ms, reason, quiet);
    } finally {
      this.#applyingShared = false;
    }
  }

  /** Applies an unban another instance published, without publishing it back. */
  applySharedUnban(target: string): void {
    this.#applyingShared = true;
    try {
      this.unban(target);
    } finally {
      this.#applyingShared = false;
    }
  }

  /** Connection closed (exactly once per ok verdict). */
  release(ticket: number): void {
    if (this.#open > 0) this.#open--;
    if (ticket >= 0) this.#table.unpin(ticket >> 1);
  }

  /** The idle keep-alive timeout to use now: shorter while above `busyThresholdPercent` of `maxConns`. */
  idleTimeoutMs(): number {
    const o = this.#o;
    const open = this.#openSource === null ? this.#open : this.#openSource();
    return open * 100 > o.maxConns * o.busyThresholdPercent ? o.idleTimeoutBusyMs : o.idleTimeoutMs;
  }

  /**
   * Operator ban of a client key, an address (banned as its client key) or a CIDR block, for `ms`.
   * Applies at the next accept and the next request of the key's open connections.
   */
  ban(
    keyOrCidr: string,
    ms: number,
    reason: string,
    /** No log line: another copy of this ban (the cluster supervisor's) logs it. */
    quiet = false,
  ): { ok: true } | { ok: false; error: string } {
    if (!Number.isFinite(ms) || ms <= 0) {
      return { ok: false, error: `ban length must be positive, got ${ms}` };
    }
    const target = banTarget(keyOrCidr, this.#o.clientIpv6PrefixBits);
    if (target === null) {
      return { ok: false, error: `"${keyOrCidr}" is not an IP address, client key or CIDR` };
    }
    const now = this.#clock.nowMs();
    const until = now + ms;
    if ("key" in target) {
      if (this.#allow.contains(target.addr)) return { ok: false, error: `${target.key} is allowlisted` };
      const slot = this.#table.slotOf(target.key);
      this.#addBan(target.key, until, reason, slot >= 0 ? this.#table.offences[slot] : 0, quiet);
      if (slot >= 0) this.#table.bannedUntilMs[slot] = Math.max(this.#table.bannedUntilMs[slot], until);
    } else {
      const rec = this.#bans.addCidr(target.cidr, until, reason);
      if (rec === null) return { ok: false, error: `too many CIDR bans (${this.#bans.size} held)` };
      this.#stats.bansAdded++;
      if (!this.#applyingShared) this.#store?.publishBan(rec.key, ms, reason, 0);
      // Mirror onto the held keys inside the block (not for blocks narrower than a key: those apply at accept).
      const t = this.#table;
      const a = this.#scratch;
      t.forEachSlot((slot) => {
        if (!this.#slotAddr(slot, a) || !this.#cidrCoversKey(rec.cidr!.bits, a)) return;
        if (cidrContains(rec.cidr!, a)) t.bannedUntilMs[slot] = Math.max(t.bannedUntilMs[slot], until);
      });
      if (!quiet) this.#warn(`guard: ban ${rec.key} for ${Math.ceil(ms / 1000)}s: ${reason}`);
    }
    this.#syncBanStats();
    return { ok: true };
  }

  /** Lifts a ban (same forms as `ban`) and forgives the key's violations and offences. */
  unban(keyOrCidr: string): boolean {
    const target = banTarget(keyOrCidr, this.#o.clientIpv6PrefixBits);
    if (!this.#applyingShared && this.#store !== null) {
      // Published whether or not this instance held it: another one may.
      this.#store.publishUnban(
        target === null ? keyOrCidr.trim() : "key" in target ? target.key : target.cidr,
      );
    }
    if (target === null) return this.#bans.remove(keyOrCidr.trim()) && this.#afterUnban();
    const t = this.#table;
    const now = this.#clock.nowMs();
    if ("key" in target) {
      const removed = this.#bans.remove(target.key);
      const slot = t.slotOf(target.key);
      if (slot >= 0) {
        t.violations[slot] = 0;
        t.offences[slot] = 0;
        t.bannedUntilMs[slot] = this.#banUntil(target.key, target.addr, now);
      }
      return removed && this.#afterUnban();
    }
    if (!this.#bans.remove(target.cidr)) return false;
    const a = this.#scratch;
    t.forEachSlot((slot, key) => {
      if (t.bannedUntilMs[slot] > now) {
        t.bannedUntilMs[slot] = this.#banUntil(key, this.#slotAddr(slot, a) ? a : null, now);
      }
    });
    return this.#afterUnban();
  }

  /** Every ban held, soonest-ending first. */
  bans(): BanInfo[] {
    const now = this.#clock.nowMs();
    const wall = this.#clock.wallMs();
    return this.#bans.list()
      .filter((r) => r.expiresAtMs > now)
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs)
      .map((r) => ({
        key: r.key,
        reason: r.reason,
        expiresAtWallMs: wall + (r.expiresAtMs - now),
        remainingMs: r.expiresAtMs - now,
        offences: r.offences,
      }));
  }

  /** Top talkers by recent request rate (then by open connections); at most `limit` rows. */
  clients(limit: number): ClientInfo[] {
    const n = Math.max(0, Math.min(Math.floor(limit), MAX_CLIENT_ROWS));
    if (n === 0) return [];
    const now = this.#clock.nowMs();
    const t = this.#table;
    const rows: ClientInfo[] = [];
    t.forEachSlot((slot, key) => {
      const rate = t.requestRatePerSec(slot, now);
      if (rate === 0 && t.conns[slot] === 0) return;
      const windowOpen = now - t.violationStartMs[slot] < this.#o.violationWindowMs;
      rows.push({
        key,
        conns: t.conns[slot],
        requestRatePerSec: Math.round(rate * 10) / 10,
        requests: t.requests[slot],
        violations: windowOpen ? t.violations[slot] : 0,
        limited: t.bannedUntilMs[slot] > now || gcraWaitMs(t.requestTatMs[slot], now, this.#requestLimit) > 0,
      });
    });
    rows.sort((a, b) =>
      b.requestRatePerSec - a.requestRatePerSec || b.conns - a.conns || b.requests - a.requests
    );
    return rows.length > n ? rows.slice(0, n) : rows;
  }

  /**
   * Live reload. Rates, bursts, caps, ban settings, lists, mode and the ban list bound apply at once
   * (held GCRA state carries over). `guardTableCapacity` needs a restart; a new `clientIpv6PrefixBits`
   * applies to new keys only (entries under old keys age out of the table).
   */
  applyOptions(options: GuardOptions): void {
    const now = this.#clock.nowMs();
    this.#warnedUntrustedForward = false;
    if (options.guardTableCapacity !== this.#table.capacity) {
      this.#log(
        now,
        `GUARD_TABLE_CAPACITY change (${this.#table.capacity} → ${options.guardTableCapacity}) takes effect after a restart`,
      );
    }
    this.#o = options;
    this.#lastPeer.remote = "";
    this.#trusted = this.#cidrSet("TRUSTED_PROXIES", options.trustedProxies);
    this.#allow = this.#cidrSet("ALLOWLIST", options.allowlist);
    this.#requestLimit = gcraLimit(options.requestRatePerSec, options.requestBurst);
    this.#connLimit = gcraLimit(options.connRatePerSec, options.connBurst);
    this.#enforce = options.limitMode === "enforce";
    for (const key of this.#bans.setCapacity(options.banListCapacity)) this.#clearMirror(key);
    this.#syncBanStats();
  }

  /** Housekeeping, about once a second: expire bans, refresh gauges. */
  tick(): void {
    const now = this.#clock.nowMs();
    this.#bans.expire(now);
    this.#syncBanStats();
    this.#stats.guardTableSize = this.#table.size;
    if (this.#suppressedLogs > 0 && now - this.#lastLogMs >= LOG_INTERVAL_MS) {
      this.#lastLogMs = now;
      this.#warn(`guard: ${this.#suppressedLogs} log lines suppressed`);
      this.#suppressedLogs = 0;
    }
  }

  // --- internals ---------------------------------------------------------------------------------

  /**
   * Every check at accept except the connection rate, in order of cost. Returns the final verdict
   * (refused, allowlisted, or admitted despite a ban in dry-run mode), or the slot whose connection rate
   * is still to judge (nothing pinned or counted yet). `#lastPeer` then describes the peer.
   */
  #admitLocal(remoteIp: string, now: number): ConnVerdict | number {
    const o = this.#o;
    const addr = this.#peer;
    const m = this.#lastPeer;
    if (remoteIp !== m.remote) {
      // Clients open connections in runs (a browser's six, a proxy's many): parse, key and classify
      // an address once per run rather than once per connection.
      m.isIp = parsePeerIp(remoteIp, m.addr);
      m.key = m.isIp ? keyOf(m.addr, o.clientIpv6PrefixBits) : remoteIp;
      m.trusted = m.isIp && this.#trusted.contains(m.addr);
      m.allowed = m.isIp && this.#allow.contains(m.addr);
      m.remote = remoteIp;
    }
    addr.copyFrom(m.addr);
    const isIp = m.isIp;
    const key = m.key;

    // The whole server's open connections (read once: both cap checks below use it).
    const open = this.#openSource === null ? this.#open : this.#openSource();
    if (m.allowed) {
      if (open >= o.maxConns) return this.#refuse("global_cap", key, CAPACITY_RETRY_SEC);
      this.#open++;
      return { ok: true, ticket: m.trusted ? TICKET_ALLOWED_PROXY : TICKET_ALLOWED, key };
    }

    let bannedRetrySec = 0;
    const banUntil = this.#banUntil(key, isIp ? addr : null, now);
    if (banUntil > now) {
      bannedRetrySec = retryAfterSec(banUntil - now);
      if (this.#enforce) return this.#refuse("banned", key, bannedRetrySec);
    }
    if (open >= o.maxConns) return this.#refuse("global_cap", key, CAPACITY_RETRY_SEC);

    const t = this.#table;
    const slot = this.#acquire(key, isIp ? addr : null, now);
    if (slot < 0) return this.#refuse("table_full", key, CAPACITY_RETRY_SEC);
    if (t.conns[slot] >= o.maxConnsPerClient) return this.#refuse("client_cap", key, CAPACITY_RETRY_SEC);
    // The table's ban mirror also holds bans another worker thread earned for this key (shared table).
    if (bannedRetrySec === 0 && t.bannedUntilMs[slot] > now) {
      bannedRetrySec = retryAfterSec(t.bannedUntilMs[slot] - now);
      if (this.#enforce) return this.#refuse("banned", key, bannedRetrySec);
    }
    if (bannedRetrySec === 0) return slot;
    // Dry run: a banned peer is let in (its rate is not judged on top) and the would-be refusal logged.
    this.#dryRun(now, `refuse connection from ${key}: banned`, bannedRetrySec);
    return this.#admitted(slot);
  }

  /** Pins `slot` for an admitted connection of the peer `#admitLocal` just judged, and counts it open. */
  #admitted(slot: number): ConnVerdict & { ok: true } {
    const m = this.#lastPeer;
    this.#table.pin(slot);
    this.#open++;
    // The low bit remembers whether this peer is a trusted proxy: trust is per address, and an IPv6
    // key (a /64) may hold both a trusted proxy and an untrusted host.
    return { ok: true, ticket: slot * 2 + (m.trusted ? 1 : 0), key: m.key };
  }

  /**
   * The slot whose request rate a request is judged on: the peer's, or, when the peer is a trusted proxy
   * sending `X-Forwarded-For`, its client's. When the request needs no rate check the answer is final
   * and comes back encoded as `-1 - answer` (0 to serve, else Retry-After seconds): an allowlisted peer
   * or client, or a full table (fail closed, as at accept). A number, so the allowed path allocates nothing.
   */
  #requestSlot(ticket: number, forwardedFor: string | undefined, now: number): number {
    const peerTrusted = ticket === TICKET_ALLOWED_PROXY || (ticket >= 0 && (ticket & 1) === 1);
    if (peerTrusted && forwardedFor !== undefined) {
      const addr = this.#forwarded;
      if (forwardedClient(forwardedFor, this.#trusted, addr, this.#scratch)) {
        if (this.#allow.contains(addr)) return -1;
        const key = keyOf(addr, this.#o.clientIpv6PrefixBits);
        const slot = this.#acquire(key, addr, now);
        if (slot >= 0) return slot;
        // Every slot is held by a live connection: fail closed, as at accept.
        if (this.#enforce) return -1 - CAPACITY_RETRY_SEC;
        this.#dryRun(now, `refuse request from ${key}: table_full`, CAPACITY_RETRY_SEC);
        return -1;
      }
    }
    if (!peerTrusted && forwardedFor !== undefined && !this.#warnedUntrustedForward) {
      this.#warnUntrusted(ticket);
    }
    return ticket >= 0 ? ticket >> 1 : -1; // a negative ticket: an allowlisted peer
  }

  /**
   * Once per start (and per reload): a request carried X-Forwarded-For from a peer not in
   * TRUSTED_PROXIES. Behind a proxy that means every visitor shares the proxy's limits (or, for an
   * allowlisted proxy such as loopback, none at all), which an operator must hear about; from a direct
   * client it is a header to ignore, and one line is all it can cause.
   */
  #warnUntrusted(ticket: number): void {
    this.#warnedUntrustedForward = true;
    const peer = ticket >= 0 ? this.#table.keyAt(ticket >> 1) : "an allowlisted address";
    this.#warn(
      `guard: a request from ${peer} carries X-Forwarded-For, but TRUSTED_PROXIES does not name it, so ` +
        "the header is ignored; if Vento runs behind a proxy there, set TRUSTED_PROXIES to the proxy's " +
        "address (e.g. TRUSTED_PROXIES=127.0.0.1, ::1) so each visitor is limited on its own",
    );
  }

  /** Counts a request of `slot`; -1 when the key is not banned, else the answer (0 in dry-run mode). */
  #countAndCheckBan(slot: number, now: number): number {
    const t = this.#table;
    t.countRequest(slot, now);
    const bannedUntil = t.bannedUntilMs[slot];
    if (bannedUntil <= now) return -1;
    const retrySec = retryAfterSec(bannedUntil - now);
    if (this.#enforce) return retrySec;
    this.#dryRun(now, `answer 429 to ${t.keyAt(slot)}: banned`, retrySec);
    return 0;
  }

  /**
   * Settles one GCRA decision for `slot`, given how long its client would have to wait (0: within its
   * rate), whoever computed that (the local TAT or the shared store). Within the rate the TAT advances;
   * beyond it the violation is counted (and may earn a ban) and the answer is the Retry-After seconds,
   * or 0 in dry-run mode with the would-be refusal logged.
   */
  #settleRate(slot: number, now: number, waitMs: number, rate: RateKind): number {
    const t = this.#table;
    const isRequest = rate === REQUEST_RATE;
    if (waitMs === 0) {
      const tat = isRequest ? t.requestTatMs : t.connTatMs;
      tat[slot] = gcraNextTat(tat[slot], now, isRequest ? this.#requestLimit : this.#connLimit);
      return 0;
    }
    const banMs = this.#violation(slot, now);
    const retrySec = retryAfterSec(banMs > 0 ? banMs : waitMs);
    if (this.#enforce) return retrySec;
    const key = t.keyAt(slot);
    this.#dryRun(
      now,
      isRequest ? `answer 429 to ${key}: rate` : `refuse connection from ${key}: conn_rate`,
      retrySec,
    );
    return 0;
  }

  /**
   * The request rate judged on the shared store (bans were checked locally already); the local GCRA
   * when the store cannot answer. The local TAT follows this instance's admitted share, so a fallback
   * starts from this instance's recent history rather than from a full burst.
   */
  async #judgeShared(slot: number, now: number): Promise<number> {
    const t = this.#table;
    const key = t.keyAt(slot);
    const limit = this.#requestLimit;
    const shared = await this.#store!.gcra(key, limit);
    const at = Math.max(now, this.#clock.nowMs());
    // An X-Forwarded-For client's slot is not pinned: it may have been evicted and reused meanwhile.
    if (t.keyAt(slot) !== key) return shared > 0 && this.#enforce ? retryAfterSec(shared) : 0;
    const waitMs = shared >= 0 ? shared : gcraWaitMs(t.requestTatMs[slot], at, limit);
    return this.#settleRate(slot, at, waitMs, REQUEST_RATE);
  }

  /**
   * The connection rate of a provisionally admitted connection judged on the shared store, under a key
   * space of its own (`conn:` + client key: no client key starts with `conn:`, so it never meets a request
   * rate's TAT); the local GCRA when the store cannot answer. The slot is pinned by `admitted`, so it
   * still holds its key. As `#judgeShared`, the local TAT follows this instance's admitted share.
   */
  async #judgeConnShared(
    admitted: ConnVerdict & { ok: true },
    slot: number,
    now: number,
  ): Promise<ConnVerdict> {
    const t = this.#table;
    const limit = this.#connLimit;
    const shared = await this.#store!.gcra(CONN_RATE_KEY_PREFIX + admitted.key, limit);
    const at = Math.max(now, this.#clock.nowMs());
    const waitMs = shared >= 0 ? shared : gcraWaitMs(t.connTatMs[slot], at, limit);
    const retrySec = this.#settleRate(slot, at, waitMs, CONNECTION_RATE);
    if (retrySec === 0) return admitted;
    this.release(admitted.ticket);
    return this.#refuse("conn_rate", admitted.key, retrySec);
  }

  /** Counts and logs a refusal that dry-run mode lets through. */
  #dryRun(now: number, what: string, retrySec: number): void {
    this.#dryRunRefusals++;
    this.#log(now, `dry-run: would ${what} (retry after ${retrySec}s)`);
  }

  /** Counts a violation; bans the key when it reaches the threshold. Returns the ban length or 0. */
  #violation(slot: number, now: number): number {
    const t = this.#table;
    const o = this.#o;
    if (t.violations[slot] === 0 || now - t.violationStartMs[slot] >= o.violationWindowMs) {
      t.violationStartMs[slot] = now;
      t.violations[slot] = 0;
    }
    if (++t.violations[slot] < o.banAfterViolations || t.bannedUntilMs[slot] > now) return 0;
    t.violations[slot] = 0;
    // A key that stayed clean for a whole `banMaxMs` after its latest ban starts over.
    if (t.offences[slot] > 0 && now - t.lastBanEndMs[slot] > o.banMaxMs) t.offences[slot] = 0;
    const offences = t.offences[slot];
    const ms = Math.min(o.banMs * 2 ** Math.min(offences, 60), o.banMaxMs);
    t.offences[slot] = offences + 1;
    t.lastBanEndMs[slot] = now + ms;
    t.bannedUntilMs[slot] = now + ms;
    const key = t.keyAt(slot);
    this.#addBan(key, now + ms, FLOOD, offences + 1);
    this.#syncBanStats();
    return ms;
  }

  /**
   * Records a ban and logs it. Ban lines are never rate-limited: an operator must see every ban once.
   * Their number stays bounded, as each flood ban takes BAN_AFTER_VIOLATIONS refusals of one client.
   */
  #addBan(key: string, until: number, reason: string, offences: number, quiet = false): void {
    const dropped = this.#bans.add(key, until, reason, offences);
    if (dropped !== null) this.#clearMirror(dropped);
    this.#stats.bansAdded++;
    const now = this.#clock.nowMs();
    if (!this.#applyingShared) this.#store?.publishBan(key, until - now, reason, offences);
    if (!quiet) {
      this.#warn(
        `guard: ban ${key} for ${Math.ceil((until - now) / 1000)}s: ${reason} (offence ${offences})`,
      );
    }
  }

  /** A ban dropped from the list must stop applying through the table mirror too. */
  #clearMirror(key: string): void {
    const slot = this.#table.slotOf(key);
    if (slot >= 0) this.#table.bannedUntilMs[slot] = 0;
  }

  /** When the ban on `key` (or a CIDR holding `addr`) ends, or 0. */
  #banUntil(key: string, addr: IpAddr | null, now: number): number {
    let until = 0;
    const rec = this.#bans.get(key, now);
    if (rec !== undefined) until = rec.expiresAtMs;
    if (addr !== null) {
      const c = this.#bans.matchCidr(addr, now);
      if (c !== undefined && c.expiresAtMs > until) until = c.expiresAtMs;
    }
    if (this.#bans.expired !== this.#expiredSeen) this.#syncBanStats();
    return until;
  }

  /** `table.acquire`, counting a full table and restoring the ban mirror of a re-created key. */
  #acquire(key: string, addr: IpAddr | null, now: number): number {
    const t = this.#table;
    const slot = t.acquire(key, addr, now);
    if (slot < 0) {
      this.#stats.guardTableFull++;
      return -1;
    }
    if (t.lastCreated) {
      t.bannedUntilMs[slot] = this.#banUntil(key, addr, now);
      this.#stats.guardTableSize = t.size;
    }
    return slot;
  }

  #refuse(reason: RefuseReason, key: string, retryAfterSec: number): ConnVerdict {
    this.#stats.refused[reason]++;
    return { ok: false, reason, key, retryAfterSec };
  }

  /** The key address of `slot` into `out`; false when the key is not an address. */
  #slotAddr(slot: number, out: IpAddr): boolean {
    const f = this.#table.family[slot];
    if (f !== 4 && f !== 6) return false;
    out.family = f;
    out.groups.set(this.#table.groups.subarray(slot * 8, slot * 8 + 8));
    return true;
  }

  /** Whether a block of `bits` covers a whole client key of `addr`'s family. */
  #cidrCoversKey(bits: number, addr: IpAddr): boolean {
    return bits <= (addr.family === 4 ? 32 : this.#o.clientIpv6PrefixBits);
  }

  #afterUnban(): boolean {
    this.#syncBanStats();
    return true;
  }

  #syncBanStats(): void {
    const s = this.#stats;
    s.bansExpired += this.#bans.expired - this.#expiredSeen;
    this.#expiredSeen = this.#bans.expired;
    s.bansActive = this.#bans.size;
  }

  #cidrSet(name: string, texts: readonly string[]): CidrSet {
    const invalid: string[] = [];
    const set = new CidrSet(texts, invalid);
    if (invalid.length > 0) this.#warn(`guard: ${name}: ignoring unparsable entries: ${invalid.join(", ")}`);
    return set;
  }

  /** Writes a log line, at most one per `LOG_INTERVAL_MS`; the rest are counted and reported later. */
  #log(now: number, line: string): void {
    if (now - this.#lastLogMs < LOG_INTERVAL_MS) {
      this.#suppressedLogs++;
      return;
    }
    this.#lastLogMs = now;
    const more = this.#suppressedLogs > 0 ? ` (+${this.#suppressedLogs} suppressed)` : "";
    this.#suppressedLogs = 0;
    this.#warn(`guard: ${line}${more}`);
  }
}
