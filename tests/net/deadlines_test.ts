/** The deadline state machine on hand-picked times: what falls due when, and what a rate window does. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Deadlines, type MinRateOptions } from "../../src/net/deadlines.ts";

const RATES: MinRateOptions = {
  bodyMinRateGraceMs: 1000,
  bodyMinRateBytesPerSec: 100,
  sendMinRateGraceMs: 2000,
  sendMinRateBytesPerSec: 50,
};

Deno.test("no deadline is ever due; a set one is due from its time on", () => {
  const d = new Deadlines();
  assert.equal(d.kind, "none");
  assert.equal(d.deadlineDue(Number.MAX_SAFE_INTEGER), false);
  d.set("header", 500);
  assert.equal(d.deadlineDue(499), false);
  assert.equal(d.deadlineDue(500), true);
  d.clear();
  assert.equal(d.kind, "none");
  assert.equal(d.atMs, Infinity);
  assert.equal(d.deadlineDue(10_000), false);
});

Deno.test("bytes never extend a header deadline: only a new set() moves it", () => {
  const d = new Deadlines();
  d.set("header", 1000);
  d.progress("body", 10_000); // no rate runs: ignored, and never touches the deadline
  assert.equal(d.atMs, 1000);
  assert.equal(d.deadlineDue(1000), true);
});

Deno.test("a body window below the minimum rate is due once its grace passed", () => {
  const d = new Deadlines();
  d.startRate("body", 0);
  d.progress("body", 50);
  assert.equal(d.rateDue(1000, RATES), false, "still inside the grace window");
  assert.equal(d.rateDue(1001, RATES), true, "50 bytes in 1 s is below 100 B/s");
});

Deno.test("a window that kept pace opens the next one: early bytes do not buy a later stall", () => {
  const d = new Deadlines();
  d.startRate("body", 0);
  d.progress("body", 1_000_000);
  assert.equal(d.rateDue(1001, RATES), false, "the first window was fast");
  assert.equal(d.rateDue(2001, RATES), false, "the next window is still in its grace");
  assert.equal(d.rateDue(2003, RATES), true, "nothing arrived in the next window");
});

Deno.test("progress counts only toward the rate being judged; a zero rate is never due", () => {
  const d = new Deadlines();
  d.startRate("send", 0);
  d.progress("body", 1_000_000);
  assert.equal(d.rateDue(2001, RATES), true, "body bytes do not count for the send rate");
  d.startRate("send", 0);
  assert.equal(d.rateDue(5000, { ...RATES, sendMinRateBytesPerSec: 0 }), false);
  d.stopRate();
  assert.equal(d.rate, "none");
  assert.equal(d.rateDue(1e9, RATES), false);
});

Deno.test("property: a window is due exactly when it ended below the rate", () => {
  fc.assert(fc.property(fc.nat(10_000), fc.integer({ min: 1, max: 10_000 }), (bytes, elapsed) => {
    const d = new Deadlines();
    d.startRate("body", 0);
    d.progress("body", bytes);
    const due = d.rateDue(elapsed, RATES);
    const expected = elapsed > RATES.bodyMinRateGraceMs &&
      bytes * 1000 < RATES.bodyMinRateBytesPerSec * elapsed;
    assert.equal(due, expected);
  }));
});

Deno.test("a paused window does not count the paused time; a different rate or a stop opens a fresh one", () => {
  const d = new Deadlines();
  d.resumeRate("body", 0); // nothing paused: a fresh window at 0
  d.progress("body", 60);
  d.pauseRate(500);
  assert.equal(d.rate, "none");
  assert.equal(d.rateDue(10_000, RATES), false, "paused: never due");
  d.resumeRate("body", 9_500); // 9 s paused: the window resumes as if at 500
  d.progress("body", 60);
  assert.equal(d.rateDue(10_001, RATES), false, "120 bytes over 1,001 ms of the peer's time");
  d.pauseRate(10_001);
  d.stopRate();
  d.resumeRate("body", 20_000);
  assert.equal(d.rateDue(21_001, RATES), true, "after a stop the window starts fresh, with no bytes");
});
