/**
 * The fixed-capacity client table: bounded size, pinned entries never evicted, LRU eviction of drained
 * entries, fail-closed when everything is pinned.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ClientTable } from "../../src/guard/table.ts";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

Deno.test("table evicts the least recently used drained entry when full", () => {
  const t = new ClientTable(3);
  const a = t.acquire("a", null, 0);
  const b = t.acquire("b", null, 0);
  t.acquire("c", null, 0);
  t.acquire("a", null, 1); // a is now most recent; b is the oldest
  const d = t.acquire("d", null, 2);
  assert.equal(t.lastCreated, true);
  assert.equal(d, b, "b's slot is reused");
  assert.equal(t.slotOf("b"), -1);
  assert.equal(t.slotOf("a"), a);
  assert.equal(t.size, 3);
});

Deno.test("table never evicts an entry with live connections", () => {
  const t = new ClientTable(2);
  const a = t.acquire("a", null, 0);
  t.pin(a);
  t.acquire("b", null, 0);
  for (let i = 0; i < 100; i++) t.acquire(`x${i}`, null, i);
  assert.equal(t.slotOf("a"), a);
  assert.equal(t.keyAt(a), "a");
  assert.equal(t.size, 2);
});

Deno.test("table keeps state of an existing key and resets a re-created one", () => {
  const t = new ClientTable(1);
  const s = t.acquire("a", null, 0);
  t.requestTatMs[s] = 1234;
  assert.equal(t.acquire("a", null, 5), s);
  assert.equal(t.lastCreated, false);
  assert.equal(t.requestTatMs[s], 1234);
  t.acquire("b", null, 6); // evicts a
  assert.equal(t.requestTatMs[s], 0);
  assert.equal(t.keyAt(s), "b");
});

Deno.test("table answers -1 when every slot is pinned, and frees a slot when one drains", () => {
  const t = new ClientTable(2);
  t.pin(t.acquire("a", null, 0));
  const b = t.acquire("b", null, 0);
  t.pin(b);
  t.pin(b);
  assert.equal(t.acquire("c", null, 0), -1);
  t.unpin(b);
  assert.equal(t.acquire("c", null, 0), -1, "b still has one connection");
  t.unpin(b);
  assert.equal(t.acquire("c", null, 0), b);
  assert.equal(t.slotOf("a") >= 0, true);
});

Deno.test("table ignores a release of an already drained slot", () => {
  const t = new ClientTable(2);
  const a = t.acquire("a", null, 0);
  t.unpin(a);
  t.unpin(a);
  assert.equal(t.conns[a], 0);
  t.acquire("b", null, 0);
  assert.equal(t.acquire("c", null, 0), a, "the LRU list is intact: a is evicted first");
});

Deno.test("table churned through 100,000 distinct keys holds exactly its capacity", () => {
  const t = new ClientTable(64);
  for (let i = 0; i < 100_000; i++) {
    const s = t.acquire(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, null, i);
    assert.ok(s >= 0 && s < 64);
  }
  assert.equal(t.size, 64);
  assert.equal(t.pinned, 0);
});

Deno.test("table property: size never exceeds capacity, pinned keys survive, full means all pinned", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("acquire" as const), key: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ kind: fc.constant("pin" as const), key: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ kind: fc.constant("unpin" as const), key: fc.integer({ min: 0, max: 40 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
      const t = new ClientTable(capacity);
      const live = new Map<string, number>(); // model: key → live connections
      for (const o of ops) {
        const key = `k${o.key}`;
        if (o.kind === "acquire") {
          const s = t.acquire(key, null, 0);
          if (s < 0) {
            assert.equal(t.size, capacity);
            assert.equal(live.size, capacity, "refused only when every slot is pinned");
          } else {
            assert.equal(t.keyAt(s), key);
          }
        } else {
          const s = t.slotOf(key);
          if (s < 0) continue;
          if (o.kind === "pin") {
            t.pin(s);
            live.set(key, (live.get(key) ?? 0) + 1);
          } else if ((live.get(key) ?? 0) > 0) {
            t.unpin(s);
            const n = live.get(key)! - 1;
            if (n === 0) live.delete(key);
            else live.set(key, n);
          }
        }
        assert.ok(t.size <= capacity);
        for (const [k, n] of live) {
          const s = t.slotOf(k);
          assert.ok(s >= 0, `pinned ${k} was evicted`);
          assert.equal(t.conns[s], n);
        }
        assert.equal(t.pinned, live.size);
      }
    }),
    { numRuns: 300 },
  );
});

function options(overrides: Partial<GuardOptions>): GuardOptions {
  return { ...DEFAULT_CONFIG, ...overrides };
}

Deno.test("guard refuses with table_full when every slot is pinned, and counts it", () => {
  const stats = new Stats();
  const guard = new Guard(options({ guardTableCapacity: 16 }), new FakeClock(), stats, () => {});
  const tickets: number[] = [];
  for (let i = 0; i < 16; i++) {
    const v = guard.decideConnection(`192.0.2.${i}`);
    assert.ok(v.ok);
    tickets.push(v.ticket);
  }
  const refused = guard.decideConnection("198.51.100.1");
  assert.deepEqual(refused, { ok: false, reason: "table_full", key: "198.51.100.1", retryAfterSec: 1 });
  assert.equal(stats.guardTableFull, 1);
  assert.equal(stats.refused.table_full, 1);
  // An existing key still gets in (its slot is already held).
  const again = guard.decideConnection("192.0.2.3");
  assert.ok(again.ok);
  guard.release(again.ticket);
  guard.release(tickets[5]);
  assert.ok(guard.decideConnection("198.51.100.1").ok, "a drained slot is reused");
  guard.tick();
  assert.equal(stats.guardTableSize, 16);
});
