/**
 * Bans: earned by violations, escalating, expiring, operator CIDR bans, and the bounded ban list.
 */

import assert from "node:assert/strict";
import { BanList, MAX_CIDR_BANS } from "../../src/guard/bans.ts";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

function options(overrides: Partial<GuardOptions>): GuardOptions {
  return { ...DEFAULT_CONFIG, ...overrides };
}

/** A guard where 1 request passes, then 3 violations in 10 s earn a 60 s ban, doubling to 300 s. */
function setup(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(10_000);
  const stats = new Stats();
  const logs: string[] = [];
  const guard = new Guard(
    options({
      requestBurst: 1,
      requestRatePerSec: 1,
      banAfterViolations: 3,
      violationWindowMs: 10_000,
      banMs: 60_000,
      banMaxMs: 300_000,
      ...overrides,
    }),
    clock,
    stats,
    (line) => logs.push(line),
  );
  return { clock, stats, guard, logs };
}

/** Sends requests until one is answered with a ban-length Retry-After; returns it. */
function floodUntilBanned(guard: Guard, ticket: number): number {
  for (let i = 0; i < 100; i++) {
    const r = guard.decideRequest(ticket, undefined);
    if (r > 1) return r;
  }
  throw new Error("never banned");
}

Deno.test("ban follows the configured number of violations within the window", () => {
  const { guard, stats, clock } = setup();
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  assert.equal(guard.decideRequest(v.ticket, undefined), 0);
  assert.equal(guard.decideRequest(v.ticket, undefined), 1, "violation 1");
  assert.equal(guard.decideRequest(v.ticket, undefined), 1, "violation 2");
  assert.equal(stats.bansAdded, 0);
  assert.equal(guard.decideRequest(v.ticket, undefined), 60, "violation 3 earns a 60 s ban");
  assert.equal(stats.bansAdded, 1);
  assert.equal(stats.bansActive, 1);
  clock.advance(2_000);
  assert.equal(guard.decideRequest(v.ticket, undefined), 58, "open connections see the ban too");
  const refused = guard.decideConnection("203.0.113.5");
  assert.deepEqual(refused, { ok: false, reason: "banned", key: "203.0.113.5", retryAfterSec: 58 });
  assert.equal(stats.refused.banned, 1);
  const [info] = guard.bans();
  assert.equal(info.key, "203.0.113.5");
  assert.equal(info.reason, "flood");
  assert.equal(info.offences, 1);
  assert.equal(info.remainingMs, 58_000);
  assert.equal(info.expiresAtWallMs, clock.wallMs() + 58_000);
});

Deno.test("violations spread wider than the window do not ban", () => {
  const { guard, stats, clock } = setup({ requestRatePerSec: 1 });
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  for (let round = 0; round < 5; round++) {
    assert.equal(guard.decideRequest(v.ticket, undefined), 0);
    assert.equal(guard.decideRequest(v.ticket, undefined), 1);
    assert.equal(guard.decideRequest(v.ticket, undefined), 1);
    clock.advance(10_000); // the window closes before a third violation
  }
  assert.equal(stats.bansAdded, 0);
});

Deno.test("ban length doubles with each offence and stops at the cap", () => {
  const { guard, clock } = setup();
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  const lengths: number[] = [];
  for (let i = 0; i < 5; i++) {
    lengths.push(floodUntilBanned(guard, v.ticket));
    clock.advance(lengths[i] * 1000);
  }
  assert.deepEqual(lengths, [60, 120, 240, 300, 300]);
  assert.deepEqual(guard.bans(), [], "the last ban has run out");
});

Deno.test("offences are forgotten after a clean stretch of banMaxMs", () => {
  const { guard, clock } = setup();
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  assert.equal(floodUntilBanned(guard, v.ticket), 60);
  clock.advance(60_000 + 300_001);
  assert.equal(floodUntilBanned(guard, v.ticket), 60);
});

Deno.test("bans expire on time and are counted when they do", () => {
  const { guard, stats, clock } = setup();
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  floodUntilBanned(guard, v.ticket);
  guard.release(v.ticket);
  clock.advance(59_999);
  assert.equal(guard.decideConnection("203.0.113.5").ok, false);
  clock.advance(1);
  const after = guard.decideConnection("203.0.113.5");
  assert.ok(after.ok, "lazily expired at lookup");
  assert.equal(stats.bansExpired, 1);
  assert.equal(stats.bansActive, 0);
  assert.equal(guard.decideRequest(after.ticket, undefined), 0);
});

Deno.test("tick expires bans nobody looks up", () => {
  const { guard, stats, clock } = setup();
  assert.ok(guard.ban("198.51.100.1", 5_000, "manual").ok);
  assert.ok(guard.ban("198.51.100.0/24", 7_000, "manual").ok);
  assert.equal(stats.bansActive, 2);
  clock.advance(5_000);
  guard.tick();
  assert.equal(stats.bansExpired, 1);
  assert.equal(stats.bansActive, 1);
  clock.advance(2_000);
  guard.tick();
  assert.equal(stats.bansExpired, 2);
  assert.equal(stats.bansActive, 0);
});

Deno.test("an evicted table entry does not forget its ban", () => {
  const { guard } = setup({ guardTableCapacity: 16 });
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  floodUntilBanned(guard, v.ticket);
  guard.release(v.ticket);
  for (let i = 0; i < 64; i++) {
    const other = guard.decideConnection(`192.0.2.${i}`);
    assert.ok(other.ok);
    guard.release(other.ticket);
  }
  assert.ok(!guard.clients(100).some((c) => c.key === "203.0.113.5"), "entry was evicted");
  const again = guard.decideConnection("203.0.113.5");
  assert.equal(again.ok, false);
  assert.equal(!again.ok && again.reason, "banned");
});

Deno.test("operator CIDR ban refuses every address inside and unban lifts it", () => {
  const { guard, stats } = setup();
  const open = guard.decideConnection("198.51.100.20");
  assert.ok(open.ok);
  assert.deepEqual(guard.ban("198.51.100.0/24", 3_600_000, "abuse report"), { ok: true });
  for (const ip of ["198.51.100.1", "198.51.100.254", "::ffff:198.51.100.9"]) {
    const v = guard.decideConnection(ip);
    assert.equal(!v.ok && v.reason, "banned", ip);
  }
  assert.ok(guard.decideConnection("198.51.101.1").ok, "outside the block");
  assert.equal(guard.decideRequest(open.ticket, undefined), 3_600, "open connections inside are refused too");
  assert.deepEqual(guard.bans().map((b) => [b.key, b.reason]), [["198.51.100.0/24", "abuse report"]]);
  assert.equal(guard.unban("198.51.100.0/24"), true);
  assert.equal(guard.unban("198.51.100.0/24"), false);
  assert.ok(guard.decideConnection("198.51.100.1").ok);
  assert.equal(guard.decideRequest(open.ticket, undefined), 0);
  assert.equal(stats.bansActive, 0);
});

Deno.test("operator IPv6 ban of an address bans its whole client key", () => {
  const { guard } = setup();
  assert.ok(guard.ban("2001:db8:1:2::99", 10_000, "manual").ok);
  const v = guard.decideConnection("2001:db8:1:2:aaaa::1");
  assert.equal(!v.ok && v.reason, "banned");
  assert.ok(guard.decideConnection("2001:db8:1:3::1").ok);
  assert.equal(guard.unban("2001:db8:1:2::/64"), true);
  assert.ok(guard.decideConnection("2001:db8:1:2:aaaa::1").ok);
});

Deno.test("operator ban rejects bad input", () => {
  const { guard } = setup();
  assert.equal(guard.ban("banana", 1000, "x").ok, false);
  assert.equal(guard.ban("10.0.0.0/33", 1000, "x").ok, false);
  assert.equal(guard.ban("10.0.0.1", 0, "x").ok, false);
  assert.equal(guard.ban("10.0.0.1", Number.NaN, "x").ok, false);
  assert.equal(guard.unban("10.9.9.9"), false);
});

Deno.test("unban forgives the key's violations", () => {
  const { guard } = setup();
  const v = guard.decideConnection("203.0.113.5");
  assert.ok(v.ok);
  floodUntilBanned(guard, v.ticket);
  assert.equal(guard.unban("203.0.113.5"), true);
  const again = guard.decideConnection("203.0.113.5");
  assert.ok(again.ok);
  assert.equal(floodUntilBanned(guard, again.ticket), 60, "the first offence length again");
});

Deno.test("ban list holds at most its capacity, dropping the soonest-to-expire", () => {
  const list = new BanList(3);
  assert.equal(list.add("a", 500, "x", 1), null);
  assert.equal(list.add("b", 100, "x", 1), null);
  assert.equal(list.add("c", 300, "x", 1), null);
  assert.equal(list.add("d", 400, "x", 1), "b");
  assert.equal(list.size, 3);
  assert.equal(list.evicted, 1);
  assert.deepEqual(list.setCapacity(1), ["c", "d"]);
  assert.equal(list.get("a", 0)?.key, "a");
});

Deno.test("ban list expiry heap stays ordered through random adds and removals", () => {
  const list = new BanList(1_000);
  const model = new Map<string, number>();
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) % n;
  for (let i = 0; i < 2_000; i++) {
    const key = `k${rnd(300)}`;
    if (rnd(4) === 0) {
      assert.equal(list.remove(key), model.delete(key));
    } else {
      const until = 1 + rnd(10_000);
      list.add(key, until, "x", 0);
      model.set(key, Math.max(model.get(key) ?? 0, until));
    }
  }
  for (let now = 0; now <= 10_000; now += 250) {
    const gone = list.expire(now);
    for (const key of gone) {
      assert.ok(model.get(key)! <= now);
      model.delete(key);
    }
    for (const until of model.values()) assert.ok(until > now);
  }
  assert.equal(list.size, 0);
});

Deno.test("guard ban list bound applies to automatic bans", () => {
  const { guard, stats, clock } = setup({ banListCapacity: 2 });
  for (let i = 1; i <= 3; i++) {
    const v = guard.decideConnection(`203.0.113.${i}`);
    assert.ok(v.ok);
    floodUntilBanned(guard, v.ticket);
  }
  assert.equal(stats.bansAdded, 3);
  assert.equal(stats.bansActive, 2);
  assert.deepEqual(guard.bans().map((b) => b.key).sort(), ["203.0.113.2", "203.0.113.3"]);
  const first = guard.decideConnection("203.0.113.1");
  assert.ok(first.ok);
  clock.advance(1_000); // past its rate limit, well inside its (dropped) 60 s ban
  assert.equal(guard.decideRequest(first.ticket, undefined), 0, "the dropped ban no longer applies");
});

Deno.test("operator CIDR bans are bounded", () => {
  const { guard } = setup();
  for (let i = 0; i < MAX_CIDR_BANS; i++) {
    assert.ok(guard.ban(`10.${i >> 8}.${i & 255}.0/24`, 1000, "x").ok);
  }
  assert.equal(guard.ban("11.0.0.0/24", 1000, "x").ok, false);
});
