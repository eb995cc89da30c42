/**
 * The Redis-backed guard store against a real `redis-server` (skipped when it is not installed): the
 * GCRA Lua script, NOSCRIPT recovery, bans stored with a TTL and fanned out, the ban sync of a late
 * joiner, and the fallback on a dead or stalled Redis with recovery.
 */

import assert from "node:assert/strict";
import { gcraLimit } from "../../src/guard/gcra.ts";
import { RedisStore, type SharedBanSink } from "../../src/guard/redis_store.ts";
import { parseGuardStore } from "../../src/guard/redis_store.ts";
import { connectRedis } from "../../src/net/redis_client.ts";
import { Stats } from "../../src/stats/stats.ts";
import type { BanInfo } from "../../src/guard/views.ts";
import {
  REDIS_AVAILABLE,
  REDIS_SKIP_NOTE,
  redisCommand,
  startRedis,
  type TestRedis,
} from "../_helpers/redis.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longest a condition that should hold "within ~100 ms" may take before a test fails (slow CI). */
const WAIT_LIMIT_MS = 3_000;

async function until(what: string, cond: () => boolean): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > WAIT_LIMIT_MS) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
  return performance.now() - t0;
}

/** A sink recording what other instances published. */
class RecordingSink implements SharedBanSink {
  bans: { target: string; ms: number; reason: string }[] = [];
  unbans: string[] = [];
  local: BanInfo[] = [];
  ban(target: string, ms: number, reason: string): void {
    this.bans.push({ target, ms, reason });
  }
  unban(target: string): void {
    this.unbans.push(target);
  }
  localBans(): readonly BanInfo[] {
    return this.local;
  }
}

function makeStore(redis: TestRedis, id: string, timeoutMs = 50) {
  const parsed = parseGuardStore(redis.url);
  assert.ok(parsed.ok && parsed.target !== null);
  const stats = new Stats();
  const logs: string[] = [];
  const store = new RedisStore({
    target: parsed.target,
    connect: connectRedis,
    stats,
    log: (l) => logs.push(l),
    instanceId: id,
    timeoutMs,
    backoffMinMs: 20,
    backoffMaxMs: 200,
  });
  return { store, stats, logs, sink: new RecordingSink() };
}

Deno.test("parseGuardStore accepts memory and redis://host:port[/db] only", () => {
  assert.deepEqual(parseGuardStore("memory"), { ok: true, target: null });
  assert.deepEqual(parseGuardStore("redis://10.0.0.2:6379/3"), {
    ok: true,
    target: { host: "10.0.0.2", port: 6379, db: 3, url: "redis://10.0.0.2:6379/3" },
  });
  assert.deepEqual(parseGuardStore("redis://[::1]:7000"), {
    ok: true,
    target: { host: "::1", port: 7000, db: 0, url: "redis://[::1]:7000" },
  });
  for (
    const bad of ["redis", "redis://h", "redis://h:0", "redis://h:70000", "redis://h:1/16", "http://h:1", ""]
  ) {
    assert.equal(parseGuardStore(bad).ok, false, bad);
  }
});

Deno.test({
  name: "Lua GCRA on real Redis: the burst passes at once, the next waits one interval, keys expire" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    const { store, stats, sink } = makeStore(redis, "a");
    try {
      await store.start(sink);
      assert.equal(store.healthy, true);
      assert.equal(stats.guardStoreDegraded, 0);
      const limit = gcraLimit(10, 5); // T = 100 ms, τ = 400 ms
      // Pipelined in one write: Redis runs them one after the other, as the local limiter would.
      const burst = await Promise.all(Array.from({ length: 5 }, () => store.gcra("198.51.100.1", limit)));
      assert.deepEqual(burst, [0, 0, 0, 0, 0]);
      const wait = await store.gcra("198.51.100.1", limit);
      assert.ok(wait > 0 && wait <= 100, `the 6th waits at most one interval, got ${wait}`);
      assert.ok(await store.gcra("198.51.100.1", limit) > 0, "a refused event does not advance the TAT");
      assert.equal(await store.gcra("198.51.100.2", limit), 0, "another key has its own bucket");
      // TAT − now ≤ burst × T: the key expires when it no longer matters.
      const pttl = Number((await redisCommand(redis.port, "PTTL", "vento:gcra:198.51.100.1")).slice(1));
      assert.ok(pttl > 0 && pttl <= 500, `PTTL ${pttl}`);
      await sleep(wait + 5);
      assert.equal(await store.gcra("198.51.100.1", limit), 0, "one more conforms after the wait");
      assert.ok(await store.gcra("198.51.100.1", limit) > 0);
    } finally {
      await store.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "after SCRIPT FLUSH the check still answers (EVAL) and the script is loaded again" + REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    const { store, sink } = makeStore(redis, "a");
    try {
      await store.start(sink);
      assert.match(await redisCommand(redis.port, "SCRIPT", "FLUSH"), /^\+OK/);
      assert.equal(await store.gcra("k", gcraLimit(1, 1)), 0);
      assert.ok(await store.gcra("k", gcraLimit(1, 1)) > 0);
      assert.equal(store.healthy, true);
    } finally {
      await store.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "bans are stored with a TTL and published to other instances; unbans too; late joiners sync" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    const a = makeStore(redis, "a");
    const b = makeStore(redis, "b");
    const c = makeStore(redis, "c");
    try {
      await a.store.start(a.sink);
      await b.store.start(b.sink);
      a.store.publishBan("203.0.113.9", 60_000, "flood", 1);
      const took = await until("b receives the ban", () => b.sink.bans.length === 1);
      assert.ok(took < 1000, `published within ~100 ms (took ${took.toFixed(0)} ms)`);
      assert.equal(b.sink.bans[0].target, "203.0.113.9");
      assert.equal(b.sink.bans[0].reason, "flood");
      assert.ok(b.sink.bans[0].ms > 59_000 && b.sink.bans[0].ms <= 60_000);
      assert.equal(a.sink.bans.length, 0, "an instance does not apply its own ban twice");
      const pttl = Number((await redisCommand(redis.port, "PTTL", "vento:ban:203.0.113.9")).slice(1));
      assert.ok(pttl > 59_000 && pttl <= 60_000, `stored with its TTL: ${pttl}`);

      // A late joiner holding a ban of its own pushes it and pulls the stored one.
      c.sink.local = [{
        key: "10.0.0.0/8",
        reason: "operator",
        expiresAtWallMs: 0,
        remainingMs: 30_000,
        offences: 0,
      }];
      await c.store.start(c.sink);
      assert.deepEqual(
        c.sink.bans.map((x) => x.target),
        ["203.0.113.9"],
        "pulled, and its own not re-applied",
      );
      assert.match(await redisCommand(redis.port, "GET", "vento:ban:10.0.0.0/8"), /operator/);

      b.store.publishUnban("203.0.113.9");
      await until(
        "a and c receive the unban",
        () => a.sink.unbans.length === 1 && c.sink.unbans.length === 1,
      );
      assert.equal(a.sink.unbans[0], "203.0.113.9");
      assert.match(await redisCommand(redis.port, "EXISTS", "vento:ban:203.0.113.9"), /^:0/);
    } finally {
      await Promise.all([a.store.close(), b.store.close(), c.store.close()]);
      await redis.stop();
    }
  },
});

Deno.test({
  name: "a dead Redis degrades the store at once, logged once; it recovers when Redis is back" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    let redis = await startRedis();
    const { store, stats, logs, sink } = makeStore(redis, "a");
    try {
      await store.start(sink);
      assert.deepEqual(logs.length, 1);
      assert.match(logs[0], /connected/);
      await redis.kill();
      // The next check (or the EOF already seen) fails over: -1 means "judge locally".
      await until("the store notices", () => !store.healthy);
      assert.equal(await store.gcra("k", gcraLimit(10, 1)), -1);
      assert.equal(stats.guardStoreDegraded, 1);
      await sleep(300); // several failed reconnects (backoff 20 → 200 ms)
      assert.equal(logs.length, 2, `one line per transition: ${logs.join(" | ")}`);
      assert.match(logs[1], /unavailable .*limiting per instance/);
      redis = await startRedis(redis.port);
      await until("the store reconnects", () => store.healthy);
      assert.equal(stats.guardStoreDegraded, 0);
      assert.equal(logs.length, 3);
      assert.match(logs[2], /connected/);
      assert.equal(await store.gcra("k", gcraLimit(10, 1)), 0, "the script is loaded on the new Redis");
    } finally {
      await store.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "a stalled Redis (no replies) fails a check after the timeout and degrades the store" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    const { store, stats, sink } = makeStore(redis, "a", 50);
    try {
      await store.start(sink);
      redis.pause();
      const t0 = performance.now();
      assert.equal(await store.gcra("k", gcraLimit(10, 1)), -1);
      const took = performance.now() - t0;
      assert.ok(took >= 50 && took < 500, `gave up after the 50 ms timeout (took ${took.toFixed(0)} ms)`);
      assert.equal(store.healthy, false);
      assert.equal(stats.guardStoreDegraded, 1);
      assert.equal(await store.gcra("k", gcraLimit(10, 1)), -1, "degraded: answers at once, locally");
      redis.resume();
      await until("the store reconnects", () => store.healthy);
    } finally {
      await store.close();
      await redis.stop();
    }
  },
});
