/**
 * End-to-end proof of the guard (issue 4, "Done when"): the real server on port 0, real sockets bound to
 * distinct loopback source addresses (127.0.0.5 is the attacker, 127.0.0.6 the bystander), millisecond
 * limits and deadlines, our own response reader.
 *
 * Covered: a flood gets its burst, then 429s, then a ban that refuses it at accept; bans expire and
 * escalate; Slowloris, slow bodies and stalled readers are each cut off by their deadline; per-client,
 * global and connection-rate caps; ALLOWLIST; dry-run; the idle timeout shrinking when busy.
 *
 * Bounded: every wait has a deadline, the whole file runs in seconds, every socket is closed (the
 * resource sanitizers are on, and the server runs in this process, so a leaked file handle or socket on
 * the server side fails the test too).
 */

import assert from "node:assert/strict";
import { NodeClient, requestFrom } from "../_helpers/node_client.ts";
import type { RawResponse } from "../_helpers/raw_client.ts";
import { type Files, type TestServer, withTestServer } from "../_helpers/server.ts";
import type { Config } from "../../src/config/config.ts";

const ATTACKER = "127.0.0.5";
const BYSTANDER = "127.0.0.6";
const GET = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
/** Longest any single wait in this file may take before the test fails instead of hanging. */
const WAIT_LIMIT_MS = 5_000;
/** Polling period of `waitFor` (real sockets: there is nothing to fake here). */
const POLL_MS = 5;

/** `withTestServer` with the overrides first, as this file's tests read best. */
function withServer(
  overrides: Partial<Config>,
  fn: (s: TestServer) => Promise<void>,
  files?: Files,
): Promise<void> {
  return withTestServer(fn, overrides, files);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` until true; fails the test after `limitMs`. */
async function waitFor(what: string, cond: () => boolean, limitMs = WAIT_LIMIT_MS): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > limitMs) assert.fail(`timed out waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

/** Open server connections whose peer is `ip`. */
function connsFrom(s: TestServer, ip: string): number {
  return s.vento.server.connections().filter((c) => c.remote === ip).length;
}

/** A well-behaved keep-alive client on its own address that checks it is always served. */
class Bystander {
  statuses: number[] = [];
  #client: NodeClient;
  private constructor(client: NodeClient) {
    this.#client = client;
  }
  /** Connects and sends a first GET at once (a silent connection would meet the header deadline). */
  static async connect(port: number, ip = BYSTANDER): Promise<Bystander> {
    const b = new Bystander(await NodeClient.connect(port, { localAddress: ip }));
    try {
      await b.check();
    } catch (e) {
      await b.close();
      throw e;
    }
    return b;
  }
  /** One GET on the kept-alive connection; asserts 200. */
  async check(): Promise<void> {
    await this.#client.send(GET);
    const r = await this.#client.read();
    this.statuses.push(r.status);
    assert.equal(r.status, 200, "the bystander must be served");
  }
  close(): Promise<void> {
    return this.#client.close();
  }
}

/** One connection from `ip` sending `n` pipelined GETs; reads answers until a non-200 or all `n`. */
async function burst(port: number, ip: string, n: number): Promise<{ oks: number; last: RawResponse }> {
  const c = await NodeClient.connect(port, { localAddress: ip });
  try {
    await c.send(GET.repeat(n));
    let oks = 0;
    for (;;) {
      const r = await c.read();
      if (r.status !== 200 || oks + 1 === n) {
        if (r.status !== 200) assert.equal(await c.closedWithin(WAIT_LIMIT_MS), true, "429 closes");
        return { oks: r.status === 200 ? oks + 1 : oks, last: r };
      }
      oks++;
    }
  } finally {
    await c.close();
  }
}

/**
 * Offends from `ip` until `count` 429s were received, one new connection per attempt (a 429 closes
 * the connection). Returns the Retry-After of each 429 and how many requests slipped through because
 * the limiter refilled meanwhile.
 */
async function offend(
  port: number,
  ip: string,
  count: number,
): Promise<{ retry: number[]; slipped: number }> {
  const retry: number[] = [];
  let slipped = 0;
  for (let attempt = 0; retry.length < count; attempt++) {
    assert.ok(attempt < count + 10, "offender kept being served");
    const r = await requestFrom(port, ip, GET);
    if (r.status === 200) {
      slipped++;
      continue;
    }
    assert.equal(r.status, 429);
    retry.push(Number(r.headers.get("retry-after")));
  }
  return { retry, slipped };
}

/** A new connection from `ip` that the server closes at accept: no byte ever comes back. */
async function assertRefusedAtAccept(port: number, ip: string): Promise<void> {
  const c = await NodeClient.connect(port, { localAddress: ip });
  assert.equal(await c.closedWithin(WAIT_LIMIT_MS), true, "refused connection is closed");
  assert.equal(c.bytesReceived, 0, "a banned peer gets no bytes at all");
  await c.close();
}

// --- flood, bans -------------------------------------------------------------------------------------

Deno.test("a flood gets its burst, then 429s, then a ban refused at accept; a bystander gets only 200s", () =>
  withServer({
    requestRatePerSec: 4,
    requestBurst: 10,
    banAfterViolations: 5,
    violationWindowMs: 10_000,
    banMs: 5_000,
  }, async (s) => {
    const bystander = await Bystander.connect(s.port);
    try {
      await bystander.check();
      // 15 pipelined requests on one connection: the burst passes, the next is refused and closes.
      const first = await burst(s.port, ATTACKER, 15);
      assert.ok(first.oks >= 10 && first.oks <= 11, `limited within its burst, got ${first.oks} 200s`);
      assert.equal(first.last.status, 429);
      assert.equal(first.last.headers.get("connection"), "close");
      assert.ok(Number(first.last.headers.get("retry-after")) >= 1);
      await bystander.check();

      // Four more refusals make five violations: the fifth 429 announces the ban in its Retry-After.
      const more = await offend(s.port, ATTACKER, 4);
      assert.ok(more.slipped <= 2, `at most a refill slipped through, got ${more.slipped}`);
      assert.deepEqual(more.retry.slice(0, 3), [1, 1, 1]);
      assert.equal(more.retry[3], 5, "the ban's length is the last Retry-After");
      assert.equal(s.vento.stats.bansAdded, 1);
      assert.deepEqual(s.vento.guard.bans().map((b) => b.key), [ATTACKER]);
      await bystander.check();

      // Banned: closed at accept before any byte is read, twice, at no cost to the bystander.
      await assertRefusedAtAccept(s.port, ATTACKER);
      await assertRefusedAtAccept(s.port, ATTACKER);
      assert.equal(s.vento.stats.refused.banned, 2);
      await bystander.check();
      assert.ok(bystander.statuses.every((st) => st === 200));
      assert.equal(s.vento.stats.status429, 5);
    } finally {
      await bystander.close();
    }
  }));

Deno.test("a ban expires on time and the client is served again; a repeat offence doubles the ban", () =>
  withServer({
    requestRatePerSec: 4,
    requestBurst: 3,
    banAfterViolations: 2,
    violationWindowMs: 10_000,
    banMs: 600,
    banMaxMs: 60_000,
  }, async (s) => {
    const first = await burst(s.port, ATTACKER, 6);
    assert.equal(first.last.status, 429);
    const one = await offend(s.port, ATTACKER, 1);
    assert.deepEqual(one.retry, [1], "600 ms ban → Retry-After 1");
    const bannedAt = performance.now();
    const [ban1] = s.vento.guard.bans();
    assert.ok(ban1.remainingMs > 0 && ban1.remainingMs <= 600, `first ban ${ban1.remainingMs} ms`);
    await assertRefusedAtAccept(s.port, ATTACKER);

    // After the ban: served again (the limiter refilled meanwhile).
    await sleep(Math.max(0, 650 - (performance.now() - bannedAt)));
    const again = await requestFrom(s.port, ATTACKER, GET);
    assert.equal(again.status, 200);
    assert.equal(s.vento.guard.bans().length, 0);

    // Offend again: two more violations earn a second ban, twice as long.
    const second = await offend(s.port, ATTACKER, 2);
    assert.equal(second.retry[1], 2, "1200 ms ban → Retry-After 2");
    const [ban2] = s.vento.guard.bans();
    assert.ok(ban2.remainingMs > 600 && ban2.remainingMs <= 1200, `second ban ${ban2.remainingMs} ms`);
    assert.equal(ban2.offences, 2);
    assert.equal(s.vento.stats.bansAdded, 2);
    await assertRefusedAtAccept(s.port, ATTACKER);
  }));

// --- slow clients ------------------------------------------------------------------------------------

/** Sends `piece` every `everyMs` until `stop()` or the peer is gone; bounded by WAIT_LIMIT_MS. */
function trickle(c: NodeClient, piece: (i: number) => string, everyMs: number): { stop(): Promise<void> } {
  let stopped = false;
  const done = (async () => {
    const start = performance.now();
    for (let i = 0; !stopped && performance.now() - start < WAIT_LIMIT_MS; i++) {
      await sleep(everyMs);
      if (stopped) break;
      try {
        await c.send(piece(i));
      } catch {
        break; // the server closed: that is the point
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
    },
  };
}

Deno.test("Slowloris: the header deadline answers 408 and is not extended by trickled bytes", () =>
  withServer({ headerTimeoutMs: 300 }, async (s) => {
    const bystander = await Bystander.connect(s.port);
    const c = await NodeClient.connect(s.port, { localAddress: ATTACKER });
    try {
      const start = performance.now();
      await c.send("GET / HTTP/1.1\r\nHost: t\r\n");
      const drip = trickle(c, (i) => `X-Drip-${i}: y\r\n`, 30);
      const r = await c.read();
      const elapsed = performance.now() - start;
      await drip.stop();
      assert.equal(r.status, 408);
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(elapsed >= 280 && elapsed < 1500, `cut off after ${Math.round(elapsed)} ms`);
      assert.equal(await c.closedWithin(WAIT_LIMIT_MS), true);
      await bystander.check();

      // A connection that never sends a byte is closed at the same deadline, without an answer.
      const silent = await NodeClient.connect(s.port, { localAddress: ATTACKER });
      assert.equal(await silent.closedWithin(1500), true);
      assert.equal(silent.bytesReceived, 0);
      await silent.close();
      assert.ok(s.vento.stats.timeouts >= 2);
    } finally {
      await c.close();
      await bystander.close();
    }
  }));

Deno.test("slow body: the body idle timeout and the minimum body rate each answer 408", () =>
  withServer({
    headerTimeoutMs: 5_000,
    bodyIdleTimeoutMs: 300,
    bodyMinRateGraceMs: 300,
    bodyMinRateBytesPerSec: 1_000,
  }, async (s) => {
    const head = "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n";
    await labelled("stalled body", async () => {
      const c = await NodeClient.connect(s.port, { localAddress: ATTACKER });
      try {
        const start = performance.now();
        await c.send(head + "x".repeat(10));
        const r = await c.read();
        const elapsed = performance.now() - start;
        assert.equal(r.status, 408);
        assert.ok(elapsed >= 280 && elapsed < 1500, `idle body cut off after ${Math.round(elapsed)} ms`);
      } finally {
        await c.close();
      }
    });
    await labelled("trickled body", async () => {
      const c = await NodeClient.connect(s.port, { localAddress: ATTACKER });
      try {
        const start = performance.now();
        await c.send(head);
        // ~33 B/s: never idle for 300 ms, but far below 1000 B/s.
        const drip = trickle(c, () => "x", 30);
        const r = await c.read();
        const elapsed = performance.now() - start;
        await drip.stop();
        assert.equal(r.status, 408);
        assert.ok(elapsed >= 280 && elapsed < 2000, `slow body cut off after ${Math.round(elapsed)} ms`);
      } finally {
        await c.close();
      }
    });
    assert.equal(s.vento.stats.status408, 2);
    // The echo route is fine for a normal body.
    const ok = await requestFrom(
      s.port,
      BYSTANDER,
      "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert.equal(ok.text, "hi");
  }));

/** A labelled block: its failure message names the label (`t.step` without threading `t` through). */
async function labelled(label: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof Error) e.message = `${label}: ${e.message}`;
    throw e;
  }
}

const BIG_FILE_BYTES = 32 * 1024 * 1024;

Deno.test("a stalled reader is cut off by the send deadline and its connection released", () =>
  withServer(
    { sendTimeoutMs: 300, sendMinRateGraceMs: 300, sendMinRateBytesPerSec: 100_000 },
    async (s) => {
      const bystander = await Bystander.connect(s.port);
      // Paused: the kernel buffers fill, then the server's writes stall.
      const c = await NodeClient.connect(s.port, { localAddress: ATTACKER, paused: true });
      try {
        await bystander.check();
        const start = performance.now();
        await c.send("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        await waitFor("the stalled transfer to start", () => s.vento.stats.bytesOut > 1024 * 1024);
        await bystander.check();
        await waitFor("the stalled connection to close", () => connsFrom(s, ATTACKER) === 0);
        const elapsed = performance.now() - start;
        assert.ok(elapsed < 3000, `stalled reader held for ${Math.round(elapsed)} ms`);
        assert.ok(s.vento.stats.bytesOut < BIG_FILE_BYTES, "the response was abandoned, not completed");
        assert.ok(s.vento.stats.timeouts >= 1);
        // Released: only the bystander's connection and guard slot remain.
        assert.equal(s.vento.server.size, 1);
        assert.equal(s.vento.guard.openConns, 1);
        await bystander.check();
      } finally {
        await c.close();
        await bystander.close();
      }
    },
    { "index.html": "hello\n", "big.bin": new Uint8Array(BIG_FILE_BYTES) },
  ));

Deno.test("a reader that stalls after filling its socket buffers is cut off by the minimum send rate", () =>
  withServer(
    // The send timeout is long here: the minimum rate alone must end it. The megabytes the kernel took
    // at first must not buy the stalled reader time for ever (200 ms windows at 200 KB/s each).
    { sendTimeoutMs: 10_000, sendMinRateGraceMs: 200, sendMinRateBytesPerSec: 200_000 },
    async (s) => {
      const c = await NodeClient.connect(s.port, { localAddress: ATTACKER, paused: true });
      try {
        await c.send("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        await waitFor("the stalled transfer to start", () => s.vento.stats.bytesOut > 1024 * 1024);
        const stalledAt = performance.now();
        await waitFor("the stalled connection to close", () => connsFrom(s, ATTACKER) === 0);
        const elapsed = performance.now() - stalledAt;
        assert.ok(elapsed < 3_000, `stalled reader held for ${Math.round(elapsed)} ms`);
        assert.ok(s.vento.stats.bytesOut < BIG_FILE_BYTES, "the response was abandoned, not completed");
      } finally {
        await c.close();
      }
    },
    { "index.html": "hello\n", "big.bin": new Uint8Array(BIG_FILE_BYTES) },
  ));

// --- caps and connection rate -------------------------------------------------------------------------

Deno.test("per-client cap: the 4th connection from one address gets 503 and close; freeing one admits one", () =>
  withServer({ maxConnsPerClient: 3 }, async (s) => {
    const held: NodeClient[] = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await NodeClient.connect(s.port, { localAddress: ATTACKER }));
      await waitFor("3 connections", () => connsFrom(s, ATTACKER) === 3);
      const fourth = await NodeClient.connect(s.port, { localAddress: ATTACKER });
      const r = await fourth.read();
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("connection"), "close");
      assert.equal(await fourth.closedWithin(WAIT_LIMIT_MS), true);
      await fourth.close();
      assert.equal(s.vento.stats.refused.client_cap, 1);
      // Another address is not affected by the attacker's cap.
      assert.equal((await requestFrom(s.port, BYSTANDER, GET)).status, 200);

      await held.pop()!.close();
      await waitFor("the freed slot", () => connsFrom(s, ATTACKER) === 2);
      assert.equal((await requestFrom(s.port, ATTACKER, GET)).status, 200);
    } finally {
      for (const c of held) await c.close();
    }
  }));

Deno.test("global cap: at MAX_CONNS a new client gets 503 and close; freeing one admits one", () =>
  withServer({ maxConns: 4 }, async (s) => {
    const held: NodeClient[] = [];
    try {
      for (const ip of ["127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10"]) {
        held.push(await NodeClient.connect(s.port, { localAddress: ip }));
      }
      await waitFor("4 connections", () => s.vento.server.size === 4);
      const r = await requestFrom(s.port, "127.0.0.11", GET);
      assert.equal(r.status, 503);
      assert.equal(s.vento.stats.refused.global_cap, 1);
      await held.shift()!.close();
      await waitFor("the freed slot", () => s.vento.guard.openConns === 3);
      assert.equal((await requestFrom(s.port, "127.0.0.11", GET)).status, 200);
    } finally {
      for (const c of held) await c.close();
    }
  }));

Deno.test("connection rate: past CONN_BURST new connections get 429 with Retry-After at accept", () =>
  withServer({ connRatePerSec: 2, connBurst: 3 }, async (s) => {
    for (let i = 0; i < 3; i++) assert.equal((await requestFrom(s.port, ATTACKER, GET)).status, 200);
    // Refused before any byte is read: the answer comes without a request.
    const c = await NodeClient.connect(s.port, { localAddress: ATTACKER });
    try {
      const r = await c.read();
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.equal(r.headers.get("connection"), "close");
    } finally {
      await c.close();
    }
    assert.equal(s.vento.stats.refused.conn_rate, 1);
    assert.equal(s.vento.stats.accepted, 3);
    assert.equal((await requestFrom(s.port, BYSTANDER, GET)).status, 200);
  }));

// --- allowlist, dry-run, busy idle timeout ------------------------------------------------------------

Deno.test("ALLOWLIST exempts an address from rates and bans; others are still limited", () =>
  withServer(
    { allowlist: ["127.0.0.7/32"], requestRatePerSec: 2, requestBurst: 2, banAfterViolations: 1 },
    async (s) => {
      const allowed = await burst(s.port, "127.0.0.7", 20);
      assert.equal(allowed.oks, 20);
      const limited = await burst(s.port, ATTACKER, 20);
      assert.equal(limited.oks, 2);
      assert.equal(limited.last.status, 429);
      await assertRefusedAtAccept(s.port, ATTACKER);
      assert.deepEqual(s.vento.guard.ban("127.0.0.7", 60_000, "test"), {
        ok: false,
        error: "127.0.0.7 is allowlisted",
      });
      assert.equal((await burst(s.port, "127.0.0.7", 5)).oks, 5);
    },
  ));

Deno.test("LIMIT_MODE=dry-run never refuses for rate or ban but counts what it would have done", () =>
  withServer(
    { limitMode: "dry-run", requestRatePerSec: 2, requestBurst: 2, banAfterViolations: 3, banMs: 10_000 },
    async (s) => {
      const flood = await burst(s.port, ATTACKER, 20);
      assert.equal(flood.oks, 20);
      assert.equal(s.vento.stats.status429, 0);
      assert.ok(s.vento.guard.dryRunRefusals >= 18, `counted ${s.vento.guard.dryRunRefusals}`);
      assert.ok(s.vento.stats.bansAdded >= 1, "the ban is decided and counted");
      // Would be banned: still admitted and served.
      assert.equal((await requestFrom(s.port, ATTACKER, GET)).status, 200);
      assert.equal(s.vento.stats.refused.banned, 0);
    },
  ));

Deno.test("the idle keep-alive timeout shrinks when the server is above BUSY_THRESHOLD_PERCENT of MAX_CONNS", () =>
  withServer({
    maxConns: 10,
    busyThresholdPercent: 50,
    idleTimeoutMs: 5_000,
    idleTimeoutBusyMs: 150,
    headerTimeoutMs: 5_000,
  }, async (s) => {
    // Quiet server (1 of 10): an idle keep-alive connection stays open well past the busy timeout.
    const quiet = await NodeClient.connect(s.port, { localAddress: ATTACKER });
    await quiet.send(GET);
    assert.equal((await quiet.read()).status, 200);
    assert.equal(await quiet.closedWithin(700), false);
    await quiet.close();
    await waitFor("the quiet connection to go", () => s.vento.server.size === 0);

    // Busy server (6 of 10 > 50 %): the same idle connection is closed after ~150 ms.
    const held: NodeClient[] = [];
    try {
      for (let i = 7; i < 12; i++) {
        held.push(await NodeClient.connect(s.port, { localAddress: `127.0.0.${i}` }));
      }
      await waitFor("5 held connections", () => s.vento.server.size === 5);
      const busy = await NodeClient.connect(s.port, { localAddress: ATTACKER });
      await busy.send(GET);
      assert.equal((await busy.read()).status, 200);
      const idleSince = performance.now();
      assert.equal(await busy.closedWithin(2_000), true, "closed by the busy idle timeout");
      const idleMs = performance.now() - idleSince;
      assert.ok(idleMs >= 100 && idleMs < 1_500, `idle connection closed after ${Math.round(idleMs)} ms`);
      await busy.close();
    } finally {
      for (const c of held) await c.close();
    }
  }));
