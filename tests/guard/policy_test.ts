/**
 * The guard end to end with a fake clock: floods, bans, bystanders, connection rate, caps, busy idle
 * timeout, dry-run, live reload and the admin views.
 */

import assert from "node:assert/strict";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

function setup(overrides: Partial<GuardOptions> = {}) {
  const clock = new FakeClock(50_000);
  const stats = new Stats();
  const logs: string[] = [];
  const opts: GuardOptions = { ...DEFAULT_CONFIG, ...overrides };
  const guard = new Guard(opts, clock, stats, (line) => logs.push(line));
  return { clock, stats, guard, logs, opts };
}

function admit(guard: Guard, ip: string): number {
  const v = guard.decideConnection(ip);
  assert.ok(v.ok, `${ip} admitted: ${JSON.stringify(v)}`);
  return v.ticket;
}

Deno.test("a flooding client gets 429s, then a ban, then is refused at accept; a bystander is unaffected", () => {
  const { guard, stats } = setup(); // defaults: 100/s burst 400, ban after 50 violations
  const flooder = admit(guard, "203.0.113.66");
  const bystander = admit(guard, "198.51.100.7");
  let served = 0;
  let limited = 0;
  let banRetry = 0;
  for (let i = 0; i < 1_000 && banRetry === 0; i++) {
    const r = guard.decideRequest(flooder, undefined);
    if (r === 0) served++;
    else if (r === 1) limited++;
    else banRetry = r;
    // The bystander sends a few requests in the same instant, well within its own burst.
    if (i % 10 === 0) assert.equal(guard.decideRequest(bystander, undefined), 0);
  }
  assert.equal(served, 400, "the burst");
  assert.equal(limited, 49);
  assert.equal(banRetry, 60);
  assert.equal(stats.bansAdded, 1);
  const refused = guard.decideConnection("203.0.113.66");
  assert.equal(!refused.ok && refused.reason, "banned");
  assert.equal(stats.refused.banned, 1);
  assert.ok(guard.decideConnection("198.51.100.7").ok, "bystander connects");
  assert.equal(guard.decideRequest(bystander, undefined), 0, "bystander is served");
  const top = guard.clients(1)[0];
  assert.equal(top.key, "203.0.113.66");
  assert.equal(top.limited, true);
  assert.ok(top.requestRatePerSec > 100);
  assert.equal(top.requests, 450);
});

Deno.test("connections over the connection rate are refused with conn_rate and count as violations", () => {
  const { guard, stats, clock } = setup({ connBurst: 3, connRatePerSec: 2, banAfterViolations: 4 });
  for (let i = 0; i < 3; i++) guard.release(admit(guard, "203.0.113.1"));
  const v = guard.decideConnection("203.0.113.1");
  assert.deepEqual(v, { ok: false, reason: "conn_rate", key: "203.0.113.1", retryAfterSec: 1 });
  clock.advance(500);
  guard.release(admit(guard, "203.0.113.1"));
  for (let i = 0; i < 2; i++) assert.equal(guard.decideConnection("203.0.113.1").ok, false);
  const fourth = guard.decideConnection("203.0.113.1");
  assert.equal(!fourth.ok && fourth.reason, "conn_rate");
  assert.equal(!fourth.ok && fourth.retryAfterSec, 60, "the fourth violation earns a ban");
  assert.equal(stats.refused.conn_rate, 4);
  const banned = guard.decideConnection("203.0.113.1");
  assert.equal(!banned.ok && banned.reason, "banned");
  assert.ok(guard.decideConnection("203.0.113.2").ok);
});

Deno.test("per-client cap refuses with client_cap until a connection closes", () => {
  const { guard, stats } = setup({ maxConnsPerClient: 2 });
  const a = admit(guard, "203.0.113.1");
  admit(guard, "::ffff:203.0.113.1");
  const v = guard.decideConnection("203.0.113.1");
  assert.deepEqual(v, { ok: false, reason: "client_cap", key: "203.0.113.1", retryAfterSec: 1 });
  assert.ok(guard.decideConnection("203.0.113.2").ok, "other clients unaffected");
  guard.release(a);
  assert.ok(guard.decideConnection("203.0.113.1").ok);
  assert.equal(stats.refused.client_cap, 1);
});

Deno.test("IPv6 clients in one /64 share a cap; another /64 does not", () => {
  const { guard } = setup({ maxConnsPerClient: 2 });
  admit(guard, "2001:db8:1:2::1");
  admit(guard, "2001:db8:1:2::2");
  const v = guard.decideConnection("2001:db8:1:2:ffff::3");
  assert.equal(!v.ok && v.reason, "client_cap");
  assert.equal(!v.ok && v.key, "2001:db8:1:2::/64");
  assert.ok(guard.decideConnection("2001:db8:1:3::1").ok);
});

Deno.test("global cap refuses with global_cap, allowlisted peers included", () => {
  const { guard, stats } = setup({ maxConns: 3, maxConnsPerClient: 3, allowlist: ["192.0.2.1"] });
  const t1 = admit(guard, "203.0.113.1");
  admit(guard, "203.0.113.2");
  admit(guard, "192.0.2.1");
  assert.equal(guard.openConns, 3);
  for (const ip of ["203.0.113.3", "192.0.2.1"]) {
    const v = guard.decideConnection(ip);
    assert.equal(!v.ok && v.reason, "global_cap", ip);
  }
  assert.equal(stats.refused.global_cap, 2);
  guard.release(t1);
  assert.ok(guard.decideConnection("203.0.113.3").ok);
});

Deno.test("idle timeout shortens above the busy threshold", () => {
  const { guard } = setup({
    maxConns: 10,
    busyThresholdPercent: 50,
    idleTimeoutMs: 15_000,
    idleTimeoutBusyMs: 500,
  });
  const tickets: number[] = [];
  for (let i = 0; i < 5; i++) tickets.push(admit(guard, `203.0.113.${i}`));
  assert.equal(guard.idleTimeoutMs(), 15_000, "exactly at the threshold is not busy");
  tickets.push(admit(guard, "203.0.113.99"));
  assert.equal(guard.idleTimeoutMs(), 500);
  guard.release(tickets.pop()!);
  assert.equal(guard.idleTimeoutMs(), 15_000);
});

Deno.test("dry-run counts and logs bans and limits but refuses nothing for them", () => {
  const { guard, stats, clock, logs } = setup({
    limitMode: "dry-run",
    requestBurst: 2,
    connBurst: 2,
    banAfterViolations: 3,
    maxConnsPerClient: 5,
  });
  const t = admit(guard, "203.0.113.1");
  for (let i = 0; i < 10; i++) assert.equal(guard.decideRequest(t, undefined), 0);
  assert.equal(stats.bansAdded, 1, "the ban that enforce mode would have made is recorded");
  assert.equal(guard.bans()[0].key, "203.0.113.1");
  for (let i = 0; i < 4; i++) admit(guard, "203.0.113.1"); // banned: enforce mode would refuse these
  assert.equal(stats.refused.banned + stats.refused.conn_rate, 0);
  assert.ok(guard.dryRunRefusals >= 11);
  // Caps are resource protection and stay enforced.
  const capped = guard.decideConnection("203.0.113.1");
  assert.equal(!capped.ok && capped.reason, "client_cap");
  assert.equal(stats.refused.client_cap, 1);
  // Logging of dry-run decisions is limited to one line per second, and the rest are reported; the ban
  // line is never held back.
  const dryRun = logs.filter((l) => !l.startsWith("guard: ban "));
  assert.equal(dryRun.length, 1);
  assert.match(dryRun[0], /dry-run: would answer 429 to 203\.0\.113\.1/);
  assert.equal(logs.filter((l) => l.startsWith("guard: ban 203.0.113.1 ")).length, 1);
  clock.advance(1_000);
  guard.tick();
  assert.match(logs[logs.length - 1], /log lines suppressed/);
});

Deno.test("every ban is logged exactly once, even several in the same second; a quiet copy is not", () => {
  const { guard, logs } = setup({ requestBurst: 1, banAfterViolations: 2 });
  for (const ip of ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) {
    const t = admit(guard, ip);
    for (let i = 0; i < 5; i++) guard.admitRequest(t, undefined);
  }
  assert.ok(guard.ban("198.51.100.0/24", 60_000, "operator").ok);
  assert.ok(guard.ban("198.51.100.9", 60_000, "operator").ok);
  assert.ok(guard.ban("192.0.2.0/24", 60_000, "operator", true).ok);
  assert.ok(guard.ban("192.0.2.1", 60_000, "operator", true).ok);
  const bans = logs.filter((l) => l.startsWith("guard: ban "));
  assert.deepEqual(bans.map((l) => l.split(" ")[2]), [
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "198.51.100.0/24",
    "198.51.100.9",
  ]);
  assert.ok(!logs.some((l) => l.includes("suppressed")));
});

Deno.test("switching from dry-run to enforce applies limits at once", () => {
  const { guard, opts } = setup({ limitMode: "dry-run", requestBurst: 1 });
  const t = admit(guard, "203.0.113.1");
  assert.equal(guard.decideRequest(t, undefined), 0);
  assert.equal(guard.decideRequest(t, undefined), 0);
  guard.applyOptions({ ...opts, limitMode: "enforce" });
  assert.equal(guard.decideRequest(t, undefined), 1);
});

Deno.test("live reload changes rates, keeps state, and says a capacity change needs a restart", () => {
  const { guard, opts, logs } = setup({ requestBurst: 1 });
  const t = admit(guard, "203.0.113.1");
  assert.equal(guard.decideRequest(t, undefined), 0);
  assert.equal(guard.decideRequest(t, undefined), 1);
  guard.applyOptions({ ...opts, requestBurst: 5, guardTableCapacity: 999 });
  assert.equal(guard.decideRequest(t, undefined), 0, "the larger burst applies to held state");
  assert.match(logs.join("\n"), /GUARD_TABLE_CAPACITY change .* after a restart/);
});

Deno.test("live reload of ALLOWLIST and TRUSTED_PROXIES applies to the next connection of an address just seen", () => {
  const { guard, opts } = setup({ maxConnsPerClient: 1 });
  const first = admit(guard, "203.0.113.9");
  const capped = guard.decideConnection("203.0.113.9");
  assert.equal(!capped.ok && capped.reason, "client_cap");
  guard.applyOptions({ ...opts, maxConnsPerClient: 1, allowlist: ["203.0.113.0/24"] });
  assert.ok(guard.decideConnection("203.0.113.9").ok, "allowlisted now: no per-client cap");
  guard.applyOptions({ ...opts, maxConnsPerClient: 1, allowlist: [] });
  const again = guard.decideConnection("203.0.113.9");
  assert.equal(!again.ok && again.reason, "client_cap", "and capped again once removed");
  guard.release(first);
  guard.applyOptions({ ...opts, trustedProxies: ["203.0.113.9"], requestBurst: 1 });
  const proxy = admit(guard, "203.0.113.9");
  assert.equal(guard.decideRequest(proxy, "198.51.100.1"), 0);
  assert.equal(guard.decideRequest(proxy, "198.51.100.1"), 1, "X-Forwarded-For is read: it is a proxy now");
});

Deno.test("allowlisting a trusted proxy still limits the clients behind it", () => {
  const { guard } = setup({ allowlist: ["10.0.0.1"], trustedProxies: ["10.0.0.1"], requestBurst: 1 });
  const proxy = admit(guard, "10.0.0.1");
  assert.equal(guard.decideRequest(proxy, undefined), 0);
  assert.equal(guard.decideRequest(proxy, undefined), 0, "the proxy itself is unlimited");
  assert.equal(guard.decideRequest(proxy, "203.0.113.1"), 0);
  assert.equal(guard.decideRequest(proxy, "203.0.113.1"), 1, "its client is limited");
});

Deno.test("100,000 short connections from distinct clients keep the table at its capacity", () => {
  const { guard, stats } = setup({ guardTableCapacity: 1_000 });
  for (let i = 0; i < 100_000; i++) {
    const t = admit(guard, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(guard.decideRequest(t, undefined), 0);
    guard.release(t);
  }
  guard.tick();
  assert.equal(stats.guardTableSize, 1_000);
  assert.equal(stats.guardTableFull, 0);
  assert.equal(guard.openConns, 0);
});

Deno.test("clients view lists top talkers first and is bounded by the limit", () => {
  const { guard, clock } = setup();
  const quiet = admit(guard, "203.0.113.1");
  const busy = admit(guard, "203.0.113.2");
  admit(guard, "203.0.113.3"); // connected, silent
  guard.decideRequest(quiet, undefined);
  for (let i = 0; i < 30; i++) guard.decideRequest(busy, undefined);
  clock.advance(500);
  const rows = guard.clients(10);
  assert.deepEqual(rows.map((r) => r.key), ["203.0.113.2", "203.0.113.1", "203.0.113.3"]);
  assert.equal(rows[0].requestRatePerSec, 30);
  assert.equal(rows[0].conns, 1);
  assert.equal(rows[0].limited, false);
  assert.equal(guard.clients(1).length, 1);
  assert.equal(guard.clients(0).length, 0);
  clock.advance(1_000);
  assert.equal(guard.clients(10)[0].requestRatePerSec, 15, "half of the previous window still overlaps");
});

Deno.test("with an attached open count the global cap and busy threshold follow it, not the guard's own", () => {
  const { guard, stats } = setup({
    maxConns: 4,
    busyThresholdPercent: 50,
    idleTimeoutMs: 15_000,
    idleTimeoutBusyMs: 500,
    allowlist: ["192.0.2.1"],
  });
  let elsewhere = 3; // connections other guards sharing the cap hold
  guard.useOpenCount(() => elsewhere + guard.openConns);
  assert.equal(guard.idleTimeoutMs(), 500, "busy with no connection of its own");
  const t = admit(guard, "203.0.113.1");
  for (const ip of ["203.0.113.2", "192.0.2.1"]) {
    const v = guard.decideConnection(ip);
    assert.equal(!v.ok && v.reason, "global_cap", ip);
  }
  assert.equal(stats.refused.global_cap, 2);
  assert.equal(guard.openConns, 1, "openConns stays this guard's own count");
  elsewhere = 1;
  assert.equal(guard.idleTimeoutMs(), 15_000);
  assert.ok(guard.decideConnection("192.0.2.1").ok, "room again once the others released");
  guard.release(t);
  // Detached: back to the guard's own count (1 open of 4).
  elsewhere = 100;
  guard.useOpenCount(null);
  assert.ok(guard.decideConnection("203.0.113.2").ok);
});

Deno.test("without a shared store admitConnection is admitConnection: synchronous, same verdicts", () => {
  const a = setup({ connBurst: 2, connRatePerSec: 1, banAfterViolations: 2 });
  const b = setup({ connBurst: 2, connRatePerSec: 1, banAfterViolations: 2 });
  for (let i = 0; i < 5; i++) {
    const shared = a.guard.admitConnection("203.0.113.3");
    assert.ok(!(shared instanceof Promise), "no promise without a store");
    assert.deepEqual(shared, b.guard.decideConnection("203.0.113.3"), `attempt ${i}`);
  }
  assert.equal(a.guard.openConns, 2);
  assert.deepEqual(a.stats.refused, b.stats.refused);
});

Deno.test("X-Forwarded-For from a peer outside TRUSTED_PROXIES is warned about once, naming the fix", () => {
  const { guard, logs, opts } = setup();
  const proxied = guard.decideConnection("127.0.0.1"); // allowlisted by default: a same-host proxy
  assert.ok(proxied.ok);
  for (let i = 0; i < 3; i++) assert.equal(guard.decideRequest(proxied.ticket, "203.0.113.9"), 0);
  const direct = admit(guard, "198.51.100.4");
  assert.equal(guard.decideRequest(direct, "203.0.113.9"), 0);
  const warned = logs.filter((l) => l.includes("X-Forwarded-For"));
  assert.equal(warned.length, 1);
  assert.match(warned[0], /an allowlisted address .*TRUSTED_PROXIES=127\.0\.0\.1, ::1/);
  // Trusting the proxy silences it and limits each visitor on its own.
  guard.applyOptions({ ...opts, trustedProxies: ["127.0.0.1"] });
  const trusted = guard.decideConnection("127.0.0.1");
  assert.ok(trusted.ok);
  assert.equal(guard.decideRequest(trusted.ticket, "203.0.113.9"), 0);
  assert.equal(logs.filter((l) => l.includes("X-Forwarded-For")).length, 1);
  assert.ok(guard.clients(5).some((c) => c.key === "203.0.113.9"));
});

Deno.test("a ban another instance published is applied, and logged unless quiet", () => {
  const { guard, logs } = setup();
  guard.applySharedBan("203.0.113.7", 60_000, "flood");
  guard.applySharedBan("203.0.113.8", 60_000, "flood", true);
  assert.deepEqual(guard.bans().map((b) => b.key).sort(), ["203.0.113.7", "203.0.113.8"]);
  assert.deepEqual(logs.filter((l) => l.startsWith("guard: ban ")).map((l) => l.split(" ")[2]), [
    "203.0.113.7",
  ]);
});
