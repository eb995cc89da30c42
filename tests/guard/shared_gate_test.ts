/**
 * MAX_CONNS across worker threads: two `SharedGate`s (workers 0 and 1) over one shared memory block hold
 * one connection cap in all, whichever worker admits; a release on either frees a place; a dead worker's
 * connections stop counting; allowlisted peers count as they do with one guard; the busy idle timeout
 * follows the total. FakeClock, no threads (the lock itself is tested in shared_table_test.ts).
 */

import assert from "node:assert/strict";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { SharedGate, SUPERVISOR } from "../../src/guard/shared_gate.ts";
import { createSharedGuardMemory, SharedClientTable } from "../../src/guard/shared_table.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

/** Two workers' gates over one block, as cluster_worker.ts builds them, each with its own Guard and Stats. */
function twoWorkers(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(10_000);
  const opts: GuardOptions = { ...DEFAULT_CONFIG, maxConns: 3, ...overrides };
  const memory = createSharedGuardMemory(64, 2);
  const workers = [0, 1].map((i) => {
    const table = new SharedClientTable(memory);
    const stats = new Stats();
    const guard = new Guard(opts, clock, stats, () => {}, table);
    return { gate: new SharedGate(guard, table, i), guard, stats, table };
  });
  return { clock, workers, memory, table: workers[0].table };
}

type Gates = ReturnType<typeof twoWorkers>["workers"];

/** Admits `ip` on worker `w`; returns the ticket (fails the test when refused). */
function admit(workers: Gates, w: number, ip: string): number {
  const v = workers[w].gate.admitConnection(ip);
  assert.ok(v.ok, `${ip} on worker ${w} admitted: ${JSON.stringify(v)}`);
  return v.ticket;
}

/** The refusal reason for `ip` on worker `w`, or "admitted". */
function verdict(workers: Gates, w: number, ip: string): string {
  const v = workers[w].gate.admitConnection(ip);
  return v.ok ? "admitted" : v.reason;
}

Deno.test("MAX_CONNS holds across workers: admissions alternating between two workers stop at 3 in all", () => {
  const { workers, table } = twoWorkers();
  admit(workers, 0, "203.0.113.1");
  admit(workers, 1, "203.0.113.2");
  admit(workers, 0, "203.0.113.3");
  assert.equal(verdict(workers, 1, "203.0.113.4"), "global_cap");
  assert.equal(verdict(workers, 0, "203.0.113.4"), "global_cap");
  assert.equal(table.openConns, 3);
  assert.deepEqual([...table.openByWorker], [2, 1]);
  assert.equal(workers[1].stats.refused.global_cap, 1, "each worker counts its own refusals");
  assert.equal(workers[0].stats.refused.global_cap, 1);
  // Each guard still knows its own connections (the per-worker `open` the supervisor sums).
  assert.deepEqual(workers.map((w) => w.guard.openConns), [2, 1]);
});

Deno.test("MAX_CONNS holds across workers: all on one worker, the other refuses the 4th too", () => {
  const { workers, table } = twoWorkers();
  const tickets = ["198.51.100.1", "198.51.100.2", "198.51.100.3"].map((ip) => admit(workers, 0, ip));
  assert.equal(verdict(workers, 1, "198.51.100.4"), "global_cap");
  assert.equal(verdict(workers, 0, "198.51.100.4"), "global_cap");
  // A release on worker 0 frees a place that worker 1 may take.
  workers[0].gate.release(tickets[0]);
  assert.deepEqual([...table.openByWorker], [2, 0]);
  const t = admit(workers, 1, "198.51.100.4");
  assert.equal(verdict(workers, 0, "198.51.100.5"), "global_cap");
  // And a release on worker 1 frees one for worker 0.
  workers[1].gate.release(t);
  admit(workers, 0, "198.51.100.5");
  assert.equal(table.openConns, 3);
  assert.deepEqual([...table.openByWorker], [3, 0]);
});

Deno.test("a dead worker's open connections stop counting once the supervisor releases its pins", () => {
  const { workers, table } = twoWorkers();
  admit(workers, 0, "192.0.2.10");
  admit(workers, 0, "192.0.2.10");
  admit(workers, 1, "192.0.2.11");
  assert.equal(verdict(workers, 1, "192.0.2.12"), "global_cap");
  // What the supervisor does when worker 0 dies (cluster.ts #died), under its own lock id.
  const supervisor = new SharedGate(
    new Guard({ ...DEFAULT_CONFIG, maxConns: 3 }, new FakeClock(0), new Stats(), () => {}, table),
    table,
    SUPERVISOR,
  );
  assert.equal(supervisor.withLock(() => table.releaseWorkerPins(0)), 2);
  assert.equal(table.openConns, 1);
  assert.deepEqual([...table.openByWorker], [0, 1]);
  admit(workers, 1, "192.0.2.12");
  admit(workers, 1, "192.0.2.13");
  assert.equal(verdict(workers, 1, "192.0.2.14"), "global_cap");
  assert.equal(supervisor.withLock(() => table.releaseWorkerPins(0)), 0, "idempotent");
  assert.equal(table.openConns, 3, "worker 1's connections still count");
});

Deno.test("allowlisted peers count toward the shared MAX_CONNS and are refused at it, as with one guard", () => {
  const { workers, table } = twoWorkers({ allowlist: ["192.0.2.1"] });
  const allowed = admit(workers, 0, "192.0.2.1");
  assert.ok(allowed < 0, "an allowlisted ticket holds no slot");
  admit(workers, 1, "192.0.2.1");
  admit(workers, 1, "203.0.113.50");
  assert.equal(verdict(workers, 0, "192.0.2.1"), "global_cap");
  assert.equal(verdict(workers, 1, "203.0.113.51"), "global_cap");
  assert.deepEqual([...table.openByWorker], [1, 2]);
  workers[0].gate.release(allowed);
  assert.deepEqual([...table.openByWorker], [0, 2]);
  admit(workers, 1, "203.0.113.51");
});

Deno.test("releases never drive a worker's open count below zero", () => {
  const { workers, table } = twoWorkers();
  const t = admit(workers, 1, "203.0.113.60");
  workers[0].gate.release(-1); // an unbalanced release on worker 0 (a bug elsewhere) takes nothing from 1
  assert.deepEqual([...table.openByWorker], [0, 1]);
  assert.equal(table.openConns, 1);
  workers[1].gate.release(t);
  assert.equal(table.openConns, 0);
});

Deno.test("the busy idle timeout follows every worker's connections, not the worker's own", () => {
  const { workers } = twoWorkers({
    maxConns: 10,
    busyThresholdPercent: 50,
    idleTimeoutMs: 15_000,
    idleTimeoutBusyMs: 500,
  });
  const tickets: number[] = [];
  for (let i = 0; i < 5; i++) tickets.push(admit(workers, 1, `198.51.100.${i}`));
  const own = admit(workers, 0, "198.51.100.99");
  // 6 of 10 in all, only 1 of them on worker 0: both workers are busy.
  assert.equal(workers[0].guard.openConns, 1);
  assert.equal(workers[0].gate.idleTimeoutMs(), 500);
  assert.equal(workers[1].gate.idleTimeoutMs(), 500);
  // Exactly at the threshold (5 of 10) is not busy, whichever worker released.
  workers[1].gate.release(tickets.pop()!);
  assert.equal(workers[0].gate.idleTimeoutMs(), 15_000);
  assert.equal(workers[1].gate.idleTimeoutMs(), 15_000);
  workers[0].gate.release(own);
  assert.equal(workers[0].gate.idleTimeoutMs(), 15_000);
});

Deno.test("the supervisor's gate counts no connections of its own", () => {
  const { table } = twoWorkers();
  const supervisor = new SharedGate(
    new Guard({ ...DEFAULT_CONFIG, maxConns: 3 }, new FakeClock(0), new Stats(), () => {}, table),
    table,
    SUPERVISOR,
  );
  const v = supervisor.admitConnection("203.0.113.70");
  assert.ok(v.ok);
  supervisor.release(v.ticket);
  assert.equal(table.openConns, 0);
  assert.deepEqual([...table.openByWorker], [0, 0]);
});
