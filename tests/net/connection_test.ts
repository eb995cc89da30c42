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
