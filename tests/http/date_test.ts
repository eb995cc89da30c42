/** HTTP dates: IMF-fixdate formatting and strict parsing, and the per-second cached Date line. */

import assert from "node:assert/strict";
import { DateLine, httpDate, parseHttpDate } from "../../src/http/date.ts";

Deno.test("httpDate formats IMF-fixdate in GMT", () => {
  assert.equal(httpDate(Date.UTC(1994, 10, 6, 8, 49, 37)), "Sun, 06 Nov 1994 08:49:37 GMT");
  assert.equal(httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
});

Deno.test("parseHttpDate accepts only IMF-fixdate and rejects impossible dates", () => {
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), Date.UTC(1994, 10, 6, 8, 49, 37));
  assert.ok(Number.isNaN(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT")), "RFC 850 form is not accepted");
  assert.ok(Number.isNaN(parseHttpDate("Sun Nov  6 08:49:37 1994")), "asctime form is not accepted");
  assert.ok(Number.isNaN(parseHttpDate("Sun, 31 Feb 1994 08:49:37 GMT")));
  assert.ok(Number.isNaN(parseHttpDate("Sun, 06 Nov 1994 25:49:37 GMT")));
  assert.ok(Number.isNaN(parseHttpDate("")));
});

Deno.test("DateLine reuses the same bytes within a second and renews them the next", () => {
  const d = new DateLine();
  const a = d.bytes(Date.UTC(2026, 0, 1, 0, 0, 0, 100));
  const b = d.bytes(Date.UTC(2026, 0, 1, 0, 0, 0, 900));
  assert.equal(a, b);
  const c = d.bytes(Date.UTC(2026, 0, 1, 0, 0, 1, 0));
  assert.notEqual(a, c);
  assert.equal(new TextDecoder().decode(c), "Date: Thu, 01 Jan 2026 00:00:01 GMT\r\n");
});
