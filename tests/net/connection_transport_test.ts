/**
 * The connection over a fake transport (no sockets, a fake clock, no sleeps): what the transport seam
 * makes possible to get wrong. Writes the transport takes only in part must be continued; a deadline that
 * passes while a read is pending must close the transport, which must end that read; an idle connection's
 * deadline is enforced by the sweep even though it never gets to read.
 */

import assert from "node:assert/strict";
import { type ConnContext, Connection } from "../../src/net/connection.ts";
import { FakeConn } from "../_helpers/fake_conn.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";
import { DateLine } from "../../src/http/date.ts";
import { textReply, WholeReplies } from "../../src/http/response.ts";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import type { Handler } from "../../src/http/handler.ts";

const enc = new TextEncoder();

const BODY = enc.encode("x".repeat(5000));

const handler: Handler = {
  bodyLimitBytes: () => 0,
  handle: () => ({ ...textReply(200, [], false), body: BODY, length: BODY.length }),
};

function context(clock: FakeClock, overrides: Partial<typeof DEFAULT_CONFIG> = {}): ConnContext {
  return {
    options: { ...DEFAULT_CONFIG, ...overrides },
    clock,
    stats: new Stats(),
    handler,
    gate: null,
    accessLog: null,
    dateLine: new DateLine(),
    wholeReplies: new WholeReplies(),
    nowMs: clock.nowMs(),
    wallMs: clock.wallMs(),
    shuttingDown: false,
    readPool: new BufferPool(1024, 4),
    parserPool: [],
    largeReadPool: new BufferPool(16 * 1024, 4),
    outPool: new BufferPool(16 * 1024, 4),
    logError: (m) => {
      throw new Error(`unexpected log line: ${m}`);
    },
  };
}

/** Lets every settled promise run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

Deno.test("a write the transport takes only in part is continued until every byte is out", async () => {
  const clock = new FakeClock();
  const t = new FakeConn({ maxWrite: 700 });
  const c = new Connection(t, 1, t.remoteIp, t.remotePort, t.remoteIp, -1, context(clock));
  c.serve();
  const served = c.ended;
  t.push(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  const text = t.text();
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.ok(text.endsWith("x".repeat(5000)), "the whole body arrived, in order");
  assert.ok(t.writeSizes.length > 7, "the answer went out in many partial writes");
  assert.ok(t.writeSizes.every((n) => n <= 700));
  assert.ok(t.closed);
});

Deno.test("a header deadline passing while a read is pending closes the transport and ends that read", async () => {
  const clock = new FakeClock();
  const ctx = context(clock, { headerTimeoutMs: 1000 });
  const t = new FakeConn();
  const c = new Connection(t, 2, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  await settle();
  assert.ok(t.readPending, "the connection waits for its first byte");
  clock.advance(999);
  c.expireIfDue(clock.nowMs());
  assert.equal(t.closed, false);
  clock.advance(1);
  c.expireIfDue(clock.nowMs());
  assert.ok(t.closed, "the deadline closed the transport");
  await served; // the pending read ended (Interrupted) and serve() returned without an error
  assert.equal(c.state, "closed");
  assert.equal(ctx.stats.timeouts, 1);
});

Deno.test("an idle keep-alive connection is closed by its idle deadline, and Nagle is off after the first answer", async () => {
  const clock = new FakeClock();
  const ctx = context(clock, { idleTimeoutMs: 5000 });
  const t = new FakeConn();
  const c = new Connection(t, 3, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  t.push(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  await settle();
  assert.match(t.text(), /^HTTP\/1\.1 200 /);
  assert.ok(t.noDelay, "no-delay is set once the connection is known to stay open");
  assert.equal(c.state, "idle");
  assert.ok(t.lentReadPending, "idle: waiting for a byte without a pending read");
  assert.equal(ctx.readPool.inUse, 0, "the idle connection's read buffer is back in the pool");
  clock.advance(5000 + 250);
  c.expireIfDue(clock.nowMs());
  assert.ok(t.closed);
  await served;
  assert.equal(c.state, "closed");
});

Deno.test("an idle connection takes a buffer back for its next request and serves it", async () => {
  const clock = new FakeClock();
  const ctx = context(clock);
  const t = new FakeConn();
  const c = new Connection(t, 5, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  t.push(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  await settle();
  assert.equal(c.state, "idle");
  t.push(enc.encode("GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  assert.equal(t.text().match(/HTTP\/1\.1 200 /g)?.length, 2);
  assert.equal(ctx.readPool.inUse, 0, "every buffer went back to the pool, once");
  assert.equal(ctx.readPool.idle, 1);
});

Deno.test("a connection that closes after its only answer never sets no-delay (one system call saved)", async () => {
  const clock = new FakeClock();
  const t = new FakeConn();
  const c = new Connection(t, 4, t.remoteIp, t.remotePort, t.remoteIp, -1, context(clock));
  c.serve();
  const served = c.ended;
  t.push(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  assert.equal(t.noDelay, false);
  assert.ok(t.closed);
});

Deno.test("a parked connection is woken by each request, pipelined ones too, and ends once when its peer leaves", async () => {
  const clock = new FakeClock();
  const ctx = context(clock);
  let ended = 0;
  ctx.connectionEnded = () => ended++;
  const t = new FakeConn();
  const c = new Connection(t, 6, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  for (let i = 0; i < 3; i++) {
    t.push(enc.encode(`GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`));
    await settle();
    assert.equal(c.state, "idle", `parked again after request ${i}`);
    assert.ok(t.lentReadPending);
    assert.equal(ctx.parserPool.length, 1, "its parser waits in the pool meanwhile");
  }
  // Two requests in one chunk wake it once; both are answered, in order, before it parks again.
  t.push(enc.encode("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n"));
  await settle();
  assert.equal(t.text().match(/HTTP\/1\.1 200 /g)?.length, 5);
  assert.ok(t.lentReadPending);
  // The peer's end reaches the parked read: the connection ends, once, and gives everything back.
  t.end();
  await served;
  assert.equal(c.state, "closed");
  assert.ok(t.closed);
  assert.equal(ended, 1);
  assert.equal(ctx.readPool.inUse, 0);
  assert.equal(ctx.stats.requests, 5);
  assert.equal(ctx.stats.peerResets, 0, "a clean end between requests is no reset");
});
