/**
 * The shared client table (WORKERS > 1): the same slot semantics as `ClientTable` (checked against it
 * as a reference model over random operation sequences), numeric keys that round-trip to the policy's
 * key text, several views over one memory block seeing one table, the mutex under real worker
 * threads, releasing a dead worker's pins, and the guard's limits and bans holding across two gates.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { IpAddr } from "../../src/core/cidr.ts";
import { keyOf, parsePeerIp } from "../../src/guard/client_key.ts";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { SharedGate } from "../../src/guard/shared_gate.ts";
import { createSharedGuardMemory, MAX_WORKERS, SharedClientTable } from "../../src/guard/shared_table.ts";
import { ClientTable } from "../../src/guard/table.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

function addrOf(ip: string): IpAddr {
  const a = new IpAddr();
  assert.ok(parsePeerIp(ip, a), ip);
  return a;
}

function acquire(t: SharedClientTable | ClientTable, ip: string, now = 0, bits = 64): number {
  const a = addrOf(ip);
  return t.acquire(keyOf(a, bits), a, now);
}

Deno.test("shared table: a key keeps its slot, distinct keys get distinct slots, keys round-trip", () => {
  const t = new SharedClientTable(createSharedGuardMemory(8, 1));
  const v4 = acquire(t, "203.0.113.9");
  const v6 = acquire(t, "2001:db8:1:2::7");
  const v6Host = acquire(t, "2001:db8::1", 0, 128);
  assert.equal(acquire(t, "203.0.113.9"), v4);
  // Same /64, another host: the same client key.
  assert.equal(acquire(t, "2001:db8:1:2:ffff::1"), v6);
  assert.equal(new Set([v4, v6, v6Host]).size, 3);
  assert.equal(t.size, 3);
  assert.equal(t.keyAt(v4), "203.0.113.9");
  assert.equal(t.keyAt(v6), "2001:db8:1:2::/64");
  assert.equal(t.keyAt(v6Host), "2001:db8::1");
  for (const slot of [v4, v6, v6Host]) assert.equal(t.slotOf(t.keyAt(slot)), slot);
  assert.equal(t.slotOf("198.51.100.1"), -1);
  assert.equal(t.keyAt(7), "");
});

Deno.test("shared table: pinned slots are never evicted; full of pinned answers -1; drained LRU goes first", () => {
  const t = new SharedClientTable(createSharedGuardMemory(2, 1));
  const a = acquire(t, "10.0.0.1");
  t.pin(a);
  const b = acquire(t, "10.0.0.2");
  t.pin(b);
  assert.equal(acquire(t, "10.0.0.3"), -1, "fail closed when every slot is pinned");
  t.unpin(b);
  const c = acquire(t, "10.0.0.3");
  assert.equal(c, b, "the drained slot was reused");
  assert.equal(t.slotOf("10.0.0.2"), -1);
  assert.equal(t.slotOf("10.0.0.1"), a, "the pinned key survived");
});

Deno.test("shared table: random operation sequences match ClientTable slot for slot", () => {
  const ips = Array.from({ length: 12 }, (_, i) => i % 3 === 0 ? `2001:db8:${i}::1` : `192.0.2.${i}`);
  const op = fc.oneof(
    fc.record({ kind: fc.constant("acquire" as const), ip: fc.integer({ min: 0, max: 11 }) }),
    fc.record({ kind: fc.constant("pin" as const), ip: fc.integer({ min: 0, max: 11 }) }),
    fc.record({ kind: fc.constant("unpin" as const), ip: fc.integer({ min: 0, max: 11 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
      const ref = new ClientTable(capacity);
      const shared = new SharedClientTable(createSharedGuardMemory(capacity, 1));
      for (const o of ops) {
        const ip = ips[o.ip];
        if (o.kind === "acquire") {
          const r = acquire(ref, ip);
          assert.equal(acquire(shared, ip), r);
          assert.equal(shared.lastCreated, ref.lastCreated);
        } else {
          const slot = ref.slotOf(keyOf(addrOf(ip), 64));
          assert.equal(shared.slotOf(keyOf(addrOf(ip), 64)), slot);
          if (slot < 0) continue;
          if (o.kind === "pin") {
            ref.pin(slot);
            shared.pin(slot);
          } else {
            ref.unpin(slot);
            shared.unpin(slot);
          }
        }
        assert.equal(shared.size, ref.size);
        assert.ok(shared.size <= capacity);
      }
      for (const ip of ips) {
        const key = keyOf(addrOf(ip), 64);
        assert.equal(shared.slotOf(key), ref.slotOf(key), key);
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("shared table: two views over one memory block are one table", () => {
  const memory = createSharedGuardMemory(4, 2);
  const a = new SharedClientTable(memory);
  const b = new SharedClientTable(memory);
  const slot = acquire(a, "198.51.100.20", 5);
  a.pin(slot);
  a.requestTatMs[slot] = 1234;
  assert.equal(b.slotOf("198.51.100.20"), slot);
  assert.equal(acquire(b, "198.51.100.20"), slot);
  assert.equal(b.conns[slot], 1);
  assert.equal(b.requestTatMs[slot], 1234);
  assert.equal(b.size, 1);
});

Deno.test("shared table: a dead worker's pins are released and its lock freed, another worker's kept", () => {
  const memory = createSharedGuardMemory(2, 2);
  const t = new SharedClientTable(memory);
  const s = acquire(t, "10.1.1.1");
  t.pin(s);
  t.pin(s);
  t.pin(s);
  t.pins[0 * t.capacity + s] = 2; // worker 0 held two of them
  t.pins[1 * t.capacity + s] = 1; // worker 1 one
  t.lock(1);
  assert.equal(t.forceUnlock(2), false, "only the holder's lock is freed");
  assert.equal(t.forceUnlock(1), true);
  assert.equal(t.lockOwner, 0);
  assert.equal(t.releaseWorkerPins(0), 2);
  assert.equal(t.conns[s], 1);
  assert.equal(t.releaseWorkerPins(0), 0, "idempotent");
  // Still pinned by worker 1: the table cannot evict it.
  t.pin(acquire(t, "10.1.1.2"));
  assert.equal(acquire(t, "10.1.1.3"), -1);
});

Deno.test("shared table: per-worker open counts sum to one total, apart from the pins; a dead worker's zeroed", () => {
  const memory = createSharedGuardMemory(3, 3);
  const t = new SharedClientTable(memory);
  const other = new SharedClientTable(memory);
  t.pins.fill(0xffff); // every pin word set: the open counts must not alias them
  t.addOpen(0);
  t.addOpen(0);
  other.addOpen(2);
  assert.deepEqual([...other.openByWorker], [2, 0, 1]);
  assert.equal(other.openConns, 3);
  t.removeOpen(1); // nothing open on worker 1: stays at zero
  assert.equal(t.openConns, 3);
  t.pins.fill(0);
  t.releaseWorkerPins(0);
  assert.deepEqual([...t.openByWorker], [0, 0, 1]);
  assert.equal(t.openConns, 1);
  assert.equal(t.size, 0, "the header's total is not the size word");
});

Deno.test("shared table: the mutex serialises plain read-modify-write across real worker threads", async () => {
  const memory = createSharedGuardMemory(1, 2);
  const t = new SharedClientTable(memory);
  const rounds = 20_000;
  const code = `
    import { SharedClientTable } from ${
    JSON.stringify(new URL("../../src/guard/shared_table.ts", import.meta.url).href)
  };
    self.onmessage = (e) => {
      const t = new SharedClientTable(e.data.memory);
      for (let i = 0; i < e.data.rounds; i++) {
        t.lock(e.data.owner);
        const v = t.requests[0];
        t.requests[0] = v + 1; // not atomic: only the lock keeps increments from being lost
        t.unlock();
      }
      self.postMessage("done");
    };`;
  const url = `data:application/javascript;base64,${btoa(code)}`;
  const workers = [1, 2].map(() => new Worker(url, { type: "module" }));
  try {
    await Promise.all(workers.map((w, i) =>
      new Promise<void>((resolve, reject) => {
        w.onmessage = () => resolve();
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        w.postMessage({ memory, rounds, owner: i + 1 });
      })
    ));
  } finally {
    for (const w of workers) w.terminate();
  }
  assert.equal(t.requests[0], rounds * 2);
  assert.equal(t.lockOwner, 0);
});

Deno.test("createSharedGuardMemory refuses bad shapes", () => {
  assert.throws(() => createSharedGuardMemory(0, 1), RangeError);
  assert.throws(() => createSharedGuardMemory(10, 0), RangeError);
  assert.throws(() => createSharedGuardMemory(10, MAX_WORKERS + 1), RangeError);
});

// --- the guard over a shared table: two gates as two workers ----------------------------------------

function twoWorkers(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(10_000);
  const opts: GuardOptions = { ...DEFAULT_CONFIG, ...overrides };
  const memory = createSharedGuardMemory(64, 2);
  const gates = [0, 1].map((i) => {
    const table = new SharedClientTable(memory);
    const guard = new Guard(opts, clock, new Stats(), () => {}, table);
    return { gate: new SharedGate(guard, table, i), guard, table };
  });
  return { clock, gates, memory };
}

Deno.test("shared gate: one client's request rate is counted once across two workers", () => {
  const { clock, gates } = twoWorkers({ requestRatePerSec: 10, requestBurst: 20, banAfterViolations: 1_000 });
  const tickets = gates.map(({ gate }) => {
    const v = gate.admitConnection("203.0.113.5");
    assert.ok(v.ok);
    return v.ticket;
  });
  let served = 0;
  // 10 seconds of 100 requests/s, alternating workers: the limit is 20 + 10/s in all, not per worker.
  for (let ms = 0; ms < 10_000; ms += 10) {
    const w = (ms / 10) % 2;
    if (gates[w].gate.admitRequest(tickets[w], undefined) === 0) served++;
    clock.advance(10);
  }
  assert.ok(Math.abs(served - 120) <= 2, `served ${served}, expected about 120`);
});

Deno.test("shared gate: the per-client connection cap and an earned ban hold across workers", () => {
  const { gates } = twoWorkers({
    maxConnsPerClient: 3,
    requestRatePerSec: 1,
    requestBurst: 1,
    banAfterViolations: 3,
  });
  const ip = "198.51.100.77";
  const a1 = gates[0].gate.admitConnection(ip);
  const b1 = gates[1].gate.admitConnection(ip);
  const a2 = gates[0].gate.admitConnection(ip);
  assert.ok(a1.ok && b1.ok && a2.ok);
  const b2 = gates[1].gate.admitConnection(ip);
  assert.equal(b2.ok ? "admitted" : b2.reason, "client_cap");
  // Worker 0 sees the flood and bans; worker 1 refuses the key at accept without a request.
  assert.equal(gates[0].gate.admitRequest(a1.ticket, undefined), 0);
  for (let i = 0; i < 3; i++) assert.notEqual(gates[0].gate.admitRequest(a1.ticket, undefined), 0);
  gates[1].gate.release(b1.ok ? b1.ticket : -1);
  const b3 = gates[1].gate.admitConnection(ip);
  assert.equal(b3.ok ? "admitted" : b3.reason, "banned");
  // Worker 1's own request path sees the ban too.
  assert.ok(gates[0].gate.admitRequest(a2.ticket, undefined) > 1);
});

Deno.test("shared gate: pins follow each worker's connections", () => {
  const { gates } = twoWorkers();
  const { table } = gates[0];
  const v = gates[1].gate.admitConnection("192.0.2.44");
  assert.ok(v.ok);
  const slot = v.ticket >> 1;
  assert.equal(table.pins[table.capacity + slot], 1);
  assert.equal(table.pins[slot], 0);
  gates[1].gate.release(v.ticket);
  assert.equal(table.pins[table.capacity + slot], 0);
  assert.equal(table.conns[slot], 0);
});
