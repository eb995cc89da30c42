/**
 * Unit tests of `Connection` over a scripted socket and hand-driven deadlines (no network, no sleeps):
 * what reaches the wire, in which order, and when the connection closes.
 */

import assert from "node:assert/strict";
import { serveFake, statuses } from "../_helpers/fake_conn.ts";

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
