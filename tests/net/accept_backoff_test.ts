/** The accept loops' error policy: one peer's failure is skipped, an episode backs off and logs twice. */

import assert from "node:assert/strict";
import {
  ACCEPT_BACKOFF_MAX_MS,
  ACCEPT_BACKOFF_MIN_MS,
  ACCEPT_EPISODE_QUIET_MS,
  AcceptBackoff,
  isOutOfDescriptors,
} from "../../src/net/accept_backoff.ts";
import { FakeClock } from "../../src/core/clock.ts";

/** What Deno 2.9 throws from `accept()` when the process is out of descriptors. */
function emfile(): Error {
  return Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
}

Deno.test("out of descriptors is recognised by code (EMFILE, ENFILE) or by message", () => {
  assert.equal(isOutOfDescriptors(emfile()), true);
  assert.equal(isOutOfDescriptors(Object.assign(new Error("x"), { code: "ENFILE" })), true);
  assert.equal(isOutOfDescriptors(new Error("Too many open files in system (os error 23)")), true);
  assert.equal(isOutOfDescriptors(new Deno.errors.ConnectionReset("reset")), false);
  assert.equal(isOutOfDescriptors(null), false);
});

Deno.test("an accept loop out of descriptors pauses, doubling up to the cap, and logs one line per episode", () => {
  const clock = new FakeClock();
  const lines: string[] = [];
  const b = new AcceptBackoff("HTTP", clock, (m) => lines.push(m));
  const waits: number[] = [];
  for (let i = 0; i < 20; i++) {
    const w = b.failed(emfile());
    waits.push(w);
    clock.advance(w);
  }
  assert.equal(waits[0], ACCEPT_BACKOFF_MIN_MS);
  assert.ok(waits.every((w, i) => i === 0 || w === Math.min(ACCEPT_BACKOFF_MAX_MS, waits[i - 1] * 2)));
  assert.equal(waits.at(-1), ACCEPT_BACKOFF_MAX_MS);
  // Never a spin: 20 attempts took seconds, not microseconds.
  assert.ok(clock.nowMs() > 5_000);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^accepting HTTP connections: out of file descriptors; pausing accepts/);
  // At the edge of the limit (one descriptor freed, then none again): the same episode, no new lines,
  // and the pause starts over from the shortest.
  b.succeeded();
  assert.equal(b.failed(emfile()), ACCEPT_BACKOFF_MIN_MS);
  clock.advance(ACCEPT_EPISODE_QUIET_MS - 1);
  b.succeeded();
  assert.equal(lines.length, 1);
  clock.advance(1);
  b.succeeded();
  b.succeeded();
  assert.equal(lines.length, 2);
  assert.match(lines[1], /^accepting HTTP connections again after \d+\.\d s .*; 21 accept attempts failed/);
  // A new episode starts over at the shortest pause, with its own line.
  assert.equal(b.failed(emfile()), ACCEPT_BACKOFF_MIN_MS);
  assert.equal(lines.length, 3);
});

Deno.test("one peer's failure at accept is skipped at once, with no log line and no episode", () => {
  const lines: string[] = [];
  const b = new AcceptBackoff("admin", new FakeClock(), (m) => lines.push(m));
  assert.equal(b.failed(new Deno.errors.ConnectionReset("reset")), 0);
  assert.equal(b.failed(new Deno.errors.ConnectionAborted("aborted")), 0);
  assert.equal(b.failing, false);
  b.succeeded();
  assert.deepEqual(lines, []);
});

Deno.test("any other accept failure is an episode too (paused, logged once with its message)", () => {
  const lines: string[] = [];
  const b = new AcceptBackoff("HTTPS", new FakeClock(), (m) => lines.push(m));
  assert.ok(b.failed(new Error("Operation not permitted")) > 0);
  assert.ok(b.failed(new Error("Operation not permitted")) > 0);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /HTTPS connections: Operation not permitted/);
});
