/**
 * Unit tests of `Connection` over a scripted socket and hand-driven deadlines (no network, no sleeps):
 * what reaches the wire, in which order, and when the connection closes.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { connectionHeaders, serveFake, statuses } from "../_helpers/fake_conn.ts";

const H = "Host: t\r\n";

Deno.test("an error answer to HEAD has no content, also when the head never completed", async () => {
  const s = serveFake();
  s.conn.push(`HEAD / HTTP/1.1\r\n${H}Bad Header: x\r\n\r\n`);
  await s.conn.readBlocked(); // lingering after the answer
  s.conn.end();
  await s.done;
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [400]);
  assert.match(text, /\r\nContent-Length: 16\r\n/);
  assert.ok(text.endsWith("\r\n\r\n"), `no content after the head: ${JSON.stringify(text)}`);
  assert.ok(s.conn.closed);
});

Deno.test("a header timeout answered to a HEAD still coming in has no content", async () => {
  const s = serveFake({ headerTimeoutMs: 1000 });
  s.conn.push(`HEAD / HTTP/1.1\r\n${H}`);
  await s.conn.readBlocked();
  s.connection.expireIfDue(1001);
  s.conn.end();
  await s.done;
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [408]);
  assert.ok(text.endsWith("\r\n\r\n"), `no content after the head: ${JSON.stringify(text)}`);
});

Deno.test("a body timeout answered to a HEAD has no content", async () => {
  const s = serveFake({ bodyIdleTimeoutMs: 1000 });
  s.conn.push(`HEAD / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabcd`);
  await s.conn.readBlocked();
  s.connection.expireIfDue(1001);
  s.conn.end();
  await s.done;
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [408]);
  assert.ok(text.endsWith("\r\n\r\n"), `no content after the head: ${JSON.stringify(text)}`);
});

Deno.test("a HEAD refused for its body framing gets an answer without content", async () => {
  const s = serveFake();
  s.conn.push(`HEAD / HTTP/1.1\r\n${H}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`);
  await s.conn.readBlocked();
  s.conn.end();
  await s.done;
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [400]);
  assert.ok(text.endsWith("\r\n\r\n"), `no content after the head: ${JSON.stringify(text)}`);
});

Deno.test("answers to complete pipelined requests leave before the wait for an incomplete body; 408 follows", async () => {
  const s = serveFake({ bodyIdleTimeoutMs: 1000 });
  s.conn.push(
    `GET /a HTTP/1.1\r\n${H}\r\nGET /b HTTP/1.1\r\n${H}\r\n` +
      `POST /echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabcd`,
  );
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200, 200], "both answers written before waiting");
  assert.match(s.conn.text(), /page \/a\n[^]*page \/b\n$/);
  s.connection.expireIfDue(999);
  assert.equal(s.conn.closed, false);
  s.connection.expireIfDue(1001);
  s.conn.end();
  await s.done;
  assert.deepEqual(statuses(s.conn.text()), [200, 200, 408]);
  assert.match(s.conn.text(), /408 Request Timeout\n$/);
});

Deno.test("a body that completes after the wait is answered after the earlier answers", async () => {
  const s = serveFake();
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\nPOST /echo HTTP/1.1\r\n${H}Content-Length: 6\r\n\r\nabc`);
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200]);
  s.conn.push("def");
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200, 200]);
  assert.ok(s.conn.text().endsWith("\r\n\r\nabcdef"));
  s.conn.end();
  await s.done;
});

Deno.test("answers queued before a slow body are flushed before the body minimum rate is judged", async () => {
  const s = serveFake({ bodyMinRateGraceMs: 1000, bodyMinRateBytesPerSec: 100, bodyIdleTimeoutMs: 60_000 });
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\nPOST /echo HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nab`);
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200]);
  s.connection.expireIfDue(1001);
  s.conn.end();
  await s.done;
  assert.deepEqual(statuses(s.conn.text()), [200, 408]);
});

Deno.test("an unread Content-Length body is discarded and the connection stays open for the next request", async () => {
  const s = serveFake();
  s.conn.push(`GET /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n${H}\r\n`);
  await s.conn.readBlocked();
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [200, 200]);
  assert.deepEqual(connectionHeaders(text), ["", ""]);
  assert.match(text, /page \/a\n[^]*page \/b\n$/);
  assert.equal(s.conn.closed, false);
  assert.equal(s.connection.state, "idle");
  s.conn.end();
  await s.done;
});

Deno.test("an unread chunked body arriving in pieces is discarded; the answer follows its end", async () => {
  const s = serveFake();
  s.conn.push(`POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhel`);
  await s.conn.readBlocked();
  assert.equal(s.conn.text(), "", "the answer waits for the body to end");
  s.conn.push("lo\r\n0\r\nTrailer-A: 1\r\n\r\nHEAD /b HTTP/1.1\r\n" + H + "\r\n");
  await s.conn.readBlocked();
  const text = s.conn.text();
  assert.deepEqual(statuses(text), [200, 200]);
  assert.deepEqual(connectionHeaders(text), ["", ""]);
  assert.ok(text.endsWith("\r\n\r\n"), "the HEAD answer has no content");
  assert.equal(s.conn.closed, false);
  s.conn.end();
  await s.done;
});

Deno.test("a malformed unread chunked body is answered 400 instead of the route's answer", async () => {
  for (
    const bad of [
      "zz\r\n",
      "3\r\nabcd\r\n0\r\n\r\n",
      "3 \r\nabc\r\n0\r\n\r\n",
      "1\r\na\r\n0\r\nBad Trailer: x\r\n\r\n",
    ]
  ) {
    const s = serveFake();
    s.conn.push(`GET /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${bad}GET /b HTTP/1.1\r\n${H}\r\n`);
    await s.conn.readBlocked();
    const text = s.conn.text();
    assert.deepEqual(statuses(text), [400], JSON.stringify(bad));
    assert.deepEqual(connectionHeaders(text), ["close"]);
    assert.equal(s.ctx.stats.protocolErrors, 1);
    s.conn.end();
    await s.done;
  }
});

Deno.test("an unread body beyond UNREAD_BODY_MAX_BYTES is not read: the answer closes the connection", async () => {
  // Declared too large: answered at once.
  const s = serveFake({ unreadBodyMaxBytes: 8 });
  s.conn.push(`GET /a HTTP/1.1\r\n${H}Content-Length: 9\r\n\r\n`);
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200]);
  assert.deepEqual(connectionHeaders(s.conn.text()), ["close"]);
  assert.ok(s.conn.writeClosed, "lingering, then closed");
  s.conn.end();
  await s.done;
  // Exactly at the bound: discarded, kept open.
  const at = serveFake({ unreadBodyMaxBytes: 8 });
  at.conn.push(`GET /a HTTP/1.1\r\n${H}Content-Length: 8\r\n\r\n12345678`);
  await at.conn.readBlocked();
  assert.deepEqual(connectionHeaders(at.conn.text()), [""]);
  at.conn.end();
  await at.done;
  // Chunked: the bound counts wire bytes, framing included; passing it mid-body closes.
  const exact = serveFake({ unreadBodyMaxBytes: 13 });
  exact.conn.push(`GET /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);
  await exact.conn.readBlocked();
  assert.deepEqual(connectionHeaders(exact.conn.text()), [""], "13 wire bytes fit a bound of 13");
  exact.conn.end();
  await exact.done;
  const chunked = serveFake({ unreadBodyMaxBytes: 16 });
  chunked.conn.push(`GET /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`);
  await chunked.conn.readBlocked();
  assert.equal(chunked.conn.text(), "", "8 wire bytes so far: still within the bound");
  chunked.conn.push("1\r\nd\r\n0\r\n\r\n");
  await chunked.conn.readBlocked();
  assert.deepEqual(statuses(chunked.conn.text()), [200]);
  assert.deepEqual(connectionHeaders(chunked.conn.text()), ["close"]);
  chunked.conn.end();
  await chunked.done;
});

Deno.test("UNREAD_BODY_MAX_BYTES changed by a reload applies to the next request", async () => {
  const s = serveFake({ unreadBodyMaxBytes: 100 });
  s.conn.push(`GET /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
  await s.conn.readBlocked();
  assert.deepEqual(connectionHeaders(s.conn.text()), [""]);
  (s.ctx.options as { unreadBodyMaxBytes: number }).unreadBodyMaxBytes = 4;
  s.conn.push(`GET /b HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
  await s.conn.readBlocked();
  assert.deepEqual(connectionHeaders(s.conn.text()), ["", "close"]);
  s.conn.end();
  await s.done;
});

Deno.test("a body discarded too slowly is cut by the body idle timeout (408) and the minimum rate (408)", async () => {
  const idle = serveFake({ bodyIdleTimeoutMs: 1000 });
  idle.conn.push(`GET /a HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabcd`);
  await idle.conn.readBlocked();
  idle.connection.expireIfDue(1001);
  idle.conn.end();
  await idle.done;
  assert.deepEqual(statuses(idle.conn.text()), [408]);
  const slow = serveFake({
    bodyMinRateGraceMs: 1000,
    bodyMinRateBytesPerSec: 100,
    bodyIdleTimeoutMs: 60_000,
  });
  slow.conn.push(`GET /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n`);
  await slow.conn.readBlocked();
  slow.connection.expireIfDue(1001);
  slow.conn.end();
  await slow.done;
  assert.deepEqual(statuses(slow.conn.text()), [408]);
});

Deno.test("an unread body behind Expect: 100-continue gets no 100, only the answer with Connection: close", async () => {
  const s = serveFake();
  s.conn.push(`PUT /a HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200]);
  assert.deepEqual(connectionHeaders(s.conn.text()), ["close"]);
  s.conn.end();
  await s.done;
});

/** Feeds `input` cut at `cuts`, waiting after each piece until the connection wants more; returns what it wrote. */
async function servePieces(input: string, cuts: readonly number[]): Promise<string> {
  const s = serveFake({ unreadBodyMaxBytes: 64 });
  const bounds = [0, ...cuts, input.length];
  for (let k = 0; k + 1 < bounds.length; k++) {
    s.conn.push(input.slice(bounds[k], bounds[k + 1]));
    await s.conn.readBlocked();
  }
  s.conn.end();
  await s.done;
  // The Date line is the only part that may differ between runs (it is fixed here by the fake clock).
  return s.conn.text();
}

Deno.test("pipelined requests with read, discarded and refused bodies get the same answers under any chunking", async () => {
  const stream = `GET /a HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyz` +
    `POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2;e=1\r\nhi\r\n1\r\n!\r\n0\r\n\r\n` +
    `HEAD /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n` +
    `POST /echo HTTP/1.1\r\n${H}Content-Length: 4\r\n\r\nbody` +
    `GET /c HTTP/1.1\r\n${H}Content-Length: 65\r\n\r\n${"z".repeat(65)}` +
    `GET /never HTTP/1.1\r\n${H}\r\n`;
  const whole = await servePieces(stream, []);
  assert.deepEqual(statuses(whole), [200, 200, 200, 200, 200]);
  assert.deepEqual(connectionHeaders(whole), ["", "", "", "", "close"]);
  assert.match(whole, /\r\n\r\nhi!HTTP[^]*\r\n\r\nbodyHTTP/);
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }),
      async (cuts) => {
        assert.equal(await servePieces(stream, cuts.sort((x, y) => x - y)), whole);
      },
    ),
    { numRuns: 200 },
  );
  const bytewise = Array.from({ length: stream.length - 1 }, (_, k) => k + 1);
  assert.equal(await servePieces(stream, bytewise), whole);
});

// --- the connection's lifecycle on the fake clock (deadlines, states, shutdown) ---------------------

Deno.test("a stalled head gets 408 at its header deadline: bytes trickling in never extend it", async () => {
  const s = serveFake({ headerTimeoutMs: 1000 });
  s.conn.push("GET / HTTP/1.1\r\n");
  await s.conn.readBlocked();
  s.ctx.nowMs = 900;
  s.conn.push("X-A: 1\r\n");
  await s.conn.readBlocked();
  s.connection.expireIfDue(999);
  assert.equal(s.conn.text(), "", "not due yet");
  s.connection.expireIfDue(1000);
  await s.conn.readBlocked(); // lingering after the answer
  s.conn.end();
  await s.done;
  assert.deepEqual(statuses(s.conn.text()), [408]);
  assert.equal(s.connection.state, "closed");
});

Deno.test("an idle keep-alive connection closes quietly at its idle deadline; its state says idle before", async () => {
  const s = serveFake({ idleTimeoutMs: 5000 });
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.connection.state, "idle");
  assert.deepEqual(statuses(s.conn.text()), [200]);
  s.connection.expireIfDue(4999);
  assert.equal(s.conn.closed, false);
  s.connection.expireIfDue(5000);
  await s.done;
  assert.ok(s.conn.closed);
  assert.deepEqual(statuses(s.conn.text()), [200], "no answer for a connection that asked nothing");
  assert.equal(s.ctx.stats.timeouts, 1);
});

Deno.test("an idle connection lends its parser to the pool and takes one back for the next request", async () => {
  const s = serveFake({ idleTimeoutMs: 5000 });
  // A head split across reads, so the parser carries state between feeds before the connection idles.
  s.conn.push(`GET /a HTTP/1.1\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.ctx.parserPool.length, 0, "a connection reading a head holds its parser");
  s.conn.push(`${H}\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.connection.state, "idle");
  assert.equal(s.ctx.parserPool.length, 1, "idle: the parser is back in the pool");
  // Another connection may take that parser meanwhile: this one must then parse with a fresh one.
  const taken = s.ctx.parserPool.pop()!;
  s.conn.push(`GET /b HTTP/1.1\r\n${H}\r\nGET /c HTTP/1.1\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.ctx.parserPool.length, 0, "mid-head again: a parser is held");
  s.conn.push(`${H}Connection: close\r\n\r\n`);
  await s.done;
  assert.deepEqual(statuses(s.conn.text()), [200, 200, 200]);
  assert.equal(s.ctx.parserPool.length, 1, "closed: its parser goes back to the pool");
  assert.notEqual(s.ctx.parserPool[0], taken, "the parser another connection took was never used here");
  // The state an idle connection answers from is a parser that has seen nothing.
  assert.equal(s.connection.state, "closed");
});

Deno.test("a reader that stops reading is closed at the send deadline, the pending write abandoned", async () => {
  const s = serveFake({ sendTimeoutMs: 2000, sendMinRateBytesPerSec: 0 });
  s.conn.holdWrites = true;
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\n`);
  while (s.conn.heldWrites === 0) await Promise.resolve();
  assert.equal(s.connection.state, "active");
  s.connection.expireIfDue(1999);
  assert.equal(s.conn.closed, false);
  s.connection.expireIfDue(2000);
  await s.done;
  assert.ok(s.conn.closed);
  assert.equal(s.conn.text(), "", "nothing was written");
  assert.equal(s.ctx.outPool.inUse, 0, "the output buffer is accounted for");
});

Deno.test("a slow reader that completes its writes in time is served and stays open", async () => {
  const s = serveFake({ sendTimeoutMs: 2000 });
  s.conn.holdWrites = true;
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\n`);
  while (s.conn.heldWrites === 0) await Promise.resolve();
  s.connection.expireIfDue(1500);
  s.conn.releaseWrites();
  await s.conn.readBlocked();
  assert.deepEqual(statuses(s.conn.text()), [200]);
  assert.equal(s.connection.state, "idle");
  s.conn.end();
  await s.done;
});

Deno.test("shutdown mid-request: the answer in progress carries Connection: close, then the connection ends", async () => {
  let answer!: () => void;
  const gate = new Promise<void>((r) => answer = r);
  const s = serveFake({}, {
    bodyLimitBytes: () => 0,
    handle: async () => {
      await gate;
      return {
        status: 200,
        head: new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"),
        body: null,
        stream: null,
        length: 0,
        close: false,
      };
    },
  });
  s.conn.push(`GET /slow HTTP/1.1\r\n${H}\r\n`);
  while (s.connection.state !== "active") await Promise.resolve();
  s.ctx.shuttingDown = true;
  assert.equal(s.connection.closeIfIdle(), false, "an active connection is not closed as idle");
  answer();
  await s.done;
  assert.deepEqual(statuses(s.conn.text()), [200]);
  assert.deepEqual(connectionHeaders(s.conn.text()), ["close"]);
  assert.ok(s.conn.closed);
});

Deno.test("shutdown closes a connection that never spoke, as idle", async () => {
  const s = serveFake();
  await s.conn.readBlocked();
  assert.equal(s.connection.state, "new");
  assert.equal(s.connection.closeIfIdle(), true);
  await s.done;
  assert.equal(s.connection.state, "closed");
});

Deno.test("shutdown closes a parked keep-alive connection: it ends once, with nothing left in use", async () => {
  const s = serveFake();
  let ended = 0;
  s.ctx.connectionEnded = () => ended++;
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.connection.state, "idle");
  assert.ok(s.conn.lentReadPending, "parked: no buffer taken, no read promise");
  s.ctx.shuttingDown = true;
  assert.equal(s.connection.closeIfIdle(), true);
  await s.done;
  assert.equal(s.connection.state, "closed");
  assert.equal(ended, 1);
  assert.equal(s.ctx.readPool.inUse, 0);
  assert.deepEqual(s.errors, []);
  // Bytes that come after the close find nobody: no second end, no error.
  s.conn.push(`GET /b HTTP/1.1\r\n${H}\r\n`);
  await s.connection.ended;
  assert.equal(ended, 1);
  assert.deepEqual(statuses(s.conn.text()), [200]);
});

Deno.test("an idle connection closed at its deadline takes nothing back: buffer and parser stay in their pools", async () => {
  const s = serveFake({ idleTimeoutMs: 5000 });
  s.conn.push(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await s.conn.readBlocked();
  assert.equal(s.connection.state, "idle");
  assert.equal(s.ctx.readPool.inUse, 0, "idle: the read buffer is lent");
  assert.equal(s.ctx.parserPool.length, 1, "idle: the parser is lent");
  s.connection.expireIfDue(5000);
  await s.done;
  assert.equal(s.ctx.readPool.inUse, 0);
  assert.equal(s.ctx.readPool.idle, 1, "the lent buffer, once");
  assert.equal(s.ctx.parserPool.length, 1, "the lent parser, once");
});
