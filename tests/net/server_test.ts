/** Unit tests for the connection layer's pure helpers. */

import assert from "node:assert/strict";
import {
  READ_POOL_KEPT,
  READ_POOL_MAX,
  sweepIntervalMs,
  trimPools,
  unmapAddress,
} from "../../src/net/server.ts";
import { escapeForLog, PARSER_POOL_KEPT, READ_BUFFER_BYTES } from "../../src/net/connection.ts";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import { RequestParser } from "../../src/http/parser.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock, SystemClock } from "../../src/core/clock.ts";

Deno.test("unmapAddress unwraps v4-mapped IPv6 and leaves everything else", () => {
  assert.equal(unmapAddress("::ffff:127.0.0.5"), "127.0.0.5");
  assert.equal(unmapAddress("127.0.0.5"), "127.0.0.5");
  assert.equal(unmapAddress("::1"), "::1");
  assert.equal(unmapAddress("2001:db8::ffff:1"), "2001:db8::ffff:1");
});

Deno.test("the sweeper runs often enough for the shortest deadline, but never busier than 5 ms", () => {
  assert.equal(sweepIntervalMs(DEFAULT_CONFIG), 250);
  assert.equal(sweepIntervalMs({ ...DEFAULT_CONFIG, headerTimeoutMs: 200 }), 50);
  assert.equal(sweepIntervalMs({ ...DEFAULT_CONFIG, sendTimeoutMs: 4 }), 5);
});

Deno.test("escapeForLog hides control bytes, quotes and backslashes, and truncates", () => {
  assert.equal(escapeForLog('GET /a"b\\c\r\n HTTP/1.1'), "GET /a\\x22b\\x5cc\\x0d\\x0a HTTP/1.1");
  assert.equal(escapeForLog("x".repeat(10), 4), "xxxx...");
  assert.equal(escapeForLog("caf\u00e9"), "caf\\xe9");
});

Deno.test("the system clock never goes backwards; the fake clock moves only when told", () => {
  const c = new SystemClock();
  let last = c.nowMs();
  for (let i = 0; i < 1000; i++) {
    const t = c.nowMs();
    assert.ok(t >= last);
    last = t;
  }
  const f = new FakeClock(100, 1_000_000);
  assert.equal(f.nowMs(), 100);
  f.advance(50);
  assert.equal(f.nowMs(), 150);
  assert.equal(f.wallMs(), 1_000_050);
});

Deno.test("the once-a-second trim leaves the at-rest number of pooled read buffers and parsers", () => {
  const readPool = new BufferPool(READ_BUFFER_BYTES, READ_POOL_MAX);
  const taken = Array.from({ length: READ_POOL_KEPT + 100 }, () => readPool.acquire());
  for (const b of taken) readPool.release(b);
  const limits = { maxRequestLineBytes: 100, maxHeaderBytes: 100, maxHeaderCount: 10 };
  const parserPool = Array.from({ length: PARSER_POOL_KEPT + 50 }, () => new RequestParser(limits));
  assert.equal(readPool.idle, READ_POOL_KEPT + 100, "a burst may leave more than the at-rest number");
  trimPools({ readPool, parserPool });
  assert.equal(readPool.idle, READ_POOL_KEPT);
  assert.equal(parserPool.length, PARSER_POOL_KEPT);
  trimPools({ readPool, parserPool });
  assert.equal(readPool.idle, READ_POOL_KEPT, "trimming again changes nothing");
});
