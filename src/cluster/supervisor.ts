/**
 * The supervisor for WORKERS > 1: N worker threads (`cluster_worker.ts`), each the ordinary server
 * with its own event loop and its own SO_REUSEPORT listener on one port, one client table in shared
 * memory so per-client limits and bans are global, and one admin socket (here, on the main thread)
 * that shows and steers the whole server.
 *
 * Owns: starting workers (worker 0 binds first, so PORT=0 picks one port that the others then share),
 * their reports (stats summed, connection and ban lists merged), fanning out ban/unban/reload/drain,
 * routing a kick to the worker holding the connection (which answers whether it did), restarting a
 * worker that dies (uncaught error, or no report for HEARTBEAT_TIMEOUT_MS) with a back-off, and
 * releasing what a dead worker held in the shared table. The port never goes down while
 * one worker lives; a restarted worker binds it again beside the others.
 *
 * Never: serves HTTP itself, holds the table lock across an await, or lets one worker's death reach
 * the others.
 *
 * Each thread runs the program's own entry module (`ClusterOptions.workerUrl`, main.ts), named
 * `WORKER_NAME_PREFIX` + index so the entry knows to run `runClusterWorker` instead of `main()`: a bundle
 * or a compiled binary is one file, and its entry is the only module that is sure to be in it.
 */

import { type Config, loadConfig, SETTINGS } from "../config/config.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { ConnInfo } from "../net/conn_info.ts";
import { type AdminBackend, AdminServer, helloData } from "../admin/server.ts";
import { formatMetrics } from "../admin/metrics.ts";
import { Guard } from "../guard/policy.ts";
import { SharedGate, SUPERVISOR } from "../guard/shared_gate.ts";
import {
  createSharedGuardMemory,
  MAX_WORKERS,
  SharedClientTable,
  type SharedGuardMemory,
} from "../guard/shared_table.ts";
import { banTarget } from "../guard/client_key.ts";
import type { BanInfo } from "../guard/views.ts";
import { Stats, type StatsSnapshot } from "../stats/stats.ts";
import { type FromWorker, type ReloadResult, splitConnId, type ToWorker } from "./protocol.ts";
import { errorMessage } from "../core/errors.ts";
import { accessLogProblem } from "../app/preflight.ts";
import { FORCED_STOP_FLUSH_MS } from "../app/vento.ts";
import { settleWithin } from "../core/settle.ts";

/** How often each worker reports its counters (the admin stats are at most this stale). */
export const REPORT_INTERVAL_MS = 100;
/**
 * A worker silent this long is stuck (an endless loop): it is terminated and restarted. Reports come from
 * a timer, which runs between any two tasks however loaded the worker is, so only one task running this
 * long (a true hang) trips it; generous, because `main.ts` then restarts the whole process.
 */
export const HEARTBEAT_TIMEOUT_MS = 30_000;
/** How often the supervisor checks heartbeats and list subscriptions. */
const HOUSEKEEPING_MS = 500;
/** Connection and ban lists ride on reports only this long after an admin client last asked. */
export const LISTS_WANTED_MS = 10_000;
/** First restart delay after a worker dies; doubles per death within RESTART_RESET_MS, up to the max. */
export const RESTART_DELAY_MS = 100;
export const RESTART_DELAY_MAX_MS = 10_000;
const RESTART_RESET_MS = 60_000;
/** How long a worker may take to start listening before start-up fails. */
export const WORKER_START_TIMEOUT_MS = 30_000;
/**
 * Worker threads are named this prefix + their index: the entry module (main.ts) reads its thread's name
 * to choose between the worker entry and `main()`.
 */
export const WORKER_NAME_PREFIX = "vento-worker-";
/**
 * How long the supervisor waits for a worker to answer a `kick`; without an answer by then the kick is
 * reported as not done (the worker is stuck or dying; the heartbeat restarts it).
 */
export const KICK_REPLY_TIMEOUT_MS = 2_000;
/**
 * How long a one-shot `conns` or `bans` waits for every worker's current list; a worker that has not
 * answered by then (stuck or dying) contributes its last report's list.
 */
export const LISTS_REPLY_TIMEOUT_MS = 1_000;
/**
 * Lists the workers sent for a query this recent answer the next `conns` or `bans` too: a subscription
 * event asks for both, one after the other, and each round trip carries both lists from every worker.
 */
export const LISTS_FRESH_MS = 100;
/** Added to SHUTDOWN_TIMEOUT_MS before workers that have not stopped are terminated. */
const SHUTDOWN_GRACE_MS = 2_000;

/** Reload keys the supervisor judges (workers run with the bound port and without an admin socket). */
const SUPERVISOR_KEYS = new Set(SETTINGS.filter((s) => s.reload === "listen").map((s) => s.key));
/**
 * Config fields a reload never changes in the supervisor's view: what it bound or started with (a change
 * there needs a restart, as with WORKERS=1), and the TLS pair the workers swap for themselves.
 */
const LISTENING_FIELDS: ReadonlySet<string> = new Set(
  SETTINGS.filter((s) => s.reload === "listen" || s.reload === "restart" || s.reload === "tls").map((s) =>
    s.field
  ),
);

/** Gauges that describe the shared state, not one worker: the summary takes the largest, not the sum. */
const MAX_FIELDS = new Set(["bansActive", "bansExpired", "guardTableSize", "guardStoreDegraded"]);
/** Gauges of live connections: a dead worker's last values do not carry over. */
const LIVE_FIELDS = new Set(["open", "idle", "active", "atMs", "wallMs"]);

/** WORKERS as a thread count: `auto` = the cores the runtime reports, at most MAX_WORKERS. */
export function resolveWorkers(
  workers: number | "auto",
  cores: number = navigator.hardwareConcurrency,
): number {
  const n = workers === "auto" ? cores : workers;
  return Math.max(1, Math.min(MAX_WORKERS, Math.floor(n) || 1));
}

/**
 * Adds snapshot `s` into the accumulator `acc` (a snapshot-shaped record): counters are summed, the
 * shared gauges take the maximum; with `counterOnly`, live gauges are skipped (a retired worker).
 * Generic over the fields, so a counter added to `Stats` later is summed without a change here.
 */
export function addSnapshot(acc: Record<string, unknown>, s: StatsSnapshot, counterOnly = false): void {
  for (const [k, v] of Object.entries(s)) {
    if (counterOnly && LIVE_FIELDS.has(k)) continue;
    const cur = acc[k];
    if (typeof v === "number") {
      const c = typeof cur === "number" ? cur : 0;
      acc[k] = MAX_FIELDS.has(k) ? Math.max(c, v) : c + v;
    } else if (Array.isArray(v)) {
      const arr = Array.isArray(cur) ? cur as number[] : v.map(() => 0);
      v.forEach((x: number, i: number) => arr[i] = (arr[i] ?? 0) + x);
      acc[k] = arr;
    } else if (v !== null && typeof v === "object") {
      const rec = (cur ?? {}) as Record<string, number>;
      for (const [rk, rv] of Object.entries(v as Record<string, number>)) rec[rk] = (rec[rk] ?? 0) + rv;
      acc[k] = rec;
    }
  }
}

export interface ClusterOptions {
  configPath: string | null;
  portOverride?: number;
  clock?: Clock;
  /** Error lines: worker deaths and restarts, workers' own error lines (default console.error). */
  logError?: (message: string) => void;
  /** A worker silent this long is declared stuck (default HEARTBEAT_TIMEOUT_MS; tests shorten it). */
  heartbeatTimeoutMs?: number;
  /**
   * Called after a stuck worker was terminated and its restart scheduled. Deno 2.9 cannot stop a thread
   * spinning in JavaScript (`terminate()` returns but the thread runs on: denoland/deno PR 35657), and its
   * listener then holds its share of new connections unanswered, so `main.ts` exits for the service
   * manager to restart the process.
   */
  onStuck?: (index: number) => void;
  /** How long a kick waits for the worker's answer (default KICK_REPLY_TIMEOUT_MS; tests change it). */
  kickReplyTimeoutMs?: number;
  /**
   * The module every worker thread runs: the program's entry (main.ts), which dispatches on the thread
   * name. main.ts passes its own `import.meta.url` (a compiled binary: the embedded main module) or, in a
   * bundle, a `blob:` URL of the bundle's text (a file outside `--allow-read` cannot be a worker). Default:
   * main.ts from source, for tests that start a cluster directly.
   */
  workerUrl?: string | URL;
}

type WorkerState = "starting" | "running" | "stopped" | "dead";

/** One worker slot: the current thread (replaced on restart) and what it last reported. */
class WorkerSlot {
  worker: Worker | null = null;
  state: WorkerState = "starting";
  stats: StatsSnapshot | null = null;
  conns: ConnInfo[] | null = null;
  bans: BanInfo[] | null = null;
  lastReportMs = 0;
  deaths = 0;
  lastDeathMs = -Infinity;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  onListening: ((m: Extract<FromWorker, { op: "listening" }>) => void) | null = null;
  onFailed: ((e: Error) => void) | null = null;
  onStopped: (() => void) | null = null;
  constructor(readonly index: number) {}
}

/** A running multi-threaded Vento. */
export class Cluster {
  readonly config: Config;
  readonly workers: number;
  /** The config as started, for judging what a reload would need a restart for. */
  readonly #started: Config;
  readonly #options: ClusterOptions;
  readonly #clock: Clock;
  readonly #logError: (message: string) => void;
  readonly #heartbeatTimeoutMs: number;
  readonly #kickReplyTimeoutMs: number;
  readonly #memory: SharedGuardMemory;
  readonly #table: SharedClientTable;
  /** The supervisor's own guard over the shared table: client views and ban validation. */
  readonly #guard: Guard;
  readonly #gate: SharedGate;
  readonly #slots: WorkerSlot[];
  /** The config followers start with (worker 0's bound ports). */
  #followerConfig: Config;
  #addr: Deno.NetAddr | null = null;
  #tlsAddr: Deno.NetAddr | null = null;
  #admin: AdminServer | null = null;
  #startedWallMs: number;
  #housekeeping: ReturnType<typeof setInterval> | undefined;
  #listsUntilMs = -Infinity;
  #listsOn = false;
  /** Counters of workers that died (so the sums never go backwards). */
  #retired: Record<string, unknown> = {};
  #operatorBans = 0;
  #restarts = 0;
  #reloadId = 0;
  #reloads = new Map<
    number,
    { left: number; results: (ReloadResult | undefined)[]; resolve: (r: ReloadResult) => void }
  >();
  #kickId = 0;
  #queryId = 0;
  /** List queries sent and not yet fully answered: the workers still to answer, and the waiter. */
  #queries = new Map<number, { left: Set<number>; resolve: () => void }>();
  /** The query in flight (every caller meanwhile waits for it), and when the last one settled. */
  #listsQuery: Promise<void> | null = null;
  #listsAnsweredMs = -Infinity;
  /** Kicks sent to a worker and not yet answered, by request id; each is settled exactly once. */
  #kicks = new Map<
    number,
    { index: number; timer: ReturnType<typeof setTimeout>; resolve: (found: boolean) => void }
  >();
  #shuttingDown = false;
  #shutdownPromise: Promise<void> | null = null;
  #resolveDone!: () => void;
  readonly done: Promise<void>;

  private constructor(config: Config, workers: number, options: ClusterOptions) {
    this.config = { ...config };
    this.#started = { ...config };
    this.workers = workers;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#logError = options.logError ?? ((m: string) => console.error(m));
    this.#heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS;
    this.#kickReplyTimeoutMs = options.kickReplyTimeoutMs ?? KICK_REPLY_TIMEOUT_MS;
    this.#memory = createSharedGuardMemory(config.guardTableCapacity, workers);
    this.#table = new SharedClientTable(this.#memory);
    // Its only log lines are operator bans, which the workers apply quietly: each is logged once here.
    this.#guard = new Guard(
      this.config,
      this.#clock,
      new Stats(),
      (line) => this.#logError(line),
      this.#table,
    );
    this.#gate = new SharedGate(this.#guard, this.#table, SUPERVISOR);
    this.#slots = Array.from({ length: workers }, (_, i) => new WorkerSlot(i));
    this.#followerConfig = this.config;
    this.#startedWallMs = this.#clock.wallMs();
    this.done = new Promise<void>((r) => this.#resolveDone = r);
  }

  /** Starts `workers` threads on one port and the admin socket; throws (nothing left running) on failure. */
  static async start(config: Config, workers: number, options: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(config, workers, options);
    try {
      await c.#startAll();
    } catch (e) {
      c.forceClose();
      throw e;
    }
    return c;
  }

  /** The plain HTTP address (the HTTPS one when PLAIN_HTTP=off). */
  get addr(): Deno.NetAddr {
    return this.#addr!;
  }

  get tlsAddr(): Deno.NetAddr | null {
    return this.#tlsAddr;
  }

  get admin(): AdminServer | null {
    return this.#admin;
  }

  /** Workers restarted after dying, since start. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Workers serving now. */
  get running(): number {
    return this.#slots.filter((s) => s.state === "running").length;
  }

  /** The admin channel's view and controls of the whole server. */
  readonly backend: AdminBackend = {
    hello: () =>
      helloData(
        this.#startedWallMs,
        this.#clock.wallMs(),
        [...(this.config.plainHttp ? [this.addr] : []), ...(this.#tlsAddr ? [this.#tlsAddr] : [])],
        this.#options.configPath,
      ),
    stats: () => this.stats(),
    conns: async () => {
      this.#wantLists();
      await this.#queryLists();
      return this.#slots.flatMap((s) => s.state === "running" ? s.conns ?? [] : []);
    },
    // Read without the lock: a full table is 100k rows, and holding the lock that long would stall every
    // worker's admissions. A row may mix two moments of a slot that changes meanwhile; it is a view.
    clients: (limit) => this.#guard.clients(limit),
    bans: async () => {
      this.#wantLists();
      await this.#queryLists();
      return this.#bans();
    },
    ban: (target, ms, reason) => {
      const r = this.#gate.withLock(() => this.#guard.ban(target, ms, reason));
      if (r.ok) {
        this.#operatorBans++;
        this.#broadcast({ op: "ban", target, ms, reason });
      }
      return r;
    },
    unban: (target) => {
      const removed = this.#gate.withLock(() => this.#guard.unban(target));
      const t = banTarget(target, this.config.clientIpv6PrefixBits);
      const key = t === null ? target.trim() : "key" in t ? t.key : t.cidr;
      const known = this.#bans().some((b) => b.key === key);
      this.#broadcast({ op: "unban", target });
      return removed || known;
    },
    kick: (id) => this.kick(id),
    reload: () => this.reload(),
    drain: () => void this.shutdown(),
    limits: () => ({ maxConns: this.config.maxConns }),
  };

  /**
   * Closes the connection with server-wide id `id`, answering whether it was open. The worker holding it
   * answers (the supervisor's connection list may be missing or stale); a worker that is not running,
   * dies meanwhile or does not answer within the kick reply timeout means false.
   */
  kick(id: number): Promise<boolean> {
    const { index, localId } = splitConnId(id);
    const s = this.#slots[index];
    if (s === undefined || s.state !== "running") return Promise.resolve(false);
    const requestId = ++this.#kickId;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => this.#settleKick(requestId, false), this.#kickReplyTimeoutMs);
      this.#kicks.set(requestId, { index, timer, resolve });
      this.#post(s, { op: "kick", id: requestId, connId: localId });
    });
  }

  /**
   * Asks every running worker for its lists now and resolves when all have answered (their answers are
   * stored as their latest lists), or after LISTS_REPLY_TIMEOUT_MS: lists on reports may be up to
   * LISTS_WANTED_MS old or absent, and an operator's one-shot `conns` must show what is open now.
   */
  #queryLists(): Promise<void> {
    if (this.#listsQuery !== null) return this.#listsQuery;
    if (this.#clock.nowMs() - this.#listsAnsweredMs < LISTS_FRESH_MS) return Promise.resolve();
    const running = this.#slots.filter((s) => s.state === "running");
    if (running.length === 0) return Promise.resolve();
    const id = ++this.#queryId;
    this.#listsQuery = new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#settleQuery(id), LISTS_REPLY_TIMEOUT_MS);
      this.#queries.set(id, {
        left: new Set(running.map((s) => s.index)),
        resolve: () => {
          clearTimeout(timer);
          this.#listsQuery = null;
          this.#listsAnsweredMs = this.#clock.nowMs();
          resolve();
        },
      });
      for (const s of running) this.#post(s, { op: "query", id });
    });
    return this.#listsQuery;
  }

  #settleQuery(id: number): void {
    const q = this.#queries.get(id);
    if (q === undefined) return;
    this.#queries.delete(id);
    q.resolve();
  }

  /** Slot `index` answered (or died): a query waiting only for it is settled. */
  #queryAnswered(id: number, index: number): void {
    const q = this.#queries.get(id);
    if (q === undefined) return;
    q.left.delete(index);
    if (q.left.size === 0) this.#settleQuery(id);
  }

  /** Every worker's counters summed (plus those of workers that died), as one server's snapshot. */
  stats(): StatsSnapshot {
    const acc: Record<string, unknown> = structuredClone(this.#retired);
    for (const s of this.#slots) if (s.state === "running" && s.stats !== null) addSnapshot(acc, s.stats);
    const snap = acc as unknown as StatsSnapshot;
    snap.atMs = this.#clock.nowMs();
    snap.wallMs = this.#clock.wallMs();
    snap.bansAdded = (snap.bansAdded ?? 0) + this.#operatorBans;
    snap.guardTableSize = this.#table.size;
    for (const k of ["open", "idle", "active"] as const) snap[k] ??= 0;
    return snap;
  }

  /** Each worker's latest report (null while starting or dead), by worker index. */
  workerStats(): (StatsSnapshot | null)[] {
    return this.#slots.map((s) => s.state === "running" ? s.stats : null);
  }

  /**
   * Validates the config file whole, then has every worker re-read and apply it. The answer is the
   * lowest-numbered worker's (any worker's errors win), except for the settings judged here: the workers
   * run with the bound port and no admin socket of their own, so PORT, TLS_PORT and ADMIN_SOCKET are
   * compared with what the supervisor started with.
   */
  async reload(): Promise<ReloadResult> {
    if (this.#options.configPath === null) return { applied: [], needsRestart: [] };
    const loaded = await loadConfig(this.#options.configPath, { portOverride: this.#options.portOverride });
    if (!loaded.ok) return { errors: loaded.messages };
    // Each worker reopens the access log before it applies anything; checking the new file here first
    // keeps a log that cannot be opened (its folder removed) from reaching any worker, so they all refuse
    // alike.
    const logProblem = await accessLogProblem(loaded.config.accessLog);
    if (logProblem !== null) {
      return {
        errors: [
          `reopening the access log failed: ${logProblem} (nothing was applied; the old file stays in use)`,
        ],
      };
    }
    const live = this.#slots.filter((s) => s.state === "running");
    if (live.length === 0) return { errors: ["no worker is running"] };
    const id = ++this.#reloadId;
    const r = await new Promise<ReloadResult>((resolve) => {
      this.#reloads.set(id, { left: live.length, results: [], resolve });
      for (const s of live) this.#post(s, { op: "reload", id });
    });
    if ("errors" in r) return r;
    const needsRestart = r.needsRestart.filter((k) => !SUPERVISOR_KEYS.has(k));
    for (const st of SETTINGS) {
      if (!SUPERVISOR_KEYS.has(st.key)) continue;
      if (JSON.stringify(this.#started[st.field]) !== JSON.stringify(loaded.config[st.field])) {
        needsRestart.push(st.key);
      }
    }
    // Keep the supervisor's view (admin limits, ban validation, admin deadlines) on the new settings too.
    this.#applyOwnView(loaded.config);
    this.#admin?.setOptions({
      idleTimeoutMs: this.config.adminIdleTimeoutMs,
      sendTimeoutMs: this.config.adminSendTimeoutMs,
    });
    return { applied: r.applied, needsRestart };
  }

  /** Graceful shutdown of every worker, then the admin socket. Idempotent. */
  shutdown(): Promise<void> {
    this.#shutdownPromise ??= (async () => {
      this.#shuttingDown = true;
      clearInterval(this.#housekeeping);
      const waits: Promise<void>[] = [];
      for (const s of this.#slots) {
        clearTimeout(s.restartTimer);
        if (s.worker === null || s.state === "dead") continue;
        waits.push(new Promise<void>((r) => s.onStopped = r));
        this.#post(s, { op: "shutdown" });
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(waits),
        new Promise<void>((r) => timer = setTimeout(r, this.config.shutdownTimeoutMs + SHUTDOWN_GRACE_MS)),
      ]);
      clearTimeout(timer);
      this.forceClose();
      await this.#admin?.close();
      this.#resolveDone();
    })();
    return this.#shutdownPromise;
  }

  /**
   * The forced stop (a second signal): every worker closes its connections at once and flushes its
   * access log; workers that have not done so within FORCED_STOP_FLUSH_MS are terminated; then the admin
   * socket is closed and removed (bounded by the same wait).
   */
  async forceStop(): Promise<void> {
    this.#shuttingDown = true;
    clearInterval(this.#housekeeping);
    const waits: Promise<void>[] = [];
    for (const s of this.#slots) {
      clearTimeout(s.restartTimer);
      if (s.worker === null || s.state === "dead" || s.state === "stopped") continue;
      waits.push(new Promise<void>((r) => s.onStopped = r));
      this.#post(s, { op: "force" });
    }
    await settleWithin(Promise.all(waits), FORCED_STOP_FLUSH_MS);
    this.forceClose();
    await settleWithin(this.#admin?.close() ?? Promise.resolve(), FORCED_STOP_FLUSH_MS);
    this.#resolveDone();
  }

  /** Terminates every worker at once (second signal, failed start, end of shutdown). */
  forceClose(): void {
    this.#shuttingDown = true;
    clearInterval(this.#housekeeping);
    for (const s of this.#slots) {
      clearTimeout(s.restartTimer);
      // A worker still starting (a restart) fails now, so its start timer is cleared.
      s.onFailed?.(new Error(`worker ${s.index}: shut down while starting`));
      s.worker?.terminate();
      s.worker = null;
      if (s.state !== "dead") s.state = "stopped";
      s.onStopped?.();
    }
    for (const r of this.#reloads.values()) r.resolve({ errors: ["shutting down"] });
    this.#reloads.clear();
    for (const id of [...this.#kicks.keys()]) this.#settleKick(id, false);
    for (const id of [...this.#queries.keys()]) this.#settleQuery(id);
  }

  /** Test hook: makes worker `index` throw an uncaught error, as a bug would. */
  crashWorker(index: number): void {
    const s = this.#slots[index];
    if (s !== undefined) this.#post(s, { op: "crash" });
  }

  /** Test hook: makes worker `index` stop reporting, as a stuck one would look (caught by the heartbeat). */
  muteWorker(index: number): void {
    const s = this.#slots[index];
    if (s !== undefined) this.#post(s, { op: "mute" });
  }

  // --- internals ---------------------------------------------------------------------------------

  async #startAll(): Promise<void> {
    const first = await this.#spawn(this.#slots[0], this.config);
    this.#addr = first.addr;
    this.#tlsAddr = first.tlsAddr;
    this.#followerConfig = {
      ...this.config,
      port: this.config.plainHttp ? first.addr.port : this.config.port,
      tlsPort: first.tlsAddr?.port ?? this.config.tlsPort,
    };
    await Promise.all(this.#slots.slice(1).map((s) => this.#spawn(s, this.#followerConfig)));
    if (this.config.adminSocket !== "off") {
      this.#admin = await AdminServer.start(this.config.adminSocket, this.backend, this.#clock, {
        idleTimeoutMs: this.config.adminIdleTimeoutMs,
        sendTimeoutMs: this.config.adminSendTimeoutMs,
        logError: this.#logError,
      });
    }
    this.#housekeeping = setInterval(() => this.#housekeep(), HOUSEKEEPING_MS);
  }

  /** Starts a thread in `slot`; resolves when it listens, rejects (thread terminated) if it cannot. */
  #spawn(slot: WorkerSlot, config: Config): Promise<Extract<FromWorker, { op: "listening" }>> {
    const worker = new Worker(this.#options.workerUrl ?? new URL("../../main.ts", import.meta.url), {
      type: "module",
      name: `${WORKER_NAME_PREFIX}${slot.index}`,
    });
    slot.worker = worker;
    slot.state = "starting";
    slot.stats = null;
    slot.conns = null;
    slot.bans = null;
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.#onMessage(slot, worker, e.data);
    worker.onerror = (e: ErrorEvent) => {
      // Without preventDefault an uncaught error in a worker would take the whole process down.
      e.preventDefault();
      if (slot.worker !== worker) return;
      if (slot.state === "starting") slot.onFailed?.(new Error(`worker ${slot.index}: ${e.message}`));
      else this.#died(slot, e.message);
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          slot.onFailed?.(new Error(`worker ${slot.index} did not start in ${WORKER_START_TIMEOUT_MS} ms`)),
        WORKER_START_TIMEOUT_MS,
      );
      slot.onListening = (m) => {
        clearTimeout(timer);
        slot.onListening = slot.onFailed = null;
        slot.state = "running";
        slot.lastReportMs = this.#clock.nowMs();
        resolve(m);
      };
      slot.onFailed = (err) => {
        clearTimeout(timer);
        slot.onListening = slot.onFailed = null;
        worker.terminate();
        if (slot.worker === worker) slot.worker = null;
        slot.state = "dead";
        reject(err);
      };
      worker.postMessage(
        {
          op: "start",
          index: slot.index,
          config,
          configPath: this.#options.configPath,
          portOverride: this.#options.portOverride,
          memory: this.#memory,
          reportMs: REPORT_INTERVAL_MS,
          lists: this.#listsOn,
        } satisfies ToWorker,
      );
    });
  }

  #onMessage(slot: WorkerSlot, worker: Worker, m: FromWorker): void {
    if (slot.worker !== worker) return;
    switch (m.op) {
      case "listening":
        slot.onListening?.(m);
        return;
      case "failed": {
        const err = m.name === "AddrInUse" ? new Deno.errors.AddrInUse(m.message) : new Error(m.message);
        slot.onFailed?.(err);
        return;
      }
      case "report":
        slot.stats = m.stats;
        slot.conns = m.conns;
        slot.bans = m.bans;
        slot.lastReportMs = this.#clock.nowMs();
        return;
      case "reloaded": {
        const r = this.#reloads.get(m.id);
        if (r === undefined) return;
        r.results[slot.index] = m.result;
        if (--r.left > 0) return;
        this.#reloads.delete(m.id);
        const results = r.results.filter((x) => x !== undefined);
        r.resolve(results.find((x) => "errors" in x) ?? results[0]);
        return;
      }
      case "lists":
        slot.conns = m.conns;
        slot.bans = m.bans;
        this.#queryAnswered(m.id, slot.index);
        return;
      case "kicked":
        // Only the worker the kick went to may answer it (a restarted slot's new thread cannot).
        if (this.#kicks.get(m.id)?.index === slot.index) this.#settleKick(m.id, m.found);
        return;
      case "log":
        this.#logError(m.line);
        return;
      case "metrics":
        // The same text as the admin `metrics` op, so an HTTP scrape sees the whole server, not one thread.
        this.#post(slot, {
          op: "metrics",
          id: m.id,
          text: formatMetrics(this.stats(), this.config.maxConns, this.#clock.wallMs() - this.#startedWallMs),
        });
        return;
      case "stopped":
        slot.state = "stopped";
        slot.onStopped?.();
        return;
    }
  }

  /** A worker died: free what it held, keep its counters, restart it after a back-off. */
  #died(slot: WorkerSlot, why: string): void {
    slot.worker?.terminate();
    slot.worker = null;
    slot.state = "dead";
    if (slot.stats !== null) addSnapshot(this.#retired, slot.stats, true);
    slot.stats = null;
    slot.conns = null;
    slot.bans = null;
    // It may have died holding the table lock, and it can never release its connections' pins.
    this.#table.forceUnlock(slot.index + 1);
    const released = this.#gate.withLock(() => this.#table.releaseWorkerPins(slot.index));
    for (const [id, r] of this.#reloads) {
      r.results[slot.index] = { errors: [`worker ${slot.index} died during the reload`] };
      if (--r.left > 0) continue;
      this.#reloads.delete(id);
      r.resolve(r.results.find((x) => x !== undefined && "errors" in x)!);
    }
    // Its connections died with it: a kick still waiting for its answer did not close anything.
    for (const [id, k] of [...this.#kicks]) if (k.index === slot.index) this.#settleKick(id, false);
    for (const id of [...this.#queries.keys()]) this.#queryAnswered(id, slot.index);
    if (this.#shuttingDown) return;
    const now = this.#clock.nowMs();
    slot.deaths = now - slot.lastDeathMs > RESTART_RESET_MS ? 1 : slot.deaths + 1;
    slot.lastDeathMs = now;
    const delayMs = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MS * 2 ** (slot.deaths - 1));
    this.#logError(
      `worker ${slot.index} died (${why}); released ${released} connection slots; restarting in ${delayMs} ms`,
    );
    this.#scheduleRestart(slot, delayMs);
  }

  #scheduleRestart(slot: WorkerSlot, delayMs: number): void {
    if (this.#shuttingDown) return;
    slot.restartTimer = setTimeout(() => {
      if (this.#shuttingDown) return;
      this.#spawn(slot, this.#followerConfig).then(() => {
        this.#restarts++;
        this.#logError(`worker ${slot.index} restarted`);
      }, (e) => {
        if (this.#shuttingDown) return;
        this.#logError(`worker ${slot.index} failed to restart: ${errorMessage(e)}`);
        this.#scheduleRestart(slot, Math.min(RESTART_DELAY_MAX_MS, delayMs * 2));
      });
    }, delayMs);
  }

  #housekeep(): void {
    const now = this.#clock.nowMs();
    for (const s of this.#slots) {
      if (s.state === "running" && now - s.lastReportMs > this.#heartbeatTimeoutMs) {
        this.#died(s, `no report for ${Math.round((now - s.lastReportMs) / 1000)} s`);
        this.#options.onStuck?.(s.index);
      }
    }
    if (this.#listsOn && now > this.#listsUntilMs) {
      this.#listsOn = false;
      this.#broadcast({ op: "lists", on: false });
    }
    this.#gate.tick();
  }

  /** An admin client asked for lists: have workers send them for the next LISTS_WANTED_MS. */
  #wantLists(): void {
    this.#listsUntilMs = this.#clock.nowMs() + LISTS_WANTED_MS;
    if (this.#listsOn) return;
    this.#listsOn = true;
    this.#broadcast({ op: "lists", on: true });
  }

  /** Bans held by any worker (auto bans live where they were earned) or the supervisor, merged by key. */
  #bans(): BanInfo[] {
    const byKey = new Map<string, BanInfo>();
    const lists = [this.#guard.bans(), ...this.#slots.map((s) => s.state === "running" ? s.bans ?? [] : [])];
    for (const list of lists) {
      for (const b of list) {
        const cur = byKey.get(b.key);
        if (cur === undefined || b.expiresAtWallMs > cur.expiresAtWallMs) byKey.set(b.key, b);
      }
    }
    return [...byKey.values()].sort((a, b) => a.expiresAtWallMs - b.expiresAtWallMs);
  }

  /** Answers pending kick `id` (if still pending) and forgets it and its timer. */
  #settleKick(id: number, found: boolean): void {
    const k = this.#kicks.get(id);
    if (k === undefined) return;
    this.#kicks.delete(id);
    clearTimeout(k.timer);
    k.resolve(found);
  }

  #applyOwnView(next: Config): void {
    const c = this.config as unknown as Record<string, unknown>;
    const n = next as unknown as Record<string, unknown>;
    // Listening keys stay as bound (a change there needs a restart, as with WORKERS=1).
    for (const k of Object.keys(n)) if (!LISTENING_FIELDS.has(k)) c[k] = n[k];
    this.#gate.withLock(() => this.#guard.applyOptions(this.config));
  }

  #broadcast(m: ToWorker): void {
    for (const s of this.#slots) if (s.state === "running") this.#post(s, m);
  }

  #post(slot: WorkerSlot, m: ToWorker): void {
    try {
      slot.worker?.postMessage(m);
    } catch {
      // terminated between the check and the post: its death is handled by the error path
    }
  }
}

/** Starts Vento with `workers` threads (see `Cluster`). */
export function startCluster(config: Config, workers: number, options: ClusterOptions): Promise<Cluster> {
  return Cluster.start(config, workers, options);
}
