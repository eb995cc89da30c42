/**
 * GCRA arithmetic: exact burst, steady rate, recovery, Retry-After rounding. Pure; no clock needed.
 */

import assert from "node:assert/strict";
import { gcraLimit, gcraNextTat, gcraWaitMs, retryAfterSec } from "../../src/guard/gcra.ts";

/** Offers `n` events at `nowMs`; returns how many conformed and the final TAT. */
function offer(
  tat: number,
  nowMs: number,
  n: number,
  rate: number,
  burst: number,
): { passed: number; tat: number } {
  const limit = gcraLimit(rate, burst);
  let passed = 0;
  for (let i = 0; i < n; i++) {
    if (gcraWaitMs(tat, nowMs, limit) === 0) {
      tat = gcraNextTat(tat, nowMs, limit);
      passed++;
    }
  }
  return { passed, tat };
}

Deno.test("gcra lets exactly `burst` simultaneous events through from a fresh key", () => {
  for (const [rate, burst] of [[20, 100], [10, 50], [3, 1], [7, 13], [1000, 3], [1, 1]]) {
    assert.equal(offer(0, 5_000, burst + 10, rate, burst).passed, burst, `rate ${rate} burst ${burst}`);
  }
});

Deno.test("gcra limits the event right after the burst", () => {
  const limit = gcraLimit(20, 100);
  const { tat } = offer(0, 1_000, 100, 20, 100);
  assert.ok(gcraWaitMs(tat, 1_000, limit) > 0);
});

Deno.test("gcra passes a steady stream at the configured rate after the burst", () => {
  const rate = 20;
  const limit = gcraLimit(rate, 100);
  let { tat } = offer(0, 0, 100, rate, 100);
  // One event every 50 ms for 10 s: each conforms; a second one at the same instant does not.
  for (let i = 1; i <= 200; i++) {
    const now = i * 50;
    assert.equal(gcraWaitMs(tat, now, limit), 0, `event at ${now} ms`);
    tat = gcraNextTat(tat, now, limit);
    assert.ok(gcraWaitMs(tat, now, limit) > 0, `extra event at ${now} ms`);
  }
});

Deno.test("gcra refuses faster than the rate once the burst is spent", () => {
  const limit = gcraLimit(10, 5);
  let { tat } = offer(0, 0, 5, 10, 5);
  let passed = 0;
  // Offer 40 events per second for 2 seconds: only ~10/s may pass.
  for (let now = 25; now <= 2_000; now += 25) {
    if (gcraWaitMs(tat, now, limit) === 0) {
      tat = gcraNextTat(tat, now, limit);
      passed++;
    }
  }
  assert.equal(passed, 20);
});

Deno.test("gcra recovers the whole burst after waiting burst/rate seconds", () => {
  const { tat } = offer(0, 0, 100, 20, 100);
  assert.equal(offer(tat, 4_999, 100, 20, 100).passed, 99);
  assert.equal(offer(tat, 5_000, 200, 20, 100).passed, 100);
});

Deno.test("gcra wait is the time until the next event conforms", () => {
  const limit = gcraLimit(2, 1); // one event per 500 ms, no burst
  const tat = gcraNextTat(0, 1_000, limit);
  assert.equal(gcraWaitMs(tat, 1_000, limit), 500);
  assert.equal(gcraWaitMs(tat, 1_400, limit), 100);
  assert.equal(gcraWaitMs(tat, 1_500, limit), 0);
});

Deno.test("retry-after rounds up to whole seconds and is at least 1", () => {
  assert.equal(retryAfterSec(0.001), 1);
  assert.equal(retryAfterSec(1_000), 1);
  assert.equal(retryAfterSec(1_001), 2);
  assert.equal(retryAfterSec(60_000), 60);
  assert.equal(retryAfterSec(0), 1);
});
