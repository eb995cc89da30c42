/** Reply building and the whole-response cache of reusable replies. */

import assert from "node:assert/strict";
import { buildHead, bytesReply, type Reply, textReply, WholeReplies } from "../../src/http/response.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("every head carries Server and nosniff, and byte replies their length", () => {
  const h = dec.decode(buildHead(404, [["X-A", "1"]]));
  assert.equal(h, "HTTP/1.1 404 Not Found\r\nServer: Vento\r\nX-Content-Type-Options: nosniff\r\nX-A: 1\r\n");
  const r = bytesReply(200, "text/plain", enc.encode("abc"));
  assert.match(dec.decode(r.head), /Content-Length: 3\r\n/);
  assert.equal(textReply(429, [], true).close, true);
});

Deno.test("a whole response is head + Date + blank line + body, reused until the Date line changes", () => {
  const reply: Reply = Object.freeze({
    ...bytesReply(200, "text/plain", enc.encode("hello")),
    reusable: true,
  });
  const whole = new WholeReplies();
  const d1 = enc.encode("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n");
  const a = whole.bytes(reply, d1, true);
  assert.equal(dec.decode(a), dec.decode(reply.head) + dec.decode(d1) + "\r\nhello");
  assert.equal(whole.bytes(reply, d1, true), a, "same bytes within the second");
  const d2 = enc.encode("Date: Thu, 01 Jan 2026 00:00:01 GMT\r\n");
  const b = whole.bytes(reply, d2, true);
  assert.notEqual(b, a);
  assert.ok(dec.decode(b).endsWith("00:00:01 GMT\r\n\r\nhello"));
  // HEAD of a reply with a body: no body, and the cached GET form is not disturbed.
  const h = whole.bytes(reply, d2, false);
  assert.ok(dec.decode(h).endsWith("GMT\r\n\r\n"));
  assert.equal(whole.bytes(reply, d2, true), b);
});

Deno.test("the statuses site rules and apps send carry their reason phrase (one table for every answer)", () => {
  const dec = new TextDecoder();
  for (
    const [status, reason] of [[401, "Unauthorized"], [302, "Found"], [303, "See Other"], [
      307,
      "Temporary Redirect",
    ], [
      308,
      "Permanent Redirect",
    ], [410, "Gone"]] as const
  ) {
    assert.ok(
      dec.decode(buildHead(status, [])).startsWith(`HTTP/1.1 ${status} ${reason}\r\n`),
      String(status),
    );
  }
});
