/**
 * The messages between the supervisor (`cluster.ts`, main thread) and its worker threads
 * (`cluster_worker.ts`) when WORKERS > 1, and the mapping between a worker's connection ids and the
 * server-wide ids the admin channel shows.
 *
 * Types and two pure functions only: nothing here touches a socket or a worker.
 */

import type { Config } from "../config/config.ts";
import type { SharedGuardMemory } from "../guard/shared_table.ts";
import { MAX_WORKERS } from "../guard/shared_table.ts";
import type { BanInfo } from "../guard/views.ts";
import type { StatsSnapshot } from "../stats/stats.ts";
import type { ConnInfo } from "../net/conn_info.ts";

export type ReloadResult = { applied: string[]; needsRestart: string[] } | { errors: string[] };

/** Supervisor → worker. */
export type ToWorker =
  | {
    op: "start";
    index: number;
    /** The config to run; `port`/`tlsPort` are the ones worker 0 bound (0 only for worker 0). */
    config: Config;
    configPath: string | null;
    portOverride: number | undefined;
    memory: SharedGuardMemory;
    /** How often to send a `report` (ms). */
    reportMs: number;
    /** Whether reports carry the connection and ban lists (only while an admin client looks). */
    lists: boolean;
  }
  | { op: "lists"; on: boolean }
  | { op: "ban"; target: string; ms: number; reason: string }
  | { op: "unban"; target: string }
  /** Close the worker's connection `connId` (its local id); answered by `kicked` with the same `id`. */
  | { op: "kick"; id: number; connId: number }
  | { op: "reload"; id: number }
  /** Send the connection and ban lists now; answered by `lists` with the same `id`. */
  | { op: "query"; id: number }
  /** The answer to a worker's `metrics` request `id`: the whole server's Prometheus text. */
  | { op: "metrics"; id: number; text: string }
  | { op: "shutdown" }
  /** Forced stop: close every connection now, flush the access log (bounded), answer `stopped`. */
  | { op: "force" }
  /** Test hook: throw an uncaught error, as a bug would. */
  | { op: "crash" }
  /**
   * Test hook: stop reporting and answering kicks, as a worker stuck in an endless loop would look to
   * the supervisor.
   */
  | { op: "mute" };

/** Worker → supervisor. */
export type FromWorker =
  | { op: "listening"; addr: Deno.NetAddr; tlsAddr: Deno.NetAddr | null }
  | { op: "failed"; name: string; message: string }
  | { op: "report"; stats: StatsSnapshot; conns: ConnInfo[] | null; bans: BanInfo[] | null }
  | { op: "reloaded"; id: number; result: ReloadResult }
  /** The answer to `kick` request `id`: whether the connection was open (and is now closed). */
  | { op: "kicked"; id: number; found: boolean }
  /** The answer to `query` request `id`: the worker's connections (server-wide ids) and bans now. */
  | { op: "lists"; id: number; conns: ConnInfo[]; bans: BanInfo[] }
  | { op: "log"; line: string }
  /** METRICS_PATH was asked: the supervisor answers with every worker's counters summed. */
  | { op: "metrics"; id: number }
  | { op: "stopped" };

/** Server-wide connection id of worker `index`'s connection `localId` (unique among open connections). */
export function globalConnId(localId: number, index: number): number {
  return localId * MAX_WORKERS + index;
}

/** The worker index and local id of a server-wide connection id. */
export function splitConnId(id: number): { index: number; localId: number } {
  return { index: id % MAX_WORKERS, localId: Math.floor(id / MAX_WORKERS) };
}
