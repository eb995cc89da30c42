/**
 * The guard with a shared store attached (a scripted fake, fake clock): who decides the request rate
 * when the store is healthy, degraded or failing; violations and bans from shared refusals; bans and
 * unbans published once and applied from other instances without echo.
 */

import assert from "node:assert/strict";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import type { GcraLimit } from "../../src/guard/gcra.ts";
import type { SharedStore } from "../../src/guard/shared_store.ts";
import { DEFAULT_CONFIG } from "../../src/config.ts";
import { FakeClock } from "../../src/net/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

class FakeStore implements SharedStore {
  healthy = true;
  /** What the next checks answer (the last one repeats). */
  answers: number[] = [0];
  checks: { key: string; limit: GcraLimit }[] = [];
  published: string[] = [];
  gcra(key: string, limit: GcraLimit): Promise<number> {
    this.checks.push({ key, limit });
    const a = this.answers.length > 1 ? this.answers.shift()! : this.answers[0];
    return Promise.resolve(a);
  }
  publishBan(target: string, ms: number, reason: string): void {
    this.published.push(`ban ${target} ${ms} ${reason}`);
  }
  publishUnban(target: string): void {
    this.published.push(`unban ${target}`);
  }
}

function setup(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(50_000);
  const stats = new Stats();
  const opts: GuardOptions = { ...DEFAULT_CONFIG, requestRatePerSec: 10, requestBurst: 2, ...overrides };
  const guard = new Guard(opts, clock, stats, () => {});
  const store = new FakeStore();
  guard.attachStore(store);
  const v = guard.admitConnection("203.0.113.7");
  assert.ok(v.ok);
  return { clock, stats, guard, store, ticket: v.ticket };
}

Deno.test("without a store, admitRequestShared is the synchronous in-memory decision", () => {
  const guard = new Guard({ ...DEFAULT_CONFIG, requestBurst: 1 }, new FakeClock(), new Stats(), () => {});
  const v = guard.admitConnection("203.0.113.7");
  assert.ok(v.ok);
  assert.equal(guard.admitRequestShared(v.ticket, undefined), 0);
  assert.equal(guard.admitRequestShared(v.ticket, undefined), 1);
});

Deno.test("a healthy store decides the request rate (a promise), with the key and the configured limit", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [0, 0, 0, 250];
  // The local burst is 2: a third and fourth request would be refused locally, the store admits them.
  for (let i = 0; i < 3; i++) {
    const r = guard.admitRequestShared(ticket, undefined);
    assert.ok(r instanceof Promise);
    assert.equal(await r, 0);
  }
  assert.equal(
    await guard.admitRequestShared(ticket, undefined),
    1,
    "the store's wait becomes a Retry-After",
  );
  assert.equal(store.checks.length, 4);
  assert.equal(store.checks[0].key, "203.0.113.7");
  assert.equal(store.checks[0].limit.intervalMs, 100);
  assert.equal(store.checks[0].limit.toleranceMs, 100);
  assert.equal(guard.clients(5)[0].violations, 1, "a shared refusal is a violation here");
});

Deno.test("a degraded store is skipped: the local limiter answers synchronously", () => {
  const { guard, store, ticket } = setup();
  store.healthy = false;
  assert.equal(guard.admitRequestShared(ticket, undefined), 0);
  assert.equal(guard.admitRequestShared(ticket, undefined), 0);
  assert.equal(guard.admitRequestShared(ticket, undefined), 1, "burst 2 locally");
  assert.equal(store.checks.length, 0);
});

Deno.test("a check the store cannot answer (-1) is judged by the local limiter", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [-1];
  assert.equal(await guard.admitRequestShared(ticket, undefined), 0);
  assert.equal(await guard.admitRequestShared(ticket, undefined), 0);
  assert.equal(await guard.admitRequestShared(ticket, undefined), 1);
});

Deno.test("requests the store admitted count toward the local limiter used after a failover", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [0];
  assert.equal(await guard.admitRequestShared(ticket, undefined), 0);
  assert.equal(await guard.admitRequestShared(ticket, undefined), 0);
  store.healthy = false;
  assert.equal(guard.admitRequestShared(ticket, undefined), 1, "the local burst was spent already");
});

Deno.test("shared refusals earn a ban, published once with the client key", async () => {
  const { guard, store, ticket, clock } = setup({ banAfterViolations: 3, banMs: 60_000 });
  store.answers = [500];
  for (let i = 0; i < 2; i++) assert.equal(await guard.admitRequestShared(ticket, undefined), 1);
  assert.equal(await guard.admitRequestShared(ticket, undefined), 60, "the third violation bans");
  assert.deepEqual(store.published, ["ban 203.0.113.7 60000 flood"]);
  // The ban is checked locally before the store is asked.
  const checks = store.checks.length;
  assert.equal(guard.admitRequestShared(ticket, undefined), 60);
  assert.equal(store.checks.length, checks);
  clock.advance(1);
  assert.equal(guard.admitConnection("203.0.113.7").ok, false);
});

Deno.test("operator bans and unbans are published normalised; a CIDR ban as its canonical block", () => {
  const { guard, store } = setup();
  assert.deepEqual(guard.ban("198.51.100.4/32", 5_000, "ops"), { ok: true });
  assert.deepEqual(guard.ban("2001:db8::1", 5_000, "ops"), { ok: true });
  assert.deepEqual(guard.ban("10.1.2.3/8", 5_000, "ops"), { ok: true });
  guard.unban("198.51.100.4");
  guard.unban("10.0.0.0/8");
  assert.deepEqual(store.published, [
    "ban 198.51.100.4 5000 ops",
    "ban 2001:db8::/64 5000 ops",
    "ban 10.0.0.0/8 5000 ops",
    "unban 198.51.100.4",
    "unban 10.0.0.0/8",
  ]);
});

Deno.test("bans and unbans from other instances apply at accept and are not published back", () => {
  const { guard, store, clock } = setup();
  guard.applySharedBan("198.51.100.9", 10_000, "flood");
  const v = guard.admitConnection("198.51.100.9");
  assert.equal(v.ok, false);
  assert.equal(!v.ok && v.reason, "banned");
  assert.deepEqual(guard.bans().map((b) => b.key), ["198.51.100.9"]);
  guard.applySharedUnban("198.51.100.9");
  assert.equal(guard.admitConnection("198.51.100.9").ok, true);
  guard.applySharedBan("192.0.2.0/24", 10_000, "ops");
  assert.equal(guard.admitConnection("192.0.2.77").ok, false);
  clock.advance(10_001);
  guard.tick();
  assert.equal(guard.admitConnection("192.0.2.77").ok, true, "the shared ban ends with its TTL");
  assert.deepEqual(store.published, []);
});
