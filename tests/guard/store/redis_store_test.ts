/**
 * The Redis-backed guard store: `parseGuardStore` (every URL form, user/password, percent-encoding,
 * rediss, IPv6, the refusals) and redaction; then against a real `redis-server` (skipped when it is not
 * installed): AUTH (ACL user, default user, refused, missing), the GCRA Lua script, NOSCRIPT recovery,
 * bans stored with a TTL and fanned out, the ban sync of a late joiner, and the fallback on a dead,
 * stalled or password-refusing Redis with recovery.
 */

import assert from "node:assert/strict";
import { gcraLimit } from "../../../src/guard/gcra.ts";
import { parseGuardStore, redactGuardStore, type StoreTarget } from "../../../src/config/guard_store_url.ts";
import { RedisStore, type SharedBanSink } from "../../../src/guard/store/redis_store.ts";
import { connectRedis, RedisLinkError } from "../../../src/guard/store/redis_client.ts";
import { Stats } from "../../../src/stats/stats.ts";
import type { BanInfo } from "../../../src/guard/views.ts";
import { REDIS_AVAILABLE, REDIS_SKIP_NOTE, redisCommand, startRedis } from "../../_helpers/redis.ts";

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

function makeStore(url: string, id: string, timeoutMs = 50) {
  const parsed = parseGuardStore(url);
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

/** What `parseGuardStore` answers for a plain target: no TLS, no AUTH, no CA. */
function plain(host: string, port: number, db: number, url: string) {
  return { host, port, db, tls: false, user: null, password: null, caCerts: [], url };
}

Deno.test("parseGuardStore accepts memory and redis://host:port[/db], IPv4, names and IPv6", () => {
  assert.deepEqual(parseGuardStore("memory"), { ok: true, target: null });
  assert.deepEqual(parseGuardStore("redis://10.0.0.2:6379/3"), {
    ok: true,
    target: plain("10.0.0.2", 6379, 3, "redis://10.0.0.2:6379/3"),
  });
  assert.deepEqual(parseGuardStore("redis://[::1]:7000"), {
    ok: true,
    target: plain("::1", 7000, 0, "redis://[::1]:7000"),
  });
  assert.deepEqual(parseGuardStore("redis://cache.internal:6379/"), {
    ok: true,
    target: plain("cache.internal", 6379, 0, "redis://cache.internal:6379/"),
  });
});

Deno.test("parseGuardStore reads user and password, percent-decoded, and shows them redacted", () => {
  const cases: [string, Partial<StoreTarget>][] = [
    ["redis://vento:s3cret@10.0.0.2:6379/2", {
      user: "vento",
      password: "s3cret",
      db: 2,
      url: "redis://vento:***@10.0.0.2:6379/2",
    }],
    ["redis://:s3cret@h:1", { user: null, password: "s3cret", url: "redis://:***@h:1" }],
    ["redis://a%40b:p%40ss%3Aw%2Frd%20x@h:1", {
      user: "a@b",
      password: "p@ss:w/rd x",
      url: "redis://a%40b:***@h:1",
    }],
    // Only the first colon splits: the rest belongs to the password (RFC 3986 userinfo).
    ["redis://u:a:b@h:1", { user: "u", password: "a:b", url: "redis://u:***@h:1" }],
    ["redis://u:pw9@[fe80::1]:6380", { host: "fe80::1", port: 6380, url: "redis://u:***@[fe80::1]:6380" }],
    ["rediss://u:pw9@cache.example:6380/1", { tls: true, db: 1, url: "rediss://u:***@cache.example:6380/1" }],
    ["rediss://localhost:6380", { tls: true, user: null, password: null, url: "rediss://localhost:6380" }],
    // A lone name before @ is the user (parseConfig insists on a password to go with it).
    ["redis://vento@h:1", { user: "vento", password: null, url: "redis://vento@h:1" }],
  ];
  for (const [text, want] of cases) {
    const r = parseGuardStore(text);
    assert.ok(r.ok && r.target !== null, text);
    for (const [k, v] of Object.entries(want)) {
      assert.deepEqual(r.target[k as keyof StoreTarget], v, `${text}: ${k}`);
    }
    assert.ok(r.target.password === null || !r.target.url.includes(r.target.password), r.target.url);
  }
});

Deno.test("a password from GUARD_STORE_PASSWORD_FILE wins over the URL's; the CA PEM rides along", () => {
  const r = parseGuardStore("rediss://vento:old@h:1", { password: "from-file", caCerts: ["PEM"] });
  assert.ok(r.ok && r.target !== null);
  assert.equal(r.target.password, "from-file");
  assert.deepEqual(r.target.caCerts, ["PEM"]);
  assert.equal(r.target.url, "rediss://vento:***@h:1");
  const noUrlPassword = parseGuardStore("redis://h:1", { password: "from-file" });
  assert.ok(noUrlPassword.ok && noUrlPassword.target !== null);
  assert.equal(noUrlPassword.target.password, "from-file");
  assert.equal(noUrlPassword.target.url, "redis://:***@h:1", "the shown URL says a password is in use");
  const nullIsNone = parseGuardStore("redis://:url-pw@h:1", { password: null });
  assert.ok(nullIsNone.ok && nullIsNone.target?.password === "url-pw");
});

Deno.test("parseGuardStore refuses bad forms with a reason that never quotes the password", () => {
  const bad = [
    "redis",
    "redis://h",
    "redis://h:0",
    "redis://h:70000",
    "redis://h:1/16",
    "http://h:1",
    "",
    "REDIS://h:1",
    "redis://u:pw@h",
    "rediss://h",
    "redis://h:1?db=2",
    "redis://u:p@ss-word@h:1", // a raw @ must be %40
    "redis://u:p/w@h:1", // a raw / must be %2F
    "redis://u:p w@h:1",
    "redis://u:p%zzw@h:1",
    "redis://u:@h:1",
    "redis://:@h:1",
    "redis://@h:1",
    "redis://u:pw@[::1:1",
  ];
  for (const text of bad) {
    const r = parseGuardStore(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) {
      assert.ok(r.reason.length > 0);
      assert.ok(!/pw|p w|p%zzw|ss-word/.test(r.reason), `${text} → ${r.reason}`);
    }
  }
});

Deno.test("redactGuardStore hides everything between :// and the last @, parseable or not", () => {
  assert.equal(redactGuardStore("redis://u:s3cret@h:1/2"), "redis://***@h:1/2");
  assert.equal(redactGuardStore("redis://u:p@ss@h:1"), "redis://***@h:1");
  assert.equal(redactGuardStore("rediss://s3cret@h"), "rediss://***@h");
  assert.equal(redactGuardStore("s3cret@h:1"), "***@h:1");
  assert.equal(redactGuardStore("redis://h:1"), "redis://h:1");
  assert.equal(redactGuardStore("memory"), "memory");
});

/** The ACL rules docs/redis.md gives for a Vento user. */
const DOCUMENTED_ACL = (
  "~vento:* &vento:* +ping +select +eval +evalsha +script|load +set +get +del +pttl +scan +publish " +
  "+subscribe +time"
).split(" ");

/** Opens one link to `url` (with `password` from a file, if any) against a real Redis; the error text, or "". */
async function tryConnect(url: string, password?: string): Promise<string> {
  const parsed = parseGuardStore(url, { password });
  assert.ok(parsed.ok && parsed.target !== null, url);
  try {
    const link = await connectRedis(parsed.target, { connectTimeoutMs: 1_000, timeoutMs: 500 });
    const pong = await link.command(["PING"]);
    link.close();
    await link.closed;
    return pong === "PONG" ? "" : `PING answered ${JSON.stringify(pong)}`;
  } catch (e) {
    assert.ok(e instanceof RedisLinkError, String(e));
    return e.message;
  }
}

Deno.test({
  name: "AUTH: an ACL user with a percent-encoded password connects; wrong or missing ones say AUTH failed" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const password = "p@ss:w/rd";
    const redis = await startRedis(undefined, {
      // Exactly the permissions docs/redis.md tells operators to grant (SELECT aside, for the /3 case).
      args: ["--requirepass", "s3cret", "--user", "vento", "on", `>${password}`, ...DOCUMENTED_ACL],
      password: "s3cret",
    });
    const base = `127.0.0.1:${redis.port}`;
    try {
      assert.equal(await tryConnect(`redis://vento:${encodeURIComponent(password)}@${base}`), "");
      assert.equal(await tryConnect(`redis://:s3cret@${base}/3`), "", "the default user, then SELECT");
      assert.equal(await tryConnect(`redis://vento@${base}`, password), "", "the password from a file");

      const wrong = await tryConnect(`redis://vento:not-it@${base}`);
      assert.match(wrong, /^AUTH failed as user "vento": WRONGPASS/);
      assert.ok(!wrong.includes("not-it"), wrong);
      const missing = await tryConnect(`redis://${base}`);
      assert.match(missing, /^AUTH failed: Redis requires a password .*NOAUTH/);

      // The whole store works within the documented ACL: script, rate check, ban fan-out.
      const parsed = parseGuardStore(`redis://vento:${encodeURIComponent(password)}@${base}`);
      assert.ok(parsed.ok && parsed.target !== null);
      const logs: string[] = [];
      const store = new RedisStore({
        target: parsed.target,
        connect: connectRedis,
        stats: new Stats(),
        log: (l) => logs.push(l),
        instanceId: "acl",
      });
      try {
        await store.start(new RecordingSink());
        assert.equal(store.healthy, true, logs.join(" | "));
        assert.equal(await store.gcra("k", gcraLimit(10, 1)), 0);
        store.publishBan("203.0.113.7", 60_000, "acl test", 1);
        let stored = "";
        for (const t0 = performance.now(); !stored.includes("acl test");) {
          if (performance.now() - t0 > WAIT_LIMIT_MS) assert.fail(`ban not stored: ${stored}`);
          stored = await redis.command("GET", "vento:ban:203.0.113.7");
        }
        assert.equal(store.healthy, true, logs.join(" | "));
      } finally {
        await store.close();
      }
    } finally {
      await redis.stop();
    }
  },
});

Deno.test({
  name: "AUTH to a Redis that has no password is an AUTH failure whose text omits the password" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    try {
      const e = await tryConnect(`redis://:Xy9-secret@127.0.0.1:${redis.port}`);
      assert.match(e, /^AUTH failed: ERR/);
      assert.ok(!e.includes("Xy9-secret"), e);
    } finally {
      await redis.stop();
    }
  },
});

Deno.test({
  name: "a store whose password is refused degrades, logs one AUTH-failed line without it, keeps retrying" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis(undefined, { args: ["--requirepass", "s3cret"], password: "s3cret" });
    const { store, stats, logs } = makeStore(`redis://:wrong-one@127.0.0.1:${redis.port}`, "a");
    try {
      await store.start(new RecordingSink());
      assert.equal(store.healthy, false);
      assert.equal(stats.guardStoreDegraded, 1);
      assert.equal(await store.gcra("k", gcraLimit(10, 1)), -1, "judged locally");
      await sleep(200); // several refused reconnects
      assert.equal(logs.length, 1, logs.join(" | "));
      assert.match(logs[0], /^guard store redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: .*AUTH failed: WRONGPASS/);
      assert.ok(!logs[0].includes("wrong-one"), logs[0]);
    } finally {
      await store.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "Lua GCRA on real Redis: the burst passes at once, the next waits one interval, keys expire" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  async fn() {
    const redis = await startRedis();
    const { store, stats, sink } = makeStore(redis.url, "a");
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
    const { store, sink } = makeStore(redis.url, "a");
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
    const a = makeStore(redis.url, "a");
    const b = makeStore(redis.url, "b");
    const c = makeStore(redis.url, "c");
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
    const { store, stats, logs, sink } = makeStore(redis.url, "a");
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
    const { store, stats, sink } = makeStore(redis.url, "a", 50);
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
