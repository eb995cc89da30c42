/**
 * The guard with a shared store attached (a scripted fake, fake clock): who decides the request rate
 * when the store is healthy, degraded or failing; violations and bans from shared refusals; bans and
 * unbans published once and applied from other instances without echo. The connection rate on the
 * store: two guards over one GCRA store hold a client to one allowance; fallback, undo and dry-run.
 */

import assert from "node:assert/strict";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { type GcraLimit, gcraNextTat, gcraWaitMs } from "../../src/guard/gcra.ts";
import type { SharedStore } from "../../src/guard/shared_store.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
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
  const v = guard.decideConnection("203.0.113.7");
  assert.ok(v.ok);
  return { clock, stats, guard, store, ticket: v.ticket };
}

Deno.test("without a store, admitRequest is the synchronous in-memory decision", () => {
  const guard = new Guard({ ...DEFAULT_CONFIG, requestBurst: 1 }, new FakeClock(), new Stats(), () => {});
  const v = guard.decideConnection("203.0.113.7");
  assert.ok(v.ok);
  assert.equal(guard.admitRequest(v.ticket, undefined), 0);
  assert.equal(guard.admitRequest(v.ticket, undefined), 1);
});

Deno.test("a healthy store decides the request rate (a promise), with the key and the configured limit", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [0, 0, 0, 250];
  // The local burst is 2: a third and fourth request would be refused locally, the store admits them.
  for (let i = 0; i < 3; i++) {
    const r = guard.admitRequest(ticket, undefined);
    assert.ok(r instanceof Promise);
    assert.equal(await r, 0);
  }
  assert.equal(
    await guard.admitRequest(ticket, undefined),
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
  assert.equal(guard.admitRequest(ticket, undefined), 0);
  assert.equal(guard.admitRequest(ticket, undefined), 0);
  assert.equal(guard.admitRequest(ticket, undefined), 1, "burst 2 locally");
  assert.equal(store.checks.length, 0);
});

Deno.test("a check the store cannot answer (-1) is judged by the local limiter", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [-1];
  assert.equal(await guard.admitRequest(ticket, undefined), 0);
  assert.equal(await guard.admitRequest(ticket, undefined), 0);
  assert.equal(await guard.admitRequest(ticket, undefined), 1);
});

Deno.test("requests the store admitted count toward the local limiter used after a failover", async () => {
  const { guard, store, ticket } = setup();
  store.answers = [0];
  assert.equal(await guard.admitRequest(ticket, undefined), 0);
  assert.equal(await guard.admitRequest(ticket, undefined), 0);
  store.healthy = false;
  assert.equal(guard.admitRequest(ticket, undefined), 1, "the local burst was spent already");
});

Deno.test("shared refusals earn a ban, published once with the client key", async () => {
  const { guard, store, ticket, clock } = setup({ banAfterViolations: 3, banMs: 60_000 });
  store.answers = [500];
  for (let i = 0; i < 2; i++) assert.equal(await guard.admitRequest(ticket, undefined), 1);
  assert.equal(await guard.admitRequest(ticket, undefined), 60, "the third violation bans");
  assert.deepEqual(store.published, ["ban 203.0.113.7 60000 flood"]);
  // The ban is checked locally before the store is asked.
  const checks = store.checks.length;
  assert.equal(guard.admitRequest(ticket, undefined), 60);
  assert.equal(store.checks.length, checks);
  clock.advance(1);
  assert.equal(guard.decideConnection("203.0.113.7").ok, false);
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
  const v = guard.decideConnection("198.51.100.9");
  assert.equal(v.ok, false);
  assert.equal(!v.ok && v.reason, "banned");
  assert.deepEqual(guard.bans().map((b) => b.key), ["198.51.100.9"]);
  guard.applySharedUnban("198.51.100.9");
  assert.equal(guard.decideConnection("198.51.100.9").ok, true);
  guard.applySharedBan("192.0.2.0/24", 10_000, "ops");
  assert.equal(guard.decideConnection("192.0.2.77").ok, false);
  clock.advance(10_001);
  guard.tick();
  assert.equal(guard.decideConnection("192.0.2.77").ok, true, "the shared ban ends with its TTL");
  assert.deepEqual(store.published, []);
});

// --- the connection rate on the store -------------------------------------------------------------------

/** A store that really runs GCRA on one shared table and one (fake) clock, as Redis's script does. */
class GcraStore implements SharedStore {
  healthy = true;
  readonly tats = new Map<string, number>();
  readonly keys: string[] = [];
  constructor(readonly clock: FakeClock) {}
  gcra(key: string, limit: GcraLimit): Promise<number> {
    this.keys.push(key);
    const now = this.clock.nowMs();
    const tat = this.tats.get(key) ?? now;
    const wait = gcraWaitMs(tat, now, limit);
    if (wait === 0) this.tats.set(key, gcraNextTat(tat, now, limit));
    return Promise.resolve(wait);
  }
  publishBan(): void {}
  publishUnban(): void {}
}

const CLIENT = "203.0.113.40";

function connSetup(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(80_000);
  const stats = new Stats();
  const opts: GuardOptions = {
    ...DEFAULT_CONFIG,
    connRatePerSec: 2,
    connBurst: 3,
    banAfterViolations: 1_000_000,
    ...overrides,
  };
  const guard = new Guard(opts, clock, stats, () => {});
  const store = new FakeStore();
  guard.attachStore(store);
  return { clock, stats, guard, store };
}

/** One client opening a connection every `everyMs` for `ms`, alternating between `guards` (closed at once). */
async function connFlood(guards: Guard[], clock: FakeClock, everyMs: number, ms: number) {
  const admitted = guards.map(() => 0);
  const refused = guards.map(() => 0);
  for (let i = 0; i * everyMs < ms; i++) {
    const which = i % guards.length;
    const v = await guards[which].admitConnection(CLIENT);
    if (v.ok) {
      admitted[which]++;
      guards[which].release(v.ticket);
    } else {
      assert.equal(v.reason, "conn_rate");
      refused[which]++;
    }
    clock.advance(everyMs);
  }
  return { admitted, refused, total: admitted[0] + admitted[1] };
}

Deno.test("two guards on one store hold a client's connections to one CONN_BURST + CONN_RATE × t", async () => {
  const clock = new FakeClock(80_000);
  const store = new GcraStore(clock);
  const opts: GuardOptions = { ...DEFAULT_CONFIG, connRatePerSec: 2, connBurst: 3, banAfterViolations: 1e6 };
  const guards = [0, 1].map(() => new Guard(opts, clock, new Stats(), () => {}));
  for (const g of guards) g.attachStore(store);
  // 40 attempts over 2 s: one allowance is 3 + 2 × 2 = 7 (the attempt at 2 s itself is not made: 6).
  const shared = await connFlood(guards, clock, 50, 2_000);
  assert.ok(shared.total >= 6 && shared.total <= 7, JSON.stringify(shared));
  assert.ok(
    shared.admitted.every((n) => n > 0) && shared.refused.every((n) => n > 0),
    JSON.stringify(shared),
  );
  assert.ok(store.keys.every((k) => k === `conn:${CLIENT}`), store.keys[0]);
  for (const g of guards) assert.equal(g.openConns, 0);

  // Control: the same pattern judged per instance gets about twice as much.
  store.healthy = false;
  clock.advance(60_000);
  const local = await connFlood(guards, clock, 50, 2_000);
  assert.ok(local.total >= 12, JSON.stringify(local));
});

Deno.test("a healthy store judges only the connection rate, under conn:<key> with CONN_RATE/CONN_BURST", async () => {
  const { guard, store } = connSetup();
  store.answers = [0];
  const pending = guard.admitConnection(CLIENT);
  assert.ok(pending instanceof Promise);
  const v = await pending;
  assert.ok(v.ok);
  assert.deepEqual(store.checks.map((c) => c.key), [`conn:${CLIENT}`]);
  assert.equal(store.checks[0].limit.intervalMs, 500);
  assert.equal(store.checks[0].limit.toleranceMs, 1_000);
  // A request on it still uses the bare key: the two rates never share a TAT.
  assert.equal(await guard.admitRequest(v.ticket, undefined), 0);
  assert.equal(store.checks[1].key, CLIENT);
});

Deno.test("local refusals at accept stay synchronous with a store: ban, caps, allowlist", () => {
  const { guard, store } = connSetup({ maxConnsPerClient: 1, allowlist: ["198.51.100.1/32"] });
  const first = guard.decideConnection(CLIENT); // the cap's one connection (local path)
  assert.ok(first.ok);
  const capped = guard.admitConnection(CLIENT);
  assert.ok(!(capped instanceof Promise));
  assert.equal(!capped.ok && capped.reason, "client_cap");
  const allowed = guard.admitConnection("198.51.100.1");
  assert.ok(!(allowed instanceof Promise) && allowed.ok);
  guard.ban("192.0.2.9", 10_000, "ops");
  const banned = guard.admitConnection("192.0.2.9");
  assert.ok(!(banned instanceof Promise));
  assert.equal(!banned.ok && banned.reason, "banned");
  assert.equal(store.checks.length, 0, "the store is asked only for the rate");
});

Deno.test("a degraded store: admitConnection is admitConnection, synchronous", () => {
  const { guard, store } = connSetup();
  store.healthy = false;
  for (let i = 0; i < 3; i++) {
    const v = guard.admitConnection(CLIENT);
    assert.ok(!(v instanceof Promise) && v.ok);
  }
  const v = guard.admitConnection(CLIENT);
  assert.ok(!(v instanceof Promise));
  assert.equal(!v.ok && v.reason, "conn_rate");
  assert.equal(store.checks.length, 0);
});

Deno.test("a connection check the store cannot answer (-1) is judged by the local GCRA", async () => {
  const { guard, store, stats } = connSetup();
  store.answers = [-1];
  for (let i = 0; i < 3; i++) assert.ok((await guard.admitConnection(CLIENT)).ok, `burst ${i}`);
  const v = await guard.admitConnection(CLIENT);
  assert.deepEqual(v, { ok: false, reason: "conn_rate", key: CLIENT, retryAfterSec: 1 });
  assert.equal(stats.refused.conn_rate, 1);
  assert.equal(guard.openConns, 3);
});

Deno.test("connections the store admitted count toward the local GCRA used after a failover", async () => {
  const { guard, store } = connSetup();
  store.answers = [0];
  for (let i = 0; i < 3; i++) assert.ok((await guard.admitConnection(CLIENT)).ok);
  store.healthy = false;
  const v = guard.admitConnection(CLIENT);
  assert.ok(!(v instanceof Promise));
  assert.equal(!v.ok && v.reason, "conn_rate", "the local burst was spent already");
});

Deno.test("a refusal after the await undoes the pin and the open count", async () => {
  const { guard, store, stats } = connSetup();
  store.answers = [0];
  const held = await guard.admitConnection(CLIENT);
  assert.ok(held.ok);
  const open = guard.openConns;
  const conns = guard.clients(5)[0].conns;
  assert.equal(open, 1);
  assert.equal(conns, 1);
  store.answers = [1_500];
  const pending = guard.admitConnection(CLIENT);
  assert.equal(guard.openConns, 2, "admitted provisionally while the store is asked");
  const v = await pending;
  assert.deepEqual(v, { ok: false, reason: "conn_rate", key: CLIENT, retryAfterSec: 2 });
  assert.equal(guard.openConns, open);
  assert.equal(guard.clients(5)[0].conns, conns);
  assert.equal(guard.clients(5)[0].violations, 1, "a shared refusal is a violation here");
  assert.equal(stats.refused.conn_rate, 1);
  guard.release(held.ticket);
  assert.equal(guard.openConns, 0);
  assert.equal(guard.clients(5).length, 0, "nothing left pinned");
});

Deno.test("shared connection refusals escalate to a ban like local ones, then refused at accept", async () => {
  const { guard, store, clock } = connSetup({ banAfterViolations: 2, banMs: 30_000 });
  store.answers = [400];
  const first = await guard.admitConnection(CLIENT);
  assert.equal(!first.ok && first.retryAfterSec, 1);
  const second = await guard.admitConnection(CLIENT);
  assert.deepEqual(second, { ok: false, reason: "conn_rate", key: CLIENT, retryAfterSec: 30 });
  assert.deepEqual(store.published, [`ban ${CLIENT} 30000 flood`]);
  assert.equal(guard.openConns, 0);
  clock.advance(1);
  const checks = store.checks.length;
  const banned = guard.admitConnection(CLIENT);
  assert.ok(!(banned instanceof Promise));
  assert.equal(!banned.ok && banned.reason, "banned");
  assert.equal(store.checks.length, checks);
});

Deno.test("dry-run: a shared connection refusal is counted and logged but admitted", async () => {
  const logs: string[] = [];
  const clock = new FakeClock(80_000);
  const stats = new Stats();
  const opts: GuardOptions = { ...DEFAULT_CONFIG, limitMode: "dry-run", connRatePerSec: 2, connBurst: 3 };
  const guard = new Guard(opts, clock, stats, (l) => logs.push(l));
  const store = new FakeStore();
  guard.attachStore(store);
  store.answers = [700];
  const v = await guard.admitConnection(CLIENT);
  assert.ok(v.ok);
  assert.equal(guard.dryRunRefusals, 1);
  assert.equal(stats.refused.conn_rate, 0);
  assert.equal(guard.openConns, 1);
  assert.equal(guard.clients(5)[0].violations, 1);
  assert.match(logs.join("\n"), /dry-run: would refuse connection from 203\.0\.113\.40: conn_rate/);
  guard.release(v.ticket);
  assert.equal(guard.openConns, 0);
});
