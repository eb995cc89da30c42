/**
 * `ChunkedDecoder`: decoded bytes and `consumed` must not depend on how the framing is split, limits
 * hold at their edges, and results are sticky until `reset`.
 */

import assert from "node:assert/strict";
import { ChunkedDecoder, type ChunkedResult, DEFAULT_MAX_CHUNK_EXT_BYTES } from "../../src/http/body.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Feeds `bytes` cut at `cuts`; returns the body, the final result and total bytes consumed. */
function decode(decoder: ChunkedDecoder, bytes: Uint8Array, cuts: number[] = []) {
  const parts: number[] = [];
  let consumed = 0;
  let last: ChunkedResult = { kind: "more" };
  const bounds = [0, ...cuts, bytes.length];
  for (let k = 0; k + 1 < bounds.length; k++) {
    last = decoder.feed(bytes, bounds[k], bounds[k + 1], (buf, s, e) => {
      assert.ok(buf === bytes && s >= bounds[k] && s < e && e <= bounds[k + 1]);
      for (let i = s; i < e; i++) parts.push(buf[i]);
    });
    if (last.kind === "more") consumed += bounds[k + 1] - bounds[k];
    else {
      if (last.kind === "done") consumed += last.consumed;
      break;
    }
  }
  return { body: dec.decode(Uint8Array.from(parts)), last, consumed };
}

const SAMPLE = '4;ext="a;b"\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n';

Deno.test("decoder yields the same body and consumed for every split", () => {
  const bytes = enc.encode(SAMPLE + "GET / HTTP/1.1\r\n");
  const whole = decode(new ChunkedDecoder({ maxTrailerBytes: 64 }), bytes);
  assert.equal(whole.body, "Wikipedia in \r\n\r\nchunks.");
  assert.deepEqual(whole.last, { kind: "done", consumed: SAMPLE.length });
  for (let cut = 1; cut < bytes.length; cut++) {
    const r = decode(new ChunkedDecoder({ maxTrailerBytes: 64 }), bytes, [cut]);
    assert.equal(r.body, whole.body, `split at ${cut}`);
    assert.equal(r.consumed, SAMPLE.length, `split at ${cut}`);
  }
  const bytewise = Array.from({ length: bytes.length - 1 }, (_, k) => k + 1);
  const r = decode(new ChunkedDecoder({ maxTrailerBytes: 64 }), bytes, bytewise);
  assert.equal(r.body, whole.body);
  assert.equal(r.consumed, SAMPLE.length);
});

Deno.test("decoder hands data over as ranges of the caller's buffer without copying", () => {
  const bytes = enc.encode("a\r\n0123456789\r\n0\r\n\r\n");
  const ranges: [number, number][] = [];
  const d = new ChunkedDecoder({ maxTrailerBytes: 0 });
  const r = d.feed(bytes, 0, bytes.length, (buf, s, e) => {
    assert.equal(buf, bytes);
    ranges.push([s, e]);
  });
  assert.deepEqual(ranges, [[3, 13]]);
  assert.deepEqual(r, { kind: "done", consumed: bytes.length });
});

Deno.test("decoder done is sticky with consumed 0 and reset starts a new body", () => {
  const d = new ChunkedDecoder({ maxTrailerBytes: 0 });
  const body = enc.encode("1\r\nx\r\n0\r\n\r\n");
  assert.deepEqual(decode(d, body).last, { kind: "done", consumed: body.length });
  assert.deepEqual(d.feed(body, 0, body.length, () => assert.fail("no data after done")), {
    kind: "done",
    consumed: 0,
  });
  d.reset();
  assert.equal(decode(d, body).body, "x");
});

Deno.test("decoder error is sticky until reset", () => {
  const d = new ChunkedDecoder({ maxTrailerBytes: 0 });
  const bad = enc.encode("g\r\n");
  const r = decode(d, bad).last;
  assert.deepEqual(r, { kind: "error", code: "INVALID_CHUNK_SIZE" });
  const good = enc.encode("0\r\n\r\n");
  assert.deepEqual(d.feed(good, 0, good.length, () => {}), r);
  d.reset();
  assert.equal(decode(d, good).last.kind, "done");
});

Deno.test("decoder streams a large chunk through many small feeds", () => {
  const size = 100_000;
  const head = enc.encode(size.toString(16) + "\r\n");
  const tail = enc.encode("\r\n0\r\n\r\n");
  const bytes = new Uint8Array(head.length + size + tail.length);
  bytes.set(head);
  bytes.fill(0x61, head.length, head.length + size);
  bytes.set(tail, head.length + size);
  const cuts: number[] = [];
  for (let c = 1000; c < bytes.length; c += 1000) cuts.push(c);
  const r = decode(new ChunkedDecoder({ maxTrailerBytes: 0 }), bytes, cuts);
  assert.equal(r.body.length, size);
  assert.equal(r.consumed, bytes.length);
});

Deno.test("decoder bounds chunk extensions by maxChunkExtBytes", () => {
  const line = (extBytes: number) => enc.encode(`1;${"e".repeat(extBytes - 1)}\r\nx\r\n0\r\n\r\n`);
  const atLimit = line(DEFAULT_MAX_CHUNK_EXT_BYTES - 1);
  assert.equal(decode(new ChunkedDecoder({ maxTrailerBytes: 0 }), atLimit).last.kind, "done");
  const over = line(DEFAULT_MAX_CHUNK_EXT_BYTES + 1);
  assert.deepEqual(decode(new ChunkedDecoder({ maxTrailerBytes: 0 }), over).last, {
    kind: "error",
    code: "INVALID_CHUNK_EXTENSION",
  });
  const roomy = new ChunkedDecoder({ maxTrailerBytes: 0, maxChunkExtBytes: 4 * DEFAULT_MAX_CHUNK_EXT_BYTES });
  assert.equal(decode(roomy, over).last.kind, "done");
});

Deno.test("decoder refuses trailers past maxTrailerBytes even without a line end", () => {
  const d = new ChunkedDecoder({ maxTrailerBytes: 16 });
  const bytes = enc.encode("0\r\nX-Trailer: " + "a".repeat(100));
  assert.deepEqual(decode(d, bytes).last, { kind: "error", code: "TRAILER_TOO_LARGE" });
});

Deno.test("decoder refuses a size of 2^53 and accepts 2^53-1", () => {
  const ok = enc.encode("1fffffffffffff\r\n");
  assert.equal(decode(new ChunkedDecoder({ maxTrailerBytes: 0 }), ok).last.kind, "more");
  const over = enc.encode("20000000000000\r\n");
  assert.deepEqual(decode(new ChunkedDecoder({ maxTrailerBytes: 0 }), over).last, {
    kind: "error",
    code: "CHUNK_SIZE_TOO_LONG",
  });
});
