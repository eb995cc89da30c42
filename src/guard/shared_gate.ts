/**
 * A worker thread's admission gate when WORKERS > 1: the ordinary `Guard` over a `SharedClientTable`,
 * each decision taken under the table's mutex so that N workers see one table (global per-client
 * rates, caps, violations and bans), plus this worker's pin counts so the supervisor can release a
 * dead worker's connections, and this worker's open count in the table so that MAX_CONNS and the busy
 * idle timeout count every worker's connections (the guard reads the total through `useOpenCount`).
 *
 * It must never hold the lock across an `await` (every method is synchronous) nor let an exception
 * leave it held (try/finally). WORKERS=1 never builds one: the server calls the `Guard` directly.
 *
 * Pure: never mentions `Deno.`.
 */

import { type ConnVerdict, type Guard, needsNoJudgement } from "./policy.ts";
import { MAX_WORKERS, type SharedClientTable } from "./shared_table.ts";

/** The worker index of the supervisor's own gate. */
export const SUPERVISOR = -1;

export class SharedGate {
  readonly #guard: Guard;
  readonly #table: SharedClientTable;
  readonly #owner: number;
  readonly #pinRow: number;
  /** This worker's index, or SUPERVISOR (holds no connections: counts nothing). */
  readonly #worker: number;

  /**
   * `worker` is this thread's index (0-based; its lock id is `worker + 1`), or `SUPERVISOR` for the
   * supervisor's own view (admin reads and ban checks; it holds no connections, so no pin row).
   */
  constructor(guard: Guard, table: SharedClientTable, worker: number) {
    if (worker !== SUPERVISOR && (worker < 0 || worker >= table.workers)) {
      throw new RangeError(`bad worker index ${worker}`);
    }
    this.#guard = guard;
    this.#table = table;
    this.#owner = worker === SUPERVISOR ? MAX_WORKERS + 1 : worker + 1;
    this.#pinRow = worker === SUPERVISOR ? -1 : worker * table.capacity;
    this.#worker = worker;
    // The cap and the busy threshold judge the open connections of all workers, not this one's.
    if (worker !== SUPERVISOR) guard.useOpenCount(() => table.openConns);
  }

  admitConnection(remoteIp: string): ConnVerdict {
    const t = this.#table;
    t.lock(this.#owner);
    try {
      const v = this.#guard.decideConnection(remoteIp);
      if (v.ok && this.#pinRow >= 0) {
        // Allowlisted peers (negative tickets) hold no slot but still count toward MAX_CONNS.
        t.addOpen(this.#worker);
        if (v.ticket >= 0) t.pins[this.#pinRow + (v.ticket >> 1)]++;
      }
      return v;
    } finally {
      t.unlock();
    }
  }

  admitRequest(ticket: number, forwardedFor: string | undefined): number {
    if (needsNoJudgement(ticket, forwardedFor)) return 0;
    const t = this.#table;
    t.lock(this.#owner);
    try {
      return this.#guard.decideRequest(ticket, forwardedFor);
    } finally {
      t.unlock();
    }
  }

  release(ticket: number): void {
    const t = this.#table;
    t.lock(this.#owner);
    try {
      this.#guard.release(ticket);
      if (this.#pinRow >= 0) {
        t.removeOpen(this.#worker);
        if (ticket >= 0) {
          const i = this.#pinRow + (ticket >> 1);
          if (t.pins[i] > 0) t.pins[i]--;
        }
      }
    } finally {
      t.unlock();
    }
  }

  /**
   * No lock: the guard reads the all-workers open count with one atomic load (a heuristic, where a
   * value one connection old does no harm).
   */
  idleTimeoutMs(): number {
    return this.#guard.idleTimeoutMs();
  }

  tick(): void {
    this.withLock(() => this.#guard.tick());
  }

  /** Runs `f` (synchronous) under the table's lock: admin operations on the guard (ban, unban, clients). */
  withLock<T>(f: () => T): T {
    const t = this.#table;
    t.lock(this.#owner);
    try {
      return f();
    } finally {
      t.unlock();
    }
  }
}
