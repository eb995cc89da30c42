/**
 * GUARD_STORE=redis end to end: a real `redis-server` on a free loopback port and two Vento instances
 * (the real `startVento`, two ports) sharing one request limit and one ban list; then Redis killed in
 * the middle of a flood (both instances keep serving and limit locally) and brought back (limits are
 * shared again). Then a Redis with `--requirepass` (the right password shares, a wrong one degrades with
 * one AUTH-failed line) and a TLS-only Redis behind a throwaway CA (`rediss://` with the CA shares,
 * without it degrades with a certificate error). Skipped, with the reason in the test name, when
 * `redis-server` (or, for TLS, `openssl`) is not installed.
 *
 * The connection rate is shared too: a client opening connections alternately on both instances gets one
 * CONN_BURST + CONN_RATE × t, refused past it with the accept-time 429. (How the server handles a verdict
 * that arrives later, without Redis: tests/e2e/admission_test.ts.)
 *
 * Every client uses its own 127.0.0.x source address, so the tests never share a limiter bucket.
 */

import assert from "node:assert/strict";
import { NodeClient, requestFrom } from "../_helpers/node_client.ts";
import { startTestServer, type TestServer } from "../_helpers/server.ts";
import {
  makeTestPki,
  OPENSSL_AVAILABLE,
  REDIS_AVAILABLE,
  REDIS_SKIP_NOTE,
  REDIS_TLS_SKIP_NOTE,
  type RedisOptions,
  startRedis,
  type TestRedis,
} from "../_helpers/redis.ts";
import type { Config } from "../../src/config/config.ts";

const GET = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
const RATE_PER_SEC = 20;
const BURST = 10;
/** How long a flood runs per phase. */
const FLOOD_MS = 1_000;
/** "Within ~100 ms" for ban fan-out, with room for a slow CI machine. */
const FANOUT_LIMIT_MS = 1_000;
/** Longest wait for a reconnect (backoff caps at 2 s). */
const RECOVER_LIMIT_MS = 5_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, limitMs: number, cond: () => boolean): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > limitMs) {
      throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    }
    await sleep(2);
  }
  return performance.now() - t0;
}

interface Tally {
  ok: [number, number];
  limited: [number, number];
  other: number;
  elapsedMs: number;
}

/** One request at a time from `ip`, alternating between the instances, for `ms`. */
async function flood(servers: TestServer[], ip: string, ms: number): Promise<Tally> {
  const t: Tally = { ok: [0, 0], limited: [0, 0], other: 0, elapsedMs: 0 };
  const t0 = performance.now();
  for (let i = 0; performance.now() - t0 < ms; i++) {
    const which = i % 2;
    const r = await requestFrom(servers[which].port, ip, GET);
    if (r.status === 200) t.ok[which]++;
    else if (r.status === 429) t.limited[which]++;
    else t.other++;
  }
  t.elapsedMs = performance.now() - t0;
  return t;
}

/** How many floods `floodShared` tries before it reports the store as too slow to measure sharing. */
const SHARED_FLOOD_TRIES = 3;

/**
 * As `flood`, for a test of one shared limit: a flood during which the store went down (a check that
 * missed its 50 ms deadline on a loaded machine: each instance then limits alone, as designed) measured
 * nothing shared, so once both instances are back it is tried again from the next address (a fresh
 * bucket). `ips` are the addresses, one per try. `earlier` sums the discarded floods (the servers' own
 * counters include them).
 */
async function floodShared(
  servers: TestServer[],
  ips: string[],
  ms: number,
): Promise<Tally & { earlier: Pick<Tally, "ok" | "limited"> }> {
  const earlier: Pick<Tally, "ok" | "limited"> = { ok: [0, 0], limited: [0, 0] };
  for (let i = 0;; i++) {
    const before = servers.map((s) => s.errors.length);
    const t = await flood(servers, ips[i], ms);
    const down = servers.some((s, k) => s.errors.slice(before[k]).some((l) => l.includes("unavailable")));
    if (!down) return { ...t, earlier };
    for (const k of [0, 1]) {
      earlier.ok[k] += t.ok[k];
      earlier.limited[k] += t.limited[k];
    }
    if (i + 1 === Math.min(SHARED_FLOOD_TRIES, ips.length)) {
      throw new Error(`the store went down during each of ${i + 1} floods: ${servers[0].errors.join(" | ")}`);
    }
    await until(
      "both instances reconnect",
      RECOVER_LIMIT_MS,
      () => servers.every((s) => s.vento.stats.guardStoreDegraded === 0),
    );
  }
}

/** What one limit allows over `ms` from a fresh bucket: the burst, then the rate. */
function allowance(ms: number): number {
  return BURST + RATE_PER_SEC * ms / 1000;
}

/**
 * Redis (with `redisOptions`) and two instances using it: `overrides` apply to both, `perInstance[i]` to
 * instance i (a guardStore URL with a password, a CA…). `connected` false: the test expects the store
 * degraded from the start.
 */
async function withCluster(
  fn: (redis: TestRedis, servers: TestServer[]) => Promise<void>,
  overrides: Partial<Config> = {},
  opts: {
    redisOptions?: RedisOptions;
    perInstance?: (redis: TestRedis) => Partial<Config>[];
    connected?: boolean;
  } = {},
): Promise<void> {
  const redis = await startRedis(undefined, opts.redisOptions);
  const servers: TestServer[] = [];
  try {
    const each = opts.perInstance?.(redis) ?? [];
    for (let i = 0; i < 2; i++) {
      servers.push(
        await startTestServer({
          guardStore: redis.url,
          requestRatePerSec: RATE_PER_SEC,
          requestBurst: BURST,
          banAfterViolations: 1_000_000, // these tests measure the limit, not the ban
          ...overrides,
          ...each[i],
        }),
      );
    }
    const degraded = opts.connected === false ? 1 : 0;
    for (const s of servers) {
      assert.equal(s.vento.stats.guardStoreDegraded, degraded, `degraded at start: ${s.errors.join(" | ")}`);
    }
    await fn(redis, servers);
  } finally {
    for (const s of servers) await s.stop();
    await redis.stop();
  }
}

/** Both instances got one limit between them (not one each), and both served and refused some. */
function assertShared(t: Tally): void {
  const oks = t.ok[0] + t.ok[1];
  const expected = allowance(t.elapsedMs);
  assert.equal(t.other, 0);
  assert.ok(
    oks <= expected * 1.1 + 1 && oks >= expected * 0.9 - 1,
    `${oks} served in ${t.elapsedMs.toFixed(0)} ms; one shared limit allows ~${expected.toFixed(0)}, ` +
      `two separate ones ~${(2 * expected).toFixed(0)}`,
  );
  assert.ok(t.ok[0] > 0 && t.ok[1] > 0 && t.limited[0] > 0 && t.limited[1] > 0, JSON.stringify(t));
}

/** Each instance limits on its own (at most its own allowance), and still serves. */
function assertLocal(t: Tally): void {
  const each = allowance(t.elapsedMs);
  assert.equal(t.other, 0);
  for (const i of [0, 1]) {
    assert.ok(t.ok[i] > 0, `instance ${i} keeps serving: ${JSON.stringify(t)}`);
    assert.ok(t.limited[i] > 0, `instance ${i} keeps limiting: ${JSON.stringify(t)}`);
    assert.ok(t.ok[i] <= each * 1.1 + 1, `instance ${i}: ${t.ok[i]} > its own ~${each.toFixed(0)}`);
  }
}

Deno.test({
  name: "two instances share one request limit: a client alternating between them gets one allowance" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(async (_redis, servers) => {
      assertShared(await floodShared(servers, ["127.0.0.21", "127.0.0.41", "127.0.0.42"], FLOOD_MS));
    }),
});

Deno.test({
  name: "a ban made on one instance is refused at accept on the other within ~100 ms; unban likewise" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(async (_redis, [a, b]) => {
      const ip = "127.0.0.22";
      assert.equal((await requestFrom(b.port, ip, GET)).status, 200);
      assert.deepEqual(a.vento.guard.ban(ip, 60_000, "operator test"), { ok: true });
      const took = await until("the ban reaches b", FANOUT_LIMIT_MS, () => b.vento.guard.bans().length === 1);
      assert.equal(b.vento.guard.bans()[0].key, ip);
      assert.equal(b.vento.guard.bans()[0].reason, "operator test");
      const c = await NodeClient.connect(b.port, { localAddress: ip });
      try {
        assert.equal(
          await c.closedWithin(FANOUT_LIMIT_MS),
          true,
          `refused at accept (ban arrived in ${took} ms)`,
        );
        assert.equal(c.bytesReceived, 0);
      } finally {
        await c.close();
      }
      assert.equal(b.vento.stats.refused.banned, 1);

      assert.equal(b.vento.guard.unban(ip), true);
      await until("the unban reaches a", FANOUT_LIMIT_MS, () => a.vento.guard.bans().length === 0);
      assert.equal((await requestFrom(a.port, ip, GET)).status, 200);
    }),
});

Deno.test({
  name: "an automatic ban earned by flooding one instance is refused at accept on the other" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(async (_redis, [a, b]) => {
      const ip = "127.0.0.25";
      // Flood only a: the burst, then 429s until the 5th violation bans.
      let statuses = "";
      for (let i = 0; i < BURST + 20 && a.vento.guard.bans().length === 0; i++) {
        statuses += ` ${(await requestFrom(a.port, ip, GET)).status}`;
      }
      assert.equal(a.vento.guard.bans().length, 1, `banned on a:${statuses}`);
      await until("the ban reaches b", FANOUT_LIMIT_MS, () => b.vento.guard.bans().length === 1);
      const c = await NodeClient.connect(b.port, { localAddress: ip });
      try {
        assert.equal(await c.closedWithin(FANOUT_LIMIT_MS), true);
        assert.equal(c.bytesReceived, 0);
      } finally {
        await c.close();
      }
    }, { banAfterViolations: 5 }),
});

Deno.test({
  name: "Redis killed mid-flood: both instances keep serving and limiting locally, then share again" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(async (redis, servers) => {
      const floodDone = flood(servers, "127.0.0.23", FLOOD_MS);
      await sleep(FLOOD_MS / 3);
      await redis.kill();
      const t = await floodDone;
      assert.equal(t.other, 0, "no 5xx, nothing but 200 and 429");
      for (const s of servers) assert.equal(s.vento.stats.guardStoreDegraded, 1);
      for (const s of servers) {
        assert.equal(
          s.errors.filter((l) => /guard store .*unavailable/.test(l)).length,
          1,
          s.errors.join("\n"),
        );
      }

      // Degraded: each instance limits on its own (at most its own allowance), and still serves.
      assertLocal(await flood(servers, "127.0.0.24", FLOOD_MS));

      const back = await startRedis(redis.port);
      try {
        await until(
          "both instances reconnect",
          RECOVER_LIMIT_MS,
          () => servers.every((s) => s.vento.stats.guardStoreDegraded === 0),
        );
        const shared = await floodShared(servers, ["127.0.0.26", "127.0.0.49", "127.0.0.50"], FLOOD_MS);
        const oks = shared.ok[0] + shared.ok[1];
        const expected = allowance(shared.elapsedMs);
        assert.ok(oks <= expected * 1.1 + 1, `shared again: ${oks} served, one limit allows ~${expected}`);
      } finally {
        await back.stop();
      }
    }),
});

// --- AUTH and TLS --------------------------------------------------------------------------------

const PASSWORD = "s3cret";
/** How long a refused store keeps retrying (backoff 100 → 200 → 400 ms) before its log is counted. */
const RETRY_WATCH_MS = 800;

Deno.test({
  name: "with --requirepass, two instances holding the password (URL, or password file) share one limit" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(
      async (_redis, servers) => {
        assertShared(await floodShared(servers, ["127.0.0.31", "127.0.0.43", "127.0.0.44"], FLOOD_MS));
        for (const s of servers) {
          const shown = s.errors.filter((l) => l.includes("guard store"));
          assert.ok(shown.some((l) => l.includes("connected")), shown.join("\n"));
          assert.ok(!s.errors.join("\n").includes(PASSWORD), s.errors.join("\n"));
        }
      },
      {},
      {
        redisOptions: { args: ["--requirepass", PASSWORD], password: PASSWORD },
        // The first has the password in its URL; the second as loadConfig leaves GUARD_STORE_PASSWORD_FILE's.
        perInstance: (r) => [
          { guardStore: `redis://:${PASSWORD}@127.0.0.1:${r.port}` },
          { guardStore: `redis://127.0.0.1:${r.port}`, guardStorePassword: PASSWORD },
        ],
      },
    ),
});

Deno.test({
  name: "a wrong Redis password: both instances serve and limit locally, degraded, one AUTH-failed line" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(
      async (_redis, servers) => {
        assertLocal(await flood(servers, "127.0.0.32", FLOOD_MS));
        await sleep(RETRY_WATCH_MS);
        for (const s of servers) {
          assert.equal(s.vento.stats.guardStoreDegraded, 1);
          const store = s.errors.filter((l) => l.includes("guard store"));
          assert.equal(store.length, 1, `one line per transition, not per retry: ${store.join(" | ")}`);
          assert.match(store[0], /^guard store redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: .*AUTH failed: WRONGPASS/);
          assert.ok(!s.errors.join("\n").includes("not-the-password"), store[0]);
        }
      },
      {},
      {
        redisOptions: { args: ["--requirepass", PASSWORD], password: PASSWORD },
        perInstance: (r) => {
          const wrong = { guardStore: `redis://:not-the-password@127.0.0.1:${r.port}` };
          return [wrong, wrong];
        },
        connected: false,
      },
    ),
});

Deno.test({
  name:
    "rediss:// with GUARD_STORE_CA_FILE's CA shares one limit; without the CA it degrades on the certificate" +
    REDIS_TLS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE || !OPENSSL_AVAILABLE,
  async fn(t) {
    const pki = await makeTestPki();
    try {
      const tls: RedisOptions = { tls: pki, args: ["--requirepass", PASSWORD], password: PASSWORD };
      await t.step(
        "with the CA: connected over TLS, the limit is shared",
        () =>
          withCluster(
            async (redis, servers) => {
              assert.match(redis.url, /^rediss:\/\/localhost:/);
              assertShared(await floodShared(servers, ["127.0.0.33", "127.0.0.45", "127.0.0.46"], FLOOD_MS));
            },
            {},
            {
              redisOptions: tls,
              // What loadConfig leaves for GUARD_STORE_CA_FILE and GUARD_STORE_PASSWORD_FILE.
              perInstance: () =>
                [0, 1].map(() => ({ guardStoreCaPem: pki.caPem, guardStorePassword: PASSWORD })),
            },
          ),
      );
      await t.step(
        "without the CA: serves and limits locally, one certificate error line",
        () =>
          withCluster(
            async (_redis, servers) => {
              assertLocal(await flood(servers, "127.0.0.34", FLOOD_MS));
              for (const s of servers) {
                assert.equal(s.vento.stats.guardStoreDegraded, 1);
                const store = s.errors.filter((l) => l.includes("guard store"));
                assert.equal(store.length, 1, store.join(" | "));
                assert.match(
                  store[0],
                  /^guard store rediss:\/\/:\*\*\*@localhost:\d+: .*TLS handshake .* failed: .*certificate/,
                );
              }
            },
            {},
            {
              redisOptions: tls,
              perInstance: () => [0, 1].map(() => ({ guardStorePassword: PASSWORD })),
              connected: false,
            },
          ),
      );
    } finally {
      await pki.remove();
    }
  },
});

// --- the connection rate ------------------------------------------------------------------------------

const CONN_RATE_PER_SEC = 5;
const CONN_BURST = 5;

Deno.test({
  name: "two instances share one connection rate: connections alternating between them get one allowance" +
    REDIS_SKIP_NOTE,
  ignore: !REDIS_AVAILABLE,
  fn: () =>
    withCluster(async (_redis, servers) => {
      // Each attempt is a new connection; only the connection rate can refuse one here.
      const t = await floodShared(servers, ["127.0.0.27", "127.0.0.47", "127.0.0.48"], FLOOD_MS);
      const oks = t.ok[0] + t.ok[1];
      const expected = CONN_BURST + CONN_RATE_PER_SEC * t.elapsedMs / 1000;
      assert.equal(t.other, 0);
      assert.ok(
        oks <= expected * 1.1 + 1 && oks >= expected * 0.9 - 1,
        `${oks} connections admitted in ${t.elapsedMs.toFixed(0)} ms; one shared rate allows ` +
          `~${expected.toFixed(0)}, two separate ones ~${(2 * expected).toFixed(0)}: ${JSON.stringify(t)}`,
      );
      assert.ok(t.ok[0] > 0 && t.ok[1] > 0 && t.limited[0] > 0 && t.limited[1] > 0, JSON.stringify(t));
      // Every 429 was the refusal at accept, and nothing stays open or pinned.
      for (const [i, s] of servers.entries()) {
        assert.equal(s.vento.stats.refused.conn_rate, t.limited[i] + t.earlier.limited[i]);
        assert.equal(s.vento.stats.accepted, t.ok[i] + t.earlier.ok[i]);
        await until("connections released", FANOUT_LIMIT_MS, () => s.vento.guard.openConns === 0);
      }
      // A bystander is not limited by it.
      assert.equal((await requestFrom(servers[0].port, "127.0.0.28", GET)).status, 200);
    }, {
      connRatePerSec: CONN_RATE_PER_SEC,
      connBurst: CONN_BURST,
      requestRatePerSec: 100_000,
      requestBurst: 100_000,
    }),
});
