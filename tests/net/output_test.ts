/** The output buffer: order, coalescing, the zero-copy direct answer, and pooled buffers' life. */

import assert from "node:assert/strict";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import { OutputBuffer } from "../../src/net/output.ts";

const POOLED = 16;
const text = (b: Uint8Array | null) => b === null ? null : new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

function make(): { pool: BufferPool; out: OutputBuffer } {
  const pool = new BufferPool(POOLED, 4);
  return { pool, out: new OutputBuffer(pool, POOLED) };
}

Deno.test("appended pieces leave in order as one batch", () => {
  const { out } = make();
  assert.equal(out.take(), null);
  out.append(bytes("ab"));
  out.append(bytes("cd"));
  assert.equal(out.length, 4);
  assert.equal(text(out.take()), "abcd");
  assert.ok(out.isEmpty);
});

Deno.test("a whole answer alone is written as is (the same bytes, no copy)", () => {
  const { out, pool } = make();
  const whole = bytes("HTTP/1.1 200 OK\r\n\r\n");
  out.appendWhole(whole, true);
  assert.equal(out.take(), whole);
  assert.equal(pool.inUse, 0, "no buffer was borrowed");
});

Deno.test("a whole answer followed by more is copied into the batch before what follows", () => {
  const { out } = make();
  out.appendWhole(bytes("one"), true);
  out.append(bytes("two"));
  assert.equal(text(out.take()), "onetwo");
  out.appendWhole(bytes("A"), false);
  assert.equal(text(out.take()), "A");
});

Deno.test("the pooled buffer returns only after its write completed; a batch outgrowing it moves out", () => {
  const { out, pool } = make();
  out.append(bytes("0123456789"));
  const batch = out.take()!;
  assert.equal(pool.inUse, 1, "lent while the write is pending");
  out.written();
  assert.equal(pool.inUse, 0);
  assert.equal(pool.idle, 1);
  out.append(bytes("0123456789"));
  out.append(bytes("0123456789")); // 20 > 16: grows into a buffer of its own, the pooled one goes back
  assert.equal(pool.inUse, 0);
  assert.equal(text(out.take()), "01234567890123456789");
  out.written();
  assert.equal(batch.byteLength, 10);
});

Deno.test("dropping mid-write never pools the buffer a write may still read", () => {
  const { out, pool } = make();
  out.append(bytes("abc"));
  out.take();
  out.append(bytes("def"));
  out.drop();
  assert.equal(pool.inUse, 0, "both accounted for");
  assert.equal(pool.idle, 1, "only the buffer no write held is kept");
  assert.ok(out.isEmpty);
});
