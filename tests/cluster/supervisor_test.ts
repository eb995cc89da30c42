/**
 * The supervisor's pure parts: WORKERS=auto resolution, summing worker snapshots (counters added,
 * shared gauges maxed, a dead worker's live gauges dropped), and the server-wide connection ids.
 */

import assert from "node:assert/strict";
import { addSnapshot, resolveWorkers } from "../../src/cluster/supervisor.ts";
import { globalConnId, splitConnId } from "../../src/cluster/protocol.ts";
import { MAX_WORKERS } from "../../src/guard/shared_table.ts";
import { Stats, type StatsSnapshot } from "../../src/stats/stats.ts";

function snap(fill: (s: Stats) => void): StatsSnapshot {
  const s = new Stats();
  fill(s);
  return s.snapshot(1, 2);
}

Deno.test("resolveWorkers: a number is kept, auto is the core count, both capped to 1..MAX_WORKERS", () => {
  assert.equal(resolveWorkers(3, 8), 3);
  assert.equal(resolveWorkers("auto", 8), 8);
  assert.equal(resolveWorkers("auto", 0), 1);
  assert.equal(resolveWorkers("auto", 1000), MAX_WORKERS);
});

Deno.test("addSnapshot sums counters and maps, keeps the largest shared gauge", () => {
  const a = snap((s) => {
    s.accepted = 5;
    s.requests = 10;
    s.open = 2;
    s.refused.banned = 1;
    s.countResponse(200);
    s.guardTableSize = 7;
    s.bansActive = 1;
  });
  const b = snap((s) => {
    s.accepted = 3;
    s.requests = 4;
    s.open = 1;
    s.refused.banned = 2;
    s.countResponse(404);
    s.guardTableSize = 7;
    s.bansActive = 1;
  });
  const acc: Record<string, unknown> = {};
  addSnapshot(acc, a);
  addSnapshot(acc, b);
  const sum = acc as unknown as StatsSnapshot;
  assert.equal(sum.accepted, 8);
  assert.equal(sum.requests, 14);
  assert.equal(sum.open, 3);
  assert.equal(sum.refused.banned, 3);
  assert.deepEqual(sum.responses, [0, 0, 1, 0, 1, 0]);
  assert.equal(sum.guardTableSize, 7, "one shared table, not two");
  assert.equal(sum.bansActive, 1);
});

Deno.test("addSnapshot of a retired worker keeps its counters but not its open connections", () => {
  const acc: Record<string, unknown> = {};
  addSnapshot(
    acc,
    snap((s) => {
      s.requests = 9;
      s.open = 4;
      s.idle = 1;
    }),
    true,
  );
  assert.equal(acc.requests, 9);
  assert.equal(acc.open, undefined);
  assert.equal(acc.idle, undefined);
});

Deno.test("connection ids: worker index and local id round-trip and never collide", () => {
  const seen = new Set<number>();
  for (let w = 0; w < MAX_WORKERS; w += 7) {
    for (const local of [1, 2, 1_000_000]) {
      const id = globalConnId(local, w);
      assert.deepEqual(splitConnId(id), { index: w, localId: local });
      assert.ok(!seen.has(id));
      seen.add(id);
    }
  }
});
